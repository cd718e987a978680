"""Certificate helpers: TNAuthList decoding, Cache-Control lifetimes, bounded cache."""

from __future__ import annotations

import pytest

from edge.stir import certs
from edge.stir.certs import CertCache, TrustStore, cache_ttl, tnauthlist_spcs
from edge.stir.failures import StirFailure
from tests.stir.pki import NOW, Pki, pem


def test_certs_tnauthlist_spc_decoded(pki: Pki) -> None:
    assert tnauthlist_spcs(pki.leaf) == ("709J",)
    assert tnauthlist_spcs(pki.inter) == ()


@pytest.mark.parametrize(
    ("header", "ttl"),
    [
        (None, 3600.0),
        ("max-age=120", 120.0),
        ("public, max-age=86400000", 86400.0),
        ("no-store", 0.0),
        ("no-cache, max-age=60", 0.0),
        ("max-age=abc", 0.0),
    ],
    ids=["absent-default", "max-age", "capped", "no-store", "no-cache", "garbage"],
)
def test_certs_cache_ttl(header: str | None, ttl: float) -> None:
    assert cache_ttl(header, 3600.0, 86400.0) == ttl


def test_certs_cache_bounded_lru(pki: Pki, trust: TrustStore) -> None:
    vc = certs.validate(pki.bundle, trust, NOW)
    cache = CertCache(max_entries=2, default_ttl=100, max_ttl=1000, negative_ttl=10)
    cache.put_cert("u1", vc, None, NOW)
    cache.put_cert("u2", vc, None, NOW)
    assert cache.get("u1", NOW) is not None  # u1 now most recent
    cache.put_failure("u3", StirFailure("fetch_failed", "x"), NOW)
    assert len(cache) == 2 and cache.evictions == 1
    assert cache.get("u2", NOW) is None and cache.get("u1", NOW) is not None
    assert cache.get("u3", NOW + 11) is None


def test_certs_trust_store_reads_crl_and_anchor_blobs(pki: Pki) -> None:
    store = TrustStore.from_blobs([pem(pki.root), pki.crl(1, 2)])
    assert (len(store.anchors), store.crl_count) == (1, 1)


def test_certs_no_anchors_is_untrusted(pki: Pki) -> None:
    with pytest.raises(StirFailure) as info:
        certs.validate(pki.bundle, TrustStore([], []), NOW)
    assert info.value.code == "untrusted_chain"


def test_certs_leaf_served_as_intermediate_not_accepted_as_ca(pki: Pki, trust: TrustStore) -> None:
    # A leaf (CA:FALSE) cannot issue: a certificate "signed" by the leaf key must not chain.
    key, bundle = pki.leaf_variant()
    from tests.stir.pki import make_cert

    from cryptography.hazmat.primitives.asymmetric import ec

    k2 = ec.generate_private_key(ec.SECP256R1())
    sub = make_cert("sub", k2, "variant leaf", key, ca=False, spc="1234")
    with pytest.raises(StirFailure) as info:
        certs.validate(pem(sub) + bundle, trust, NOW)
    assert info.value.code == "untrusted_chain"


# -- trust anchors: only self-signed CA certificates -------------------------------------------------------


def test_certs_only_self_signed_ca_is_anchor(pki: Pki) -> None:
    store = TrustStore.from_blobs([pem(pki.root, pki.inter)])
    assert [c.subject for c in store.anchors] == [pki.root.subject]
    assert [c.subject for c in store.intermediates] == [pki.inter.subject]
    assert [e.role for e in TrustStore.entries(pem(pki.root, pki.inter, pki.leaf))] == ["anchor", "chain", "chain"]


def test_certs_intermediate_alone_is_no_anchor(pki: Pki) -> None:
    # The old store trusted every certificate in trust_dir: an intermediate there anchored chains by itself.
    store = TrustStore.from_blobs([pem(pki.inter)])
    assert store.anchors == []
    with pytest.raises(StirFailure) as info:
        certs.validate(pki.bundle, store, NOW)
    assert info.value.code == "untrusted_chain"


def test_certs_chain_material_completes_a_bundle_without_intermediate(pki: Pki) -> None:
    # Root + intermediate copied from the STI-CA's bundle: a leaf served alone still chains to the root anchor.
    store = TrustStore.from_blobs([pem(pki.root, pki.inter)])
    assert certs.validate(pem(pki.leaf), store, NOW).subject == pki.leaf.subject.rfc4514_string()


def test_certs_self_signed_leaf_is_not_anchor(pki: Pki) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    from tests.stir.pki import make_cert

    k = ec.generate_private_key(ec.SECP256R1())
    selfie = make_cert("self leaf", k, "self leaf", k, ca=False, spc="1234")
    assert TrustStore.entries(pem(selfie))[0].role == "chain"


# -- TNAuthList TN and TN-range entries (RFC 8226 §9, RFC 9060 delegate certificates) -----------------------


@pytest.mark.parametrize("implicit", [False, True], ids=["explicit-tags", "implicit-tags"])
def test_certs_tnauthlist_tn_and_range_decoded(implicit: bool) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    from tests.stir.pki import make_cert, tnauthlist_entries

    k = ec.generate_private_key(ec.SECP256R1())
    ext = tnauthlist_entries(tns=("12025550123",), ranges=(("13035550100", 100),), implicit=implicit)
    cert = make_cert("delegate", k, "delegate", k, ca=False, tnal=ext)
    tnal = certs.tnauthlist(cert)
    assert (tnal.spcs, tnal.tns, tnal.ranges) == ((), ("12025550123",), (("13035550100", 100),))


@pytest.mark.parametrize(
    ("tn", "covered"),
    [
        ("12025550123", True),
        ("+1-202-555-0123", True),
        ("12025550124", False),
        ("13035550100", True),
        ("13035550199", True),
        ("13035550200", False),
        ("3035550150", False),  # same digits, other length: not in the range
        ("", False),
    ],
)
def test_certs_tnauthlist_covers(tn: str, covered: bool) -> None:
    tnal = certs.TnAuthList(tns=("12025550123",), ranges=(("13035550100", 100),))
    assert tnal.covers(tn) is covered


def test_certs_tnauthlist_spc_covers_any_number() -> None:
    assert certs.TnAuthList(spcs=("709J",), tns=("1",)).covers("12025550123")
