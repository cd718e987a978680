"""The benchmark harness reads sipp's per-message counts, py-spy's collapsed stacks and SIP responses to its
OPTIONS probes; a misread there would print wrong goodput, shed counts or profiles. No timing is asserted."""

from __future__ import annotations

import math
import socket
import threading
from pathlib import Path

from benchmarks import overload, profiling
from benchmarks.run import goal_lines, render_summary

# Header and rows as sipp 3.6 writes them for benchmarks/sipp/uac_overload.xml with -trace_counts
# (CurrentTime holds "date<TAB>time<TAB>epoch"); 4 calls: 2 answered and completed, 1 answered whose BYE
# failed, 1 shed with 503.
_HEADER = ("CurrentTime;ElapsedTime;0_Pause_Sessions;0_Pause_Unexp;1_INVITE_Sent;1_INVITE_Retrans;1_INVITE_Timeout;"
           "2_100_Recv;2_100_Retrans;2_100_Timeout;2_100_Unexp;3_180_Recv;3_180_Retrans;3_180_Timeout;3_180_Unexp;"
           "4_503_Recv;4_503_Retrans;4_503_Timeout;4_503_Unexp;5_200_Recv;5_200_Retrans;5_200_Timeout;5_200_Unexp;"
           "6_ACK_Sent;6_ACK_Retrans;7_Pause_Sessions;7_Pause_Unexp;8_BYE_Sent;8_BYE_Retrans;8_BYE_Timeout;"
           "9_200_Recv;9_200_Retrans;9_200_Timeout;9_200_Unexp;10_ACK_Sent;10_ACK_Retrans;")


def _row(epoch: float, invites: int, shed: int, answered: int, completed: int) -> str:
    cells = ["2026-12-01\t23:51:23.397016\t%.6f" % epoch, "00:00:01:000000", "0", "0", str(invites), "0", "0",
             str(invites - shed), "0", "0", "0", str(answered), "0", "0", "0", str(shed), "0", "0", "0",
             str(answered), "0", "0", "0", str(answered), "0", "0", "0", str(answered), "3", "0",
             str(completed), "0", "0", "0", str(shed), "0"]
    return ";".join(cells) + ";"


def _counts_file(tmp_path: Path) -> Path:
    path = tmp_path / "uac_overload_123_counts.csv"
    path.write_text("\n".join([_HEADER, _row(1000.0, 0, 0, 0, 0), _row(1001.0, 4, 1, 3, 1),
                               _row(1002.0, 4, 1, 3, 2), _row(1003.0, 4, 1, 3, 2)]) + "\n")
    return path


def test_counts_tell_answer_bye_and_503_apart(tmp_path: Path) -> None:
    c = overload.parse_counts(_counts_file(tmp_path))
    assert (c.started, c.answered, c.completed, c.shed) == (4, 3, 2, 1)
    assert c.first_time == 1000.0
    assert c.last_completion_time == 1002.0  # the first row with the final count, not the last row


def test_counts_file_found_by_sipp_naming(tmp_path: Path) -> None:
    assert overload.find_counts(tmp_path) is None
    path = _counts_file(tmp_path)
    assert overload.find_counts(tmp_path) == path


def test_result_separates_failed_established_from_shed_without_retry_after(tmp_path: Path) -> None:
    res = overload.OverloadResult("edge", capacity_cps=1.0, capacity_is_lower_bound=False, offered_cps=2.0,
                                  seconds=1.0, calls=4)
    failed = {"FailedCall": 2, "FailedRegexpHdrNotFound": 1, "FailedMaxUDPRetrans": 1, "FailedTcpConnect": 0}
    overload.fill(res, overload.parse_counts(_counts_file(tmp_path)), failed, in_progress=0)
    assert res.failed_established == 1
    assert res.shed_503 == 1 and res.shed_without_retry_after == 1
    assert res.never_answered == 0
    assert "FailedTcpConnect" not in res.failure_causes and res.failure_causes["FailedMaxUDPRetrans"] == 1
    # 2 completions over the 2 s until the last one showed (longer than the 1 s offered)
    assert res.goodput_cps == 1.0 and res.goodput_pct == 100.0
    res.options_during = overload.ProbeSummary(sent=10, answered=10)
    res.options_after = overload.ProbeSummary(sent=5, answered=4, over_1s=1)
    v = overload.verdict(res)
    assert "goodput >= 90 %: met" in v and "missed (1 without Retry-After)" in v and "missed (1 late or unanswered)" in v
    text = overload.render([res], 2.0)
    assert "not completed) 1" in text and "503 received 1" in text and "MaxUDPRetrans=1" in text


def test_goodput_never_divides_by_less_than_the_offered_time() -> None:
    c = overload.CallCounts(answered=10, completed=10, shed=0, first_time=0.0, last_completion_time=1.0)
    assert overload.goodput(c, 5.0) == 2.0
    assert overload.goodput(overload.CallCounts(), 5.0) == 0.0


