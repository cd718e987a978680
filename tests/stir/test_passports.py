"""Several Identity headers: div (RFC 8946) chains and rcd (RFC 9795) names; replay table bounds."""

from __future__ import annotations

from edge.stir.replay import ReplayGuard
from edge.stir.result import StirStatus
from edge.stir.verifier import Verifier
from tests.stir.pki import CALLED, CALLER, NOW, X5U, Pki
from tests.stir.tokens import claims, header, identity

FORWARDED_TO = "12025550777"


def _div(pki: Pki, key=None, **over) -> str:
    cl = {"dest": {"tn": [FORWARDED_TO]}, "iat": int(NOW), "orig": {"tn": CALLER}, "div": {"tn": CALLED}}
    cl.update(over)
    return identity(key or pki.leaf_key, header(ppt="div"), cl)


def _ready(verifier: Verifier, pki: Pki) -> Verifier:
    verifier.certificate_fetched(X5U, pki.bundle, None, "", NOW)
    return verifier


def test_passports_div_chain_verifies_for_forwarded_call(verifier: Verifier, pki: Pki) -> None:
    res = _ready(verifier, pki).verify([identity(pki.leaf_key), _div(pki)], CALLER, FORWARDED_TO, "c", NOW)
    assert (res.status, res.attestation) == (StirStatus.PASSED, "A")


def test_passports_div_with_other_original_dest_fails(verifier: Verifier, pki: Pki) -> None:
    res = _ready(verifier, pki).verify([identity(pki.leaf_key), _div(pki, div={"tn": "12025550000"})],
                                       CALLER, FORWARDED_TO, "c", NOW)
    assert (res.code, res.sip_status) == ("div_mismatch", 438)


def test_passports_div_with_bad_signature_fails(verifier: Verifier, pki: Pki) -> None:
    res = _ready(verifier, pki).verify([identity(pki.leaf_key), _div(pki, key=pki.other_root_key)],
                                       CALLER, FORWARDED_TO, "c", NOW)
    assert res.code == "bad_signature"


def test_passports_rcd_claim_in_verified_shaken(verifier: Verifier, pki: Pki) -> None:
    value = identity(pki.leaf_key, cl=claims(rcd={"nam": "Acme Pharmacy"}))
    res = _ready(verifier, pki).verify([value], CALLER, CALLED, "c", NOW)
    assert (res.status, res.rcd_name) == (StirStatus.PASSED, "Acme Pharmacy")


def test_passports_rcd_passport_name_only_when_it_verifies(verifier: Verifier, pki: Pki) -> None:
    rcd_cl = {"dest": {"tn": [CALLED]}, "iat": int(NOW), "orig": {"tn": CALLER}, "rcd": {"nam": "Bank"}}
    good = identity(pki.leaf_key, header(ppt="rcd"), rcd_cl)
    forged = identity(pki.other_root_key, header(ppt="rcd"), rcd_cl)
    v = _ready(verifier, pki)
    assert v.verify([identity(pki.leaf_key), good], CALLER, CALLED, "c1", NOW).rcd_name == "Bank"
    res = v.verify([identity(pki.leaf_key, cl=claims(origid="other")), forged], CALLER, CALLED, "c2", NOW)
    assert (res.status, res.rcd_name) == (StirStatus.PASSED, None)


def test_passports_failed_shaken_reported_even_with_valid_extra(verifier: Verifier, pki: Pki) -> None:
    res = _ready(verifier, pki).verify([_div(pki), identity(pki.leaf_key, cl=claims(attest="X"))],
                                       CALLER, CALLED, "c", NOW)
    assert res.code == "bad_attest"


def test_passports_only_div_is_no_shaken(verifier: Verifier, pki: Pki) -> None:
    res = _ready(verifier, pki).verify([_div(pki)], CALLER, FORWARDED_TO, "c", NOW)
    assert (res.code, res.sip_status) == ("no_shaken_passport", 438)


def test_passports_second_shaken_used_when_first_fails(verifier: Verifier, pki: Pki) -> None:
    bad = identity(pki.leaf_key, cl=claims(orig={"tn": "12025550100"}))
    res = _ready(verifier, pki).verify([bad, identity(pki.leaf_key)], CALLER, CALLED, "c", NOW)
    assert res.status is StirStatus.PASSED


def test_replay_guard_bounded_and_expiring() -> None:
    g = ReplayGuard(max_entries=3, max_age=60)
    for i in range(5):
        g.record(f"sig{i}", f"call{i}", iat=NOW, now=NOW)
    assert len(g) == 3 and g.evicted_live == 2
    assert g.is_replay("sig4", "other", NOW + 10)
    assert not g.is_replay("sig4", "call4", NOW + 10)
    assert not g.is_replay("sig0", "other", NOW + 10)  # evicted
    assert not g.is_replay("sig4", "other", NOW + 61)  # expired with the token's freshness
    assert len(g) == 0


DIV_X5U = "https://cert.example.net/sti/div-delegate.pem"


def _div_by_delegate(verifier: Verifier, pki: Pki, covers: str) -> StirStatus | str:
    """A div PASSporT signed under a delegate certificate (RFC 9060) whose TNAuthList holds only `covers`."""
    from tests.stir.pki import tnauthlist_entries

    key, bundle = pki.leaf_variant(tnal=tnauthlist_entries(tns=(covers,)))
    cl = {"dest": {"tn": [FORWARDED_TO]}, "iat": int(NOW), "orig": {"tn": CALLER}, "div": {"tn": CALLED}}
    div = identity(key, header(ppt="div", x5u=DIV_X5U), cl)
    _ready(verifier, pki).certificate_fetched(DIV_X5U, bundle, None, "", NOW)
    res = verifier.verify([identity(pki.leaf_key), div], CALLER, FORWARDED_TO, "c", NOW)
    return res.status if res.status is StirStatus.PASSED else res.code


def test_passports_div_delegate_must_cover_diverting_number(verifier: Verifier, pki: Pki) -> None:
    # RFC 8946: the div signer vouches for the number that diverted (div.tn), not for the caller.
    assert _div_by_delegate(verifier, pki, covers=CALLED) is StirStatus.PASSED


def test_passports_div_delegate_for_caller_only_refused(verifier: Verifier, pki: Pki) -> None:
    assert _div_by_delegate(verifier, pki, covers=CALLER) == "tn_not_authorized"
