"""RFC 3261 §17 / RFC 6026 transactions driven by a fake clock through the TimerWheel: every timer."""

from __future__ import annotations

import msgspec
import pytest

from edge.config import Timers
from edge.sip.message import SipMessage, parse
from edge.sip.timers import TimerValues, TimerWheel
from edge.sip.transaction import ClientTransaction, Destination, ServerTransaction, State, build_ack, build_cancel
from tests.sip.samples import invite, msg

UDP = Destination("udp", "192.0.2.10", 5060)
TCP = Destination("tcp", "192.0.2.10", 5060, 7)
TV = TimerValues()  # T1 0.5, T2 4, T4 5, everything else derived


class Clock:
    """Fake clock + wheel + send log; `run_until` fires timers in deadline order like the daemon loop."""

    def __init__(self) -> None:
        self.now = 0.0
        self.wheel = TimerWheel()
        self.sent: list[tuple[float, bytes, Destination]] = []
        self.events: list[tuple[float, str, str | None]] = []

    def send(self, data: bytes, dest: Destination) -> None:
        self.sent.append((self.now, data, dest))

    def run_until(self, t: float) -> None:
        while True:
            d = self.wheel.next_deadline()
            if d is None or d > t:
                break
            self.now = d
            for owner, name in self.wheel.pop_due(d):
                self.events.append((d, name, owner.on_timer(name, d)))
        self.now = t

    def sent_at(self) -> list[float]:
        return [round(t, 3) for t, _, _ in self.sent]


def request(method: str = "INVITE") -> SipMessage:
    return parse(invite(method=method, extra=("Route: <sip:next.example;lr>",)))


def response(status: int, method: str = "INVITE", to_tag: str = "pbx1", via: str = "z9hG4bKcarrier1") -> SipMessage:
    return parse(msg(
        f"SIP/2.0 {status} R",
        f"Via: SIP/2.0/UDP 127.0.0.1:5080;branch={via};rport",
        'From: "Alice" <sip:+12025550111@carrier.example>;tag=c1',
        f"To: <sip:+12025550100@edge.example>;tag={to_tag}",
        "Call-ID: call-1@carrier",
        f"CSeq: 1 {method}",
    ))


def server(c: Clock, method: str = "INVITE", src: Destination = UDP, tv: TimerValues = TV) -> ServerTransaction:
    req = request(method)
    return ServerTransaction((req.branch, ("127.0.0.1", 5080), method), req, src, c.wheel, tv, c.send, c.now)


def client(c: Clock, method: str = "INVITE", dest: Destination = UDP, tv: TimerValues = TV) -> ClientTransaction:
    req = request(method)
    ct = ClientTransaction(req.branch, req, dest, c.wheel, tv, c.send)
    ct.start(c.now)
    return ct


# -- timer values -------------------------------------------------------------------------------

def test_timer_values_defaults_are_rfc_multiples_of_t1() -> None:
    tv = TimerValues()
    assert (tv.b, tv.f, tv.h, tv.j, tv.l, tv.m) == (32.0,) * 6
    assert (tv.t1, tv.t2, tv.t4, tv.timer_d, tv.timer_c) == (0.5, 4.0, 5.0, 32.0, 180.0)


def test_timer_values_follow_t1_and_explicit_override() -> None:
    tv = TimerValues(t1=0.1, timer_b=8.0)
    assert tv.b == 8.0
    assert tv.f == pytest.approx(6.4)
    assert tv.h == pytest.approx(6.4)


@pytest.mark.parametrize(
    ("cfg", "expected"),
    [
        ({}, {"t1": 0.5, "t2": 4.0, "t4": 5.0, "b": 32.0, "f": 32.0, "timer_c": 180.0, "timer_d": 32.0}),
        ({"t1": "200ms", "timer_b": "8s"}, {"t1": 0.2, "b": 8.0, "f": 12.8, "h": 12.8, "j": 12.8}),
        ({"t2": "2s", "t4": "1s", "timer_d": "40s", "timer_j": "3s"}, {"t2": 2.0, "t4": 1.0, "timer_d": 40.0, "j": 3.0}),
    ],
    ids=["defaults", "short_t1", "overrides"],
)
def test_timer_values_from_config(cfg: dict, expected: dict) -> None:
    tv = msgspec.convert(cfg, Timers).values()
    for k, v in expected.items():
        assert getattr(tv, k) == pytest.approx(v), k


