"""SIP transactions (RFC 3261 §17, with the RFC 6026 Accepted state), sans-IO.

Server transactions absorb request retransmissions by resending the last response; client
transactions retransmit over UDP (timers A/E), time out (B/F) and absorb response retransmissions.
Each object only records state and deadlines; the owner (the proxy core) passes `send` effects
out and calls `on_timer(name, now)` for deadlines popped from the shared TimerWheel.
"""

from __future__ import annotations

import enum
from typing import Callable, Protocol

from edge.sip.message import SipMessage
from edge.sip.timers import TimerValues, TimerWheel

Send = Callable[[bytes, "Destination"], None]


class Destination(tuple):
    """(transport, host, port, conn_id): conn_id pins a stream connection, 0 for none."""

    __slots__ = ()

    def __new__(cls, transport: str, host: str, port: int, conn_id: int = 0) -> Destination:
        return tuple.__new__(cls, (transport, host, port, conn_id))

    @property
    def transport(self) -> str:
        return self[0]

    @property
    def host(self) -> str:
        return self[1]

    @property
    def port(self) -> int:
        return self[2]

    @property
    def conn_id(self) -> int:
        return self[3]

    @property
    def reliable(self) -> bool:
        return self[0] != "udp"


class TransactionUser(Protocol):
    """The owner of a transaction (RFC 3261's TU): told of the responses that pass a client
    transaction and of its failure (Timer B/F, transport error)."""

    def on_response(self, ct: ClientTransaction, resp: SipMessage, now: float) -> None: ...

    def on_failure(self, ct: ClientTransaction, now: float) -> None: ...


class State(enum.Enum):
    CALLING = "calling"  # ICT
    TRYING = "trying"  # NICT, NIST
    PROCEEDING = "proceeding"
    COMPLETED = "completed"
    CONFIRMED = "confirmed"  # IST
    ACCEPTED = "accepted"  # RFC 6026
    TERMINATED = "terminated"


class ServerTransaction:
    """INVITE (IST, §17.2.1) or non-INVITE (NIST, §17.2.2) server transaction."""

    __slots__ = (
        "key",
        "invite",
        "request",
        "source",
        "state",
        "last_response",
        "last_status",
        "timers",
        "_wheel",
        "_tv",
        "_send",
        "_g_interval",
        "owner",
        "created",
        "on_final",
    )

    def __init__(
        self,
        key: tuple,
        request: SipMessage,
        source: Destination,
        wheel: TimerWheel,
        tv: TimerValues,
        send: Send,
        now: float,
    ) -> None:
        self.key = key
        self.invite = request.method == "INVITE"
        self.request = request
        self.source = source
        self.state = State.PROCEEDING if self.invite else State.TRYING
        self.last_response: bytes | None = None
        self.last_status = 0
        self.timers: dict[str, int] = {}  # name -> TimerWheel seq
        self._wheel = wheel
        self._tv = tv
        self._send = send
        self._g_interval = tv.t1
        self.owner: TransactionUser | None = None  # the context that answers this request
        self.created = now
        self.on_final: Callable[[ServerTransaction], None] | None = None  # told once, at the first final response

    @property
    def terminated(self) -> bool:
        return self.state is State.TERMINATED

    def on_retransmission(self, now: float) -> bool:
        """A retransmitted request: resend the last response (if any); True if absorbed."""
        if self.state is State.TERMINATED:
            return False
        if self.last_response is not None and self.state in (State.PROCEEDING, State.COMPLETED):
            self._send(self.last_response, self.source)
        return True

    def respond(self, status: int, data: bytes, now: float) -> None:
        """Send a response through the transaction, moving its state (§17.2.1, §17.2.2)."""
        st = self.state
        if st in (State.COMPLETED, State.CONFIRMED, State.TERMINATED):
            return
        if st is State.ACCEPTED:
            if 200 <= status < 300:
                self._send(data, self.source)  # 2xx retransmissions pass through (RFC 6026 §7.1)
            return
        self._send(data, self.source)
        self.last_status = status
        if status < 200:
            self.last_response = data
            if st is State.TRYING:
                self.state = State.PROCEEDING
            return
        self.last_response = data
        self.request = None  # type: ignore[assignment]  # retransmissions match by key; free the message
        if self.on_final is not None:
            on_final, self.on_final = self.on_final, None
            on_final(self)
        reliable = self.source.reliable
        if self.invite:
            if status < 300:
                self.state = State.ACCEPTED
                self._wheel.arm(self, "L", now + self._tv.l)
            else:
                self.state = State.COMPLETED
                if not reliable:
                    self._g_interval = self._tv.t1
                    self._wheel.arm(self, "G", now + self._g_interval)
                self._wheel.arm(self, "H", now + self._tv.h)
        else:
            self.state = State.COMPLETED
            self._wheel.arm(self, "J", now + (0.0 if reliable else self._tv.j))

    def on_ack(self, now: float) -> bool:
        """ACK for a non-2xx final response: absorbed here, hop by hop (§17.2.1)."""
        if self.state is State.COMPLETED:
            self.state = State.CONFIRMED
            self._wheel.cancel(self, "G")
            self._wheel.cancel(self, "H")
            self._wheel.arm(self, "I", now + (0.0 if self.source.reliable else self._tv.t4))
            return True
        return self.state in (State.CONFIRMED,)

    def on_timer(self, name: str, now: float) -> str | None:
        """Handle a fired timer; returns 'ack_timeout' when Timer H fires (no ACK ever came)."""
        if name == "G" and self.state is State.COMPLETED and self.last_response is not None:
            self._send(self.last_response, self.source)
            self._g_interval = min(2 * self._g_interval, self._tv.t2)
            self._wheel.arm(self, "G", now + self._g_interval)
            return None
        if name == "H" and self.state is State.COMPLETED:
            self._terminate()
            return "ack_timeout"
        if name in ("I", "J", "L"):
            self._terminate()
        return None

    def terminate(self) -> None:
        self._terminate()

    def _terminate(self) -> None:
        self.state = State.TERMINATED
        self._wheel.clear(self)


