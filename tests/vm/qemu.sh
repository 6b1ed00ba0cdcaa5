# shellcheck shell=bash
# The test VM's QEMU command line and the start of its guest command, in one place: sourced by
# tests/vm/run.sh (pytest in the VM) and bench/run-vm.sh (the heap benchmark in the VM).
#
#   source tests/vm/qemu.sh
#   vm_accel [--icount]                          # sets VM_ACCEL
#   vm_guest_prologue REPO KIND > OUT/guest-cmd.sh
#   echo "exec ..." >> OUT/guest-cmd.sh          # the command the guest runs
#   vm_boot TAG KDIR OUT TIMEOUT APPEND || exit 1
#   rc=$(cat OUT/rc)                             # the guest command's exit status
#
# The guest (tests/vm/init.sh, the initramfs's /init) mounts this machine's root read-only over
# 9p (tag host) and OUT writable (tag out, at /run/devalloc-out), chroots into the root and runs
# /run/devalloc-out/guest-cmd.sh; it writes that command's exit status to OUT/rc and powers off.

VM_CPU=max
VM_MEMORY=2048
VM_ACCEL=(-accel tcg -smp 2)

# VM_ACCEL: TCG on two vCPUs; with --icount one vCPU whose clock advances one nanosecond per
# emulated instruction (-icount shift=0,sleep=off), so guest times are instruction counts.
vm_accel() {
  case "${1:-}" in
    "") VM_ACCEL=(-accel tcg -smp 2) ;;
    --icount) VM_ACCEL=(-accel tcg,thread=single -icount shift=0,sleep=off -smp 1) ;;
    *) echo "vm_accel: unknown mode $1 (none or --icount)" >&2; return 2 ;;
  esac
}

# The VM in words, for results: QEMU's version and the options that shape its speed.
vm_describe() {
  echo "QEMU $(qemu-system-x86_64 --version | awk 'NR==1 {print $4}') ${VM_ACCEL[*]}, -cpu $VM_CPU, -m $VM_MEMORY"
}

# The guest command's first lines: into the checkout REPO, the guest's environment (writable
# HOME and TMPDIR under /run, DEVALLOC_IN_VM, DEVALLOC_VM_KERNEL=KIND).
vm_guest_prologue() {
  local repo=$1 kind=$2
  echo "cd $(printf %q "$repo") || exit 97"
  echo "export HOME=/run/tmp TMPDIR=/run/tmp PYTHONDONTWRITEBYTECODE=1 DEVALLOC_IN_VM=1 DEVALLOC_VM_KERNEL=$kind PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"
}

# Boot the kernel that tests/vm/setup.sh prepared in KDIR, with OUT as the writable share (it
# holds guest-cmd.sh), killed after TIMEOUT seconds; APPEND is added to the kernel command line
# (" arg ..."). The console goes to stdout and OUT/console.log; messages start with "TAG: ".
# Returns 0 when the guest reported its command's exit status in OUT/rc, 1 (saying why) when not.
vm_boot() {
  local tag=$1 kdir=$2 out=$3 timeout_s=$4 append=$5
  local kind kver started qemu_rc
  kind=$(cat "$kdir/kind")
  kver=$(cat "$kdir/version")
  echo "$tag: booting the $kind kernel, Linux $kver, under QEMU (${VM_ACCEL[*]}), timeout ${timeout_s}s"
  started=$SECONDS
  if timeout --kill-after=10 "$timeout_s" qemu-system-x86_64 \
    -machine q35 "${VM_ACCEL[@]}" -cpu "$VM_CPU" -m "$VM_MEMORY" \
    -display none -monitor none -serial stdio -no-reboot -nic none \
    -kernel "$kdir/vmlinuz" -initrd "$kdir/initramfs.gz" \
    -append "console=ttyS0 quiet loglevel=3 panic=-1$append" \
    -virtfs local,path=/,mount_tag=host,security_model=none,readonly=on,multidevs=remap \
    -virtfs "local,path=$out,mount_tag=out,security_model=none" \
    </dev/null 2>&1 | tee "$out/console.log"; then
    qemu_rc=0
  else
    qemu_rc=${PIPESTATUS[0]}
  fi
  echo "$tag: $kind kernel: the VM ran $((SECONDS - started)) s"
  [ ! -f "$out/rc" ] || return 0
  if [ "$qemu_rc" = 124 ] || [ "$qemu_rc" = 137 ]; then
    echo "$tag: FAILED: the guest did not finish within ${timeout_s}s (qemu killed)" >&2
  else
    echo "$tag: FAILED: the guest stopped without reporting a result (qemu exit $qemu_rc); see the console above" >&2
  fi
  return 1
}