def test_wheel_lazy_cancel_and_rearm() -> None:
    class Owner:
        def __init__(self) -> None:
            self.timers: dict[str, float] = {}

    w = TimerWheel()
    a, b = Owner(), Owner()
    w.arm(a, "X", 2.0)
    w.arm(b, "Y", 1.0)
    w.arm(a, "X", 3.0)  # re-armed: the 2.0 entry is stale
    w.cancel(b, "Y")
    assert w.next_deadline() == 3.0
    assert w.pop_due(2.5) == []
    assert w.pop_due(3.0) == [(a, "X")]
    assert a.timers == {} and w.next_deadline() is None
    assert w.live == 0


def test_wheel_cancel_releases_owner_and_compacts() -> None:
    """A cancelled timer must not keep its owner (a whole call) alive until its deadline."""
    import gc
    import weakref

    class Owner:
        def __init__(self) -> None:
            self.timers: dict[str, int] = {}

    w = TimerWheel()
    owners = [Owner() for _ in range(10_000)]
    for i, o in enumerate(owners):
        w.arm(o, "C", 180.0 + i)
    probe = weakref.ref(owners[0])
    for o in owners:
        w.cancel(o, "C")
    gc.disable()
    try:
        del o, owners
        assert probe() is None  # freed by reference counting, no collector needed
    finally:
        gc.enable()
    keep = Owner()
    w.arm(keep, "A", 1.0)
    assert len(w) <= 4 * w.live + 4096 + 1  # compacted below the stale-entry bound
    assert w.pop_due(200.0) == [(keep, "A")]


def test_wheel_timers_give_the_garbage_collector_nothing_to_walk() -> None:
    """Armed and cancelled timers add no object the cyclic collector tracks: at 1,500 calls a second
    ~100,000 timers wait out their 32 s, and as tracked handles they were most of every collection's work
    (the wheel's heap entries were a tuple and a list each; now a tuple of numbers and a string, which
    CPython stops tracking, and the owners' timer dicts hold numbers)."""
    import gc

    class Owner:
        __slots__ = ("timers",)

        def __init__(self) -> None:
            self.timers: dict[str, int] = {}

    w = TimerWheel()
    owners = [Owner() for _ in range(1_000)]
    gc.collect()
    before = len(gc.get_objects())
    for i, o in enumerate(owners):
        for name, offset in (("A", 0.5), ("B", 32.0), ("C", 180.0), ("L", 32.0)):
            w.arm(o, name, i + offset)
        w.cancel(o, "A")
        w.cancel(o, "C")  # stays in the heap until its deadline or a compaction
    gc.collect()
    assert len(gc.get_objects()) - before < 50  # was 2 per armed timer: ~8,000
    assert w.live == 2_000 and len(w) == 4_000
    assert w.deadlines(owners[7]) == {"B": 39.0, "L": 39.0}


# -- INVITE server transaction (§17.2.1, RFC 6026) -----------------------------------------------

def test_ist_100_and_provisional_resent_on_retransmission() -> None:
    c = Clock()
    st = server(c)
    assert st.state is State.PROCEEDING
    assert st.on_retransmission(c.now) is True
    assert c.sent == []  # nothing to resend yet
    st.respond(100, b"100", c.now)
    st.respond(180, b"180", c.now)
    assert st.on_retransmission(c.now) is True
    assert [d for _, d, _ in c.sent] == [b"100", b"180", b"180"]
    assert st.state is State.PROCEEDING and st.timers == {}


