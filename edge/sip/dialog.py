"""A dialog as one of its user agents sees it (RFC 3261 §12), sans-IO.

The screening B2BUA is a UAS toward the caller and a UAC toward the PBX; both legs need the same
state: the dialog id, the route set, the remote target and the two CSeq counters, and requests
built from them (§12.2.1.1). `Dialog.as_uas` starts one from a received INVITE (§12.1.1),
`Dialog.as_uac` from a sent INVITE and its 2xx (§12.1.2). Requests carry the caller's Via (a branch
is a transaction matter, not a dialog one).
"""

from __future__ import annotations

from edge.sip.message import SipMessage, split_list, uri_of


def _with_tag(header: str, tag: str) -> str:
    """A From/To header value carrying `tag` in place of any tag it had (RFC 3261 §20.20, §20.39)."""
    gt = header.rfind(">")
    cut = gt + 1 if gt >= 0 else (header.find(";") if ";" in header else len(header))
    base, params = header[:cut], header[cut:]
    kept = [p for p in params.split(";") if p.strip() and not p.strip().lower().startswith("tag=")]
    return ";".join([base, *kept] + ([f"tag={tag}"] if tag else []))


def contact_uri(msg: SipMessage) -> str:
    """The URI of the first Contact (the remote target, §12.1), '' when there is none or it is empty."""
    contact = msg.get("contact")
    values = split_list(contact) if contact else []
    return uri_of(values[0]) if values and values[0] else ""


class Dialog:
    """Dialog state of one UA (RFC 3261 §12): id, route set, remote target, CSeq numbers."""

    __slots__ = ("call_id", "local_tag", "remote_tag", "local_uri", "remote_uri", "remote_target",
                 "route_set", "local_cseq", "remote_cseq")

    def __init__(self, call_id: str, local_uri: str, remote_uri: str, local_tag: str, remote_tag: str,
                 remote_target: str, route_set: list[str], local_cseq: int, remote_cseq: int) -> None:
        self.call_id = call_id
        self.local_uri = local_uri  # From/To header value of this side, without tag
        self.remote_uri = remote_uri
        self.local_tag = local_tag
        self.remote_tag = remote_tag
        self.remote_target = remote_target  # the peer's Contact URI: the Request-URI of our requests
        self.route_set = route_set  # Route values, in the order our requests carry them
        self.local_cseq = local_cseq
        self.remote_cseq = remote_cseq

    @classmethod
    def as_uas(cls, invite: SipMessage, local_tag: str) -> Dialog:
        """The callee's side of a dialog created by `invite` (§12.1.1): Record-Route in order."""
        return cls(
            call_id=invite.call_id,
            local_uri=invite.get("to") or "",
            remote_uri=invite.get("from") or "",
            local_tag=local_tag,
            remote_tag=invite.from_tag,
            remote_target=contact_uri(invite) or invite.uri,
            route_set=invite.get_all("record-route"),
            local_cseq=0,
            remote_cseq=invite.cseq_num,
        )

    @classmethod
    def as_uac(cls, invite: SipMessage, response: SipMessage) -> Dialog:
        """The caller's side of a dialog from our `invite` and its 2xx (§12.1.2): Record-Route reversed."""
        return cls(
            call_id=invite.call_id,
            local_uri=invite.get("from") or "",
            remote_uri=invite.get("to") or "",
            local_tag=invite.from_tag,
            remote_tag=response.to_tag,
            remote_target=contact_uri(response) or invite.uri,
            route_set=list(reversed(response.get_all("record-route"))),
            local_cseq=invite.cseq_num,
            remote_cseq=0,
        )

    @property
    def id(self) -> tuple[str, str, str]:
        return (self.call_id, self.local_tag, self.remote_tag)

    def _headers(self, via: str, cseq: int, method: str) -> list[tuple[str, str]]:
        headers = [("Via", via)]
        headers += [("Route", r) for r in self.route_set]
        headers += [
            ("Max-Forwards", "70"),
            ("From", _with_tag(self.local_uri, self.local_tag)),
            ("To", _with_tag(self.remote_uri, self.remote_tag)),
            ("Call-ID", self.call_id),
            ("CSeq", f"{cseq} {method}"),
        ]
        return headers

    def request(self, method: str, via: str, extra: list[tuple[str, str]] | None = None, body: bytes = b"",
                content_type: str | None = None) -> SipMessage:
        """A new in-dialog request (§12.2.1.1): next local CSeq, to the remote target along the route set."""
        self.local_cseq += 1
        msg = SipMessage.request(method, self.remote_target, self._headers(via, self.local_cseq, method) + (extra or []), body)
        if content_type:
            msg.set("content-type", content_type)
        return msg

    def ack(self, via: str, invite_cseq: int | None = None) -> SipMessage:
        """ACK for a 2xx (§13.2.2.4): the INVITE's CSeq number, a new transaction of its own."""
        cseq = self.local_cseq if invite_cseq is None else invite_cseq
        return SipMessage.request("ACK", self.remote_target, self._headers(via, cseq, "ACK"))

    def accepts(self, request: SipMessage) -> bool:
        """An in-dialog request from the peer with a CSeq not lower than the last one (§12.2.2)."""
        cseq = request.cseq_num
        if request.method in ("ACK", "CANCEL"):
            return True
        if cseq < self.remote_cseq:
            return False
        self.remote_cseq = cseq
        return True


__all__ = ["Dialog", "contact_uri"]
