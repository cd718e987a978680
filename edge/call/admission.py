"""Admission of one contact: STIR/SHAKEN verification -> the number's STIR policy -> block rules and
Spam Detective -> the number's default treatment. Sans-IO: when a certificate is not cached the
verifier answers `NeedCertificate` and the proxy parks the INVITE until the fetch result comes back.

Also the outbound side (STI-AS): calls from a PBX get an Identity header with the attestation the
customer's business profile earns (A: vetted and the number is theirs; B: known customer; C: other).
"""

from __future__ import annotations

from collections import OrderedDict

import msgspec
import structlog

from edge.call.facts import CallerId, build_facts, caller_id, calling_user
from edge.call.peers import Peer
from edge.dialplan.plan import NumberEntry, Plan
from edge.numbers import canonical_tn, parse_number
from edge.policy.facts import Action, CallFacts, Decision
from edge.policy.pipeline import PolicyEngine
from edge.sip.message import SipMessage
from edge.sip.transaction import Destination
from edge.sip.uri import uri_user
from edge.stir.identity import split_identity_values
from edge.stir.result import ABSENT, StirResult, StirStatus
from edge.stir.schema import StirAction, StirConfig
from edge.stir.schema import decide as stir_decide
from edge.stir.signer import Signer, attestation_for, origid_for
from edge.stir.verifier import NeedCertificate, Verifier
from edge.stir.verstat import from_with_verstat, pai_from, pai_with_verstat, reason_header, strip_verstat

log = structlog.get_logger("edge.admission")

VERIFIED_METHODS = frozenset({"INVITE", "MESSAGE"})


class Admission(msgspec.Struct):
    decision: Decision
    facts: CallFacts
    stir: StirResult
    edits: list[tuple[str, str | None]] = []  # header (lower-case) -> new value; None removes


class Signing(msgspec.Struct, frozen=True):
    """STI-AS outcome for one outbound request: the Identity value and attestation, or why it has none."""

    identity: str = ""
    attestation: str = ""
    unsigned_reason: str = ""


class PassMemory:
    """Callers who passed a captcha, until when (bounded; oldest forgotten first)."""

    def __init__(self, cap: int = 100_000) -> None:
        self._until: OrderedDict[str, float] = OrderedDict()
        self.cap = cap

    def remember(self, calling: str, until: float) -> None:
        if not calling:
            return
        self._until[calling] = until
        self._until.move_to_end(calling)
        while len(self._until) > self.cap:
            self._until.popitem(last=False)

    def passed(self, calling: str, now: float) -> bool:
        until = self._until.get(calling)
        if until is None:
            return False
        if until <= now:
            del self._until[calling]
            return False
        return True