def test_ist_timer_g_doubles_capped_at_t2_then_h_times_out() -> None:
    c = Clock()
    st = server(c)
    st.respond(486, b"486", 0.0)
    assert st.state is State.COMPLETED
    c.run_until(40.0)
    # G: 0.5, 1, 2, 4, 4, ... (T2) retransmissions until H at 64*T1 = 32s.
    times = c.sent_at()
    assert times[:6] == [0.0, 0.5, 1.5, 3.5, 7.5, 11.5]
    gaps = [b - a for a, b in zip(times[1:], times[2:])]
    assert max(gaps) == 4.0
    assert times[-1] < 32.0
    assert (32.0, "H", "ack_timeout") in c.events
    assert st.state is State.TERMINATED and st.timers == {}


def test_ist_retransmitted_request_in_completed_resends_final() -> None:
    c = Clock()
    st = server(c)
    st.respond(603, b"603", 0.0)
    assert st.on_retransmission(0.1) is True
    assert [d for _, d, _ in c.sent] == [b"603", b"603"]


def test_ist_ack_confirms_then_timer_i() -> None:
    c = Clock()
    st = server(c)
    st.respond(404, b"404", 0.0)
    c.run_until(0.6)  # one G retransmission
    assert st.on_ack(0.6) is True
    assert st.state is State.CONFIRMED
    assert set(st.timers) == {"I"}
    assert st.on_ack(0.7) is True  # ACK retransmission absorbed
    sent = len(c.sent)
    c.run_until(5.59)
    assert st.state is State.CONFIRMED and len(c.sent) == sent  # G stopped
    c.run_until(5.6)  # I = T4 after the ACK
    assert st.state is State.TERMINATED
    assert not any(name == "H" for _, name, _ in c.events)


def test_ist_reliable_no_g_and_i_zero() -> None:
    c = Clock()
    st = server(c, src=TCP)
    st.respond(486, b"486", 0.0)
    assert set(st.timers) == {"H"}
    st.on_ack(1.0)
    c.run_until(1.0)
    assert st.state is State.TERMINATED
    assert c.sent_at() == [0.0]


def test_ist_2xx_accepted_with_timer_l_and_2xx_retransmissions_pass() -> None:
    c = Clock()
    st = server(c)
    st.respond(180, b"180", 0.0)
    st.respond(200, b"200", 1.0)
    assert st.state is State.ACCEPTED and set(st.timers) == {"L"}
    st.respond(200, b"200-again", 2.0)
    st.respond(486, b"486-late", 2.0)  # a non-2xx after the 2xx never goes out
    assert st.on_retransmission(2.5) is True  # absorbed, no response generated by the transaction
    assert st.on_ack(3.0) is False  # an ACK for a 2xx is end to end, not this transaction's
    assert [d for _, d, _ in c.sent] == [b"180", b"200", b"200-again"]
    c.run_until(32.99)
    assert st.state is State.ACCEPTED
    c.run_until(33.0)
    assert st.state is State.TERMINATED
    assert st.on_retransmission(34.0) is False


def test_ist_ignores_responses_after_completion() -> None:
    c = Clock()
    st = server(c)
    st.respond(486, b"486", 0.0)
    st.respond(200, b"200", 0.1)
    st.respond(500, b"500", 0.1)
    assert [d for _, d, _ in c.sent] == [b"486"]


# -- non-INVITE server transaction (§17.2.2) -------------------------------------------------------

@pytest.mark.parametrize(("src", "j"), [(UDP, 32.0), (TCP, 0.0)], ids=["udp_64t1", "tcp_zero"])
def test_nist_timer_j(src: Destination, j: float) -> None:
    c = Clock()
    st = server(c, "BYE", src)
    assert st.state is State.TRYING
    assert st.on_retransmission(0.0) is True and c.sent == []  # Trying: absorbed silently
    st.respond(200, b"200", 0.0)
    assert st.state is State.COMPLETED
    assert c.wheel.deadlines(st) == {"J": j}
    if j:
        assert st.on_retransmission(1.0) is True
        assert [d for _, d, _ in c.sent] == [b"200", b"200"]
    c.run_until(j)
    assert st.state is State.TERMINATED


