"""verstat toward the PBX (ATIS-1000074 §5.3.1 / 3GPP TS 24.229 §7.2A.20) and the Reason header (RFC 3326).

Pure string edits on P-Asserted-Identity / From values: any `verstat` the carrier sent is removed (a carrier
must not be able to tell the PBX a call verified), then ours is added inside <...>: after the number of a tel
URI, in the user part of a SIP URI (`<sip:+13035550188;verstat=TN-Validation-Passed@edge.example;user=phone>`).
"""

from __future__ import annotations

from edge.sip.message import split_top
from edge.stir.failures import SIP_REASONS
from edge.stir.result import StirResult, StirStatus


def _strip_verstat_params(params: list[str]) -> list[str]:
    return [p for p in params if p.strip().split("=", 1)[0].strip().lower() != "verstat"]


_TEL_CHARS = frozenset("+0123456789-.()")


def _is_telephone_user(user: str) -> bool:
    """A telephone-subscriber (RFC 3966 §3): digits with an optional '+' and visual separators."""
    return any(c.isdigit() for c in user) and all(c in _TEL_CHARS for c in user)


def _edit_sip_uri(uri: str, verstat: str | None) -> str:
    """verstat is a tel-URI parameter (3GPP TS 24.229 §7.2A.20): in a SIP URI it sits in the user part,
    `sip:+13035550188;verstat=TN-Validation-Passed@host;user=phone`; `user=phone` is added when the user is a
    telephone number without it (RFC 3261 §19.1.1). Inbound verstat is removed from the user part and from
    the URI parameters. A user that is not a number (e.g. anonymous) gets the value as a URI parameter."""
    scheme, _, rest = uri.partition(":")
    userinfo, at, hostpart = rest.partition("@")
    if not at:  # no user part: nothing to mark, only strip
        base, *params = rest.split(";")
        return ";".join([f"{scheme}:{base}", *_strip_verstat_params(params)])
    user, colon, password = userinfo.partition(":")
    number, *user_params = user.split(";")
    user_params = _strip_verstat_params(user_params)
    host, *params = hostpart.split(";")
    params = _strip_verstat_params(params)
    if verstat and _is_telephone_user(number):
        user_params.append(f"verstat={verstat}")
        if not any(p.strip().lower() == "user=phone" for p in params):
            params.append("user=phone")
    elif verstat:
        params.append(f"verstat={verstat}")
    user = ";".join([number, *user_params]) + (colon + password if colon else "")
    return f"{scheme}:{user}@" + ";".join([host, *params])


def _edit_uri(uri: str, verstat: str | None) -> str:
    """Remove verstat from a URI (before any ?headers) and optionally add ours where the URI scheme puts it."""
    uri, qmark, headers = uri.partition("?")
    scheme = uri.split(":", 1)[0].strip().lower()
    if scheme in ("sip", "sips"):
        new = _edit_sip_uri(uri, verstat)
    else:  # tel: (RFC 3966) parameters follow the number
        base, *params = uri.split(";")
        params = _strip_verstat_params(params)
        if verstat:
            params.append(f"verstat={verstat}")
        new = ";".join([base, *params])
    return new + (qmark + headers if qmark else "")


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


def pai_from(from_value: str, verstat: str) -> str:
    """A P-Asserted-Identity made from the caller's From (display name and URI, no tag) carrying verstat:
    used instead of rewriting From when `verstat_without_pai = "pai"`."""
    value = from_value.strip()
    lt, gt = _find_angle(value)
    ident = value[: gt + 1] if lt >= 0 else value.split(";", 1)[0]
    return with_verstat(ident, verstat, addr_spec_params_in_uri=True)


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


def reject_response(result: StirResult, status: int, detail: str) -> tuple[str | None, str]:
    """Reason phrase and Reason header when a number's STIR policy rejects (RFC 8224 §6.2.2, §13.2):
    `438 Invalid Identity Header` with `Reason: SIP;cause=438;text="Invalid Identity Header"`; the detail
    (which check failed) goes to the log and the activity, not to the carrier. A rejection below the
    minimum attestation is a plain 403 whose Reason text says so."""
    if status == 428:
        return SIP_REASONS[428], f'SIP;cause=428;text="{SIP_REASONS[428]}"'
    if result.status is StirStatus.FAILED and status == result.sip_status and status in SIP_REASONS:
        return SIP_REASONS[status], reason_header(result)
    text = detail.replace('"', "'").replace("\\", "/")
    return None, f'SIP;cause={status};text="{text}"'
