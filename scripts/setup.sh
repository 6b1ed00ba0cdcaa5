#!/usr/bin/env bash
# Install what devalloc needs on a Debian 12 machine (as root) and make .venv with the package.
#   scripts/setup.sh         runtime only (python3 + venv)
#   scripts/setup.sh --dev   plus the test tools: gcc, kernel headers (linux-libc-dev, libdrm-dev
#                            for drm/*.h), pytest/hypothesis/mypy/ruff/numpy, the test VM's
#                            packages, and everything --gst installs
#   scripts/setup.sh --gst   plus GStreamer 1.x and its Python bindings for devalloc.gst (Debian's
#                            python3-gi/python3-gst-1.0, made importable from .venv)
# Idempotent: installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

dev=0
gst=0
for arg in "$@"; do
  case "$arg" in
    --dev) dev=1 gst=1 ;;
    --gst) gst=1 ;;
    *) echo "setup: unknown option $arg (--dev, --gst)" >&2; exit 2 ;;
  esac
done

pkgs=()
have_pkg() { [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" = "install ok installed" ]; }
if ! command -v python3 >/dev/null 2>&1; then
  pkgs+=(python3)
fi
if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
  pkgs+=(python3-venv)
fi
if [ $dev = 1 ]; then
  for p in gcc libc6-dev linux-libc-dev libdrm-dev systemd; do have_pkg "$p" || pkgs+=("$p"); done
fi
# GStreamer with appsrc/appsink/videoconvert (plugins-base), v4l2src (plugins-good, for the VM's
# vivid test), the typelibs and Debian's PyGObject with the Gst overrides.
gst_pkgs=(python3-gi python3-gst-1.0 gir1.2-gstreamer-1.0 gir1.2-gst-plugins-base-1.0
  gstreamer1.0-plugins-base gstreamer1.0-plugins-good)
if [ $gst = 1 ]; then
  for p in "${gst_pkgs[@]}"; do have_pkg "$p" || pkgs+=("$p"); done
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

if [ $gst = 1 ]; then
  # Debian's gi (PyGObject with python3-gst-1.0's Gst overrides) is built for Debian's python3.
  # A venv made from another Python of the same version (pyenv's 3.11.x, say) loads it: link just
  # that package into the venv, so no other Debian package leaks in. Another version cannot.
  gst_check='import gi
for ns in ("Gst", "GstApp", "GstVideo", "GstAllocators"):
    gi.require_version(ns, "1.0")
from gi.repository import Gst, GstAllocators, GstApp, GstVideo'
  if ! .venv/bin/python -c "$gst_check" >/dev/null 2>&1; then
    site=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    venv_abi=$(.venv/bin/python -c 'import sys; print(sys.implementation.cache_tag)')
    system_abi=$(/usr/bin/python3 -c 'import sys; print(sys.implementation.cache_tag)')
    if [ "$venv_abi" != "$system_abi" ]; then
      echo "setup: .venv's Python ($venv_abi) cannot load Debian's gi (built for $system_abi):" \
        "remake .venv from /usr/bin/python3 (rm -r .venv; /usr/bin/python3 -m venv .venv)" >&2
      exit 1
    fi
    ln -sfn /usr/lib/python3/dist-packages/gi "$site/gi"
  fi
  .venv/bin/python -c "$gst_check" || { echo "setup: .venv cannot import GStreamer" >&2; exit 1; }
fi

if [ $dev = 1 ]; then
  tests/vm/setup.sh >/dev/null
fi
