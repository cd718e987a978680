"""The Debian package: built with `make deb`'s script, installed into a temporary root by dpkg (maintainer
scripts included, DPKG_ROOT-aware), then `sip-edge check` and `systemd-analyze verify` run on the installed
files at their real FHS paths, seen through overlay mounts in a private mount namespace (the host's /etc,
/usr and /var/lib are never written). Removal and purge leave nothing behind."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from edge.build import COMPILED_MODULES

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1200)]


@pytest.fixture(scope="module")
def deb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    run = subprocess.run([str(ROOT / "packaging" / "build-deb.sh"), str(out)], cwd=ROOT, capture_output=True, text=True,
                         timeout=1100)
    assert run.returncode == 0, run.stderr[-3000:]
    path = Path(run.stdout.strip().splitlines()[-1])
    assert path.is_file() and path.suffix == ".deb"
    return path


def dpkg(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["dpkg", f"--root={root}", "--force-script-chrootless", "--force-depends", *args],
                          capture_output=True, text=True, timeout=300)


def in_root(root: Path, script: str) -> subprocess.CompletedProcess[str]:
    """Run `script` where the installed /etc, /usr and /var/lib files appear at their real paths."""
    mounts = " && ".join(f"mount -t overlay overlay -o lowerdir={d}:{root}{d} {d}" for d in ("/etc", "/usr", "/var/lib"))
    return subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", f"{mounts} && {script}"],
                          capture_output=True, text=True, timeout=120)


def test_package_metadata_and_layout(deb: Path) -> None:
    info = subprocess.run(["dpkg-deb", "-f", str(deb), "Package", "Depends", "Version"], capture_output=True, text=True)
    assert info.stdout.splitlines()[0] == "Package: sip-edge"
    assert "Depends: python3." in info.stdout
    listing = subprocess.run(["dpkg-deb", "-c", str(deb)], capture_output=True, text=True).stdout
    for path in ("./usr/lib/sip-edge/venv/bin/sip-edge", "./usr/bin/sip-edge -> ../lib/sip-edge/venv/bin/sip-edge",
                 "./etc/sip-edge/edge.toml", "./etc/sip-edge/dialplans/acme.toml", "./usr/share/sip-edge/prompts/beep.wav",
                 "./usr/lib/systemd/system/sip-edge.service", "./usr/lib/sysusers.d/sip-edge.conf", "./var/lib/sip-edge/"):
        assert path in listing, path
    assert " root/root " in listing and "__pycache__" not in listing
    conffiles = subprocess.run(["dpkg-deb", "--ctrl-tarfile", str(deb)], capture_output=True).stdout
    assert b"conffiles" in conffiles


def test_install_into_temporary_root_check_and_verify(deb: Path, tmp_path: Path) -> None:
    root = tmp_path / "root"
    for d in ("var/lib/dpkg/info", "var/lib/dpkg/updates"):
        (root / d).mkdir(parents=True)
    (root / "var/lib/dpkg/status").touch()
    inst = dpkg(root, "-i", str(deb))
    assert inst.returncode == 0, inst.stdout + inst.stderr

    # postinst: the system user, its state directory, the byte-compiled venv.
    users = [line.split(":") for line in (root / "etc/passwd").read_text().splitlines()]
    [user] = [u for u in users if u[0] == "sip-edge"]
    assert user[5:] == ["/var/lib/sip-edge", "/usr/sbin/nologin"]
    state = (root / "var/lib/sip-edge").stat()
    assert (state.st_uid, oct(state.st_mode & 0o777)) == (int(user[2]), "0o750")
    assert list((root / "usr/lib/sip-edge/venv/lib").rglob("__pycache__"))

    config = (root / "etc/sip-edge/edge.toml").read_text()
    for line in ('state_dir = "/var/lib/sip-edge"', 'path = "/var/lib/sip-edge/edge.db"', 'token_file = "/var/lib/sip-edge/admin.token"',
                 'trust_dir = "/etc/sip-edge/sti-ca"', 'prompts_dir = "/usr/share/sip-edge/prompts"'):
        assert line in config, line

    # The unit's own ExecStartPre, with the installed files at their paths.
    unit = (root / "usr/lib/systemd/system/sip-edge.service").read_text()
    pre = next(line.split("=", 1)[1] for line in unit.splitlines() if line.startswith("ExecStartPre="))
    assert pre == "/usr/bin/sip-edge check --config /etc/sip-edge/edge.toml /etc/sip-edge/dialplans"
    ok = in_root(root, pre)
    assert ok.returncode == 0, ok.stderr
    # The package's hot path is compiled (gcc and python3-dev are build tools of `make deb`).
    assert ok.stdout.splitlines() == ["/etc/sip-edge/sti-ca/root.pem: anchor (self-signed CA): O=sip-edge TEST STI-CA,CN=sip-edge TEST STI root",
                                      f"build: compiled ({len(COMPILED_MODULES)} hot-path modules, Cython)",
                                      "ok: /etc/sip-edge/edge.toml and /etc/sip-edge/dialplans"]
    # ... and it still catches mistakes there (a broken copy of the installed dialplans).
    bad = in_root(root, "mkdir -p /tmp/dp && sed 's/+12025550101/+1555/' /etc/sip-edge/dialplans/acme.toml > /tmp/dp/acme.toml"
                        " && /usr/bin/sip-edge check --config /etc/sip-edge/edge.toml /tmp/dp")
    assert bad.returncode == 1 and "/tmp/dp/acme.toml:" in bad.stderr and "'+1555' is not a valid E.164 number" in bad.stderr
    # Operator commands find the installed config by themselves (no --config, run from anywhere).
    exp = in_root(root, "cd / && sip-edge explain --from +13035550111 --to +12025550100 --json")
    assert exp.returncode == 0, exp.stderr
    assert '"file": "/etc/sip-edge/dialplans/acme.toml"' in exp.stdout and '"action": "allow"' in exp.stdout
    if shutil.which("systemd-analyze"):
        verify = in_root(root, "systemd-analyze verify /usr/lib/systemd/system/sip-edge.service")
        assert verify.returncode == 0, verify.stdout + verify.stderr
        # Outside the namespace the daemon is not installed: verify does check the unit's commands.
        assert subprocess.run(["systemd-analyze", "verify", str(root / "usr/lib/systemd/system/sip-edge.service")],
                              capture_output=True, timeout=60).returncode != 0

    assert not Path("/etc/sip-edge").exists() and not Path("/usr/lib/sip-edge").exists()  # the host is untouched

    purge = dpkg(root, "--purge", "sip-edge")
    assert purge.returncode == 0, purge.stdout + purge.stderr
    assert not (root / "usr/lib/sip-edge").exists() and not (root / "var/lib/sip-edge").exists()
    assert not (root / "etc/sip-edge").exists()


@pytest.fixture(autouse=True)
def _root_only() -> None:
    assert os.geteuid() == 0, "installing a package (dpkg --root, overlay mounts) needs root, as make test runs"
