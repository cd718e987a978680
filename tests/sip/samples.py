"""SIP message builders shared by the SIP and proxy tests: CRLF-joined header lines, exact bytes."""

from __future__ import annotations

CRLF = "\r\n"


def msg(start: str, *headers: str, body: str = "", clen: bool = True) -> bytes:
    """Bytes of a message from a start line and header lines; Content-Length added unless clen=False."""
    lines = [start, *headers]
    if clen:
        lines.append(f"Content-Length: {len(body.encode())}")
    return (CRLF.join(lines) + CRLF + CRLF + body).encode()


def invite(
    uri: str = "sip:+12025550100@127.0.0.1:5060",
    *,
    branch: str = "z9hG4bKcarrier1",
    via_host: str = "127.0.0.1:5080",
    call_id: str = "call-1@carrier",
    cseq: int = 1,
    from_tag: str = "c1",
    to_tag: str = "",
    max_forwards: int | None = 70,
    extra: tuple[str, ...] = (),
    body: str = "",
    method: str = "INVITE",
) -> bytes:
    """An INVITE (or another request) as a carrier would send it."""
    headers = [
        f"Via: SIP/2.0/UDP {via_host};branch={branch};rport",
        f'From: "Alice" <sip:+12025550111@carrier.example>;tag={from_tag}',
        f"To: <sip:+12025550100@edge.example>{';tag=' + to_tag if to_tag else ''}",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} {method}",
        f"Contact: <sip:+12025550111@{via_host}>",
    ]
    if max_forwards is not None:
        headers.append(f"Max-Forwards: {max_forwards}")
    headers.extend(extra)
    return msg(f"{method} {uri} SIP/2.0", *headers, body=body)


SDP = (
    "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "m=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
)