class ClientTransaction:
    """INVITE (ICT, §17.1.1) or non-INVITE (NICT, §17.1.2) client transaction."""

    __slots__ = (
        "branch",
        "method",
        "request",
        "data",
        "dest",
        "state",
        "timers",
        "_wheel",
        "_tv",
        "_send",
        "_interval",
        "ack",
        "owner",
        "index",
        "got_provisional",
        "cancel_pending",
        "created",
        "failed_with",
    )

    def __init__(
        self,
        branch: str,
        request: SipMessage,
        dest: Destination,
        wheel: TimerWheel,
        tv: TimerValues,
        send: Send,
    ) -> None:
        self.branch = branch
        self.method = request.method
        self.request = request
        self.data = request.to_bytes()
        self.dest = dest
        self.state = State.CALLING if self.method == "INVITE" else State.TRYING
        self.timers: dict[str, int] = {}  # name -> TimerWheel seq
        self._wheel = wheel
        self._tv = tv
        self._send = send
        self._interval = tv.t1
        self.ack: bytes | None = None
        self.owner: TransactionUser | None = None
        self.index = 0  # position in the hunt list
        self.got_provisional = False
        self.cancel_pending = False
        self.created = 0.0
        self.failed_with = 0  # 408 after Timer B/F, 503 after a transport error: the status a TU answers with

    @property
    def terminated(self) -> bool:
        return self.state is State.TERMINATED

    def start(self, now: float) -> None:
        self.created = now
        self._send(self.data, self.dest)
        reliable = self.dest.reliable
        if self.method == "INVITE":
            if not reliable:
                self._wheel.arm(self, "A", now + self._interval)
            self._wheel.arm(self, "B", now + self._tv.b)
        else:
            if not reliable:
                self._wheel.arm(self, "E", now + self._interval)
            self._wheel.arm(self, "F", now + self._tv.f)

    def on_response(self, resp: SipMessage, now: float) -> bool:
        """Feed a response; True when the owner (TU) should see it, False when absorbed."""
        status = resp.status
        st = self.state
        if st is State.TERMINATED:
            return False
        if self.method == "INVITE":
            if st in (State.CALLING, State.PROCEEDING):
                if status < 200:
                    self.state = State.PROCEEDING
                    self.got_provisional = True
                    self._wheel.cancel(self, "A")
                    self._wheel.cancel(self, "B")
                    return True
                self._wheel.cancel(self, "A")
                self._wheel.cancel(self, "B")
                if status < 300:
                    self.state = State.ACCEPTED
                    self._wheel.arm(self, "M", now + self._tv.m)
                    self._release()
                    return True
                self.state = State.COMPLETED
                self.ack = build_ack(self.request, resp)
                self._send(self.ack, self.dest)
                self._release()
                self._wheel.arm(self, "D", now + (0.0 if self.dest.reliable else self._tv.timer_d))
                return True
            if st is State.ACCEPTED:
                return 200 <= status < 300  # forward 2xx retransmissions (RFC 6026 §8.4)
            if st is State.COMPLETED:
                if status >= 300 and self.ack is not None:
                    self._send(self.ack, self.dest)  # retransmitted final: re-ACK, absorb
                return False
            return False
        # non-INVITE
        if st in (State.TRYING, State.PROCEEDING):
            if status < 200:
                self.state = State.PROCEEDING
                self.got_provisional = True
                return True
            self.state = State.COMPLETED
            self._wheel.cancel(self, "E")
            self._wheel.cancel(self, "F")
            self._release()
            self._wheel.arm(self, "K", now + (0.0 if self.dest.reliable else self._tv.t4))
            return True
        return False

    def on_timer(self, name: str, now: float) -> str | None:
        """Handle a fired timer; returns 'timeout' when B or F fires (the owner fails over)."""
        st = self.state
        if name == "A" and st is State.CALLING:
            self._send(self.data, self.dest)
            self._interval *= 2
            self._wheel.arm(self, "A", now + self._interval)
        elif name == "E" and st in (State.TRYING, State.PROCEEDING):
            self._send(self.data, self.dest)
            self._interval = self._tv.t2 if st is State.PROCEEDING else min(2 * self._interval, self._tv.t2)
            self._wheel.arm(self, "E", now + self._interval)
        elif name in ("B", "F") and st in (State.CALLING, State.TRYING, State.PROCEEDING):
            self._terminate()
            self.failed_with = 408
            return "timeout"
        elif name in ("D", "K", "M"):
            self._terminate()
        return None

    def on_transport_error(self) -> None:
        self._terminate()
        self.failed_with = 503

    def _release(self) -> None:
        """After the final response only retransmissions are absorbed: the request is not needed
        (timers D/K/M keep the transaction up to 32 s, which at 1,500 CPS is ~50,000 calls)."""
        self.request = None  # type: ignore[assignment]
        self.data = b""

    def terminate(self) -> None:
        self._terminate()

    def _terminate(self) -> None:
        self.state = State.TERMINATED
        self._wheel.clear(self)


