"""The STIR verification service (STI-VS, RFC 8224 §6.2, SHAKEN RFC 8588 §6, div RFC 8946, rcd RFC 9795).

Sans-IO: `verify()` runs the cheap checks first (parse, JOSE header, claims, freshness, numbers, replay), and
only then asks for the x5u certificate. When it is not cached the caller gets `NeedCertificate(url)`, fetches
it, hands the outcome to `certificate_fetched()` and calls `verify()` again; the cheap checks are repeated,
which costs microseconds and keeps the object free of per-call state.
"""

from __future__ import annotations

from collections.abc import Callable

import msgspec

from edge.numbers import canonical_tn
from edge.stir import certs, passport
from edge.stir.certs import CertCache, TrustStore, VerifiedCert
from edge.stir.failures import StirFailure
from edge.stir.identity import parse_identity
from edge.stir.passport import Passport, tn_in
from edge.stir.replay import ReplayGuard
from edge.stir.result import StirResult, StirStatus
from edge.stir.schema import StirConfig, parse_duration


class NeedCertificate(msgspec.Struct, frozen=True):
    """Effect: fetch this x5u URL, then call `Verifier.certificate_fetched` and `verify` again."""

    url: str


class Check(msgspec.Struct, frozen=True):
    """One check's outcome, for `sip-edge stir verify` and debug logs."""

    step: str
    ok: bool
    detail: str = ""


class VerifierSettings(msgspec.Struct, frozen=True, kw_only=True):
    max_age: float = 60.0
    cert_cache_size: int = 1000
    cert_cache_ttl: float = 3600.0
    cert_cache_max_ttl: float = 86400.0
    negative_cache_ttl: float = 30.0
    replay_cache_size: int = 200_000
    single_use_grace: float = 30.0  # how long a no-store certificate waits for the verify that fetched it

    @classmethod
    def from_config(cls, cfg: StirConfig) -> VerifierSettings:
        return cls(
            max_age=parse_duration(cfg.max_age),
            cert_cache_size=cfg.cert_cache_size,
            cert_cache_ttl=parse_duration(cfg.cert_cache_ttl),
            cert_cache_max_ttl=parse_duration(cfg.cert_cache_max_ttl),
            negative_cache_ttl=parse_duration(cfg.negative_cache_ttl),
            replay_cache_size=cfg.replay_cache_size,
            single_use_grace=max(5.0, parse_duration(cfg.fetch_timeout) * 2),
        )