class Gatekeeper:
    def __init__(
        self,
        engine: PolicyEngine,
        stir_cfg: StirConfig,
        verifier: Verifier | None = None,
        signer: Signer | None = None,
        passes: PassMemory | None = None,
    ) -> None:
        self.engine = engine
        self.stir_cfg = stir_cfg
        self.verifier = verifier
        self.signer = signer
        self.passes = passes or PassMemory()
        self.stir_counts: dict[str, int] = {}  # 'passed' | 'failed:<code>' | 'absent'
        self.signed = 0

    # -- inbound -------------------------------------------------------------------------------
    def admit(self, msg: SipMessage, src: Destination, peer: Peer, entry: NumberEntry, now: float,
              caller: CallerId | None = None) -> Admission | NeedCertificate:
        if caller is None:
            caller = caller_id(msg)
        out = self.verify_identity(msg, peer, caller, now)
        if isinstance(out, NeedCertificate):
            return out
        result = out
        facts = build_facts(msg, src, peer, entry.customer or None, now, result, caller)
        decision = self._decide(facts, entry, result, now)
        return Admission(decision, facts, result, self._edits(msg, result))

    def verify_identity(self, msg: SipMessage, peer: Peer, caller: CallerId, now: float) -> StirResult | NeedCertificate:
        """STI-VS for a request from a carrier: INVITE and MESSAGE alike (RFC 8224 §6.2 covers any request
        that carries Identity). ABSENT when verification is off or the request does not come from a carrier."""
        if self.verifier is None or peer.kind != "carrier" or msg.method not in VERIFIED_METHODS:
            return ABSENT
        values: list[str] = []
        for v in msg.get_all("identity"):
            values += split_identity_values(v)
        out = self.verifier.verify(values, caller.user, uri_user(msg.uri), msg.call_id, now)
        if isinstance(out, NeedCertificate):
            return out
        key = out.status.value if out.status is not StirStatus.FAILED else f"failed:{out.code}"
        self.stir_counts[key] = self.stir_counts.get(key, 0) + 1
        return out

    def probe(self, facts: CallFacts, entry: NumberEntry, result: StirResult, now: float) -> Decision:
        """The decision a contact with these facts would get now, changing no state (sip-edge explain)."""
        return self._decide(facts, entry, result, now, probe=True)

    def _decide(self, facts: CallFacts, entry: NumberEntry, result: StirResult, now: float, probe: bool = False) -> Decision:
        verdict = None
        if self.verifier is not None:
            verdict = stir_decide(entry.stir, result)
            # A message is rejected for an Identity that failed, not for lacking one (texts rarely carry
            # Identity; on_absent is a call policy). Screening applies to calls only (below).
            applies = facts.kind.value != "message" or result.status is StirStatus.FAILED
            if verdict.action is StirAction.REJECT and applies:
                return Decision(Action.REJECT, verdict.rule_id, verdict.reason, sip_status=verdict.sip_status)
        decision = self.engine.probe(facts, entry.policy, now) if probe else self.engine.decide(facts, entry.policy, now)
        if decision.action is Action.CAPTCHA and self.passes.passed(facts.calling_number, now):
            return Decision(Action.ALLOW, "captcha.passed_recently", "caller passed a captcha recently",
                            evidence=decision.evidence, score=decision.score)
        if decision.action is not Action.ALLOW or facts.kind.value != "call":
            return decision
        if verdict is not None and verdict.action is StirAction.SCREEN:
            action = Action.CAPTCHA if entry.policy.captcha else (Action.MENU if entry.policy.menu else None)
            if action is not None and not self.passes.passed(facts.calling_number, now):
                return Decision(action, verdict.rule_id, f"STIR/SHAKEN: {verdict.reason}; screening",
                                evidence=decision.evidence, score=decision.score,
                                target_ref=entry.policy.media_target(action) or "")
        if entry.action is not Action.ALLOW:
            if entry.action is Action.CAPTCHA and self.passes.passed(facts.calling_number, now):
                return Decision(Action.ALLOW, "captcha.passed_recently", "caller passed a captcha recently",
                                evidence=decision.evidence, score=decision.score)
            return Decision(entry.action, "dialplan.action", f"number's default action is {entry.action.value}",
                            evidence=decision.evidence, score=decision.score,
                            target_ref=entry.policy.media_target(entry.action) or "")
        return decision

    def _edits(self, msg: SipMessage, result: StirResult) -> list[tuple[str, str | None]]:
        """verstat toward the PBX: inbound verstat is never trusted, ours is added when we verified."""
        edits: list[tuple[str, str | None]] = []
        pai = msg.get("p-asserted-identity")
        frm = msg.get("from") or ""
        verified = self.verifier is not None
        add_pai = verified and not pai and self.stir_cfg.verstat_without_pai == "pai"
        if pai:
            edits.append(("p-asserted-identity", pai_with_verstat(pai, result.verstat) if verified else strip_verstat(pai, pai=True)))
        elif add_pai:
            edits.append(("p-asserted-identity", pai_from(frm, result.verstat)))
        if verified and (self.stir_cfg.verstat_in_from or not (pai or add_pai)):
            edits.append(("from", from_with_verstat(frm, result.verstat)))
        elif "verstat" in frm.lower():
            edits.append(("from", strip_verstat(frm)))
        if verified and result.status is StirStatus.FAILED:
            reason = reason_header(result)
            if reason:
                edits.append(("reason", reason))
        return edits

    # -- outbound (STI-AS) ------------------------------------------------------------------------
    def sign_outbound(self, msg: SipMessage, peer: Peer, plan: Plan, now: float) -> str:
        """The Identity header value for a call the PBX sends out ('' when not signed)."""
        return self.sign_outbound_request(msg, peer, plan, now).identity

    def sign_outbound_request(self, msg: SipMessage, peer: Peer, plan: Plan, now: float) -> Signing:
        """STI-AS for a request the PBX sends out, with the reason when it is not signed (for the activity).

        Attestation A: the calling number belongs to a customer this PBX serves and its profile is
        vetted; B: the PBX serves known customers but we cannot vouch for the number; C: otherwise.
        """
        if self.signer is None:
            return Signing(unsigned_reason="signing disabled")
        if msg.method != "INVITE":
            return Signing(unsigned_reason=f"{msg.method} is not signed")
        calling = parse_number(calling_user(msg))
        called_user = uri_user(msg.uri)
        if not calling.e164:
            return Signing(unsigned_reason="calling number is not E.164")
        if not called_user:
            return Signing(unsigned_reason="no called number")
        customers = plan.pbx_customers.get(peer.name, set())
        owner = plan.lookup(calling.e164)
        owned = owner is not None and owner.customer in customers
        vetted = owned and owner is not None and owner.vetted
        customer = owner.customer if owned and owner is not None else (sorted(customers)[0] if customers else "")
        attest = attestation_for(bool(customers), owned, vetted)
        origid = origid_for(customer or f"pbx:{peer.name}", self.stir_cfg.signing.origids)
        self.signed += 1
        identity = self.signer.sign(calling.digits, [canonical_tn(called_user)], attest, origid, int(now))
        return Signing(identity=identity, attestation=attest)


def apply_edits(msg: SipMessage, edits: list[tuple[str, str | None]]) -> None:
    for name, value in edits:
        if value is None:
            msg.remove(name)
        elif name == "reason":
            msg.append(name, value)
        else:
            msg.set(name, value)


__all__ = ["Admission", "Gatekeeper", "PassMemory", "Signing", "apply_edits"]
