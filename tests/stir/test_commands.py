"""`sip-edge stir verify|sign` through argparse, offline with --cert-file."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from edge.stir.commands import register
from tests.stir.pki import CALLED, CALLER, NOW, X5U, Pki, key_pem, pem


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="sip-edge")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


@pytest.fixture
def files(tmp_path: Path, pki: Pki) -> dict[str, str]:
    ca = tmp_path / "ca"
    ca.mkdir()
    (ca / "root.pem").write_bytes(pem(pki.root))
    (tmp_path / "bundle.pem").write_bytes(pki.bundle)
    (tmp_path / "key.pem").write_bytes(key_pem(pki.leaf_key))
    return {"ca": str(ca), "bundle": str(tmp_path / "bundle.pem"), "key": str(tmp_path / "key.pem")}


def _sign(files: dict[str, str], capsys, attest: str = "A") -> str:
    assert _run(["stir", "sign", "--key", files["key"], "--x5u", X5U, "--from", CALLER, "--to", CALLED,
                 "--attest", attest, "--iat", str(int(NOW)), "--customer", "acme"]) == 0
    return capsys.readouterr().out.strip()


def test_commands_sign_then_verify_passes(files: dict[str, str], capsys) -> None:
    value = _sign(files, capsys)
    rc = _run(["stir", "verify", "--identity", value, "--from", CALLER, "--to", CALLED, "--trust-dir", files["ca"],
               "--cert-file", files["bundle"], "--now", str(NOW)])
    out = capsys.readouterr().out
    assert rc == 0
    assert "ok    signature[shaken]" in out
    assert "verdict: passed, attestation A" in out
    assert out.rstrip().endswith("verstat: TN-Validation-Passed")


def test_commands_verify_json_failure_exit_1(files: dict[str, str], capsys) -> None:
    value = _sign(files, capsys)
    rc = _run(["stir", "verify", "--identity", value, "--from", CALLER, "--to", "12025550000", "--trust-dir",
               files["ca"], "--cert-file", files["bundle"], "--now", str(NOW), "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert rc == 1
    assert (doc["verdict"], doc["result"]["code"], doc["result"]["sip_status"]) == ("failed", "dest_mismatch", 438)
    assert doc["checks"][-1] == {"step": "numbers.dest", "ok": False,
                                 "detail": "called 12025550000 not in dest.tn ['12025550199']"}


def test_commands_verify_stale_at_later_time(files: dict[str, str], capsys) -> None:
    value = _sign(files, capsys)
    rc = _run(["stir", "verify", "--identity", value, "--from", CALLER, "--to", CALLED, "--trust-dir", files["ca"],
               "--cert-file", files["bundle"], "--now", str(NOW + 120)])
    assert rc == 1
    assert "stale_date (freshness) -> 403 Stale Date" in capsys.readouterr().out


def test_commands_verify_empty_trust_dir_exit_2(tmp_path: Path, capsys) -> None:
    rc = _run(["stir", "verify", "--identity", "a.b.c;info=<https://x/c>", "--from", CALLER, "--to", CALLED,
               "--trust-dir", str(tmp_path)])
    assert rc == 2
    assert "no trust anchors" in capsys.readouterr().err


def test_commands_sign_unreadable_key_exit_2(tmp_path: Path, capsys) -> None:
    rc = _run(["stir", "sign", "--key", str(tmp_path / "none.pem"), "--x5u", X5U, "--from", CALLER, "--to", CALLED])
    assert rc == 2
    assert "cannot load key" in capsys.readouterr().err


def test_commands_verify_prints_failing_certificate_step(files: dict[str, str], capsys, tmp_path: Path, pki: Pki) -> None:
    value = _sign(files, capsys)
    other = tmp_path / "other-ca"
    other.mkdir()
    (other / "root.pem").write_bytes(pem(pki.other_root))
    rc = _run(["stir", "verify", "--identity", value, "--from", CALLER, "--to", CALLED, "--trust-dir", str(other),
               "--cert-file", files["bundle"], "--now", str(NOW)])
    out = capsys.readouterr().out
    assert rc == 1
    failed = [line.split() for line in out.splitlines() if line.startswith("FAIL")]
    assert [f[:3] for f in failed] == [["FAIL", "certificate[shaken]", "untrusted_chain:"]]
    assert "-> 437 Unsupported Credential" in out
    assert out.rstrip().endswith("verstat: TN-Validation-Failed")
