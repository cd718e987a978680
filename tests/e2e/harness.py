"""End-to-end harness: the real daemon process and real sipp peers on 127.0.0.1, bounded in calls and time."""

from __future__ import annotations

import csv
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import msgspec

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = Path(__file__).parent / "scenarios"
SIPP = "sipp"


def free_port(kind: int = socket.SOCK_DGRAM, also: int | None = socket.SOCK_STREAM) -> int:
    """A port free for UDP (and TCP) on 127.0.0.1."""
    for _ in range(200):
        s = socket.socket(socket.AF_INET, kind)
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        ok = True
        if also is not None:
            t = socket.socket(socket.AF_INET, also)
            try:
                t.bind(("127.0.0.1", port))
            except OSError:
                ok = False
            finally:
                t.close()
        s.close()
        if ok:
            return port
    raise RuntimeError("no free port")


def write_config(tmp: Path, edge_port: int, carrier: list[str], pbx: list[tuple[str, int]], extra: str = "",
                 timers: str = 't1 = "100ms"\ntimer_b = "2s"\n', outbound: list[str] | None = None,
                 tcp: bool = True, health_interval: str = "1s", listen_extra: str = "") -> Path:
    lines = [listen_extra,
        "[[listen]]", 'transport = "udp"', f'address = "127.0.0.1:{edge_port}"',
    ]
    if tcp:
        lines += ["[[listen]]", 'transport = "tcp"', f'address = "127.0.0.1:{edge_port}"']
    lines += ["[[carriers]]", 'name = "carrier-a"', f"sources = {msgspec.json.encode(carrier).decode()}"]
    if outbound:
        lines.append(f"outbound = {msgspec.json.encode(outbound).decode()}")
    for name, port in pbx:
        lines += ["[[pbx]]", f'name = "{name}"', f'uri = "sip:127.0.0.1:{port}"', f'sources = ["127.0.0.1:{port}"]']
        if health_interval:
            lines += [f'health_interval = "{health_interval}"', 'health_timeout = "500ms"']
        else:
            lines += ["health_check = false"]  # scenario PBXs count every message toward their call limit
    lines += ["[timers]", timers]
    lines += ["[logging]", 'format = "json"', 'level = "debug"']
    lines += ["[daemon]", f'state_dir = "{tmp / "var"}"', 'drain_timeout = "10s"', "retry_after = 7"]
    if "[admin]" not in extra:
        lines += ["[admin]", f'listen = "127.0.0.1:{free_port(socket.SOCK_STREAM, None)}"', f'token_file = "{tmp / "admin.token"}"']
    if "[store]" not in extra:
        lines += ["[store]", f'path = "{tmp / "var" / "edge.db"}"', 'batch_interval = "20ms"']
    lines.append(extra)
    p = tmp / "edge.toml"
    p.write_text("\n".join(lines) + "\n")
    return p


def write_dialplan(tmp: Path, text: str, name: str = "acme.toml") -> Path:
    d = tmp / "dialplans"
    d.mkdir(exist_ok=True)
    (d / name).write_text(text)
    return d


class Daemon:
    """The sip-edge process; stopped (SIGKILL if needed) when the test ends."""

    def __init__(self, config: Path, dialplans: Path, log: Path, env: dict[str, str] | None = None) -> None:
        self.config = config
        self.dialplans = dialplans
        self.log_path = log
        self._log = open(log, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "edge.cli", "run", "--config", str(config), str(dialplans)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env={**os.environ, **(env or {})},
        )

    def wait_ready(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"daemon exited rc={self.proc.returncode}:\n{self.log()}")
            if b"daemon_started" in self.log_path.read_bytes():
                return
            time.sleep(0.05)
        raise RuntimeError(f"daemon not ready:\n{self.log()}")

    def events(self, name: str | None = None) -> list[dict]:
        out = []
        for line in self.log_path.read_bytes().splitlines():
            try:
                ev = msgspec.json.decode(line)
            except msgspec.DecodeError:
                continue
            if isinstance(ev, dict) and (name is None or ev.get("event") == name):
                out.append(ev)
        return out

    def wait_event(self, name: str, timeout: float = 10.0, count: int = 1) -> list[dict]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            evs = self.events(name)
            if len(evs) >= count:
                return evs
            time.sleep(0.05)
        raise AssertionError(f"event {name!r} x{count} not seen in {timeout}s:\n{self.log()[-4000:]}")

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()
        return self.proc.returncode


