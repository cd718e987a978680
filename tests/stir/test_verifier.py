"""STI-VS end to end without sockets: every failure class with its code, layer and SIP status."""

from __future__ import annotations

import json

import pytest

from edge.stir.identity import b64url_encode
from edge.stir.result import StirStatus
from edge.stir.verifier import Check, NeedCertificate, Verifier, VerifierSettings
from tests.stir.pki import CALLED, CALLER, NOW, X5U, Pki, pem
from tests.stir.tokens import claims, header, identity, token


def run(verifier: Verifier, values: list[str], bundle: bytes | None, *, calling: str = CALLER,
        called: str = CALLED, call_id: str = "call-1", now: float = NOW, cache_control: str | None = None):
    """Drive the sans-IO loop the way the async adapter does, serving `bundle` for every URL."""
    for _ in range(5):
        out = verifier.verify(values, calling, called, call_id, now)
        if not isinstance(out, NeedCertificate):
            return out
        verifier.certificate_fetched(out.url, bundle, cache_control, "" if bundle else "connection refused", now)
    raise AssertionError("verify did not settle")


def test_verifier_valid_header_passes(verifier: Verifier, pki: Pki) -> None:
    res = run(verifier, [identity(pki.leaf_key)], pki.bundle)
    assert res.status is StirStatus.PASSED
    assert (res.attestation, res.orig_tn, res.dest_tn, res.sip_status) == ("A", CALLER, (CALLED,), 0)
    assert res.verstat == "TN-Validation-Passed"


def test_verifier_asks_for_certificate_first(verifier: Verifier, pki: Pki) -> None:
    assert verifier.verify([identity(pki.leaf_key)], CALLER, CALLED, "c", NOW) == NeedCertificate(X5U)


def test_verifier_no_identity_is_absent_428(verifier: Verifier) -> None:
    res = verifier.verify([], CALLER, CALLED, "c", NOW)
    assert (res.status, res.code, res.sip_status) == (StirStatus.ABSENT, "no_identity", 428)
    assert res.verstat == "No-TN-Validation"


F, N = "TN-Validation-Failed", "No-TN-Validation"


def _sig_of(value: str) -> str:
    return value.split(";")[0].split(".")[2]


CASES = [
    # id, builder(pki) -> identity value, expected code, layer, status, verstat (the table in edge.stir.outcomes)
    ("compact", lambda p: ".." + _sig_of(identity(p.leaf_key)) + f";info=<{X5U}>;ppt=shaken", "compact_form", "parse", 438, N),
    ("two-segments", lambda p: "abc.def;info=<" + X5U + ">", "malformed", "parse", 438, N),
    ("no-info", lambda p: identity(p.leaf_key, params=";alg=ES256;ppt=shaken"), "missing_info", "parse", 436, N),
    ("info-unbracketed", lambda p: identity(p.leaf_key, params=f";info={X5U};ppt=shaken"), "bad_info", "parse", 436, N),
    ("bad-base64", lambda p: "a*b.c.d;info=<" + X5U + ">;ppt=shaken", "bad_base64", "parse", 438, N),
    ("header-not-json", lambda p: identity(p.leaf_key, b"{not json"), "bad_json", "parse", 438, N),
    ("alg-rs256", lambda p: identity(p.leaf_key, header(alg="RS256"), params=f";info=<{X5U}>;ppt=shaken"), "unsupported_alg", "header", 437, N),
    ("alg-param-differs", lambda p: identity(p.leaf_key, params=f";info=<{X5U}>;alg=RS256;ppt=shaken"), "alg_mismatch", "header", 438, N),
    ("typ-jwt", lambda p: identity(p.leaf_key, header(typ="JWT")), "bad_typ", "header", 438, N),
    ("ppt-unknown", lambda p: identity(p.leaf_key, header(ppt="foo")), "unsupported_ppt", "header", 438, N),
    ("ppt-param-missing", lambda p: identity(p.leaf_key, params=f";info=<{X5U}>;alg=ES256"), "missing_ppt", "parse", 438, N),
    ("ppt-param-differs", lambda p: identity(p.leaf_key, params=f";info=<{X5U}>;alg=ES256;ppt=div"), "ppt_mismatch", "header", 438, N),
    ("x5u-missing", lambda p: identity(p.leaf_key, header(x5u=None)), "missing_x5u", "header", 436, N),
    ("x5u-differs", lambda p: identity(p.leaf_key, header(x5u="https://evil.example/c.pem"), params=f";info=<{X5U}>;ppt=shaken"), "x5u_mismatch", "header", 436, N),
    ("attest-d", lambda p: identity(p.leaf_key, cl=claims(attest="D")), "bad_attest", "claims", 438, N),
    ("dest-string", lambda p: identity(p.leaf_key, cl=claims(dest={"tn": CALLED})), "bad_dest", "claims", 438, N),
    ("iat-string", lambda p: identity(p.leaf_key, cl=claims(iat=str(int(NOW)))), "bad_iat", "claims", 438, N),
    ("orig-missing", lambda p: identity(p.leaf_key, cl=claims(orig=None)), "bad_orig", "claims", 438, N),
    ("origid-missing", lambda p: identity(p.leaf_key, cl=claims(origid=None)), "bad_origid", "claims", 438, N),
    ("stale", lambda p: identity(p.leaf_key, cl=claims(iat=int(NOW) - 61)), "stale_date", "freshness", 403, N),
    ("future", lambda p: identity(p.leaf_key, cl=claims(iat=int(NOW) + 61)), "stale_date", "freshness", 403, N),
    ("orig-other", lambda p: identity(p.leaf_key, cl=claims(orig={"tn": "12025550100"})), "orig_mismatch", "numbers", 438, F),
    ("dest-other", lambda p: identity(p.leaf_key, cl=claims(dest={"tn": ["12025550100"]})), "dest_mismatch", "numbers", 438, F),
    ("wrong-key", lambda p: identity(p.other_root_key), "bad_signature", "signature", 438, F),
]


