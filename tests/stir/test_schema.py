"""[stir] config validation and the dialplan decision per outcome."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from edge.io.cert_fetch import validate_stir
from edge.stir.result import ABSENT, StirResult, StirStatus
from edge.stir.schema import StirAction, StirConfig, StirPolicy, StirSigning, decide, parse_duration, validate
from tests.stir.pki import Pki, key_pem, pem


@pytest.mark.parametrize(("text", "seconds"), [("60s", 60.0), ("500ms", 0.5), ("5m", 300.0), ("1h", 3600.0), ("2d", 172800.0)])
def test_schema_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


def test_schema_decodes_toml_and_forbids_unknown_keys() -> None:
    cfg = msgspec.toml.decode(b'max_age = "30s"\n[signing]\nenabled = true\nkey_file = "k.pem"\nx5u = "https://c/x.pem"\n', type=StirConfig)
    assert (cfg.max_age, cfg.signing.enabled) == ("30s", True)
    with pytest.raises(msgspec.ValidationError, match="unknown field"):
        msgspec.toml.decode(b"maxage = 1\n", type=StirConfig)


def test_schema_validate_reports_paths() -> None:
    cfg = StirConfig(max_age="sixty", cert_cache_size=0, allow_private_networks=["nope"], verstat_without_pai="to",
                     signing=StirSigning(enabled=True, x5u="http://cert.example/x.pem"))
    errors = dict(validate(cfg))
    assert set(errors) == {"$.stir.max_age", "$.stir.cert_cache_size", "$.stir.allow_private_networks[0]",
                           "$.stir.signing.key_file", "$.stir.signing.x5u", "$.stir.verstat_without_pai"}
    assert "must be an https URL" in errors["$.stir.signing.x5u"]


def test_schema_validate_files(tmp_path: Path, pki: Pki) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    cfg = StirConfig(trust_dir=str(empty), signing=StirSigning(enabled=True, key_file=str(tmp_path / "nokey.pem"), x5u="https://c/x.pem"))
    errors = dict(validate_stir(cfg))
    assert "no STI-CA trust anchors" in errors["$.stir.trust_dir"]
    assert "cannot read key" in errors["$.stir.signing.key_file"]

    good = tmp_path / "ca"
    good.mkdir()
    (good / "root.pem").write_bytes(pem(pki.root))
    (good / "revoked.crl").write_bytes(pki.crl(5))
    (tmp_path / "key.pem").write_bytes(key_pem(pki.leaf_key))
    ok = StirConfig(trust_dir=str(good), signing=StirSigning(enabled=True, key_file=str(tmp_path / "key.pem"), x5u="https://c/x.pem"))
    assert validate_stir(ok) == []
    (tmp_path / "bad.pem").write_bytes(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    bad = StirConfig(trust_dir=str(good), signing=StirSigning(enabled=True, key_file=str(tmp_path / "bad.pem"), x5u="https://c/x.pem"))
    assert "not a usable EC P-256 private key" in dict(validate_stir(bad))["$.stir.signing.key_file"]


FAILED = StirResult(status=StirStatus.FAILED, code="bad_signature", sip_status=438, reason="sig")


@pytest.mark.parametrize(
    ("policy", "result", "action", "status", "rule"),
    [
        (StirPolicy(), ABSENT, StirAction.CONTINUE, 428, "stir.on_absent"),
        (StirPolicy(on_absent=StirAction.REJECT), ABSENT, StirAction.REJECT, 428, "stir.on_absent"),
        (StirPolicy(on_failed=StirAction.SCREEN), FAILED, StirAction.SCREEN, 438, "stir.on_failed"),
        (StirPolicy(min_attestation="A", on_low_attestation=StirAction.REJECT),
         StirResult(status=StirStatus.PASSED, attestation="B"), StirAction.REJECT, 403, "stir.on_low_attestation"),
        (StirPolicy(min_attestation="B", on_low_attestation=StirAction.REJECT),
         StirResult(status=StirStatus.PASSED, attestation="B"), StirAction.CONTINUE, 0, "stir.passed"),
    ],
    ids=["absent-default-continue", "absent-reject-428", "failed-screen", "low-attest-reject", "attest-at-min"],
)
def test_schema_decide(policy: StirPolicy, result: StirResult, action: StirAction, status: int, rule: str) -> None:
    v = decide(policy, result)
    assert (v.action, v.sip_status, v.rule_id) == (action, status, rule)