class NotifyListener:
    """A stand-in for systemd's $NOTIFY_SOCKET: a Unix datagram socket whose messages `collect` gathers."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.got: list[str] = []

    def collect(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            try:
                self.got.append(self.sock.recv(4096).decode())
            except socket.timeout:
                pass

    def close(self) -> None:
        self.sock.close()


class Sipp:
    """One sipp process (UAC or UAS) with its statistics file."""

    def __init__(self, workdir: Path, name: str, args: list[str], timeout: float = 30.0) -> None:
        self.workdir = workdir / name
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.name = name
        cmd = [SIPP, *args, "-nostdin", "-trace_stat", "-stf", "stats.csv", "-fd", "1", "-trace_err",
               "-error_file", "errors.log", "-trace_msg", "-message_file", "messages.log",
               "-timeout", f"{int(timeout)}s", "-timeout_error"]
        self.cmd = cmd
        self.out = open(self.workdir / "stdout.log", "wb")
        self.proc = subprocess.Popen(cmd, cwd=self.workdir, stdout=self.out, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)

    def wait(self, timeout: float = 60.0) -> int:
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            raise AssertionError(f"sipp {self.name} did not finish in {timeout}s:\n{self.messages()[-3000:]}")
        self.out.close()
        return rc

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGUSR1)  # sipp: dump stats and quit
            try:
                self.proc.wait(3)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if not self.out.closed:
            self.out.close()

    def stats(self) -> dict[str, str]:
        p = self.workdir / "stats.csv"
        if not p.exists():
            return {}
        rows = list(csv.reader(p.open(), delimiter=";"))
        if len(rows) < 2:
            return {}
        return dict(zip(rows[0], rows[-1]))

    def count(self, key: str) -> int:
        v = self.stats().get(key, "0")
        return int(v) if v.isdigit() else 0

    def messages(self) -> str:
        p = self.workdir / "messages.log"
        return p.read_text(errors="replace") if p.exists() else ""

    def errors(self) -> str:
        p = self.workdir / "errors.log"
        return p.read_text(errors="replace") if p.exists() else ""


def uas(workdir: Path, port: int, scenario: str | None = None, name: str = "pbx", extra: list[str] | None = None,
        timeout: float = 30.0, calls: int | None = None) -> Sipp:
    # -aa: answer the edge's OPTIONS health pings 200 outside the scenario (as a real PBX does).
    args = ["-i", "127.0.0.1", "-p", str(port), "-aa"]
    args += ["-sf", str(SCENARIOS / scenario)] if scenario else ["-sn", "uas"]
    if calls is not None:
        args += ["-m", str(calls)]  # exit after that many calls, so the test can wait for it
    return Sipp(workdir, name, args + (extra or []), timeout)


def uac(workdir: Path, edge_port: int, service: str, scenario: str | None = None, calls: int = 1,
        rate: float = 10, port: int | None = None, name: str = "carrier", extra: list[str] | None = None,
        timeout: float = 30.0, ip: str = "127.0.0.1") -> Sipp:
    args = ["-i", ip, "-p", str(port or free_port()), "-s", service, f"127.0.0.1:{edge_port}", "-m", str(calls),
            "-r", str(rate)]
    args += ["-sf", str(SCENARIOS / scenario)] if scenario else ["-sn", "uac"]
    return Sipp(workdir, name, args + (extra or []), timeout)


def env_with_path() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
    return env


_EXPECT_FINAL = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<!-- Carrier: one INVITE that must be answered {code} before answer; then the hop-by-hop ACK. -->
<scenario name="uac expects {code}">
  <send retrans="500"><![CDATA[
INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: {from_name}<sip:{caller}@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
To: <sip:[service]@[remote_ip]:[remote_port]>
Call-ID: [call_id]
CSeq: 1 INVITE
Contact: sip:sipp@[local_ip]:[local_port]
Max-Forwards: 70
{extra}Content-Type: application/sdp
Content-Length: [len]

v=0
o=user1 53655765 2353687637 IN IP[local_ip_type] [local_ip]
s=-
c=IN IP[media_ip_type] [media_ip]
t=0 0
m=audio [media_port] RTP/AVP 0
a=rtpmap:0 PCMU/8000
]]></send>
  <recv response="100" optional="true"/>
  <recv response="183" optional="true"/>
  <recv response="{code}" save_reason="reason"/>
  <send><![CDATA[
ACK sip:[service]@[remote_ip]:[remote_port] SIP/2.0
[last_Via:]
From: {from_name}<sip:{caller}@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
[last_To:]
Call-ID: [call_id]
CSeq: 1 ACK
Max-Forwards: 70
Content-Length: 0
]]></send>
</scenario>
"""


