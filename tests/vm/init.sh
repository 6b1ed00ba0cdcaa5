#!/bin/busybox sh
# /init of the test VM's initramfs: load the modules (the stock kernel's; the full kernel has none,
# everything is built in), mount the host's root (9p, read-only) and the writable output share
# (under /run), chroot into the host and run the command the host left in the output share.
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev

# Module parameters come from the kernel command line as MODULE.PARAM=VALUE (as modprobe does);
# built-in drivers read the same MODULE.PARAM=VALUE from the command line themselves.
for ko in $(cat /modules.order 2>/dev/null); do
  mod=$(echo "${ko%.ko}" | tr - _)
  params=$(tr ' ' '\n' < /proc/cmdline | grep "^$mod\\." | sed "s/^$mod\\.//")
  insmod "/lib/modules/$ko" $params || echo "init: insmod $ko failed"
done

opts=trans=virtio,version=9p2000.L,msize=262144
mount -t 9p -o "$opts,ro" host /host || { echo "init: cannot mount the host root"; poweroff -f; }
# Writable space lives under /run (a tmpfs), not /tmp: the checkout itself may be under the host's
# /tmp, which must stay visible.
mount -t tmpfs tmpfs /host/run
mkdir -p /host/run/devalloc-out /host/run/tmp
mount -t 9p -o "$opts" out /host/run/devalloc-out || { echo "init: cannot mount the output share"; poweroff -f; }
mount -t proc proc /host/proc
mount -t sysfs sysfs /host/sys
mount -t devtmpfs devtmpfs /host/dev
mkdir -p /host/dev/shm
mount -t tmpfs tmpfs /host/dev/shm
mount -t debugfs debugfs /host/sys/kernel/debug 2>/dev/null

chroot /host /bin/sh /run/devalloc-out/guest-cmd.sh
echo $? > /host/run/devalloc-out/rc
sync
poweroff -f