class _Missing(Exception):
    """Internal: the certificate for this URL is not cached yet."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.url = url


class Verifier:
    """Verifies the Identity headers of one INVITE at a time; holds the certificate cache and replay table."""

    def __init__(self, trust: TrustStore, settings: VerifierSettings | None = None) -> None:
        self.trust = trust
        self.settings = settings or VerifierSettings()
        s = self.settings
        self.cache = CertCache(s.cert_cache_size, s.cert_cache_ttl, s.cert_cache_max_ttl, s.negative_cache_ttl)
        self.replay = ReplayGuard(s.replay_cache_size, s.max_age)

    def set_trust(self, trust: TrustStore) -> None:
        """New anchors and CRLs (SIGHUP). Cached certificates were validated against the old ones, and a CRL
        may now revoke one of them, so the cache starts empty; the replay table is kept."""
        self.trust = trust
        self.cache.clear()

    # -- certificate feed -------------------------------------------------------------------------------

    def certificate_fetched(
        self, url: str, body: bytes | None, cache_control: str | None, error: str, now: float
    ) -> None:
        """Validate a fetched x5u body (or record the fetch failure) into the cache."""
        if body is None or error:
            entry = self.cache.put_failure(url, StirFailure("fetch_failed", error or "no body"), now)
        else:
            try:
                entry = self.cache.put_cert(url, certs.validate(body, self.trust, now), cache_control, now)
            except StirFailure as failure:
                entry = self.cache.put_failure(url, failure, now)
        if entry.single_use:
            entry.expires_at = now + self.settings.single_use_grace

    def _cert(self, url: str, now: float, used: list[str]) -> VerifiedCert:
        entry = self.cache.get(url, now)
        if entry is None:
            raise _Missing(url)
        if entry.single_use:
            used.append(url)
        if entry.cert is None:
            raise StirFailure(entry.failure_code, entry.failure_reason)
        return entry.cert

    # -- verification -------------------------------------------------------------------------------------

    def verify(
        self,
        identity_values: list[str],
        calling_raw: str,
        called_raw: str,
        call_id: str,
        now: float,
        trace: list[Check] | None = None,
    ) -> StirResult | NeedCertificate:
        """Verify all Identity values of one request; `calling_raw` is the PAI user part, else From's."""
        used: list[str] = []
        try:
            outcome = self._verify(identity_values, calling_raw, called_raw, call_id, now, trace, used)
        except _Missing as missing:
            return NeedCertificate(missing.url)
        for url in used:
            self.cache.discard(url)
        return outcome

    def _verify(
        self,
        values: list[str],
        calling_raw: str,
        called_raw: str,
        call_id: str,
        now: float,
        trace: list[Check] | None,
        used: list[str],
    ) -> StirResult:
        def note(step: str, ok: bool, detail: str = "") -> None:
            if trace is not None:
                trace.append(Check(step, ok, detail))

        if not values:
            note("identity", False, "no Identity header")
            return StirFailure("no_identity", "no Identity header").result()

        decoded: list[Passport] = []
        failures: list[tuple[StirFailure, Passport | None, str | None]] = []
        for i, value in enumerate(values):
            step = f"identity[{i}]"
            pp: Passport | None = None
            ppt_hint: str | None = None
            try:
                ident = parse_identity(value)
                ppt_hint = ident.ppt
                note(f"{step}.parse", True, f"info={ident.info}")
                pp = passport.decode(ident)
                note(f"{step}.header+claims", True, f"ppt={pp.ppt} attest={pp.attest} orig={pp.orig_tn}")
                passport.check_fresh(pp, now, self.settings.max_age)
                note(f"{step}.freshness", True, f"iat={pp.iat:.0f} now={now:.0f}")
                decoded.append(pp)
            except StirFailure as failure:
                note(f"{step}.{failure.kind.layer}", False, f"{failure.code}: {failure.reason}")
                failures.append((failure, pp, pp.ppt if pp is not None else ppt_hint))

        shaken = [p for p in decoded if p.ppt == "shaken"]
        if not shaken:
            if failures:
                # Report the SHAKEN PASSporT's problem when one is recognisable, else the first problem.
                failure, pp, _ = next((f for f in failures if f[2] in ("shaken", None)), failures[0])
                return self._failed(failure, pp)
            failure = StirFailure("no_shaken_passport", "no ppt=shaken PASSporT among the Identity headers")
            note("shaken", False, failure.reason)
            return failure.result()

        # Several SHAKEN PASSporTs (e.g. re-signed by a transit carrier): the first that verifies wins,
        # otherwise the first one's failure is reported.
        failed: list[tuple[StirFailure, Passport]] = []
        for pp in shaken:
            try:
                return self._verify_shaken(pp, decoded, calling_raw, called_raw, call_id, now, note, used)
            except StirFailure as failure:
                failed.append((failure, pp))
        return self._failed(*failed[0])

    @staticmethod
    def _failed(failure: StirFailure, pp: Passport | None) -> StirResult:
        if pp is None:
            return failure.result()
        return failure.result(orig_tn=pp.orig_tn, dest_tn=pp.dest_tns, origid=pp.origid)

    def _verify_shaken(
        self,
        pp: Passport,
        decoded: list[Passport],
        calling_raw: str,
        called_raw: str,
        call_id: str,
        now: float,
        note: Callable[[str, bool, str], None],
        used: list[str],
    ) -> StirResult:
        # Numbers (RFC 8224 §6.2 step 3, RFC 8588 §5): cheap, before any network.
        calling = canonical_tn(calling_raw)
        if canonical_tn(pp.orig_tn) != calling:
            note("numbers.orig", False, f"orig.tn {pp.orig_tn} != calling {calling}")
            raise StirFailure("orig_mismatch", f"orig.tn {pp.orig_tn} is not the calling number {calling}")
        note("numbers.orig", True, calling)
        chain = [pp]
        if tn_in(called_raw, pp.dest_tns):
            note("numbers.dest", True, canonical_tn(called_raw))
        else:
            div = self._div_for(pp, decoded, called_raw)
            if div is None:
                has_div = any(d.ppt == "div" for d in decoded)
                code = "div_mismatch" if has_div else "dest_mismatch"
                detail = f"called {canonical_tn(called_raw)} not in dest.tn {list(pp.dest_tns)}"
                note("numbers.dest", False, detail + (" and no consistent div PASSporT" if has_div else ""))
                raise StirFailure(code, detail)
            note("numbers.div", True, f"diverted from {div.div_tn} to {canonical_tn(called_raw)}")
            chain.append(div)

        for p in chain:
            if self.replay.is_replay(p.signature_b64, call_id, now):
                note("replay", False, "signature already used by another Call-ID")
                raise StirFailure("replay", "PASSporT signature already seen with a different Call-ID")
        note("replay", True, "")

        for p in chain:
            step = f"certificate[{p.ppt}]"
            try:
                cert = self._cert(p.x5u, now, used)
            except StirFailure as failure:
                note(step, False, f"{failure.code}: {failure.reason}")
                raise
            # The signer must hold the number it vouches for: orig.tn for SHAKEN, the diverting number for
            # div (RFC 8946 §5). A certificate with an SPC covers any number.
            tnal = cert.tnauthlist
            tn, claim = (p.div_tn, "div.tn") if p.ppt == "div" else (pp.orig_tn, "orig.tn")
            if not tnal.covers(tn):
                detail = f"TNAuthList {list(tnal.tns) + [f'{s}+{n}' for s, n in tnal.ranges]} lacks {claim} {tn}"
                note(step, False, f"tn_not_authorized: {detail}")
                raise StirFailure("tn_not_authorized", detail)
            covered = f"spc={','.join(tnal.spcs)}" if tnal.spcs else f"{claim} {tn} in TNAuthList"
            note(step, True, f"{cert.subject} {covered}")
            try:
                passport.verify_signature(p, cert.public_key)
            except StirFailure as failure:
                note(f"signature[{p.ppt}]", False, f"{failure.code}: {failure.reason}")
                raise
            note(f"signature[{p.ppt}]", True, "")
        for p in chain:
            self.replay.record(p.signature_b64, call_id, p.iat, now)

        rcd_name = pp.rcd_name or self._rcd_name(pp, decoded, now, used, note)
        return StirResult(
            status=StirStatus.PASSED,
            attestation=pp.attest,
            orig_tn=pp.orig_tn,
            dest_tn=pp.dest_tns,
            origid=pp.origid,
            rcd_name=rcd_name,
        )

    @staticmethod
    def _div_for(pp: Passport, decoded: list[Passport], called_raw: str) -> Passport | None:
        """RFC 8946 §4: a div PASSporT keeps the original orig, names the original dest in `div`, and the new
        destination in `dest`."""
        for d in decoded:
            if d.ppt != "div":
                continue
            if canonical_tn(d.orig_tn) != canonical_tn(pp.orig_tn):
                continue
            if tn_in(d.div_tn, pp.dest_tns) and tn_in(called_raw, d.dest_tns):
                return d
        return None

    def _rcd_name(
        self, pp: Passport, decoded: list[Passport], now: float, used: list[str], note: Callable[[str, bool, str], None]
    ) -> str | None:
        """A separate ppt=rcd PASSporT's name counts only if that PASSporT itself verifies."""
        for r in decoded:
            if r.ppt != "rcd" or r.rcd_name is None:
                continue
            if canonical_tn(r.orig_tn) != canonical_tn(pp.orig_tn):
                note("rcd", False, "rcd orig.tn differs from the shaken PASSporT")
                continue
            try:
                cert = self._cert(r.x5u, now, used)
                passport.verify_signature(r, cert.public_key)
            except StirFailure as failure:
                note("rcd", False, f"{failure.code}: {failure.reason}")
                continue
            note("rcd", True, r.rcd_name)
            return r.rcd_name
        return None