def test_nist_provisional_moves_to_proceeding_and_is_resent() -> None:
    c = Clock()
    st = server(c, "OPTIONS")
    st.respond(100, b"100", 0.0)
    assert st.state is State.PROCEEDING
    st.on_retransmission(0.2)
    st.respond(200, b"200", 0.3)
    assert [d for _, d, _ in c.sent] == [b"100", b"100", b"200"]
    assert st.state is State.COMPLETED


def test_nist_timer_j_from_config() -> None:
    c = Clock()
    st = server(c, "BYE", tv=TimerValues(timer_j=3.0))
    st.respond(200, b"200", 0.0)
    c.run_until(2.9)
    assert st.state is State.COMPLETED
    c.run_until(3.0)
    assert st.state is State.TERMINATED


# -- INVITE client transaction (§17.1.1) ---------------------------------------------------------

def test_ict_timer_a_doubles_until_timer_b_times_out() -> None:
    c = Clock()
    ct = client(c)
    assert ct.state is State.CALLING
    c.run_until(40.0)
    assert c.sent_at() == [0.0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
    assert (32.0, "B", "timeout") in c.events
    assert ct.state is State.TERMINATED and ct.timers == {}


def test_ict_timer_b_from_config_is_shorter() -> None:
    c = Clock()
    ct = client(c, tv=msgspec.convert({"timer_b": "8s"}, Timers).values())
    c.run_until(8.0)
    assert c.sent_at() == [0.0, 0.5, 1.5, 3.5, 7.5]
    assert ct.state is State.TERMINATED
    assert c.events[-1] == (8.0, "B", "timeout")


def test_ict_reliable_no_timer_a() -> None:
    c = Clock()
    ct = client(c, dest=TCP)
    assert set(ct.timers) == {"B"}
    c.run_until(32.0)
    assert c.sent_at() == [0.0]
    assert ct.terminated


def test_ict_provisional_stops_retransmission() -> None:
    c = Clock()
    ct = client(c)
    c.run_until(0.6)
    assert ct.on_response(response(180), 0.6) is True
    assert ct.state is State.PROCEEDING and ct.got_provisional
    c.run_until(100.0)
    assert c.sent_at() == [0.0, 0.5]
    assert ct.state is State.PROCEEDING  # the proxy's Timer C decides from here


def test_ict_non_2xx_acked_and_retransmitted_finals_absorbed_during_d() -> None:
    c = Clock()
    ct = client(c)
    req = ct.request
    ct.on_response(response(180), 0.1)
    resp = response(486, to_tag="busy")
    assert ct.on_response(resp, 0.2) is True
    assert ct.state is State.COMPLETED
    assert ct.request is None  # only the ACK bytes are kept while Timer D absorbs retransmissions
    ack = parse(c.sent[-1][1])
    assert ack.method == "ACK"
    # §17.1.1.3: same R-URI, top Via (branch), Call-ID, From, CSeq number, Route; To from the response.
    assert ack.uri == req.uri
    assert ack.get_all("via") == [req.get_all("via")[0]]
    assert (ack.call_id, ack.get("from"), ack.cseq_num, ack.cseq_method) == (req.call_id, req.get("from"), 1, "ACK")
    assert ack.get("to") == resp.get("to") and ack.to_tag == "busy"
    assert ack.routes == req.routes
    assert ct.on_response(resp, 1.0) is False  # retransmitted final: absorbed ...
    assert parse(c.sent[-1][1]).method == "ACK"  # ... and re-ACKed
    assert ct.on_response(response(180), 1.0) is False
    acks = sum(1 for _, d, _ in c.sent if d.startswith(b"ACK "))
    assert acks == 2
    c.run_until(32.19)
    assert ct.state is State.COMPLETED
    c.run_until(32.2)  # Timer D = 32 s over UDP
    assert ct.terminated


def test_ict_timer_d_zero_on_reliable() -> None:
    c = Clock()
    ct = client(c, dest=TCP)
    ct.on_response(response(503), 1.0)
    assert c.wheel.deadlines(ct) == {"D": 1.0}
    c.run_until(1.0)
    assert ct.terminated


def test_ict_2xx_accepted_timer_m_forwards_2xx_retransmissions() -> None:
    c = Clock()
    ct = client(c)
    assert ct.on_response(response(200), 0.3) is True
    assert ct.state is State.ACCEPTED and set(ct.timers) == {"M"}
    assert ct.on_response(response(200), 1.0) is True
    assert ct.on_response(response(486), 1.0) is False
    assert all(not d.startswith(b"ACK") for _, d, _ in c.sent)  # a 2xx ACK is the UAC's, end to end
    c.run_until(32.29)
    assert ct.state is State.ACCEPTED
    c.run_until(32.3)
    assert ct.terminated
    assert ct.on_response(response(200), 33.0) is False


def test_ict_transport_error_terminates() -> None:
    c = Clock()
    ct = client(c)
    ct.on_transport_error()
    assert ct.terminated and ct.timers == {}
    c.run_until(40.0)
    assert c.sent_at() == [0.0]


# -- non-INVITE client transaction (§17.1.2) --------------------------------------------------------

def test_nict_timer_e_doubles_to_t2_and_f_times_out() -> None:
    c = Clock()
    ct = client(c, "BYE")
    assert ct.state is State.TRYING
    c.run_until(40.0)
    times = c.sent_at()
    assert times[:6] == [0.0, 0.5, 1.5, 3.5, 7.5, 11.5]
    assert max(b - a for a, b in zip(times, times[1:])) == 4.0
    assert times[-1] == 31.5
    assert (32.0, "F", "timeout") in c.events
    assert ct.terminated


def test_nict_timer_e_at_t2_in_proceeding() -> None:
    c = Clock()
    ct = client(c, "OPTIONS")
    c.run_until(0.6)  # E fired once at 0.5; next at 1.5
    assert ct.on_response(response(100, "OPTIONS"), 0.6) is True
    assert ct.state is State.PROCEEDING
    c.run_until(14.0)
    assert c.sent_at() == [0.0, 0.5, 1.5, 5.5, 9.5, 13.5]


def test_nict_final_then_timer_k() -> None:
    c = Clock()
    ct = client(c, "BYE")
    assert ct.on_response(response(200, "BYE"), 0.2) is True
    assert ct.state is State.COMPLETED and c.wheel.deadlines(ct) == {"K": 5.2}
    assert ct.on_response(response(200, "BYE"), 1.0) is False  # retransmission absorbed
    c.run_until(5.2)
    assert ct.terminated
    assert c.sent_at() == [0.0]


def test_nict_reliable_no_e_and_k_zero() -> None:
    c = Clock()
    ct = client(c, "BYE", dest=TCP)
    assert set(ct.timers) == {"F"}
    ct.on_response(response(481, "BYE"), 0.5)
    assert c.wheel.deadlines(ct) == {"K": 0.5}


def test_nict_timer_f_from_config() -> None:
    c = Clock()
    ct = client(c, "OPTIONS", tv=TimerValues(timer_f=2.0))
    c.run_until(2.0)
    assert ct.terminated
    assert c.events[-1] == (2.0, "F", "timeout")


# -- CANCEL ---------------------------------------------------------------------------------------------

def test_build_cancel_matches_invite() -> None:
    req = request()
    cancel = parse(build_cancel(req).to_bytes())
    assert cancel.method == "CANCEL" and cancel.uri == req.uri
    assert cancel.branch == req.branch
    assert (cancel.call_id, cancel.get("from"), cancel.get("to")) == (req.call_id, req.get("from"), req.get("to"))
    assert (cancel.cseq_num, cancel.cseq_method) == (req.cseq_num, "CANCEL")
    assert cancel.routes == req.routes
    assert cancel.max_forwards == 70


def test_build_ack_bytes_parse() -> None:
    ack = parse(build_ack(request(), response(487)))
    assert (ack.method, ack.cseq_method, ack.to_tag) == ("ACK", "ACK", "pbx1")
