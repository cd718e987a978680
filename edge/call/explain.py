"""`sip-edge explain`: the decision path a contact would take right now, without placing it.

Sans-IO. The contact is built as the INVITE a carrier would send and goes through the same code as a
real one: edge.call.facts builds the facts, the dialplan's `Plan.lookup` picks the entry, and
`Gatekeeper.probe` runs admission (STIR policy, block/allow rules, Spam Detective, pass memory, the
number's default action) in its read-only mode: rates are read as if the contact were counted, nothing
is counted and no caller is flagged. What the decision itself does not carry (every rule that fitted,
each rate window's count, the thresholds, the hunt order) is read from the same objects.

With a fresh engine (files alone) every count is zero; the daemon answers `POST /explain` with its
live engine, so counts, cool-offs, runtime blocks and captcha passes are the current ones.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence

import msgspec

from edge.call.admission import Gatekeeper
from edge.call.facts import build_facts
from edge.call.peers import Peer, PeerDirectory
from edge.dialplan.plan import Plan
from edge.numbers import parse_number
from edge.policy.cnam import normalise_cnam
from edge.policy.facts import Action, Decision, Evidence
from edge.policy.spam import AGGREGATE_RATES, caller_key
from edge.sip.message import parse
from edge.sip.transaction import Destination
from edge.stir.result import ABSENT, StirResult, StirStatus
from edge.stir.schema import decide as stir_decide


class ExplainRequest(msgspec.Struct, forbid_unknown_fields=True):
    """The contact to explain; STIR is an assumption (explain verifies no Identity header)."""

    called: str
    calling: str = ""  # empty: anonymous
    name: str = ""  # caller name (CNAM / From display name)
    source: str = ""  # carrier source IP; default: the first carrier's
    stir: str = "absent"  # absent | passed | failed
    attestation: str = "A"  # with stir = passed
    fax: bool = False  # a T.38 offer


class RuleLine(msgspec.Struct):
    scope: str  # number | customer | global: where the rule sits
    id: str
    kind: str
    value: str
    allow: bool
    action: str
    dry_run: bool
    source: str  # dialplan:<file> | runtime
    outcome: str  # decided | would have decided (dry run) | outweighed


class RateLine(msgspec.Struct):
    id: str
    key: str  # caller | source | pair | called | cnam
    counted_as: str  # the key value this contact counts under ('' = not counted)
    limit: int
    window: float  # seconds
    count: float  # events in the window now, before this contact
    with_contact: float  # the estimate the limit is compared against
    exceeded: bool
    weight: float
    action: str  # '' when the rate only adds weight
    aggregate: bool  # shared by many callers: never puts a caller under cool-off


class ThresholdLine(msgspec.Struct):
    score: float
    action: str
    id: str
    reached: bool


class StirLine(msgspec.Struct):
    assumed: str  # absent | passed (A/B/C) | failed
    on_absent: str
    on_failed: str
    on_low_attestation: str
    min_attestation: str
    verdict: str  # what this number's STIR policy does with the assumption
    verified: bool  # False when STIR verification is off ([stir] enabled = false): the policy is not applied


class Explanation(msgspec.Struct):
    calling: str
    name: str
    called: str
    source: str
    found: bool  # the called number is in a dialplan
    released: bool  # the called number is released (in quarantine): intercepted before any policy
    file: str = ""
    line: int = 0
    col: int = 0
    entry: str = ""  # JSON path and key of the matched entry, e.g. '$.numbers[0].number = +12025550100'
    customer: str = ""
    default_action: str = ""
    stir: StirLine | None = None
    rules: list[RuleLine] = []
    rates: list[RateLine] = []
    evidence: list[Evidence] = []
    score: float = 0.0
    thresholds: list[ThresholdLine] = []
    spam_consulted: bool = False  # False when STIR or a block/allow rule decided first (or no [spam])
    cool_off: str = ""  # the caller's current cool-off, if any
    cool_off_seconds: float = 0.0  # how long a verdict on the caller's own evidence keeps it
    action: str = ""
    rule_id: str = ""
    reason: str = ""
    sip_status: int = 0
    would: str = ""  # dry run: what would have happened
    media: str = ""  # menu / captcha / voicemail box the treatment uses
    targets: list[str] = []  # PBXs in hunt order (a forwarded contact)
    fax_target: str = ""  # where a screened call goes if its fax tone (CNG) is heard
    counts: str = "zero"  # 'zero' (files alone) | 'live' (the running daemon)


_STIR = {"absent": StirStatus.ABSENT, "passed": StirStatus.PASSED, "failed": StirStatus.FAILED}


def validate_request(req: ExplainRequest) -> list[str]:
    """Bad input gets a clear answer before anything runs."""
    problems = []
    if not parse_number(req.called).e164:
        problems.append(f"called number {req.called!r} is not a telephone number")
    if req.calling and not parse_number(req.calling).e164:
        problems.append(f"calling number {req.calling!r} is not a telephone number (leave it empty for anonymous)")
    if req.stir not in _STIR:
        problems.append(f"stir {req.stir!r} is not one of absent, passed, failed")
    if req.attestation not in ("A", "B", "C"):
        problems.append(f"attestation {req.attestation!r} is not A, B or C")
    if any(c in req.name for c in '"\r\n\\<>'):
        problems.append("caller name may not contain quotes, angle brackets, backslashes or line breaks")
    return problems


def carrier_source(source: str, carrier_sources: Sequence[Sequence[str]], peers: PeerDirectory) -> tuple[Destination, Peer] | str:
    """Where the explained contact comes from: `source` (an IP) or the first carrier's first source.

    Returns the source and its carrier, or why not (explain only explains contacts a carrier may send).
    """
    if not source:
        if not carrier_sources or not carrier_sources[0]:
            return "no carrier in the config: nothing can send a call in"
        first = carrier_sources[0][0]
        if "/" in first:
            net = ipaddress.ip_network(first, strict=False)
            source = str(net.network_address if net.num_addresses == 1 else next(net.hosts()))
        else:
            source = first.rpartition(":")[0] if first.count(":") == 1 else first
    try:
        ipaddress.ip_address(source)
    except ValueError:
        return f"source {source!r} is not an IP address"
    port = 5060
    for srcs in carrier_sources:
        for s in srcs:  # an exact 'ip:port' carrier is only that port
            if s.count(":") == 1 and "/" not in s and s.rpartition(":")[0] == source:
                port = int(s.rpartition(":")[2])
    peer = peers.classify(source, port)
    if peer is None or peer.kind != "carrier":
        return f"source {source} is not a carrier (its INVITE would get 403 before any policy)"
    return Destination("udp", source, port), peer


def _invite(req: ExplainRequest, called: str, src: Destination) -> bytes:
    user = req.calling or "anonymous"
    name = f'"{req.name}" ' if req.name else ""
    body = b""
    if req.fax:
        body = (b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n"
                b"m=image 5000 udptl t38\r\n")
    head = (
        f"INVITE sip:{called}@edge SIP/2.0\r\n"
        f"Via: SIP/2.0/{src.transport.upper()} {src.host}:{src.port};branch=z9hG4bK-explain\r\n"
        f"From: {name}<sip:{user}@{src.host}>;tag=explain\r\n"
        f"To: <sip:{called}@edge>\r\n"
        "Call-ID: explain\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\n"
        + ("Content-Type: application/sdp\r\n" if body else "")
        + f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def _assumed_stir(req: ExplainRequest) -> StirResult:
    status = _STIR[req.stir]
    if status is StirStatus.PASSED:
        return StirResult(status, attestation=req.attestation, reason="assumed verified")
    if status is StirStatus.FAILED:
        return StirResult(status, code="assumed", layer="assumed", sip_status=438, reason="assumed failed verification")
    return ABSENT


def explain(
    req: ExplainRequest,
    plan: Plan,
    gate: Gatekeeper,
    src: Destination,
    peer: Peer,
    now: float,
    *,
    is_released: Callable[[str], bool] | None = None,
    live: bool = False,
) -> Explanation:
    """The decision path for `req` (validated with `validate_request` first)."""
    called = parse_number(req.called).e164
    stir = _assumed_stir(req)
    out = Explanation(req.calling, req.name, called, src.host, found=False, released=False,
                      counts="live" if live else "zero")
    if is_released is not None and is_released(called):
        out.released = True
        out.action, out.rule_id, out.reason = Action.INTERCEPT.value, "lifecycle.released", "called number is released (in quarantine)"
        return out
    entry = plan.lookup(called)
    if entry is None:
        out.action, out.rule_id, out.reason, out.sip_status = (
            Action.REJECT.value, "dialplan.unknown_number", "called number is not in any dialplan", 404)
        return out
    out.found = True
    out.file, out.line, out.col = entry.file, entry.line, entry.col
    out.entry = f"{entry.path} = {entry.key}" if entry.path else entry.key
    out.customer, out.default_action = entry.customer, entry.action.value
    out.cool_off_seconds = entry.policy.spam.cool_off if entry.policy.spam is not None else 0.0

    facts = build_facts(parse(_invite(req, called, src)), src, peer, entry.customer or None, now, stir)
    verified = gate.verifier is not None
    verdict = stir_decide(entry.stir, stir)
    sp = entry.stir
    out.stir = StirLine(
        req.stir + (f" ({req.attestation})" if stir.status is StirStatus.PASSED else ""),
        sp.on_absent.value, sp.on_failed.value, sp.on_low_attestation.value, sp.min_attestation,
        f"{verdict.action.value} ({verdict.rule_id}): {verdict.reason}", verified,
    )
    engine = gate.engine
    cnam = normalise_cnam(facts.cnam) if facts.cnam else ""

    # Rules first, then rates: reading them changes nothing, and the decision below counts nothing either.
    decision: Decision = gate.probe(facts, entry, stir, now)
    decided = {e.rule_id for e in decision.evidence if e.signal in ("allow", "block")}
    would = {e.rule_id for e in decision.evidence if e.signal in ("allow.dry_run", "block.dry_run")}
    for scope, r in engine.rules.considered(facts, now, cnam, entry.customer or None):
        outcome = "decided" if r.id in decided else ("would have decided (dry run)" if r.id in would else "outweighed")
        out.rules.append(RuleLine(scope, r.id, r.kind.value, r.value, r.allow, r.action.value, r.dry_run, r.source, outcome))

    spam = entry.policy.spam
    if spam is not None and spam.enabled:
        detective = engine.detective
        caller = caller_key(facts)
        for rule in spam.rates:
            key = detective.rate_key(rule.key, facts, caller, cnam)
            est = detective.rates.peek(rule.key, rule.limit.window, key, now) if key else 0.0
            out.rates.append(RateLine(
                rule.id, rule.key.value, key, rule.limit.count, rule.limit.window, max(0.0, est - 1.0) if key else 0.0,
                est, est > rule.limit.count, rule.weight, rule.action.value if rule.action else "",
                rule.key in AGGREGATE_RATES,
            ))
        flag = engine.flag(caller, now) if caller else None
        if flag is not None:
            out.cool_off = f"{flag.action.value} until {flag.until:.0f} ({flag.until - now:.0f}s left): {flag.reason}"
        out.thresholds = [ThresholdLine(t.score, t.action.value, t.id, decision.score >= t.score) for t in spam.thresholds]
        stir_rejected = decision.rule_id.startswith("stir.") and decision.action is Action.REJECT
        out.spam_consulted = not decided and not stir_rejected
    out.evidence = list(decision.evidence)
    out.score = decision.score
    out.action, out.rule_id, out.reason, out.sip_status = decision.action.value, decision.rule_id, decision.reason, decision.sip_status
    out.would = decision.would.value if decision.would is not None else ""
    out.media = decision.target_ref
    if decision.action is Action.ALLOW:
        out.targets = list(entry.targets)
    if decision.action in (Action.CAPTCHA, Action.MENU, Action.VOICEMAIL):
        out.fax_target = entry.fax_target
    return out


def render(e: Explanation) -> str:
    """The explanation as an operator reads it, top to bottom in the order the edge decides."""
    lines = [f"contact   {e.calling or 'anonymous'}" + (f' "{e.name}"' if e.name else "")
             + f" -> {e.called} from {e.source} (counts: {e.counts})"]
    if e.released:
        lines.append("lifecycle called number is released (in quarantine): intercepted before any policy")
    elif not e.found:
        lines.append("dialplan  no entry for the called number")
    else:
        lines.append(f"dialplan  {e.file}:{e.line}:{e.col}: {e.entry} (customer {e.customer or '-'}, default {e.default_action})")
        if e.stir is not None:
            s = e.stir
            lines.append(f"stir      assumed {s.assumed}; policy on_absent={s.on_absent} on_failed={s.on_failed} "
                         f"min_attestation={s.min_attestation} on_low_attestation={s.on_low_attestation}")
            lines.append(f"          -> {s.verdict}" + ("" if s.verified else " (verification off: not applied)"))
        if e.rules:
            lines.append("rules     " + f"{len(e.rules)} fit this contact (number, customer, global scope; most specific first)")
            for r in e.rules:
                what = f"{r.kind} {r.value!r}" if r.value else r.kind
                verb = "allow" if r.allow else r.action
                lines.append(f"          [{r.scope}] {r.id}: {what} -> {verb}{' (dry run)' if r.dry_run else ''} [{r.source}]: {r.outcome}")
        else:
            lines.append("rules     none fit this contact")
        if e.rates:
            lines.append("rates" + ("" if e.spam_consulted else "     (Spam Detective not consulted: decided before it)"))
            for r in e.rates:
                effect = ", ".join(x for x in (f"+{r.weight:g}" if r.weight else "", r.action) if x) or "-"
                counted = r.counted_as or "(not counted: no key)"
                lines.append(f"          {r.id}: {r.key} {counted}: {r.count:.1f} in {r.window:g}s, with this contact "
                             f"{r.with_contact:.1f} / {r.limit}{' EXCEEDED' if r.exceeded else ''} -> {effect}"
                             f"{' (aggregate: no cool-off)' if r.aggregate else ''}")
        if e.evidence:
            lines.append("evidence")
            lines += [f"          {ev.signal} {ev.weight:+g}: {ev.detail}" + (f" [{ev.rule_id}]" if ev.rule_id else "")
                      for ev in e.evidence]
        if e.thresholds and e.spam_consulted:
            lines.append(f"score     {e.score:g}; thresholds " + ", ".join(
                f"{t.score:g} {t.action}{' (reached)' if t.reached else ''}" for t in e.thresholds))
        if e.cool_off:
            lines.append(f"cool-off  {e.cool_off}")
    status = f" {e.sip_status}" if e.sip_status else ""
    lines.append(f"decision  {e.action}{status} by {e.rule_id or '-'}: {e.reason}")
    if e.would:
        lines.append(f"          dry run: would {e.would}")
    if e.media:
        lines.append(f"treatment {e.action} with {e.media!r}")
    if e.targets:
        lines.append(f"targets   {' -> '.join(e.targets)} (hunt order)")
    if e.fax_target:
        lines.append(f"fax       a fax tone (CNG) heard while screening sends the call to {e.fax_target}")
    return "\n".join(lines) + "\n"
