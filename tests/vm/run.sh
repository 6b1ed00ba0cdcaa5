#!/usr/bin/env bash
# Boot the test VM and run a command inside it (default: the tests marked `kernel`).
#
# Usage: tests/vm/run.sh [--kernel stock|full] [--timeout SECONDS] [--append KERNEL_ARGS]
#                        [-- PYTEST_ARGS...]
#
# --kernel stock (the default) boots Debian's linux-image-6.12 with its modules in the initramfs;
# --kernel full boots the project's full virtual-SoC kernel (CMA heap, vkms, vicodec, vim2m, vimc,
# visl, ... all built in; see docs/vm.md).  The guest learns which from DEVALLOC_VM_KERNEL, and the
# summary applies that kernel's skip rule.  --append adds kernel command-line arguments; module
# parameters are written MODULE.PARAM=VALUE for both kernels (e.g. --append vivid.allocators=1).
#
# The guest chroots into this machine's root (shared read-only over 9p), so it runs this checkout
# with this checkout's virtual environment.  The pytest report comes back through a writable share;
# the exit status is pytest's.  The VM never outlives --timeout (default 900 s).  The QEMU command
# line is tests/vm/qemu.sh's (bench/run-vm.sh boots the same VM).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tests/vm/qemu.sh
source "$here/qemu.sh"
repo=$(cd "$here/../.." && pwd)
timeout_s=900
append=""
kind=stock
while [ $# -gt 0 ]; do
  case "$1" in
    --kernel) kind=${2:-}; shift 2 || { echo "run.sh: --kernel needs stock or full" >&2; exit 2; } ;;
    --timeout) timeout_s=$2; shift 2 ;;
    --append) append="$append $2"; shift 2 ;;
    --) shift; break ;;
    *) echo "run.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
case "$kind" in
  stock | full) ;;
  *) echo "run.sh: unknown kernel '$kind': use --kernel stock or --kernel full" >&2; exit 2 ;;
esac

python=${DEVALLOC_VM_PYTHON:-$repo/.venv/bin/python}
[ -x "$python" ] || { echo "run.sh: $python not found: run scripts/test-all.sh (or create .venv) first" >&2; exit 2; }

kdir=$("$here/setup.sh" --kernel "$kind")
kver=$(cat "$kdir/version")
out=$(mktemp -d /tmp/devalloc-vm.XXXXXX)
trap 'rm -rf "$out"' EXIT

pytest_args=("$@")
[ ${#pytest_args[@]} -gt 0 ] || pytest_args=(-m kernel tests)
{
  vm_guest_prologue "$repo" "$kind"
  printf 'exec %q -m pytest -p no:cacheprovider --color=no --junitxml=/run/devalloc-out/report.xml' "$python"
  for a in "${pytest_args[@]}"; do printf ' %q' "$a"; done
  echo
} > "$out/guest-cmd.sh"

vm_accel
vm_boot vm "$kdir" "$out" "$timeout_s" "$append" || exit 1
rc=$(cat "$out/rc")
if [ -n "${DEVALLOC_VM_REPORT:-}" ] && [ -f "$out/report.xml" ]; then
  cp "$out/report.xml" "$DEVALLOC_VM_REPORT"
fi
if [ -f "$out/report.xml" ]; then
  "$python" "$here/summary.py" --kernel "$kind" "$out/report.xml" "$kver" || rc=${rc/#0/1}
fi
exit "$rc"
