#!/usr/bin/env bash
# Build the test VM's full kernel (the "virtual SoC": CMA heap, vkms, vicodec, vim2m, vimc, visl,
# ... all built in, no modules) from Debian's linux-source-6.12 package: x86_64_defconfig +
# kvm_guest.config + tests/vm/full-kernel.config, olddefconfig, then `make bzImage`.  About 15-20
# minutes on 2 cores.  Installs its build dependencies when missing (as root).
#
# Usage: tests/vm/build-kernel.sh [--prepare-only]
#
#   Prints the directory holding bzImage, config and SHA256SUMS on stdout:
#   $DEVALLOC_KERNEL_CACHE/<hash> (default ~/.cache/devalloc/kernel/<hash>), where the hash covers
#   the source package's version, the fragment and this script; a finished build is reused.
#   Runs at the same time are safe: building holds an flock on $DEVALLOC_KERNEL_CACHE/.lock, so a
#   second run waits, then reuses what the first built.
#
#   --prepare-only  stop before compiling: download, unpack and configure the tree, check that the
#                   .config has every option of the fragment, and print the configured tree's
#                   directory (kept for inspection; the next run replaces it).
#
# Environment: DEVALLOC_KERNEL_SOURCE_VERSION pins the linux-source-6.12 version (default: apt's
# candidate); DEVALLOC_KERNEL_JOBS sets make -j (default: nproc).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
fragment=$here/full-kernel.config
cache=${DEVALLOC_KERNEL_CACHE:-$HOME/.cache/devalloc/kernel}
src_pkg=linux-source-6.12
jobs=${DEVALLOC_KERNEL_JOBS:-$(nproc)}
prepare_only=0

log() { printf 'build-kernel: %s\n' "$*" >&2; }
die() { printf 'build-kernel: FAILED: %s\n' "$*" >&2; exit 1; }

while [ $# -gt 0 ]; do
  case "$1" in
    --prepare-only) prepare_only=1; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' ; exit 0 ;;
    *) echo "build-kernel: unknown argument $1 (usage: build-kernel.sh [--prepare-only])" >&2; exit 2 ;;
  esac
done
[ -f "$fragment" ] || die "the config fragment $fragment is missing"

# Build dependencies (guarded: only what is missing, and only as root).
need_pkgs=()
for pkg in make gcc libc6-dev bc bison flex libelf-dev libssl-dev dwarves perl cpio xz-utils; do
  [ "$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null)" = 'install ok installed' ] || need_pkgs+=("$pkg")
done
if [ ${#need_pkgs[@]} -gt 0 ]; then
  [ "$(id -u)" = 0 ] || die "need the Debian packages ${need_pkgs[*]}: run as root or install them"
  log "installing ${need_pkgs[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
fi

candidate() { apt-cache show --no-all-versions "$src_pkg" 2>/dev/null | awk '/^Version:/ {print $2; exit}'; }
version=${DEVALLOC_KERNEL_SOURCE_VERSION:-$(candidate)}
if [ -z "$version" ]; then
  apt-get update -qq >&2
  version=$(candidate)
fi
[ -n "$version" ] || die "apt knows no $src_pkg package (is Debian 12's security/updates suite configured?)"

key=$({ echo "$src_pkg=$version"; cat "$fragment" "$0"; } | sha256sum | cut -c1-12)
dir=$cache/$key
reuse_if_ready() {
  if [ $prepare_only = 0 ] && [ -f "$dir/ready" ]; then
    log "reusing the kernel built from $src_pkg $version in $dir"
    echo "$dir"
    exit 0
  fi
}
reuse_if_ready

# One build at a time in this cache (held until this script exits); a build another run finished
# while this one waited is reused.
mkdir -p "$cache"
exec 9>>"$cache/.lock"
if ! flock -n 9; then
  log "waiting for $cache/.lock (another build-kernel.sh holds it)"
  flock 9
fi
reuse_if_ready

log "$src_pkg $version -> $dir"
work=$dir/build
rm -rf "$work"
mkdir -p "$work/dl"
(cd "$work/dl" && apt-get download "$src_pkg=$version" >&2 2>/dev/null) || {
  apt-get update -qq >&2
  (cd "$work/dl" && apt-get download "$src_pkg=$version" >&2)
}
deb=$(ls "$work"/dl/*.deb)
tarball=$(dpkg-deb -c "$deb" | awk '{print $NF}' | grep -E '^\./usr/src/linux-source-[^/]*\.tar\.xz$') ||
  die "$deb holds no usr/src/linux-source-*.tar.xz"
log "unpacking $tarball"
dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$work/dl" "$tarball"
tar -C "$work" -xf "$work/dl/$tarball"
rm -rf "$work/dl"
tree=$(find "$work" -mindepth 1 -maxdepth 1 -type d -name 'linux-source-*')
[ -n "$tree" ] && [ -f "$tree/Makefile" ] || die "no kernel tree in $work after unpacking"

cd "$tree"
log "configuring: x86_64_defconfig + kvm_guest.config + $(basename "$fragment")"
make -s x86_64_defconfig >&2
make -s kvm_guest.config >&2
# -m: merge only (no make); olddefconfig below resolves the rest.
KCONFIG_CONFIG=.config scripts/kconfig/merge_config.sh -m .config "$fragment" >&2
make -s olddefconfig >&2

# Every option of the fragment must have survived olddefconfig (an unmet dependency drops one
# silently): compare line by line, "is not set" also matching an absent option.
missing=()
while IFS= read -r line; do
  case "$line" in
    CONFIG_*=*) grep -qxF -- "$line" .config || missing+=("$line (.config: $(grep -E "^(# )?${line%%=*}[= ]" .config || echo absent))") ;;
    "# CONFIG_"*" is not set")
      opt=${line#\# }
      opt=${opt%% *}
      ! grep -qE "^$opt=" .config || missing+=("$line (.config: $(grep -E "^$opt=" .config))") ;;
  esac
done < "$fragment"
if [ ${#missing[@]} -gt 0 ]; then
  printf 'build-kernel: not in the configured .config: %s\n' "${missing[@]}" >&2
  die "${#missing[@]} option(s) of $fragment did not survive olddefconfig (unmet dependencies?)"
fi
log ".config has every option of $(basename "$fragment") ($(grep -cE '^(CONFIG_|# CONFIG_)' "$fragment") lines)"

if [ $prepare_only = 1 ]; then
  log "--prepare-only: configured, not compiled: $tree"
  echo "$tree"
  exit 0
fi

log "compiling bzImage with make -j$jobs (15-20 minutes on 2 cores)"
make -s -j"$jobs" bzImage >&2
cp arch/x86/boot/bzImage "$dir/bzImage"
cp .config "$dir/config"
echo "$src_pkg $version" > "$dir/source"
(cd "$dir" && sha256sum bzImage config > SHA256SUMS)
cd "$dir"
rm -rf "$work"
touch "$dir/ready"
log "built $dir/bzImage"
echo "$dir"
