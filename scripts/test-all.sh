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

# Every pass runs even when an earlier one fails; each ends with its own "kernel (KIND): N passed,
# ..." line, and the recap repeats those lines with each pass's wall time (CI's budget is 90
# minutes). The first two passes run the whole kernel suite on each kernel; the others boot with
# driver options that change how a device behaves (vivid on vb2-dma-contig, vkms overlay planes)
# and run the tests that need them (they skip with "boot option: ..." in the default passes).
contig_tests="tests/kernel/test_verify.py tests/kernel/test_allocator_live.py tests/kernel/test_accounting.py tests/kernel/test_v4l2_stream.py"
passes=(
  "stock||"
  "full||"
  "stock|vivid.allocators=1|$contig_tests"
  "full|vivid.allocators=1 vkms.enable_overlay=1|$contig_tests tests/kernel/test_kms.py"
)
vm_status=0
vm_recap=()
vm_log=$(mktemp /tmp/devalloc-vm-log.XXXXXX)
trap 'rm -f "$vm_log"' EXIT
for spec in "${passes[@]}"; do
  IFS='|' read -r kernel options tests <<<"$spec"
  args=(--kernel "$kernel" --timeout "${DEVALLOC_VM_TIMEOUT:-1200}")
  [ -z "$options" ] || args+=(--append "$options")
  # shellcheck disable=SC2206  # the test list is space-separated paths without spaces
  [ -z "$tests" ] || args+=(-- -m kernel $tests)
  step "kernel tests in the test VM: $kernel kernel${options:+ with $options}"
  started=$SECONDS
  rc=0
  tests/vm/run.sh "${args[@]}" 2>&1 | tee "$vm_log" || rc=$?
  line=$(grep -E "^kernel \($kernel\): " "$vm_log" | tail -n1 || true)
  vm_recap+=("${line:-kernel ($kernel): no summary (see above)}${options:+ [$options]}  [$((SECONDS - started)) s, exit $rc]")
  [ "$rc" = 0 ] || vm_status=1
done

step "CMA sizing proof: tests/vm/prove-sizing.sh (full kernel)"; started=$SECONDS; rc=0; tests/vm/prove-sizing.sh || rc=$?; vm_recap+=("prove-sizing (full): exit $rc  [$((SECONDS - started)) s]"); [ "$rc" = 0 ] || vm_status=1
step "kernel tests: recap"
printf '%s\n' "${vm_recap[@]}"
exit "$vm_status"