def build_ack(request: SipMessage, response: SipMessage) -> bytes:
    """ACK for a non-2xx final response (RFC 3261 §17.1.1.3): same branch, To from the response."""
    headers: list[tuple[str, str]] = [("Via", request.get_all("via")[0])]
    for r in request.get_all("route"):
        headers.append(("Route", r))
    headers.append(("Max-Forwards", "70"))
    headers.append(("From", request.get("from") or ""))
    headers.append(("To", response.get("to") or ""))
    headers.append(("Call-ID", request.call_id))
    headers.append(("CSeq", f"{request.cseq_num} ACK"))
    return SipMessage.request("ACK", request.uri, headers).to_bytes()


def build_cancel(request: SipMessage) -> SipMessage:
    """CANCEL for a forwarded INVITE (RFC 3261 §9.1): same Request-URI, top Via, Call-ID, From, To, Route."""
    headers: list[tuple[str, str]] = [("Via", request.get_all("via")[0])]
    for r in request.get_all("route"):
        headers.append(("Route", r))
    headers.append(("Max-Forwards", "70"))
    headers.append(("From", request.get("from") or ""))
    headers.append(("To", request.get("to") or ""))
    headers.append(("Call-ID", request.call_id))
    headers.append(("CSeq", f"{request.cseq_num} CANCEL"))
    return SipMessage.request("CANCEL", request.uri, headers)
