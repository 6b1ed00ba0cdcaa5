#!/usr/bin/env bash
# Prepare the real-kernel test VM for one of its two kernels, plus a busybox initramfs:
#
#   stock  Debian's linux-image-6.12-amd64; the initramfs holds the modules the kernel tests need
#          (vivid, vgem, 9p and their dependencies, decompressed).
#   full   the project's "virtual SoC" kernel, everything built in (CMA heap, vkms, vicodec, vim2m,
#          vimc, visl, ...; see docs/vm.md): no modules, the initramfs is busybox and init.sh only.
#          The kernel is $DEVALLOC_FULL_KERNEL_DIR/bzImage (default: the first of
#          <checkout>/../shared/kernel and /work/shared/kernel that has one), checked against the
#          SHA256SUMS next to it on every call; when there is none it is built with build-kernel.sh.
#
# Idempotent: everything is cached under $DEVALLOC_VM_CACHE (default ~/.cache/devalloc/vm), keyed
# by the kernel (version; for full also its checksum) and a hash of the VM scripts.
#
# Safe to run concurrently (a bench run and a test run started together): a prepared directory is
# complete or absent, never half-made. Preparing takes an exclusive lock on $CACHE/.lock (flock;
# the others wait for it, then find the directory ready), builds in a temporary directory in the
# cache and renames it into place once complete. The fast path (already prepared) takes no lock.
#
# Usage: tests/vm/setup.sh [--kernel stock|full]
#        prints the cache directory of the prepared kernel on stdout (vmlinuz, initramfs.gz,
#        version, kind)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
cache=${DEVALLOC_VM_CACHE:-$HOME/.cache/devalloc/vm}
meta_pkg=${DEVALLOC_VM_KERNEL_PKG:-linux-image-6.12-amd64}
modules=(vivid vgem 9p 9pnet_virtio)
kind=stock

log() { printf 'vm-setup: %s\n' "$*" >&2; }
die() { printf 'vm-setup: FAILED: %s\n' "$*" >&2; exit 1; }

# Hold the cache's lock until this script exits (idempotent). Everything that changes the cache,
# or runs apt, runs with it held.
locked=0
lock_cache() {
  [ "$locked" = 0 ] || return 0
  mkdir -p "$cache"
  exec 9>>"$cache/.lock"
  if ! flock -n 9; then
    log "waiting for $cache/.lock (another setup.sh holds it)"
    flock 9
  fi
  locked=1
}

# Set $staging to a new temporary directory in the cache to build DIR in (lock held); it is
# removed when this script exits unless publish renamed it into place. Only a lock holder stages,
# so any other staging directory was left by a setup.sh that was killed: it goes.
staging=""
trap '[ -z "$staging" ] || rm -rf "$staging"' EXIT
stage() {
  rm -rf "$cache"/.staging-*
  staging=$(mktemp -d "$cache/.staging-$(basename "$1").XXXXXX")
  chmod 0755 "$staging"
}
# Rename the complete staging directory to DIR (replacing a stale, unfinished one).
publish() {
  local dir=$1
  touch "$staging/ready"
  rm -rf "$dir"
  mv -T "$staging" "$dir"
  staging=""
}

while [ $# -gt 0 ]; do
  case "$1" in
    --kernel) kind=${2:-}; shift 2 || { echo "vm-setup: --kernel needs stock or full" >&2; exit 2; } ;;
    *) echo "vm-setup: unknown argument $1 (usage: setup.sh [--kernel stock|full])" >&2; exit 2 ;;
  esac
done
case "$kind" in
  stock | full) ;;
  *) echo "vm-setup: unknown kernel '$kind': use --kernel stock or --kernel full" >&2; exit 2 ;;
esac

need_pkgs=()
for pkg in qemu-system-x86 busybox-static kmod cpio xz-utils; do
  [ "$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null)" = 'install ok installed' ] || need_pkgs+=("$pkg")
done
if [ ${#need_pkgs[@]} -gt 0 ]; then
  lock_cache
  log "installing ${need_pkgs[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >&2
fi

stamp=$(cat "$here/init.sh" "$here/setup.sh" | sha256sum | cut -c1-10)

# The initramfs: busybox, init.sh as /init, and the modules listed (in load order) in $2, if any.
make_initramfs() {
  local dir=$1 ir=$1/initramfs
  shift
  rm -rf "$ir"
  mkdir -p "$ir"/{bin,dev,proc,sys,host,lib/modules,tmp}
  cp /bin/busybox "$ir/bin/busybox"
  : > "$ir/modules.order"
  local path name
  for path in "$@"; do
    name=$(basename "$path")
    name=${name%.xz}
    case "$path" in
      *.xz) xz -dc "$path" > "$ir/lib/modules/$name" ;;
      *) cp "$path" "$ir/lib/modules/$name" ;;
    esac
    echo "$name" >> "$ir/modules.order"
  done
  install -m 0755 "$here/init.sh" "$ir/init"
  (cd "$ir" && find . | cpio -o -H newc --quiet | gzip -1) > "$dir/initramfs.gz"
}

# The version string a bzImage carries (setup header field kernel_version, at 0x20E: an offset
# from 0x200 to a NUL-terminated "6.12.117 (user@host) #1 ..."); its first word.
bzimage_version() {
  local f=$1 magic off
  magic=$(dd if="$f" bs=1 skip=514 count=4 status=none)
  [ "$magic" = HdrS ] || die "$f is not a bzImage (no HdrS setup header)"
  off=$(od -An -tu2 -j526 -N2 "$f" | tr -d ' ')
  dd if="$f" bs=1 skip=$((off + 512)) count=256 status=none | tr '\0' '\n' | sed -n '1s/ .*//p'
}