@pytest.mark.parametrize(("build", "code", "layer", "status", "verstat"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_verifier_failure_class(verifier: Verifier, pki: Pki, build, code: str, layer: str, status: int,
                                verstat: str) -> None:
    res = run(verifier, [build(pki)], pki.bundle)
    assert (res.status, res.code, res.layer, res.sip_status) == (StirStatus.FAILED, code, layer, status)
    assert res.attestation is None
    assert res.verstat == verstat


def test_verifier_cheap_failure_needs_no_certificate(verifier: Verifier, pki: Pki) -> None:
    out = verifier.verify([identity(pki.leaf_key, cl=claims(iat=int(NOW) - 600))], CALLER, CALLED, "c", NOW)
    assert not isinstance(out, NeedCertificate)
    assert out.code == "stale_date"


def test_verifier_freshness_window_configurable(trust, pki: Pki) -> None:
    v = Verifier(trust, VerifierSettings(max_age=300))
    res = run(v, [identity(pki.leaf_key, cl=claims(iat=int(NOW) - 200))], pki.bundle)
    assert res.status is StirStatus.PASSED


def test_verifier_tampered_payload_fails_signature(verifier: Verifier, pki: Pki) -> None:
    good = identity(pki.leaf_key)
    h, _, rest = good.split(".", 2)
    forged = b64url_encode(json.dumps(claims(attest="A", origid="forged")).encode())
    res = run(verifier, [f"{h}.{forged}.{rest}"], pki.bundle)
    assert res.code == "bad_signature"


def test_verifier_unusual_json_whitespace_verifies_over_received_bytes(verifier: Verifier, pki: Pki) -> None:
    raw = ('{ "origid" : "x-1",\n  "iat":%d , "orig":{"tn":"%s"},"dest":{ "tn" : ["+%s"] },"attest":"B" }'
           % (int(NOW), CALLER, CALLED)).encode()
    hdr = b'{"x5u":"%s",  "typ":"passport","ppt":"shaken","alg":"ES256"}' % X5U.encode()
    res = run(verifier, [token(pki.leaf_key, hdr, raw) + f";info=<{X5U}>;alg=ES256;ppt=\"shaken\""], pki.bundle)
    assert (res.status, res.attestation) == (StirStatus.PASSED, "B")


def test_verifier_pai_with_plus_and_separators_matches(verifier: Verifier, pki: Pki) -> None:
    res = run(verifier, [identity(pki.leaf_key)], pki.bundle, calling="+1-202-555-0123", called="+12025550199")
    assert res.status is StirStatus.PASSED


@pytest.mark.parametrize(
    ("body", "code", "status"),
    [
        (None, "fetch_failed", 436),
        (b"not a certificate", "bad_certificate", 437),
    ],
    ids=["fetch-error", "garbage-body"],
)
def test_verifier_certificate_unusable(verifier: Verifier, pki: Pki, body, code: str, status: int) -> None:
    res = run(verifier, [identity(pki.leaf_key)], body)
    assert (res.code, res.layer, res.sip_status) == (code, "certificate", status)
    assert res.verstat == N  # nothing could be checked


def test_verifier_expired_leaf(verifier: Verifier, pki: Pki) -> None:
    key, bundle = pki.leaf_variant(not_before=NOW - 10 * 86400, not_after=NOW - 86400)
    res = run(verifier, [identity(key)], bundle)
    assert (res.code, res.sip_status, res.verstat) == ("cert_expired", 437, F)


def test_verifier_missing_tnauthlist(verifier: Verifier, pki: Pki) -> None:
    key, bundle = pki.leaf_variant(spc=None)
    res = run(verifier, [identity(key)], bundle)
    assert (res.code, res.sip_status, res.verstat) == ("missing_tnauthlist", 437, F)


def test_verifier_wrong_trust_anchor(pki: Pki) -> None:
    from edge.stir.certs import TrustStore

    v = Verifier(TrustStore.from_blobs([pem(pki.other_root)]))
    res = run(v, [identity(pki.leaf_key)], pki.bundle)
    assert (res.code, res.sip_status, res.verstat) == ("untrusted_chain", 437, F)


def test_verifier_intermediate_not_served(verifier: Verifier, pki: Pki) -> None:
    res = run(verifier, [identity(pki.leaf_key)], pem(pki.leaf))
    assert res.code == "untrusted_chain"


def test_verifier_crl_revokes_leaf(pki: Pki) -> None:
    from edge.stir.certs import TrustStore

    key, bundle = pki.leaf_variant(serial=424242)
    v = Verifier(TrustStore.from_blobs([pem(pki.root), pki.crl(424242)]))
    res = run(v, [identity(key)], bundle)
    assert (res.code, res.layer, res.sip_status, res.verstat) == ("cert_revoked", "certificate", 437, F)
    v2 = Verifier(TrustStore.from_blobs([pem(pki.root), pki.crl(111)]))
    assert run(v2, [identity(key)], bundle).status is StirStatus.PASSED


def test_verifier_replay_with_other_call_id(verifier: Verifier, pki: Pki) -> None:
    value = identity(pki.leaf_key)
    assert run(verifier, [value], pki.bundle, call_id="a").status is StirStatus.PASSED
    assert run(verifier, [value], pki.bundle, call_id="a", now=NOW + 1).status is StirStatus.PASSED
    res = run(verifier, [value], pki.bundle, call_id="b", now=NOW + 2)
    assert (res.code, res.layer, res.sip_status, res.verstat) == ("replay", "replay", 438, F)


def test_verifier_negative_cache_remembers_fetch_failure(verifier: Verifier, pki: Pki) -> None:
    value = identity(pki.leaf_key)
    assert run(verifier, [value], None).code == "fetch_failed"
    # Within negative_cache_ttl (30 s) no new fetch is requested, even with a good certificate available.
    out = verifier.verify([value], CALLER, CALLED, "c2", NOW + 10)
    assert not isinstance(out, NeedCertificate) and out.code == "fetch_failed"
    assert verifier.verify([value], CALLER, CALLED, "c3", NOW + 31) == NeedCertificate(X5U)


def test_verifier_cache_honours_max_age(verifier: Verifier, pki: Pki) -> None:
    value = identity(pki.leaf_key)
    run(verifier, [value], pki.bundle, cache_control="public, max-age=20")
    assert verifier.cache.get(X5U, NOW + 19) is not None
    assert verifier.cache.get(X5U, NOW + 21) is None


def test_verifier_cache_never_past_not_after(verifier: Verifier, pki: Pki) -> None:
    key, bundle = pki.leaf_variant(not_after=NOW + 100)
    run(verifier, [identity(key)], bundle, cache_control="max-age=86400")
    assert verifier.cache.get(X5U, NOW + 99) is not None
    assert verifier.cache.get(X5U, NOW + 101) is None


def test_verifier_no_store_certificate_used_once(verifier: Verifier, pki: Pki) -> None:
    res = run(verifier, [identity(pki.leaf_key)], pki.bundle, cache_control="no-store")
    assert res.status is StirStatus.PASSED
    assert verifier.cache.get(X5U, NOW) is None


def test_verifier_trace_lists_every_check(verifier: Verifier, pki: Pki) -> None:
    verifier.certificate_fetched(X5U, pki.bundle, None, "", NOW)
    trace: list[Check] = []
    res = verifier.verify([identity(pki.leaf_key)], CALLER, CALLED, "c", NOW, trace)
    assert res.status is StirStatus.PASSED
    steps = [c.step for c in trace]
    assert steps == ["identity[0].parse", "identity[0].header+claims", "identity[0].freshness", "numbers.orig",
                     "numbers.dest", "replay", "certificate[shaken]", "signature[shaken]"]
    assert all(c.ok for c in trace)


# -- delegate certificates: TN entries must cover orig.tn ----------------------------------------------------


def test_verifier_delegate_certificate_covering_orig_passes(verifier: Verifier, pki: Pki) -> None:
    from tests.stir.pki import tnauthlist_entries

    key, bundle = pki.leaf_variant(tnal=tnauthlist_entries(ranges=((CALLER[:-2] + "00", 100),)))
    res = run(verifier, [identity(key)], bundle)
    assert res.status is StirStatus.PASSED


def test_verifier_delegate_certificate_not_covering_orig_fails(verifier: Verifier, pki: Pki) -> None:
    from tests.stir.pki import tnauthlist_entries

    key, bundle = pki.leaf_variant(tnal=tnauthlist_entries(tns=("13035550188",)))
    trace: list[Check] = []
    verifier.certificate_fetched(X5U, bundle, None, "", NOW)
    res = verifier.verify([identity(key)], CALLER, CALLED, "c", NOW, trace)
    assert (res.status, res.code, res.sip_status, res.verstat) == (StirStatus.FAILED, "tn_not_authorized", 437, F)
    assert (trace[-1].step, trace[-1].ok) == ("certificate[shaken]", False)
    assert "13035550188" in trace[-1].detail and CALLER in trace[-1].detail


def test_verifier_rsa_leaf_is_bad_key_failed(verifier: Verifier, pki: Pki) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    from tests.stir.pki import make_cert

    p384 = ec.generate_private_key(ec.SECP384R1())
    leaf = make_cert("p384 leaf", p384, "STI test intermediate", pki.inter_key, ca=False, spc="709J")
    res = run(verifier, [identity(pki.leaf_key)], pem(leaf, pki.inter))
    assert (res.code, res.sip_status, res.verstat) == ("bad_key", 437, F)


@pytest.mark.parametrize(
    ("bundle_of", "step", "code"),
    [
        (lambda p: p.leaf_variant(not_before=NOW - 10 * 86400, not_after=NOW - 86400), "certificate[shaken]", "cert_expired"),
        (lambda p: (p.other_root_key, p.bundle), "signature[shaken]", "bad_signature"),
    ],
    ids=["certificate", "signature"],
)
def test_verifier_trace_names_failing_step(verifier: Verifier, pki: Pki, bundle_of, step: str, code: str) -> None:
    key, bundle = bundle_of(pki)
    verifier.certificate_fetched(X5U, bundle, None, "", NOW)
    trace: list[Check] = []
    res = verifier.verify([identity(key)], CALLER, CALLED, "c", NOW, trace)
    assert res.code == code
    assert (trace[-1].step, trace[-1].ok) == (step, False)
    assert trace[-1].detail.startswith(code + ":")
