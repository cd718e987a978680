"""Call-ID affinity read from raw bytes: long and compact Call-ID, B-legs with their A-leg, marked
responses to their worker, and hostile input handled in linear time."""

from __future__ import annotations

import subprocess
import sys

from edge.call.ua import UserAgent
from edge.call.settings import Timers
from edge.sip.affinity import branch_mark, call_id_key, marked_worker, owner, slot


def request(call_id_line: bytes, body: bytes = b"") -> bytes:
    return (b"INVITE sip:+12025550100@127.0.0.1 SIP/2.0\r\n"
            b"Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-1\r\n"
            b"From: <sip:+13035550100@127.0.0.1>;tag=1\r\nTo: <sip:+12025550100@127.0.0.1>\r\n"
            + call_id_line + b"\r\nCSeq: 1 INVITE\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)


def response(branch: bytes, call_id: bytes = b"abc@host") -> bytes:
    return (b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=" + branch + b";rport=5060\r\n"
            b"Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKw1xfeed\r\n"
            b"Call-ID: " + call_id + b"\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n")


def test_call_id_long_and_compact_forms_give_the_same_key():
    assert call_id_key(request(b"Call-ID: a84b4c76e66710@pc33")) == b"a84b4c76e66710@pc33"
    assert call_id_key(request(b"i:a84b4c76e66710@pc33")) == b"a84b4c76e66710@pc33"
    assert call_id_key(request(b"CALL-ID \t:  a84b4c76e66710@pc33  ")) == b"a84b4c76e66710@pc33"
    assert owner(request(b"Call-ID: x1@h"), 4) == owner(request(b"i: x1@h"), 4) == slot(b"x1@h", 4)


def test_headers_that_only_start_like_call_id_are_not_taken():
    msg = request(b"In-Reply-To: other@h\r\nCall-ID: real@h")
    assert call_id_key(msg) == b"real@h"


def test_call_id_in_the_body_is_ignored_and_missing_call_id_goes_to_worker_0():
    msg = request(b"X-Nothing: 1", body=b"v=0\r\ni: sneaky@h\r\n")
    assert call_id_key(msg) is None
    assert owner(msg, 3) == 0
    assert owner(b"\x00\xffgarbage", 3) == 0


def test_screening_b_leg_stays_with_its_a_leg():
    a = request(b"Call-ID: b-a84b@pc33")  # an A-leg whose own Call-ID starts with b-
    b = request(b"Call-ID: b-b-a84b@pc33")  # its B-leg
    assert call_id_key(a) == call_id_key(b) == b"a84b@pc33"
    for n in (2, 3, 5):
        assert owner(a, n) == owner(b, n)


def test_sequential_call_ids_spread_over_workers():
    """sipp numbers its Call-IDs; plain CRC-32 modulo 2 sent runs of them to one worker (it is linear)."""
    for run in ([b"%d-31909@127.0.0.1" % i for i in range(1, 7)], [b"rate%d-%d@e2e" % (t, i) for t in range(3) for i in range(1, 7)]):
        assert {owner(request(b"Call-ID: " + cid), 2) for cid in run} == {0, 1}, run
    for n in (2, 3):
        counts = [0] * n
        for i in range(9_000):
            counts[owner(request(b"Call-ID: %d-4242@10.0.0.1" % i), n)] += 1
        assert all(abs(c - 9_000 / n) < 9_000 / n * 0.1 for c in counts), counts


def test_response_goes_to_the_worker_whose_mark_is_on_the_top_via():
    assert marked_worker(response(b"z9hG4bKw1x0badc0de5")) == 1
    assert owner(response(b"z9hG4bKw1x0badc0de5", b"health-pbx-a-1@h"), 2) == 1
    assert owner(response(b"z9hG4bKw0x0badc0de5", b"health-pbx-a-1@h"), 2) == 0
    # Unmarked top Via (the second Via's mark does not count): by Call-ID.
    assert marked_worker(response(b"z9hG4bK776asdhds")) is None
    assert owner(response(b"z9hG4bK776asdhds", b"k@h"), 2) == slot(b"k@h", 2)
    # A mark beyond the worker count falls back to the Call-ID; requests are never routed by Via.
    assert owner(response(b"z9hG4bKw7x1", b"k@h"), 2) == slot(b"k@h", 2)
    assert marked_worker(request(b"Call-ID: q@h").replace(b"z9hG4bK-1", b"z9hG4bKw1x1")) is None


def test_user_agent_mints_marked_branches():
    ua = UserAgent({"udp": ("127.0.0.1", 5060)}, {("127.0.0.1", 5060)}, Timers().values())
    ua.mark_branches(branch_mark(1))
    branch = ua.new_branch()
    assert branch.startswith("z9hG4bKw1x")
    assert marked_worker(response(branch.encode())) == 1


_PROBE = """
from edge.sip.affinity import call_id_key, marked_worker, owner
n = 2_000_000
blanks = b"SIP/2.0 200 OK\\r\\n" + b"\\ni  \\t " * n
params = b"SIP/2.0 200 OK\\r\\nVia: x" + b"; ;branch=z9hG4bKw" * n
names = b"INVITE x SIP/2.0\\r\\n" + b"\\ncall-id" * n
prefixes = b"INVITE x SIP/2.0\\r\\ni:" + b"b-" * n + b"k"
assert call_id_key(blanks) is None and marked_worker(params) is None and call_id_key(names) is None
assert call_id_key(prefixes) == b"k"
print(owner(blanks, 2), owner(params, 2), owner(names, 2), owner(prefixes, 2))
"""


def test_hostile_input_is_scanned_in_linear_time():
    """Megabytes of near-misses (blank runs after `i`, `;branch=` without a mark, Call-ID names without a
    colon, endless `b-` prefixes) in a child process with a deadline: linear takes well under a second,
    a quadratic scan of any of them would take hours, and the deadline keeps a regression from hanging."""
    out = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.split() == ["0", "0", "0", str(slot(b"k", 2))]
