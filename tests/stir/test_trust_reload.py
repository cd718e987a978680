"""Trust directory: what `sip-edge check` says about each certificate, and SIGHUP re-reading anchors and CRLs."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.check import trust_lines
from edge.io.cert_fetch import load_trust_store, reload_trust
from edge.stir.result import StirStatus
from edge.stir.schema import StirConfig
from edge.stir.verifier import Verifier
from tests.stir.pki import Pki, pem
from tests.stir.test_verifier import run
from tests.stir.tokens import identity


def test_trust_report_names_anchor_and_chain_material(tmp_path: Path, pki: Pki) -> None:
    ca = tmp_path / "ca"
    ca.mkdir()
    (ca / "bundle.pem").write_bytes(pem(pki.root, pki.inter))
    lines = trust_lines(StirConfig(trust_dir=str(ca)))
    assert lines == [
        f"{ca / 'bundle.pem'}: anchor (self-signed CA): {pki.root.subject.rfc4514_string()}",
        f"{ca / 'bundle.pem'}: chain material (issued by {pki.root.subject.rfc4514_string()}): "
        f"{pki.inter.subject.rfc4514_string()}",
    ]


def test_trust_reload_applies_a_new_crl(tmp_path: Path, pki: Pki) -> None:
    ca = tmp_path / "ca"
    ca.mkdir()
    (ca / "root.pem").write_bytes(pem(pki.root))
    cfg = StirConfig(trust_dir=str(ca))
    verifier = Verifier(load_trust_store(cfg.trust_dir))
    key, bundle = pki.leaf_variant(serial=515151)
    assert run(verifier, [identity(key)], bundle, call_id="a").status is StirStatus.PASSED
    (ca / "sti.crl").write_bytes(pki.crl(515151))
    trust = reload_trust(verifier, cfg)
    assert (len(trust.anchors), trust.crl_count) == (1, 1)
    # The certificate cached before the reload is validated again against the new CRL.
    res = run(verifier, [identity(key)], bundle, call_id="b")
    assert (res.status, res.code) == (StirStatus.FAILED, "cert_revoked")


def test_trust_reload_failure_keeps_previous_store(tmp_path: Path, pki: Pki) -> None:
    ca = tmp_path / "ca"
    ca.mkdir()
    (ca / "root.pem").write_bytes(pem(pki.root))
    cfg = StirConfig(trust_dir=str(ca))
    verifier = Verifier(load_trust_store(cfg.trust_dir))
    before = verifier.trust
    (ca / "broken.crl").write_bytes(b"not a crl")
    with pytest.raises(ValueError, match="broken.crl"):
        reload_trust(verifier, cfg)
    assert verifier.trust is before


def test_trust_check_refuses_a_directory_with_only_chain_material(tmp_path: Path, pki: Pki) -> None:
    from edge.io.cert_fetch import validate_stir

    ca = tmp_path / "ca"
    ca.mkdir()
    (ca / "intermediate.pem").write_bytes(pem(pki.inter))
    errors = dict(validate_stir(StirConfig(trust_dir=str(ca))))
    assert "no STI-CA trust anchors (self-signed CA certificates)" in errors["$.stir.trust_dir"]
    assert trust_lines(StirConfig(trust_dir=str(ca)))[0].endswith(f"chain material (issued by {pki.root.subject.rfc4514_string()}): {pki.inter.subject.rfc4514_string()}")
