#!/usr/bin/env bash
# Install everything and run every test: lint, types, host tests, then the kernel tests inside the
# test VM under QEMU, on both of its kernels: Debian's stock 6.12, then the project's full
# virtual-SoC kernel (docs/vm.md). Exits non-zero on any failure, including "no tests ran".
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==== %s\n' "$*"; }

step "setup"
scripts/setup.sh --dev

step "ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .

step "mypy --strict"
.venv/bin/mypy

step "host tests"
DEVALLOC_STRICT=1 .venv/bin/pytest

# Both kernels run even when the first fails; each ends with its own "kernel (KIND): N passed, ..."
# line, and the recap repeats those lines with each run's wall time (CI's budget is 90 minutes).
vm_status=0
vm_recap=()
vm_log=$(mktemp /tmp/devalloc-vm-log.XXXXXX)
trap 'rm -f "$vm_log"' EXIT
for kernel in stock full; do
  step "kernel tests in the test VM: $kernel kernel"
  started=$SECONDS
  rc=0
  tests/vm/run.sh --kernel "$kernel" --timeout "${DEVALLOC_VM_TIMEOUT:-1200}" 2>&1 | tee "$vm_log" || rc=$?
  line=$(grep -E "^kernel \($kernel\): " "$vm_log" | tail -n1 || true)
  vm_recap+=("${line:-kernel ($kernel): no summary (see above)}  [$((SECONDS - started)) s, exit $rc]")
  [ "$rc" = 0 ] || vm_status=1
done

step "kernel tests: recap"
printf '%s\n' "${vm_recap[@]}"
exit "$vm_status"
