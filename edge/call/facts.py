"""Facts about a contact read from its SIP request (RFC 3261 From, RFC 3325 P-Asserted-Identity, RFC 3323 Privacy)."""

from __future__ import annotations

import msgspec

from edge.call.peers import Peer
from edge.media import sdp
from edge.numbers import parse_number
from edge.policy.facts import CallFacts, ContactKind
from edge.sip.message import SipMessage, addr_start, split_list, uri_of
from edge.sip.transaction import Destination
from edge.sip.uri import uri_user
from edge.stir.result import ABSENT, StirResult

ANONYMOUS_USERS = frozenset({"anonymous", "restricted", "unavailable", "unknown", "private", "withheld"})


def display_name(value: str) -> str:
    """Display name of a name-addr: quoted or token form before '<'."""
    value = split_list(value)[0] if value else ""
    lt = addr_start(value)
    if lt <= 0:
        return ""
    name = value[:lt].strip()
    if name.startswith('"') and name.endswith('"') and len(name) >= 2:
        name = name[1:-1].replace('\\"', '"')
    return name.strip()


def identity_header(msg: SipMessage) -> str:
    """The asserted identity (first PAI value) or From: whose number and name describe the caller."""
    pai = msg.get("p-asserted-identity")
    if pai:
        return split_list(pai)[0]
    return msg.get("from") or ""


class CallerId(msgspec.Struct, frozen=True, gc=False):
    """Who the request says is calling, read once per request: identity header, user part, E.164, name."""

    ident: str  # first P-Asserted-Identity value, else From
    user: str  # its URI user part as received
    e164: str  # '' when the user part is not a number
    cnam: str  # display name ('' when none)


def caller_id(msg: SipMessage) -> CallerId:
    ident = identity_header(msg)
    user = uri_user(uri_of(ident))
    return CallerId(ident, user, parse_number(user).e164 if user else "", display_name(ident))


def calling_user(msg: SipMessage) -> str:
    return uri_user(uri_of(identity_header(msg)))


def is_fax_offer(body: bytes) -> bool:
    """T.38 fax offered in the SDP (edge.media.sdp.is_fax); the byte test keeps the full SDP parse off
    the path of the ordinary voice call."""
    if not body:
        return False
    low = body.lower()
    if b"m=image" not in low and b"t38" not in low:
        return False
    try:
        return sdp.is_fax(sdp.parse(body))
    except sdp.SdpError:
        return False


def build_facts(msg: SipMessage, src: Destination, peer: Peer, customer: str | None, now: float,
                stir: StirResult = ABSENT, caller: CallerId | None = None) -> CallFacts:
    if caller is None:
        caller = caller_id(msg)
    ident = caller.ident
    cuser = caller.user
    called_user = uri_user(msg.uri)
    called = parse_number(called_user) if called_user else None
    privacy = (msg.get("privacy") or "").lower()
    anonymous = (
        "id" in [p.strip() for p in privacy.replace(",", ";").split(";")]
        or not cuser
        or cuser.lower() in ANONYMOUS_USERS
        or "anonymous.invalid" in ident.lower()
        or not caller.e164
    )
    cnam = stir.rcd_name if stir.rcd_name else caller.cnam
    fax = msg.method == "INVITE" and is_fax_offer(msg.body)
    kind = ContactKind.MESSAGE if msg.method == "MESSAGE" else (ContactKind.FAX if fax else ContactKind.CALL)
    return CallFacts(
        call_id=msg.call_id,
        kind=kind,
        received_at=now,
        source_ip=src.host,
        source_port=src.port,
        transport=src.transport,
        carrier=peer.name if peer.kind == "carrier" else None,
        calling_raw=cuser,
        calling_number=caller.e164,
        called_raw=called_user,
        called_number=called.e164 if called else "",
        cnam=cnam,
        anonymous=anonymous,
        customer=customer,
        user_agent=msg.get("user-agent") or "",
        stir=stir,
        has_fax_sdp=fax,
    )