def expect_final_scenario(tmp: Path, code: int, caller: str = "+12025550199", from_name: str = "",
                          extra_headers: str = "") -> str:
    """Write a UAC scenario expecting `code`; returns its absolute path (pass as scenario=)."""
    p = tmp / f"uac_expect_{code}_{abs(hash((caller, from_name, extra_headers))) % 10**8}.xml"
    name = f'"{from_name}" ' if from_name else ""
    extra = "".join(f"{h}\n" for h in extra_headers.splitlines() if h.strip())
    p.write_text(_EXPECT_FINAL.format(code=code, caller=caller, from_name=name, extra=extra))
    return str(p)


_CALL = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<!-- Carrier: a full call from {caller}: INVITE, 180, 200, ACK, BYE after {hold} ms. -->
<scenario name="uac call from {caller}">
  <send retrans="500"><![CDATA[
INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: {from_name}<sip:{caller}@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
To: <sip:[service]@[remote_ip]:[remote_port]>
Call-ID: [call_id]
CSeq: 1 INVITE
Contact: <sip:sipp@[local_ip]:[local_port]>
Max-Forwards: 70
{extra}Content-Type: application/sdp
Content-Length: [len]

v=0
o=user1 53655765 2353687637 IN IP[local_ip_type] [local_ip]
s=-
c=IN IP[media_ip_type] [media_ip]
t=0 0
m=audio [media_port] RTP/AVP 0
a=rtpmap:0 PCMU/8000
]]></send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="200" rrs="true"/>
  <send><![CDATA[
ACK [next_url] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: {from_name}<sip:{caller}@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
[last_To:]
[routes]
Call-ID: [call_id]
CSeq: 1 ACK
Max-Forwards: 70
Content-Length: 0
]]></send>
  <pause milliseconds="{hold}"/>
  <send retrans="500"><![CDATA[
BYE [next_url] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: {from_name}<sip:{caller}@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
[last_To:]
[routes]
Call-ID: [call_id]
CSeq: 2 BYE
Max-Forwards: 70
Content-Length: 0
]]></send>
  <recv response="200"/>
</scenario>
"""

_MESSAGE = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<!-- Carrier: one SIP MESSAGE (text) from {caller}, expecting {code}. -->
<scenario name="uac message from {caller}">
  <send retrans="500"><![CDATA[
MESSAGE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:{caller}@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
To: <sip:[service]@[remote_ip]:[remote_port]>
Call-ID: [call_id]
CSeq: 1 MESSAGE
Max-Forwards: 70
Content-Type: text/plain
Content-Length: [len]

Your package is waiting, click here
]]></send>
  <recv response="{code}"/>
</scenario>
"""

_UAS_MESSAGE = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<!-- PBX: accepts one MESSAGE with 200. -->
<scenario name="uas message">
  <recv request="MESSAGE"/>
  <send><![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:];tag=[pid]SIPpTag01[call_number]
