"""Fixtures: one throw-away STI PKI per session, a fresh verifier per test."""

from __future__ import annotations

import pytest

from edge.stir.certs import TrustStore
from edge.stir.signer import Signer
from edge.stir.verifier import Verifier, VerifierSettings
from tests.stir.pki import X5U, Pki, build_pki, key_pem, pem


@pytest.fixture(scope="session")
def pki() -> Pki:
    return build_pki()


@pytest.fixture
def trust(pki: Pki) -> TrustStore:
    return TrustStore.from_blobs([pem(pki.root)])


@pytest.fixture
def verifier(trust: TrustStore) -> Verifier:
    return Verifier(trust, VerifierSettings())


@pytest.fixture(scope="session")
def signer(pki: Pki) -> Signer:
    return Signer(key_pem(pki.leaf_key), X5U)
