#!/usr/bin/env bash
# Run the heap benchmark (bench/heaps.py) inside the test VM, against the C baseline in the same
# boot, and keep the result as bench/results/heaps-KERNEL.json; with --script service, the service
# benchmark (bench/service.py: brokered allocate+close against the in-process Allocator and the
# same C loop) into bench/results/service-KERNEL.json.
#
# Usage: bench/run-vm.sh [--kernel stock|full] [--icount] [--script heaps|service]
#                        [--timeout SECONDS] [--append KERNEL_ARGS] [-- BENCH_ARGS...]
#
#   bash bench/run-vm.sh                       # Debian's stock 6.12: system heap, udmabuf
#   bash bench/run-vm.sh --kernel full         # the project's full kernel (adds the CMA heap)
#   bash bench/run-vm.sh -- --rounds 1         # a shorter run
#   bash bench/run-vm.sh --icount              # instruction counts instead of time (see below)
#   bash bench/run-vm.sh --icount --script service   # the service bench: service-stock-icount.json
#
# The VM is the one tests/vm/ prepares and boots (tests/vm/setup.sh prints its kernel directory;
# tests/vm/qemu.sh holds the QEMU command line): QEMU (TCG), the host's root shared read-only over
# 9p, a writable share for the results.  heapbench.c
# is built here with gcc -O2 -static into that share, so the guest runs the same binary.  The
# markdown summary is printed at the end; the exit status is the bench's.
#
# --icount runs QEMU with -icount shift=0,sleep=off: the guest's clock advances exactly one
# nanosecond per emulated instruction, so every "ns" in the results is an instruction count,
# independent of how busy the host is (the result's label gets "-icount"). It suits the
# per-call overhead comparisons (allocation, the cpu_access bracket); bandwidths measured this
# way mean nothing (a rep stosb is one "instruction" per iteration, memory costs nothing).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
# shellcheck source=tests/vm/qemu.sh
source "$repo/tests/vm/qemu.sh"
kind=stock
icount=0
script=heaps
timeout_s=600
append=""
while [ $# -gt 0 ]; do
  case "$1" in
    --kernel) kind=${2:-}; shift 2 || { echo "run-vm.sh: --kernel needs stock or full" >&2; exit 2; } ;;
    --icount) icount=1; shift ;;
    --script) script=${2:-}; shift 2 || { echo "run-vm.sh: --script needs heaps or service" >&2; exit 2; } ;;
    --timeout) timeout_s=$2; shift 2 ;;
    --append) append="$append $2"; shift 2 ;;
    --) shift; break ;;
    *) echo "run-vm.sh: unknown argument $1 (see the usage at the top of $0)" >&2; exit 2 ;;
  esac
done
case "$kind" in
  stock | full) ;;
  *) echo "run-vm.sh: unknown kernel '$kind': use --kernel stock or --kernel full" >&2; exit 2 ;;
esac
case "$script" in
  heaps | service) ;;
  *) echo "run-vm.sh: unknown script '$script': use --script heaps or --script service" >&2; exit 2 ;;
esac

python=${DEVALLOC_VM_PYTHON:-$repo/.venv/bin/python}
[ -x "$python" ] || { echo "run-vm.sh: $python not found: create .venv first (scripts/setup.sh)" >&2; exit 2; }
command -v gcc >/dev/null || { echo "run-vm.sh: gcc is needed (apt-get install gcc libc6-dev)" >&2; exit 2; }

# tests/vm/setup.sh prepares (and caches) the kernel and initramfs.
kdir=$("$repo/tests/vm/setup.sh" --kernel "$kind")
label=$kind
vm_accel
bench_defaults=()
if [ "$icount" = 1 ]; then
  # One CPU, so every instruction counted is on the measured path or interrupts it. Counts do not
  # depend on the host's load: one round of a few short batches is enough.
  label=$kind-icount
  vm_accel --icount
  if [ "$script" = heaps ]; then
    bench_defaults=(--rounds 1 --batches 5 --batch-ms 2 --budget-ms 300 --no-bandwidth)
  fi
fi

out=$(mktemp -d /tmp/devalloc-bench.XXXXXX)
trap 'rm -rf "$out"' EXIT
gcc -O2 -static -Wall -Wextra -o "$out/heapbench" "$here/heapbench.c"

host_cpu=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
vm_desc="$(vm_describe), on $(nproc) host CPUs"
rev=$(git -C "$repo" describe --always --dirty 2>/dev/null || echo unknown)
{
  vm_guest_prologue "$repo" "$kind"
  echo "export DEVALLOC_BENCH_VM=$(printf %q "$vm_desc")"
  echo "export DEVALLOC_BENCH_HOST_CPU=$(printf %q "$host_cpu")"
  echo "export DEVALLOC_BENCH_HOST_KERNEL=$(printf %q "$(uname -r)")"
  echo "export DEVALLOC_BENCH_HOST_LOAD=$(printf %q "$(cut -d' ' -f1-3 /proc/loadavg)")"
  echo "export DEVALLOC_BENCH_GIT=$(printf %q "$rev")"
  echo "export DEVALLOC_BENCH_HOST_TIME=$(date -u +%Y-%m-%dT%H:%M:%S+00:00)"
  echo "export DEVALLOC_BENCH_CLOCK=$([ "$icount" = 1 ] && echo icount || echo wall)"
  printf '%q bench/%s.py --vm --label %q --cbin /run/devalloc-out/heapbench --out /run/devalloc-out/%s.json' \
    "$python" "$script" "$label" "$script"
  for a in "${bench_defaults[@]}" "$@"; do printf ' %q' "$a"; done
  echo ' > /run/devalloc-out/summary.md'
} > "$out/guest-cmd.sh"

vm_boot bench "$kdir" "$out" "$timeout_s" "$append" || exit 1
rc=$(cat "$out/rc")
if [ -f "$out/$script.json" ]; then
  mkdir -p "$here/results"
  # Other VMs on this host slow the guest down: keep the host's load at the end next to the start.
  "$python" - "$out/$script.json" "$here/results/$script-$label.json.tmp" "$(cut -d' ' -f1-3 /proc/loadavg)" <<'EOF'
import json, sys
src, dst, load = sys.argv[1:]
with open(src, encoding="utf-8") as f:
    result = json.load(f)
result["machine"]["host_load_end"] = load
with open(dst, "w", encoding="utf-8") as f:
    json.dump(result, f, indent=1)
    f.write("\n")
EOF
  mv "$here/results/$script-$label.json.tmp" "$here/results/$script-$label.json"
  echo "bench: results in bench/results/$script-$label.json"
fi
[ ! -f "$out/summary.md" ] || cat "$out/summary.md"
exit "$rc"
