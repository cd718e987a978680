"""The supervisor-to-worker hand-off over real sockets: frames cut right however the stream splits them,
every datagram reaches the worker owning its Call-ID with its source address, and a missing worker's
datagrams are dropped and counted instead of blocking the others."""

from __future__ import annotations

import asyncio
import socket

from edge.io.handoff import Dispatcher, HandoffReader, WorkerLink, frame, socketpair
from edge.sip.affinity import owner


def invite(call_id: str, pad: int = 0) -> bytes:
    return (f"INVITE sip:1@h SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1;branch=z9hG4bK1\r\nCall-ID: {call_id}\r\n"
            f"X-Pad: {'p' * pad}\r\nContent-Length: 0\r\n\r\n").encode()


def drain(reader: HandoffReader) -> list[tuple[bytes, tuple[str, int]]]:
    out = []
    while True:
        try:
            out.append(reader.recvfrom())
        except BlockingIOError:
            return out


async def test_frames_split_anywhere_come_out_whole():
    loop = asyncio.get_running_loop()
    ours, theirs = socketpair()
    reader = HandoffReader(theirs, loop)
    msgs = [(invite("a@h"), ("127.0.0.1", 5060)), (invite("b@h", 60_000), ("::1", 5061)), (b"x", ("10.0.0.1", 1))]
    stream = b"".join(frame(d, a) for d, a in msgs)
    got = []
    for cut in range(0, len(stream), 7_001):  # uneven pieces: frames and headers split mid-way
        ours.setblocking(True)
        ours.sendall(stream[cut:cut + 7_001])
        got += drain(reader)
    assert got == msgs
    assert not reader.buffered
    ours.close()
    assert drain(reader) == [] and reader.eof  # the supervisor is gone


async def test_dispatcher_hands_each_datagram_to_its_owner_and_drops_for_a_missing_worker():
    loop = asyncio.get_running_loop()
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    udp.setblocking(False)
    pairs = [socketpair() for _ in range(2)]
    lines: list[str] = []
    links = [WorkerLink(loop, ours, lines.append) for ours, _ in pairs]
    readers = [HandoffReader(theirs, loop) for _, theirs in pairs]
    dispatcher = Dispatcher(loop, udp, list(links))
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender.bind(("127.0.0.1", 0))
    call_ids = [f"{i}-77@127.0.0.1" for i in range(40)]
    for cid in call_ids:
        sender.sendto(invite(cid), udp.getsockname())
    got: list[list[bytes]] = [[], []]
    for _ in range(200):
        await asyncio.sleep(0.01)
        for i, r in enumerate(readers):
            got[i] += [d for d, addr in drain(r) if addr == sender.getsockname()]
        if sum(map(len, got)) == len(call_ids):
            break
    for i in (0, 1):
        assert got[i] == [invite(c) for c in call_ids if owner(invite(c), 2) == i]
    assert got[0] and got[1] and dispatcher.per_worker == [len(got[0]), len(got[1])]
    # The worker tells the supervisor on the same socketpair.
    readers[1].tell_supervisor("ready")
    for _ in range(100):
        await asyncio.sleep(0.01)
        if lines:
            break
    assert lines == ["ready"]
    # Worker 1 down (restarting): its datagrams are dropped and counted, worker 0 still gets its own.
    dispatcher.links[1] = None
    for cid in call_ids:
        sender.sendto(invite(cid), udp.getsockname())
    later: list[bytes] = []
    for _ in range(200):
        await asyncio.sleep(0.01)
        later += [d for d, _ in drain(readers[0])]
        if len(later) + dispatcher.dropped >= len(call_ids) and len(later) == len(got[0]):
            break
    assert later == got[0] and dispatcher.dropped == len(got[1])
    dispatcher.close()
    for link in links:
        link.close()
    for s in (udp, sender, *(theirs for _, theirs in pairs)):
        s.close()


async def test_a_full_queue_drops_rather_than_grows(monkeypatch):
    import edge.io.handoff as handoff

    loop = asyncio.get_running_loop()
    ours, theirs = socketpair()
    monkeypatch.setattr(handoff, "MAX_PENDING", 1000)
    link = WorkerLink(loop, ours, lambda line: None)
    assert link.queue(b"x" * 600) and not link.queue(b"y" * 600)
    assert link.dropped == 1
    link.close()
    theirs.close()
