#!/usr/bin/env bash
# Prepare the real-kernel test VM: Debian's stock 6.12 kernel plus a busybox initramfs that holds
# the modules the kernel tests need (vivid, vgem, 9p).  Idempotent: everything is cached under
# $DEVALLOC_VM_CACHE (default ~/.cache/devalloc/vm) and rebuilt only when missing.
#
# Usage: tests/vm/setup.sh            prints the cache directory of the prepared kernel on stdout
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
cache=${DEVALLOC_VM_CACHE:-$HOME/.cache/devalloc/vm}
meta_pkg=${DEVALLOC_VM_KERNEL_PKG:-linux-image-6.12-amd64}
modules=(vivid vgem 9p 9pnet_virtio)

log() { printf 'vm-setup: %s\n' "$*" >&2; }

need_pkgs=()
for pkg in qemu-system-x86 busybox-static kmod cpio xz-utils; do
  [ "$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null)" = 'install ok installed' ] || need_pkgs+=("$pkg")
done
if [ ${#need_pkgs[@]} -gt 0 ]; then
  log "installing ${need_pkgs[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >&2
fi

# Resolve the meta package to the versioned image package (signed or -unsigned: both are the same
# kernel for QEMU's purpose).
image_pkg=$(apt-cache depends "$meta_pkg" 2>/dev/null | awk '/Depends: linux-image-/ {print $2; exit}')
if [ -z "$image_pkg" ]; then
  apt-get update -qq >&2
  image_pkg=$(apt-cache depends "$meta_pkg" | awk '/Depends: linux-image-/ {print $2; exit}')
fi
[ -n "$image_pkg" ] || { log "cannot resolve $meta_pkg to a kernel image package"; exit 1; }
kver=${image_pkg#linux-image-}
kver=${kver%-unsigned}
stamp=$(cat "$here/init.sh" "$here/setup.sh" | sha256sum | cut -c1-10)
dir=$cache/$kver-$stamp
if [ -f "$dir/ready" ]; then
  echo "$dir"
  exit 0
fi

log "preparing kernel $kver from $image_pkg in $dir"
rm -rf "$dir"
mkdir -p "$dir/dl" "$dir/root" "$dir/initramfs"
(cd "$dir/dl" && apt-get download "$image_pkg" >&2 2>/dev/null) || {
  apt-get update -qq >&2
  (cd "$dir/dl" && apt-get download "$image_pkg" >&2)
}
dpkg-deb -x "$dir"/dl/*.deb "$dir/root"
cp "$dir/root/boot/vmlinuz-$kver" "$dir/vmlinuz"
cp "$dir/root/boot/config-$kver" "$dir/config"
depmod -b "$dir/root" "$kver"

# Module load order, dependencies first, each module once.
order=()
for m in "${modules[@]}"; do
  while read -r verb path _; do
    [ "$verb" = insmod ] || continue
    seen=0
    for o in "${order[@]}"; do [ "$o" = "$path" ] && seen=1; done
    [ $seen = 1 ] || order+=("$path")
  done < <(modprobe -d "$dir/root" -S "$kver" --show-depends "$m")
done

ir=$dir/initramfs
mkdir -p "$ir"/{bin,dev,proc,sys,host,lib/modules,tmp}
cp /bin/busybox "$ir/bin/busybox"
: > "$ir/modules.order"
for path in "${order[@]}"; do
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
rm -rf "$dir/dl" "$dir/root"
echo "$kver" > "$dir/version"
touch "$dir/ready"
log "kernel $kver ready: $(wc -l < "$ir/modules.order") modules in the initramfs"
echo "$dir"
