"""The SIP plumbing the proxy and the screening B2BUA share: one public seam, sans-IO.

Both are users of the same transaction layer, timer wheel and outbox: a new branch, the Via,
Contact and Record-Route for a transport, a reply to a request, a client transaction whose
responses go to a typed owner, a CANCEL for it, a named timer on the shared wheel, and the
activity records to store. What leaves the core is drained by the adapters
(`datagrams_to_send`, `activities_to_store`), never a list they swap in place.
"""

from __future__ import annotations

import os
from typing import Protocol

from edge.call.activity import Activity
from edge.sip.message import MAGIC_COOKIE, SipMessage
from edge.sip.response import make_response
from edge.sip.timers import TimerValues, TimerWheel
from edge.sip.transaction import ClientTransaction, Destination, TransactionUser, build_cancel

#: Final responses after which a hunt moves on to the next target (RFC 3261 §16.7 leaves the choice
#: to the proxy): request timeout, server error, service unavailable. The proxy and the B2BUA's PBX
#: leg use this one set.
FAILOVER_STATUSES = frozenset({408, 500, 503})


def local_address(local: dict[str, tuple[str, int]], transport: str) -> tuple[str, int]:
    """Where the edge is reached over `transport`: its advertised address, or the first listener's."""
    return local.get(transport) or next(iter(local.values()))


class TimerUser(Protocol):
    """Owner of named timers on the shared wheel; `timers` is where the wheel keeps its handles."""

    timers: dict[str, list]

    def on_timer(self, name: str, now: float) -> None: ...


class UserAgent:
    """Branches, local addresses, replies and client transactions for every SIP user in the core.

    `local` maps a transport to the host:port the edge advertises on it; `ours` holds every
    address that is the edge itself (advertised and bound), for loop detection and loose routing.
    """

    def __init__(self, local: dict[str, tuple[str, int]], ours: set[tuple[str, int]], tv: TimerValues,
                 wheel: TimerWheel | None = None) -> None:
        self.local = local
        self.ours = ours
        self.tv = tv
        self.wheel = wheel if wheel is not None else TimerWheel()
        self.client_txns: dict[tuple[str, str], ClientTransaction] = {}
        self.by_status: dict[int, int] = {}  # final responses the edge sent or relayed, per status
        self._out: list[tuple[bytes, Destination]] = []
        self._activities: list[Activity] = []
        self._branch_prefix = f"{MAGIC_COOKIE}{os.urandom(4).hex()}"
        self._branch_n = 0

    # -- what leaves the core --------------------------------------------------------------------
    def send(self, data: bytes, dest: Destination) -> None:
        self._out.append((data, dest))

    def datagrams_to_send(self) -> list[tuple[bytes, Destination]]:
        """Every message queued since the last call, in order; the queue is empty afterwards."""
        out, self._out = self._out, []
        return out

    def record(self, activity: Activity) -> None:
        """An activity record changed: the adapter stores it."""
        self._activities.append(activity)

    def activities_to_store(self) -> list[Activity]:
        out, self._activities = self._activities, []
        return out

    @property
    def pending(self) -> bool:
        """Something is waiting to be drained."""
        return bool(self._out or self._activities)

    # -- addresses ---------------------------------------------------------------------------------
    def local_address(self, transport: str) -> tuple[str, int]:
        """Where the edge is reached over `transport` (advertised address; the first listener otherwise)."""
        return local_address(self.local, transport)

    def mark_branches(self, mark: str) -> None:
        """Several worker processes: every branch minted from now on carries `mark` right after the
        magic cookie, so the responses to this core's requests are handed back to it (edge.sip.affinity)."""
        self._branch_prefix = f"{MAGIC_COOKIE}{mark}{os.urandom(4).hex()}"

    def new_branch(self) -> str:
        self._branch_n += 1
        return f"{self._branch_prefix}{self._branch_n:x}"

    def via(self, transport: str, branch: str) -> str:
        host, port = self.local_address(transport)
        return f"SIP/2.0/{transport.upper()} {host}:{port};branch={branch};rport"

    def record_route(self, transport: str) -> str:
        host, port = self.local_address(transport)
        tp = "" if transport == "udp" else f";transport={transport}"
        return f"<sip:{host}:{port}{tp};lr>"

    def contact(self, transport: str, user: str = "edge") -> str:
        host, port = self.local_address(transport)
        tp = "" if transport == "udp" else f";transport={transport}"
        return f"<sip:{user}@{host}:{port}{tp}>"

    def is_ours(self, host: str, port: int) -> bool:
        return (host, port) in self.ours

    # -- transactions ------------------------------------------------------------------------------
    def count_status(self, status: int) -> None:
        bs = self.by_status
        bs[status] = bs.get(status, 0) + 1

    def reply(self, req: SipMessage, src: Destination, status: int, reason: str | None = None,
              extra: list[tuple[str, str]] | None = None) -> bytes:
        """A stateless response of the edge's own (no server transaction keeps it)."""
        data = make_response(req, status, reason, extra).to_bytes()
        self.count_status(status)
        self.send(data, src)
        return data

    def start_client(self, msg: SipMessage, dest: Destination, owner: TransactionUser | None, now: float) -> ClientTransaction:
        """Send `msg` in a new client transaction (its top Via's branch); responses go to `owner`."""
        ct = ClientTransaction(msg.branch, msg, dest, self.wheel, self.tv, self.send)
        ct.owner = owner
        self.client_txns[(ct.branch, ct.method)] = ct
        ct.start(now)
        return ct

    def cancel(self, ct: ClientTransaction, now: float) -> None:
        """CANCEL an INVITE client transaction (RFC 3261 §9.1); its own answer is absorbed."""
        self.start_client(build_cancel(ct.request), ct.dest, None, now)

    # -- timers ------------------------------------------------------------------------------------
    def arm(self, owner: TimerUser, name: str, at: float) -> None:
        self.wheel.arm(owner, name, at)

    def disarm(self, owner: TimerUser, name: str) -> None:
        self.wheel.cancel(owner, name)

    def disarm_all(self, owner: TimerUser) -> None:
        self.wheel.clear(owner)


__all__ = ["FAILOVER_STATUSES", "TimerUser", "TransactionUser", "UserAgent", "local_address"]