def test_collapsed_stacks_own_and_total_time() -> None:
    text = ("thread (101);<module> (edge/cli.py:10);run (asyncio/runners.py:118);send (edge/io/sip_transport.py:40) 6\n"
            "thread (101);<module> (edge/cli.py:10);run (asyncio/runners.py:118);send (edge/io/sip_transport.py:52) 2\n"
            "thread (101);<module> (edge/cli.py:10);run (asyncio/runners.py:118) 3\n"
            "thread (202);_worker (concurrent/futures/thread.py:83);_apply (edge/store/sqlite.py:90) 1\n"
            "not a stack line\n")
    prof = profiling.parse_collapsed(text)
    assert prof.samples == 12
    by_name = {f.name: f for f in prof.functions}
    assert "thread (101)" not in by_name
    send = by_name["send (edge/io/sip_transport.py)"]  # two lines of one function, aggregated
    assert (send.own, send.total) == (8, 8)
    assert (by_name["run (asyncio/runners.py)"].own, by_name["run (asyncio/runners.py)"].total) == (3, 11)
    assert prof.functions[0].name == "send (edge/io/sip_transport.py)"
    rendered = profiling.render(prof, top=2)
    assert "send (edge/io/sip_transport.py)" in rendered and "_apply" not in rendered


def test_sip_response_status_and_call_id() -> None:
    data = b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5;branch=z9hG4bK-1\r\ni: probe-5-7\r\nCSeq: 1 OPTIONS\r\n\r\n"
    assert overload.parse_response(data) == (200, "probe-5-7")
    assert overload.parse_response(b"OPTIONS sip:x SIP/2.0\r\n\r\n") == (0, "")
    assert overload.parse_response(b"\x00garbage") == (0, "")


def test_probe_summary_counts_unanswered_as_late() -> None:
    probes = [overload.Probe(0.0, 0.0, 5.0, 200), overload.Probe(0.1, 0.1, 1500.0, 200), overload.Probe(0.2, 0.2)]
    s = overload.summarize_probes(probes)
    assert (s.sent, s.answered, s.over_1s) == (3, 2, 2)
    assert s.max_ms == 1500.0 and s.statuses == {200: 2}
    assert math.isnan(overload.summarize_probes([]).p50_ms)


def test_prober_times_answers_from_a_loopback_responder() -> None:
    """A responder that answers every other OPTIONS: the prober must match answers by Call-ID and count
    the rest as unanswered once it stops."""
    responder = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    responder.bind(("127.0.0.1", 0))
    responder.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        n = 0
        while not stop.is_set():
            try:
                data, addr = responder.recvfrom(65535)
            except TimeoutError:
                continue
            n += 1
            if n % 2:
                call_id = next(l.split(":", 1)[1].strip() for l in data.decode().split("\r\n")
                               if l.lower().startswith("call-id:"))
                responder.sendto(f"SIP/2.0 200 OK\r\nCall-ID: {call_id}\r\nContent-Length: 0\r\n\r\n".encode(), addr)

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    prober = overload.OptionsProber(responder.getsockname()[1], interval=0.02, timeout=0.3)
    try:
        prober.start()
        while len(prober.probes) < 6:
            threading.Event().wait(0.02)
    finally:
        prober.close()
        stop.set()
        t.join(2)
        responder.close()
    s = overload.summarize_probes(prober.probes)
    assert s.sent >= 6
    assert 0 < s.answered < s.sent
    assert s.statuses == {200: s.answered}


def test_goal_lines_and_summary_name_both_ratios() -> None:
    ratios = [{"edge": "edge log_calls=on", "kamailio": "kamailio 1w", "cps_ratio": 0.5, "cpu_per_call_ratio": 7.0,
               "common_rate": "500", "cpu_per_call_ratio_at_common_rate": 4.5},
              {"edge": "edge stir log=on", "kamailio": "kamailio 1w", "cps_ratio": 0.5, "cpu_per_call_ratio": 7.0,
               "common_rate": "500", "cpu_per_call_ratio_at_common_rate": 4.5}]
    lines = goal_lines(ratios)
    assert len(lines) == 1  # goals 1-2 are about the clean call
    assert "4.50 at 500 CPS -> missed" in lines[0] and "0.50 -> missed" in lines[0]
    met = goal_lines([ratios[0] | {"cps_ratio": 0.6, "cpu_per_call_ratio_at_common_rate": 2.5}])
    assert "2.50 at 500 CPS -> met" in met[0] and "0.60 -> met" in met[0]
    none = goal_lines([ratios[0] | {"common_rate": "", "cpu_per_call_ratio_at_common_rate": math.nan}])
    assert "not measured" in none[0]
    text = render_summary({"systems": {}, "ratios": ratios[:1]})
    assert "goals 1-2" in text and "goal 1" in text and "goal 2" in text