[last_Call-ID:]
[last_CSeq:]
Content-Length: 0
]]></send>
</scenario>
"""


def _write(tmp: Path, stem: str, text: str) -> str:
    p = tmp / f"{stem}_{abs(hash(text)) % 10**10}.xml"
    p.write_text(text)
    return str(p)


def call_scenario(tmp: Path, caller: str, from_name: str = "", hold_ms: int = 50, extra_headers: str = "") -> str:
    name = f'"{from_name}" ' if from_name else ""
    extra = "".join(f"{h}\n" for h in extra_headers.splitlines() if h.strip())
    return _write(tmp, "uac_call", _CALL.format(caller=caller, from_name=name, hold=hold_ms, extra=extra))


def message_scenario(tmp: Path, caller: str, code: int) -> str:
    return _write(tmp, "uac_message", _MESSAGE.format(caller=caller, code=code))


def uas_message_scenario(tmp: Path) -> str:
    return _write(tmp, "uas_message", _UAS_MESSAGE)


class Admin:
    """Tiny admin API client for tests (stdlib urllib)."""

    def __init__(self, tmp: Path, config_text: str) -> None:
        import re

        m = re.search(r'\[admin\]\s*listen = "([^"]+)"', config_text)
        assert m, "no [admin] listen in config"
        self.base = f"http://{m.group(1)}"
        self.token_file = tmp / "admin.token"

    def activities(self, wait: float = 5.0, **filters: str) -> list[dict]:
        """GET /activities with filters, polling until something matches (writes are batched)."""
        q = "&".join(f"{k}={v}" for k, v in filters.items())
        deadline = time.monotonic() + wait
        while True:
            status, body = self.call("GET", f"/activities?{q}")
            assert status == 200, body
            if body["items"] or time.monotonic() > deadline:
                return body["items"]
            time.sleep(0.1)

    def call(self, method: str, path: str, body: object | None = None, token: bool = True) -> tuple[int, object]:
        import json
        import urllib.error
        import urllib.request

        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method)
        if token:
            req.add_header("Authorization", f"Bearer {self.token_file.read_text().strip()}")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=5) as resp:
                raw = resp.read()
                status = resp.status
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            status = exc.code
        try:
            return status, json.loads(raw) if raw else None
        except ValueError:
            return status, raw.decode(errors="replace")


DTMF_PCAP = "/usr/share/sip-tester/dtmf_2833_{}.pcap"

_MEDIA_CALL = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<!-- Carrier: call a screened number, wait {wait} ms for the prompts, key {digits} as RFC 4733 events
     (the pcaps shipped with sip-tester), then {tail}. -->
<scenario name="uac media caller">
  <send retrans="500"><![CDATA[
INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:{caller}@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
To: <sip:[service]@[remote_ip]:[remote_port]>
Call-ID: [call_id]
CSeq: 1 INVITE
Contact: <sip:sipp@[local_ip]:[local_port]>
Max-Forwards: 70
Content-Type: application/sdp
Content-Length: [len]

v=0
o=user1 53655765 2353687637 IN IP[local_ip_type] [local_ip]
s=-
c=IN IP[media_ip_type] [media_ip]
t=0 0
m=audio [media_port] RTP/AVP {pts}{te_pt}
{rtpmaps}{te_lines}a=ptime:20
]]></send>
  <recv response="100" optional="true"/>
  <recv response="183" optional="true"/>
  <recv response="200" rrs="true"/>
  <send><![CDATA[
ACK [next_url] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:{caller}@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
[last_To:]
[routes]
Call-ID: [call_id]
CSeq: 1 ACK
Max-Forwards: 70
Content-Length: 0
]]></send>
  <pause milliseconds="{wait}"/>
{keys}
{tail_xml}
</scenario>
"""

_KEY = """  <nop><action><exec play_pcap_audio="{pcap}"/></action></nop>
  <pause milliseconds="{gap}"/>"""

_CALLER_BYE = """  <pause milliseconds="{hold}"/>
  <send retrans="500"><![CDATA[
BYE [next_url] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:{caller}@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
[last_To:]
[routes]
Call-ID: [call_id]
CSeq: {bye_cseq} BYE
Max-Forwards: 70
Content-Length: 0
]]></send>
  <recv response="200"/>"""

_INFO = """  <send retrans="500"><![CDATA[
INFO [next_url] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:{caller}@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
[last_To:]
[routes]
Call-ID: [call_id]
CSeq: {cseq} INFO
Max-Forwards: 70
Content-Type: application/dtmf-relay
Content-Length: [len]

Signal={digit}
Duration=160
]]></send>
  <recv response="200"/>
  <pause milliseconds="{gap}"/>"""

_EDGE_BYE = """  <recv request="BYE" timeout="{hold}"/>
  <send><![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:]
[last_Call-ID:]
[last_CSeq:]
Content-Length: 0
]]></send>"""


def media_call_scenario(tmp: Path, caller: str, digits: str, wait_ms: int, *, gap_ms: int = 400,
                        caller_hangs_up_after: int | None = None, edge_hangs_up_within: int | None = None,
                        codecs: tuple[int, ...] = (0,), telephone_event: bool = True, pcap: str | None = None,
                        info: bool = False) -> str:
    """A caller that keys `digits` after `wait_ms` (RFC 4733 pcaps, SIP INFO with `info`, or the audio of
    `pcap`); ends by its own BYE or the edge's."""
    cseq = 2
    if pcap is not None:
        keys = _KEY.format(pcap=pcap, gap=gap_ms)
    elif info:
        parts = []
        for d in digits:
            parts.append(_INFO.format(caller=caller, cseq=cseq, digit=d, gap=gap_ms))
            cseq += 1
        keys = "\n".join(parts)
    else:
        keys = "\n".join(_KEY.format(pcap=DTMF_PCAP.format({"*": "star", "#": "pound"}.get(d, d)), gap=gap_ms)
                         for d in digits)
    if caller_hangs_up_after is not None:
        tail = _CALLER_BYE.format(hold=caller_hangs_up_after, caller=caller, bye_cseq=cseq)
        what = f"hang up after {caller_hangs_up_after} ms"
    else:
        tail = _EDGE_BYE.format(hold=edge_hangs_up_within or 15000)
        what = "expect the edge to hang up"
    names = {0: "PCMU", 8: "PCMA"}
    rtpmaps = "".join(f"a=rtpmap:{pt} {names[pt]}/8000\n" for pt in codecs)
    te_lines = "a=rtpmap:101 telephone-event/8000\na=fmtp:101 0-15\n" if telephone_event else ""
    return _write(tmp, "uac_media", _MEDIA_CALL.format(caller=caller, wait=wait_ms, keys=keys, digits=digits or "nothing",
                                                       tail=what, tail_xml=tail, pts=" ".join(map(str, codecs)),
                                                       rtpmaps=rtpmaps, te_pt=" 101" if telephone_event else "",
                                                       te_lines=te_lines))