# Check DIR/bzImage (and every other file listed) against DIR/SHA256SUMS; fail loudly otherwise.
verify_full_kernel() {
  local src=$1
  [ -f "$src/SHA256SUMS" ] ||
    die "$src/bzImage has no SHA256SUMS next to it: refusing an unchecked kernel"
  grep -Eq '^[0-9a-f]{64} [ *]bzImage$' "$src/SHA256SUMS" ||
    die "$src/SHA256SUMS lists no checksum for bzImage"
  if ! (cd "$src" && sha256sum --check --strict --quiet SHA256SUMS >&2); then
    die "$src does not match its SHA256SUMS (corrupt or replaced kernel): rebuild it with tests/vm/build-kernel.sh or restore it"
  fi
}

if [ "$kind" = full ]; then
  src=""
  if [ -n "${DEVALLOC_FULL_KERNEL_DIR:-}" ]; then
    [ ! -e "$DEVALLOC_FULL_KERNEL_DIR/bzImage" ] || src=$DEVALLOC_FULL_KERNEL_DIR
  else
    for d in "$repo/../shared/kernel" /work/shared/kernel; do
      if [ -e "$d/bzImage" ]; then src=$d; break; fi
    done
  fi
  if [ -z "$src" ]; then
    log "no prebuilt full kernel (${DEVALLOC_FULL_KERNEL_DIR:-$repo/../shared/kernel}/bzImage): building it with build-kernel.sh (15-20 minutes on 2 cores)"
    src=$("$here/build-kernel.sh")
  fi
  src=$(cd "$src" && pwd)
  verify_full_kernel "$src"
  sum=$(awk '$2 ~ /^\*?bzImage$/ {print $1; exit}' "$src/SHA256SUMS")
  kver=$(bzimage_version "$src/bzImage")
  [ -n "$kver" ] || die "cannot read the kernel version from $src/bzImage"
  dir=$cache/full-$kver-${sum:0:10}-$stamp
  full_ready() { [ -f "$dir/ready" ] && [ "$(sha256sum < "$dir/vmlinuz" | cut -d' ' -f1)" = "$sum" ]; }
  if full_ready; then
    echo "$dir"
    exit 0
  fi
  lock_cache
  if full_ready; then # another setup.sh prepared it while this one waited
    echo "$dir"
    exit 0
  fi
  log "preparing the full kernel $kver from $src in $dir"
  stage "$dir"
  tmp=$staging
  cp "$src/bzImage" "$tmp/vmlinuz"
  [ "$(sha256sum < "$tmp/vmlinuz" | cut -d' ' -f1)" = "$sum" ] ||
    die "$src/bzImage changed while it was copied: run again"
  [ ! -f "$src/config" ] || cp "$src/config" "$tmp/config"
  make_initramfs "$tmp"
  echo "$kver" > "$tmp/version"
  echo full > "$tmp/kind"
  echo "$src" > "$tmp/source"
  publish "$dir"
  log "full kernel $kver ready (no modules: everything is built in)"
  echo "$dir"
  exit 0
fi

# Resolve the meta package to the versioned image package (signed or -unsigned: both are the same
# kernel for QEMU's purpose).
image_pkg=$(apt-cache depends "$meta_pkg" 2>/dev/null | awk '/Depends: linux-image-/ {print $2; exit}')
if [ -z "$image_pkg" ]; then
  lock_cache
  apt-get update -qq >&2
  image_pkg=$(apt-cache depends "$meta_pkg" | awk '/Depends: linux-image-/ {print $2; exit}')
fi
[ -n "$image_pkg" ] || die "cannot resolve $meta_pkg to a kernel image package"
kver=${image_pkg#linux-image-}
kver=${kver%-unsigned}
dir=$cache/$kver-$stamp
if [ -f "$dir/ready" ]; then
  echo "$dir"
  exit 0
fi

lock_cache
if [ -f "$dir/ready" ]; then # another setup.sh prepared it while this one waited
  echo "$dir"
  exit 0
fi
log "preparing kernel $kver from $image_pkg in $dir"
stage "$dir"
tmp=$staging
mkdir -p "$tmp/dl" "$tmp/root"
(cd "$tmp/dl" && apt-get download "$image_pkg" >&2 2>/dev/null) || {
  apt-get update -qq >&2
  (cd "$tmp/dl" && apt-get download "$image_pkg" >&2)
}
dpkg-deb -x "$tmp"/dl/*.deb "$tmp/root"
cp "$tmp/root/boot/vmlinuz-$kver" "$tmp/vmlinuz"
cp "$tmp/root/boot/config-$kver" "$tmp/config"
depmod -b "$tmp/root" "$kver"

# Module load order, dependencies first, each module once.
order=()
for m in "${modules[@]}"; do
  while read -r verb path _; do
    [ "$verb" = insmod ] || continue
    seen=0
    for o in "${order[@]}"; do [ "$o" = "$path" ] && seen=1; done
    [ $seen = 1 ] || order+=("$path")
  done < <(modprobe -d "$tmp/root" -S "$kver" --show-depends "$m")
done

make_initramfs "$tmp" "${order[@]}"
nmod=$(wc -l < "$tmp/initramfs/modules.order")
rm -rf "$tmp/dl" "$tmp/root"
echo "$kver" > "$tmp/version"
echo stock > "$tmp/kind"
publish "$dir"
log "kernel $kver ready: $nmod modules in the initramfs"
echo "$dir"
