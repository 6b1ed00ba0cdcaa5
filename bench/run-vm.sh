#!/usr/bin/env bash
# Run the heap benchmark (bench/heaps.py) inside the test VM, against the C baseline in the same
# boot, and keep the result as bench/results/heaps-KERNEL.json.
#
# Usage: bench/run-vm.sh [--kernel stock|full] [--icount] [--timeout SECONDS]
#                        [--append KERNEL_ARGS] [-- HEAPS_PY_ARGS...]
#
#   bash bench/run-vm.sh                       # Debian's stock 6.12: system heap, udmabuf
#   bash bench/run-vm.sh --kernel full         # the project's full kernel (adds the CMA heap)
#   bash bench/run-vm.sh -- --rounds 1         # a shorter run
#   bash bench/run-vm.sh --icount              # instruction counts instead of time (see below)
#
# The VM is the one tests/vm/ prepares (tests/vm/setup.sh prints its kernel directory): QEMU
# (TCG), the host's root shared read-only over 9p, a writable share for the results.  heapbench.c
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
kind=stock
icount=0
timeout_s=600
append=""
while [ $# -gt 0 ]; do
  case "$1" in
    --kernel) kind=${2:-}; shift 2 || { echo "run-vm.sh: --kernel needs stock or full" >&2; exit 2; } ;;
    --icount) icount=1; shift ;;
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

python=${DEVALLOC_VM_PYTHON:-$repo/.venv/bin/python}
[ -x "$python" ] || { echo "run-vm.sh: $python not found: create .venv first (scripts/setup.sh)" >&2; exit 2; }
command -v gcc >/dev/null || { echo "run-vm.sh: gcc is needed (apt-get install gcc libc6-dev)" >&2; exit 2; }

# tests/vm/setup.sh prepares (and caches) the kernel and initramfs; older versions know only the
# stock kernel and take no argument.
if grep -q -- '--kernel' "$repo/tests/vm/setup.sh"; then
  kdir=$("$repo/tests/vm/setup.sh" --kernel "$kind")
elif [ "$kind" = stock ]; then
  kdir=$("$repo/tests/vm/setup.sh")
else
  echo "run-vm.sh: this tests/vm/setup.sh cannot prepare the $kind kernel" >&2
  exit 2
fi
kver=$(cat "$kdir/version")
label=$kind
accel=(-accel tcg -smp 2)
bench_defaults=()
if [ "$icount" = 1 ]; then
  # One CPU, so every instruction counted is on the measured path or interrupts it. Counts do not
  # depend on the host's load: one round of a few short batches is enough.
  label=$kind-icount
  accel=(-accel tcg,thread=single -icount shift=0,sleep=off -smp 1)
  bench_defaults=(--rounds 1 --batches 5 --batch-ms 2 --budget-ms 300 --no-bandwidth)
fi

out=$(mktemp -d /tmp/devalloc-bench.XXXXXX)
trap 'rm -rf "$out"' EXIT
gcc -O2 -static -Wall -Wextra -o "$out/heapbench" "$here/heapbench.c"

host_cpu=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
vm_desc="QEMU $(qemu-system-x86_64 --version | awk 'NR==1 {print $4}') ${accel[*]}, -cpu max, -m 2048, on $(nproc) host CPUs"
rev=$(git -C "$repo" describe --always --dirty 2>/dev/null || echo unknown)
{
  echo "cd $(printf %q "$repo") || exit 97"
  echo "export HOME=/run/tmp TMPDIR=/run/tmp PYTHONDONTWRITEBYTECODE=1 DEVALLOC_IN_VM=1 DEVALLOC_VM_KERNEL=$kind PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"
  echo "export DEVALLOC_BENCH_VM=$(printf %q "$vm_desc")"
  echo "export DEVALLOC_BENCH_HOST_CPU=$(printf %q "$host_cpu")"
  echo "export DEVALLOC_BENCH_HOST_KERNEL=$(printf %q "$(uname -r)")"
  echo "export DEVALLOC_BENCH_HOST_LOAD=$(printf %q "$(cut -d' ' -f1-3 /proc/loadavg)")"
  echo "export DEVALLOC_BENCH_GIT=$(printf %q "$rev")"
  echo "export DEVALLOC_BENCH_HOST_TIME=$(date -u +%Y-%m-%dT%H:%M:%S+00:00)"
  echo "export DEVALLOC_BENCH_CLOCK=$([ "$icount" = 1 ] && echo icount || echo wall)"
  printf '%q bench/heaps.py --vm --label %q --cbin /run/devalloc-out/heapbench --out /run/devalloc-out/heaps.json' \
    "$python" "$label"
  for a in "${bench_defaults[@]}" "$@"; do printf ' %q' "$a"; done
  echo ' > /run/devalloc-out/summary.md'
} > "$out/guest-cmd.sh"

echo "bench: booting the $kind kernel, Linux $kver, under QEMU (${accel[*]}), timeout ${timeout_s}s"
started=$SECONDS
set +e
timeout --kill-after=10 "$timeout_s" qemu-system-x86_64 \
  -machine q35 "${accel[@]}" -cpu max -m 2048 \
  -display none -monitor none -serial stdio -no-reboot -nic none \
  -kernel "$kdir/vmlinuz" -initrd "$kdir/initramfs.gz" \
  -append "console=ttyS0 quiet loglevel=3 panic=-1$append" \
  -virtfs local,path=/,mount_tag=host,security_model=none,readonly=on,multidevs=remap \
  -virtfs "local,path=$out,mount_tag=out,security_model=none" \
  </dev/null 2>&1 | tee "$out/console.log"
qemu_rc=${PIPESTATUS[0]}
set -e
echo "bench: the VM ran $((SECONDS - started)) s"

if [ ! -f "$out/rc" ]; then
  if [ "$qemu_rc" = 124 ] || [ "$qemu_rc" = 137 ]; then
    echo "bench: FAILED: the guest did not finish within ${timeout_s}s (qemu killed)" >&2
  else
    echo "bench: FAILED: the guest stopped without a result (qemu exit $qemu_rc); see the console above" >&2
  fi
  exit 1
fi
rc=$(cat "$out/rc")
if [ -f "$out/heaps.json" ]; then
  mkdir -p "$here/results"
  # Other VMs on this host slow the guest down: keep the host's load at the end next to the start.
  "$python" - "$out/heaps.json" "$here/results/heaps-$label.json.tmp" "$(cut -d' ' -f1-3 /proc/loadavg)" <<'EOF'
import json, sys
src, dst, load = sys.argv[1:]
with open(src, encoding="utf-8") as f:
    result = json.load(f)
result["machine"]["host_load_end"] = load
with open(dst, "w", encoding="utf-8") as f:
    json.dump(result, f, indent=1)
    f.write("\n")
EOF
  mv "$here/results/heaps-$label.json.tmp" "$here/results/heaps-$label.json"
  echo "bench: results in bench/results/heaps-$label.json"
fi
[ ! -f "$out/summary.md" ] || cat "$out/summary.md"
exit "$rc"