def write_rtp_pcap(path: Path, payloads: list[bytes], pt: int = 0) -> Path:
    """A pcap of one RTP stream (20 ms apart) that sipp's play_pcap_audio can replay."""
    import struct

    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
    t0 = 1_700_000_000.0
    for i, payload in enumerate(payloads):
        rtp = struct.pack("!BBHII", 0x80, pt | (0x80 if i == 0 else 0), (1000 + i) & 0xFFFF, (8000 + 160 * i) & 0xFFFFFFFF,
                          0x5EED0001) + payload
        udp = struct.pack("!HHHH", 40000, 40002, 8 + len(rtp), 0) + rtp
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), i & 0xFFFF, 0, 64, 17, 0,
                         bytes([127, 0, 0, 1]), bytes([127, 0, 0, 1])) + udp
        frame = b"\x00" * 12 + b"\x08\x00" + ip
        ts = t0 + 0.02 * i
        out.append(struct.pack("<IIII", int(ts), int((ts % 1) * 1e6), len(frame), len(frame)) + frame)
    path.write_bytes(b"".join(out))
    return path


def inband_dtmf_pcap(path: Path, digits: str, tone_ms: int = 120, gap_ms: int = 200) -> Path:
    """PCMU RTP carrying DTMF as audio tones (no telephone-event), for in-band detection."""
    from edge.media.codecs import Codec, encode
    from edge.media.prompts import dtmf_pcm, silence_pcm

    pcm = silence_pcm(200)
    for d in digits:
        pcm += dtmf_pcm(d, tone_ms) + silence_pcm(gap_ms)
    pcm += silence_pcm(200)
    ulaw = encode(pcm, Codec.PCMU)
    frames = [ulaw[i : i + 160] for i in range(0, len(ulaw) - 159, 160)]
    return write_rtp_pcap(path, frames, pt=0)


def early_media_scenario(tmp: Path, caller: str, digits: str, wait_ms: int, expect_answer: bool) -> str:
    """Caller for `screening = "early-media"`: expects 183 with SDP, sends audio at once (so the edge does
    not fall back to answering), keys `digits`, then expects the 200 (bridged) or a final failure."""
    text = Path(media_call_scenario(tmp, caller, digits, wait_ms, caller_hangs_up_after=1000, codecs=(8, 0))).read_text()
    text = text.replace('<recv response="183" optional="true"/>\n  <recv response="200" rrs="true"/>',
                        '<recv response="183"/>\n'
                        '  <nop><action><exec play_pcap_audio="/usr/share/sip-tester/g711a.pcap"/></action></nop>', 1)
    head, _, rest = text.partition('  <send><![CDATA[\nACK [next_url]')
    ack, _, after_ack = rest.partition("]]></send>\n")
    pause_keys, _, tail = after_ack.partition('  <pause milliseconds="1000"/>')
    # No pause after the last key: the edge's answer may come at once, and sipp refuses messages mid-pause.
    last_pause = pause_keys.rstrip().rfind("<pause")
    if last_pause > 0:
        pause_keys = pause_keys[:last_pause]
    if expect_answer:
        body = (head + pause_keys + '  <recv response="200" rrs="true"/>\n  <send><![CDATA[\nACK [next_url]' + ack
                + "]]></send>\n" + '  <pause milliseconds="1000"/>' + tail)
    else:
        final = ('  <recv response="480"/>\n  <send><![CDATA[\nACK sip:[service]@[remote_ip]:[remote_port] SIP/2.0\n'
                 '[last_Via:]\nFrom: <sip:' + caller + '@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]\n'
                 '[last_To:]\nCall-ID: [call_id]\nCSeq: 1 ACK\nMax-Forwards: 70\nContent-Length: 0\n]]></send>\n</scenario>\n')
        body = head + pause_keys + final
    return _write(tmp, "uac_early", body)
