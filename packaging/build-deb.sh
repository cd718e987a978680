#!/usr/bin/env bash
# Build the sip-edge Debian package (FHS layout) with dpkg-deb:
#   /usr/lib/sip-edge/venv        the daemon in its own virtual environment (system python3)
#   /usr/bin/sip-edge             -> the venv's console script
#   /etc/sip-edge/edge.toml       config/edge.toml with its paths moved to the FHS (conffile)
#   /etc/sip-edge/dialplans/      the example dialplans (conffiles)
#   /etc/sip-edge/sti-ca/         STI-CA trust anchors (the TEST CA: replace with your STI-PA's list)
#   /usr/share/sip-edge/prompts/  G.711 prompts
#   /var/lib/sip-edge             state (SQLite, voicemail, admin token), owned by the sip-edge system user
#   /usr/lib/systemd/system/sip-edge.service, /usr/lib/sysusers.d/sip-edge.conf
# Usage (from the repository root): packaging/build-deb.sh [OUTDIR]   (default dist/); prints the .deb path.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
OUT="$(mkdir -p "${1:-$ROOT/dist}" && cd "${1:-$ROOT/dist}" && pwd)"
PY="${DEB_PYTHON:-/usr/bin/python3}"  # the target's interpreter: the venv's pyvenv.cfg points at it
VENV=/usr/lib/sip-edge/venv

VERSION="$("$PY" -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb"))["project"]["version"])' "$ROOT/pyproject.toml")"
PYVER="$("$PY" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
ARCH="$(dpkg --print-architecture)"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
STAGE="$WORK/sip-edge_${VERSION}_${ARCH}"

# The venv is built at its final path inside the staging root, then its scripts are pointed at the
# final path (the interpreter it links to is the system one, so nothing else moves).
"$PY" -m venv "$STAGE$VENV"
mkdir -p "$WORK/src"  # build from a copy: pip's in-tree build leaves build/ and egg-info behind
cp -r "$ROOT/pyproject.toml" "$ROOT/setup.py" "$ROOT/README.md" "$ROOT/edge" "$WORK/src/"
# setup.py compiles the hot path afresh for the target's python3 (edge/build.py); a dev tree's extensions stay out.
find "$WORK/src/edge" \( -name '*.so' -o -name '*.c' \) -delete
"$STAGE$VENV/bin/pip" install --disable-pip-version-check -q -c "$ROOT/constraints.txt" "$WORK/src"
grep -rlI --null "$STAGE$VENV" "$STAGE$VENV/bin" | xargs -0 -r sed -i "s|$STAGE$VENV|$VENV|g"
sed -i "s|$STAGE$VENV|$VENV|g" "$STAGE$VENV/pyvenv.cfg"
find "$STAGE$VENV" -name __pycache__ -prune -exec rm -rf {} +  # compiled at install (postinst)
mkdir -p "$STAGE/usr/bin"
ln -s "../lib/sip-edge/venv/bin/sip-edge" "$STAGE/usr/bin/sip-edge"

# Configuration: the example config with its relative paths moved to the FHS, the dialplans, the trust anchors.
install -d "$STAGE/etc/sip-edge/dialplans" "$STAGE/usr/share/sip-edge" "$STAGE/usr/share/doc/sip-edge" \
    "$STAGE/var/lib/sip-edge" "$STAGE/usr/lib/systemd/system" "$STAGE/usr/lib/sysusers.d" "$STAGE/DEBIAN"
sed -e 's|"var/|"/var/lib/sip-edge/|g' \
    -e 's|state_dir = "var"|state_dir = "/var/lib/sip-edge"|' \
    -e 's|"config/sti-ca|"/etc/sip-edge/sti-ca|g' \
    -e 's|"config/prompts"|"/usr/share/sip-edge/prompts"|' \
    -e 's|^# sip-edge example configuration (what `make run` uses)\.|# sip-edge configuration (Debian package: /etc/sip-edge/edge.toml; state under /var/lib/sip-edge).|' \
    "$ROOT/config/edge.toml" > "$STAGE/etc/sip-edge/edge.toml"
if grep -nE '= "(var|config)(/|")' "$STAGE/etc/sip-edge/edge.toml"; then
    echo "build-deb: relative paths left in the packaged edge.toml (above)" >&2
    exit 1
fi
install -m 0644 "$ROOT"/dialplans/*.toml "$STAGE/etc/sip-edge/dialplans/"
cp -r "$ROOT/config/sti-ca" "$STAGE/etc/sip-edge/sti-ca"
cp -r "$ROOT/config/prompts" "$STAGE/usr/share/sip-edge/prompts"
install -m 0644 "$ROOT/README.md" "$STAGE/usr/share/doc/sip-edge/README.md"
install -m 0644 "$ROOT/systemd/sip-edge.service" "$STAGE/usr/lib/systemd/system/sip-edge.service"
install -m 0644 "$ROOT/packaging/debian/sysusers.conf" "$STAGE/usr/lib/sysusers.d/sip-edge.conf"

# Control files.
for s in postinst prerm postrm; do
    install -m 0755 "$ROOT/packaging/debian/$s" "$STAGE/DEBIAN/$s"
done
(cd "$STAGE" && find etc -type f | sed 's|^|/|' | sort) > "$STAGE/DEBIAN/conffiles"
SIZE="$(du -sk --exclude=DEBIAN "$STAGE" | cut -f1)"
sed -e "s|@VERSION@|$VERSION|" -e "s|@ARCH@|$ARCH|" -e "s|@SIZE@|$SIZE|" -e "s|@PYVER@|$PYVER|g" \
    "$ROOT/packaging/debian/control.in" > "$STAGE/DEBIAN/control"

DEB="$OUT/sip-edge_${VERSION}_${ARCH}.deb"
dpkg-deb --root-owner-group -Zxz --build "$STAGE" "$DEB" >/dev/null
echo "$DEB"
