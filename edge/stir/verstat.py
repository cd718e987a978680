"""verstat toward the PBX (ATIS-1000074 §5.3.1 / 3GPP TS 24.229 §7.2A.20) and the Reason header (RFC 3326).

Pure string edits on P-Asserted-Identity / From values: any `verstat` the carrier sent is removed (a carrier
must not be able to tell the PBX a call verified), then ours is added as a URI parameter, inside <...>.
"""

from __future__ import annotations

from edge.sip.message import split_top
from edge.stir.failures import SIP_REASONS
from edge.stir.result import StirResult, StirStatus


def _strip_verstat_params(params: list[str]) -> list[str]:
    return [p for p in params if p.strip().split("=", 1)[0].strip().lower() != "verstat"]


def _edit_uri(uri: str, verstat: str | None) -> str:
    """Remove verstat from a URI's parameters (before any ?headers) and optionally append ours."""
    uri, qmark, headers = uri.partition("?")
    base, *params = uri.split(";")
    params = _strip_verstat_params(params)
    if verstat:
        params.append(f"verstat={verstat}")
    return ";".join([base, *params]) + (qmark + headers if qmark else "")


def _find_angle(value: str) -> tuple[int, int]:
    """Index of '<' and '>' of a name-addr outside the quoted display name, (-1, -1) for an addr-spec."""
    quoted = False
    escaped = False
    for i, ch in enumerate(value):
        if quoted:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                quoted = False
        elif ch == '"':
            quoted = True
        elif ch == "<":
            end = value.find(">", i)
            return (i, end) if end > i else (-1, -1)
    return -1, -1


def with_verstat(value: str, verstat: str | None, *, addr_spec_params_in_uri: bool = False) -> str:
    """Rewrite one name-addr / addr-spec: inbound verstat removed, `verstat` (if given) added to the URI.

    For a bare addr-spec, parameters after the URI are header parameters in From/To (RFC 3261 §20.10) but URI
    parameters in P-Asserted-Identity (RFC 3325 §9.1, which has no header parameters); pass
    `addr_spec_params_in_uri=True` for PAI. The result always uses <...> when a parameter is added.
    """
    value = value.strip()
    lt, gt = _find_angle(value)
    if lt >= 0:
        head, uri, tail = value[:lt], value[lt + 1 : gt], value[gt + 1 :]
        tail_params = _strip_verstat_params(tail.split(";")[1:]) if tail.strip() else []
        new_tail = "".join(";" + p for p in tail_params)
        return f"{head}<{_edit_uri(uri, verstat)}>{new_tail}"
    if addr_spec_params_in_uri:
        uri, header_params = value, []
    else:
        uri, *header_params = value.split(";")
    header_params = _strip_verstat_params(header_params)
    new_uri = _edit_uri(uri, verstat)
    tail = "".join(";" + p for p in header_params)
    if new_uri == uri and not verstat:
        return uri + tail
    return f"<{new_uri}>{tail}"


def _is_number_uri(value: str) -> bool:
    lt, gt = _find_angle(value)
    uri = value[lt + 1 : gt] if lt >= 0 else value.strip()
    scheme = uri.split(":", 1)[0].strip().lower()
    return scheme == "tel" or (scheme in ("sip", "sips") and "@" in uri)


def pai_with_verstat(header_value: str, verstat: str) -> str:
    """P-Asserted-Identity may list a sip and a tel identity (RFC 3325 §9.1): verstat goes on each."""
    out = []
    for part in split_top(header_value, ","):
        if not part.strip():
            continue
        v = verstat if _is_number_uri(part) else None
        out.append(with_verstat(part, v, addr_spec_params_in_uri=True))
    return ", ".join(out)


def from_with_verstat(header_value: str, verstat: str) -> str:
    return with_verstat(header_value, verstat, addr_spec_params_in_uri=False)


def strip_verstat(header_value: str, *, pai: bool = False) -> str:
    """Remove any inbound verstat without adding one (e.g. on headers verstat is not configured for)."""
    parts = split_top(header_value, ",") if pai else [header_value]
    return ", ".join(with_verstat(p, None, addr_spec_params_in_uri=pai) for p in parts if p.strip())


def reason_header(result: StirResult) -> str:
    """RFC 3326 Reason for a failed or absent verification, '' when it passed."""
    if result.status is StirStatus.PASSED or not result.sip_status:
        return ""
    text = SIP_REASONS.get(result.sip_status, "Identity verification failed")
    return f'SIP;cause={result.sip_status};text="{text}"'