def test_a_collapse_accounts_for_every_placed_call(tmp_path: Path) -> None:
    """Figures of a real collapse (the edge offered 3x its capacity without overload control): 4,500 calls
    placed, 3,357 answered, 969 completed, no 503; 2,042 still open when sipp's time budget ran out."""
    path = tmp_path / "uac_overload_7_counts.csv"
    path.write_text("\n".join([_HEADER, _row(1000.0, 0, 0, 0, 0), _row(1021.0, 4500, 0, 3357, 969)]) + "\n")
    res = overload.OverloadResult("edge", 300.0, True, 900.0, 5.0, 4500)
    overload.fill(res, overload.parse_counts(path),
                  {"FailedCall": 1489, "FailedMaxUDPRetrans": 370, "FailedUnexpectedMessage": 1119}, in_progress=2042)
    assert (res.completed, res.failed_established, res.never_answered, res.shed_503) == (969, 2388, 1143, 0)
    assert res.completed + res.failed_established + res.never_answered + res.shed_503 == 4500
    assert round(res.goodput_cps, 1) == 46.1 and round(res.goodput_pct) == 15
    assert "a lower bound" in overload.render([res], 3.0)
    v = overload.verdict(res)
    assert "goodput >= 90 %: missed" in v and "missed (no 503 at all)" in v and "missed (2388)" in v
    assert "the edge's best zero-failure rate, for every system" in overload.render([res], 2.0, "edge")


def test_held_dialogs_memory_per_call_and_release_verdict() -> None:
    from benchmarks.held_calls import HeldResult, render

    res = HeldResult(calls=1000, rate=100.0, hold_s=25.0, rss_before_kb=100_000, rss_plateau_kb=108_000,
                     rss_after_kb=109_000, plateau_active=1000, peak_active=1000, active_after=0,
                     successful=1000, failed=0)
    assert res.per_call_kib == 8.0 and res.all_ended
    assert "8.0 KiB (goal <= 16 KiB: met)" in render(res) and "all ended" in render(res)
    stuck = HeldResult(calls=1000, rate=100.0, hold_s=25.0, rss_before_kb=100_000, rss_plateau_kb=120_000,
                       plateau_active=500, active_after=3, successful=997, failed=3)
    assert stuck.per_call_kib == 40.0 and not stuck.all_ended
    assert "missed" in render(stuck) and "NOT all ended" in render(stuck)
    assert math.isnan(HeldResult(calls=1, rate=1.0, hold_s=1.0).per_call_kib)


def test_sampler_attaches_to_a_busy_python_process(tmp_path: Path) -> None:
    """py-spy attached by pid, stopped with SIGINT, and its collapsed stacks read back: the busy function
    is where the samples are (py-spy comes with the test extras)."""
    import subprocess
    import sys

    assert profiling.py_spy_path() is not None, "py-spy missing: make test installs it with the test extras"
    code = ("import sys, time\n"
            "def spin_for_the_sampler(deadline):\n"
            "    while time.monotonic() < deadline:\n"
            "        sum(range(1000))\n"
            "print('ready', flush=True)\n"
            "spin_for_the_sampler(time.monotonic() + 20)\n")
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        sampler = profiling.Sampler(child.pid, tmp_path / "busy.collapsed", rate=100)
        sampler.start()
        sampler.wait_attached()
        threading.Event().wait(1.0)
        prof = sampler.stop()
    finally:
        child.kill()
        child.wait(5)
    assert prof.samples > 0
    assert prof.functions[0].name.startswith("spin_for_the_sampler (")


def test_goal_3_met_when_every_part_is() -> None:
    res = overload.OverloadResult("edge", 500.0, False, 1000.0, 20.0, 20000, completed=9500, answered=9500,
                                  shed_503=10500, goodput_cps=475.0, goodput_pct=95.0,
                                  options_during=overload.ProbeSummary(sent=200, answered=200),
                                  options_after=overload.ProbeSummary(sent=50, answered=50))
    assert overload.verdict(res).count(": met") == 4 and "missed" not in overload.verdict(res)


def test_activity_write_benchmark_stores_every_activity_and_reports_both_figures(tmp_path: Path) -> None:
    """benchmarks/activity_write.py: every activity reaches the table (both writes), and the figures it
    prints are the ones its README paragraph quotes. No timing asserted."""
    import asyncio
    import sqlite3
    import subprocess
    import sys

    from benchmarks.activity_write import store_cpu

    assert asyncio.run(store_cpu(120, 50, tmp_path)) > 0
    conn = sqlite3.connect(tmp_path / "edge.db")
    rows = conn.execute("SELECT count(*), count(DISTINCT id), min(json_extract(doc, '$.ended_at') IS NOT NULL) FROM activities").fetchone()
    conn.close()
    assert rows == (120, 120, 1)  # one row per call, its second write (ended) the one kept
    out = subprocess.run([sys.executable, "-m", "benchmarks.activity_write", "--calls", "200"], capture_output=True,
                         check=True, timeout=120).stdout.decode()
    assert "store: " in out and "us CPU per call (activity written twice, 50 per batch)" in out
    assert "log line: " in out and "us CPU per contact_decided line" in out
