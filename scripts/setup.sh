#!/usr/bin/env bash
# Install what devalloc needs on a Debian 12 machine (as root) and make .venv with the package.
#   scripts/setup.sh         runtime only (python3 + venv)
#   scripts/setup.sh --dev   plus the test tools: gcc, kernel headers (linux-libc-dev, libdrm-dev
#                            for drm/*.h), pytest/hypothesis/mypy/ruff, and the test VM's packages
# Idempotent: installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

dev=0
[ "${1:-}" = "--dev" ] && dev=1

pkgs=()
have_pkg() { [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" = "install ok installed" ]; }
if ! command -v python3 >/dev/null 2>&1; then
  pkgs+=(python3)
fi
if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
  pkgs+=(python3-venv)
fi
if [ $dev = 1 ]; then
  for p in gcc libc6-dev linux-libc-dev libdrm-dev; do have_pkg "$p" || pkgs+=("$p"); done
fi
if [ ${#pkgs[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "setup: need Debian packages ${pkgs[*]}: run as root or install them" >&2
    exit 1
  fi
  echo "setup: installing ${pkgs[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
fi

python3 - <<'PY'
import sys
if sys.version_info < (3, 11):
    sys.exit(f"setup: devalloc needs Python >= 3.11, python3 is {sys.version.split()[0]}")
PY

[ -x .venv/bin/python ] || python3 -m venv .venv
extras=""
[ $dev = 1 ] && extras="[dev]"
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".$extras" 2>&1 \
  | grep -v "is ignored: it is neither a file nor a directory" >&2 || true
.venv/bin/python -c 'import devalloc' || { echo "setup: installing devalloc failed" >&2; exit 1; }

if [ $dev = 1 ]; then
  tests/vm/setup.sh >/dev/null
fi
