"""Capture the kernel's dma-buf accounting texts into this directory's samples (run in the test VM).

Example (from the repository root; the VM runs pytest, so a one-line test file in the host's /tmp,
which the guest sees, runs this script):

    $ printf 'import runpy\ndef test_capture() -> None:\n    runpy.run_path("%s")["capture"]()\n' \\
        "$PWD/tests/data/accounting/capture.py" > /tmp/capture_accounting_test.py
    $ bash tests/vm/run.sh --timeout 900 -- -s /tmp/capture_accounting_test.py \\
        | python3 tests/data/accounting/capture.py --unpack tests/data/accounting
    $ bash tests/vm/run.sh --timeout 900 --append "vivid.allocators=1" -- -s \\
        /tmp/capture_accounting_test.py | python3 tests/data/accounting/capture.py --unpack \\
        tests/data/accounting

Inside the VM it makes the states the samples show (files ``default_*``): named and unnamed
buffers from the system heap, udmabuf and a vgem dumb buffer, one shared with a child process, one
imported into vgem (an attachment), one mapped; then four orphans (held by vgem, queued on vivid,
in flight in a unix socket, only mapped). With vivid's instance 0 on the dma-contig allocator
(``vivid.allocators=1``, files ``dma_contig_*``) it queues a scattered 4 MiB buffer, which QBUF
refuses with EFAULT, and records bufinfo before and after the buffer's fd is closed. It records
/proc fdinfo, fd links, maps lines, sysfs statistics (absent on Debian's 6.12) and bufinfo. The
files go to stdout as a base64 tar between marker lines, which ``--unpack DIR`` extracts on the
host (the guest's root is read-only). The V4L2 and mapping helpers come from
tests/kernel/test_accounting.py.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import io
import os
import platform
import socket
import sys
import tarfile
import tempfile
from collections.abc import Callable

BEGIN = "=====DEVALLOC-CAPTURE-BEGIN====="
END = "=====DEVALLOC-CAPTURE-END====="
BUFINFO = "/sys/kernel/debug/dma_buf/bufinfo"
SYSFS_BUFFERS = "/sys/kernel/dmabuf/buffers"
VIVID_ALLOCATORS = "/sys/module/vivid/parameters/allocators"


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as f:
            return f.read()
    except OSError as exc:
        return f"<cannot read {path}: {exc}>\n"


def _dmabuf_maps() -> str:
    return "".join(
        line + "\n" for line in _read("/proc/self/maps").splitlines() if "dmabuf" in line
    )


def _sysfs_listing() -> str:
    try:
        names = sorted(os.listdir(SYSFS_BUFFERS), key=int)
    except OSError as exc:
        return f"<{SYSFS_BUFFERS}: {exc}>\n"
    lines = []
    for name in names:
        base = os.path.join(SYSFS_BUFFERS, name)
        exporter = _read(os.path.join(base, "exporter_name")).strip()
        size = _read(os.path.join(base, "size")).strip()
        lines.append(f"{name}\t{exporter}\t{size}\n")
    return "".join(lines)


def _capture_default(save: Callable[[str, str], None]) -> None:
    from devalloc.drm import DrmDevice, drm_nodes_of_driver
    from devalloc.heaps.dmaheap import DmaHeap
    from devalloc.heaps.udmabuf import Memfd, UdmabufDevice

    card = next(n for n in drm_nodes_of_driver("vgem") if os.path.basename(n).startswith("card"))
    with contextlib.ExitStack() as stack:
        heap = stack.enter_context(DmaHeap("/dev/dma_heap/system"))
        named = stack.enter_context(heap.allocate(1 << 20))
        named.set_name("camera 0 preview")  # spaces in the name
        empty = stack.enter_context(heap.allocate(3 * 4096))
        empty.set_name("")  # named, but with the empty name
        plain = stack.enter_context(heap.allocate(8192))
        mfd = stack.enter_context(Memfd(1 << 16))
        udev = stack.enter_context(UdmabufDevice())
        udma = stack.enter_context(udev.create(mfd, 0, 1 << 16))
        udma.set_name("udmabuf-frame")
        vgem = stack.enter_context(DrmDevice(card))
        dumb = stack.enter_context(vgem.create_dumb(64, 48, 32))
        dumb_buf = stack.enter_context(vgem.export(dumb))
        stack.enter_context(vgem.import_buffer(plain))  # attaches the vgem device to `plain`
        with named.cpu_access("w") as view:  # maps it: a /proc/self/maps line
            view[:1] = b"x"
        buffers = {
            "system_named": named,
            "system_empty_name": empty,
            "system_imported": plain,
            "udmabuf_named": udma,
            "vgem_dumb": dumb_buf,
        }
        for label, buf in buffers.items():
            fd = buf.fileno()
            save(f"fd_{label}.link", os.readlink(f"/proc/self/fd/{fd}") + "\n")
            save(f"fdinfo_{label}.txt", _read(f"/proc/self/fdinfo/{fd}"))
            st = os.fstat(fd)
            save(
                f"fd_{label}.stat", f"st_dev={st.st_dev} st_ino={st.st_ino} st_size={st.st_size}\n"
            )
        save("maps_dmabuf.txt", _dmabuf_maps())
        # Share `named` with a child process: both hold an fd on the same inode.
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child keeps the inherited fds until the parent closes the pipe
            os.close(w)
            os.read(r, 1)
            os._exit(0)
        os.close(r)
        try:
            child_fd = named.fileno()
            save("fdinfo_child_shared.txt", _read(f"/proc/{pid}/fdinfo/{child_fd}"))
            save("fd_child_shared.link", os.readlink(f"/proc/{pid}/fd/{child_fd}") + "\n")
            save("bufinfo_held.txt", _read(BUFINFO))
            if os.path.isdir(SYSFS_BUFFERS):  # CONFIG_DMABUF_SYSFS_STATS (not in Debian's 6.12)
                save("sysfs_buffers_held.txt", _sysfs_listing())
        finally:
            os.close(w)
            os.waitpid(pid, 0)
    save("bufinfo_after_close.txt", _read(BUFINFO))
    if os.path.isdir(SYSFS_BUFFERS):
        save("sysfs_buffers_after_close.txt", _sysfs_listing())


def _capture_orphans(save: Callable[[str, str], None]) -> None:
    """Four buffers that no fd holds: one imported into vgem, one queued on vivid (vmalloc), one
    in flight in a unix socket, one only mapped."""
    from tests.kernel.test_accounting import (
        queue_dmabuf,
        raw_mapping,
        request_dmabuf_buffers,
        set_capture_format,
        vivid_capture,
    )

    from devalloc.buffer import Buffer
    from devalloc.drm import DrmDevice, drm_nodes_of_driver
    from devalloc.heaps.dmaheap import DmaHeap
    from devalloc.v4l2 import V4l2Device

    card = next(n for n in drm_nodes_of_driver("vgem") if os.path.basename(n).startswith("card"))
    node, _ = vivid_capture()
    notes = []
    with contextlib.ExitStack() as stack:
        heap = stack.enter_context(DmaHeap("/dev/dma_heap/system"))
        held = stack.enter_context(heap.allocate(1 << 20))
        held.set_name("still held")
        vgem = stack.enter_context(DrmDevice(card))
        with heap.allocate(1 << 20) as buf:
            buf.set_name("held by vgem")
            stack.enter_context(vgem.import_buffer(buf))
            notes.append(f"held by vgem: inode {os.fstat(buf.fileno()).st_ino}")
        dev = stack.enter_context(V4l2Device(node))
        set_capture_format(dev, 1920, 1080)
        request_dmabuf_buffers(dev, 1)
        with heap.allocate(4 << 20) as buf:
            buf.set_name("queued on vivid")
            queue_dmabuf(dev, 0, buf)
            notes.append(f"queued on vivid: inode {os.fstat(buf.fileno()).st_ino}")
        left, right = socket.socketpair()
        stack.enter_context(left)
        stack.enter_context(right)
        with heap.allocate(1 << 16) as buf:
            socket.send_fds(left, [b"x"], [buf.fileno()])
            notes.append(f"in flight: inode {os.fstat(buf.fileno()).st_ino}")
        mapped = heap.allocate(3 << 20)
        mapped.set_name("mapped only")
        notes.append(f"mapped only: inode {os.fstat(mapped.fileno()).st_ino}")
        with mapped:
            stack.enter_context(raw_mapping(mapped.fileno(), 3 << 20))
        save("fdinfo_still_held.txt", _read(f"/proc/self/fdinfo/{held.fileno()}"))
        save("fd_still_held.link", os.readlink(f"/proc/self/fd/{held.fileno()}") + "\n")
        save("maps_mapped_only.txt", _dmabuf_maps())
        save("bufinfo_orphans.txt", _read(BUFINFO))
        save("orphans_notes.txt", "\n".join(notes) + "\n")
        _, fds, _, _ = socket.recv_fds(right, 1, 1, socket.MSG_CMSG_CLOEXEC)
        stack.enter_context(Buffer(fds[0], exporter="the socket"))
        request_dmabuf_buffers(dev, 0)
    save("bufinfo_orphans_released.txt", _read(BUFINFO))


def _capture_vivid_dma_contig(save: Callable[[str, str], None]) -> None:
    """vivid.allocators=1: QBUF of a scattered buffer fails (EFAULT); is the buffer kept?"""
    from tests.kernel.test_accounting import (
        queue_dmabuf,
        request_dmabuf_buffers,
        scattered_buffer,
        set_capture_format,
        vivid_capture,
    )

    from devalloc.errors import KernelError
    from devalloc.heaps.dmaheap import DmaHeap
    from devalloc.v4l2 import V4l2Device

    node, allocator = vivid_capture()
    notes = [f"node {node}, allocator {allocator}"]
    with DmaHeap("/dev/dma_heap/system") as heap, V4l2Device(node) as dev:
        notes.append(f"S_FMT YUYV 1920x1080 -> sizeimage {set_capture_format(dev, 1920, 1080)}")
        notes.append(f"REQBUFS(1) -> count {request_dmabuf_buffers(dev, 1)}")
        with scattered_buffer(heap, 4 << 20) as buf:
            buf.set_name("refused by vivid")
            notes.append(f"buffer inode {os.fstat(buf.fileno()).st_ino}")
            try:
                queue_dmabuf(dev, 0, buf)
                notes.append("QBUF -> ok (the buffer was contiguous after all)")
            except KernelError as exc:
                notes.append(f"QBUF -> {errno.errorcode.get(exc.errno or 0)}")
            save("bufinfo_refused_still_open.txt", _read(BUFINFO))
        save("bufinfo_refused_fd_closed.txt", _read(BUFINFO))
    save("bufinfo_refused_all_closed.txt", _read(BUFINFO))
    save("notes.txt", "\n".join(notes) + "\n")


def capture() -> None:
    """Run the scenarios and print the captured files as a base64 tar."""
    out = tempfile.mkdtemp(prefix="devalloc-capture-")
    allocators = _read(VIVID_ALLOCATORS).strip()
    # One value per vivid instance ("1,0,0,..."): instance 0 makes /dev/video0..3.
    scenario = "dma_contig" if allocators.split(",")[0] == "1" else "default"

    def save(name: str, text: str) -> None:
        with open(os.path.join(out, f"{scenario}_{name}"), "w", encoding="utf-8") as f:
            f.write(text)

    save(
        "kernel.txt",
        f"uname -r: {platform.release()}\ncmdline: {_read('/proc/cmdline').strip()}\n"
        f"vivid.allocators: {allocators}\n"
        f"debugfs mounts: {[m for m in _read('/proc/self/mounts').splitlines() if 'debugfs' in m]}"
        "\n",
    )
    if scenario == "dma_contig":
        _capture_vivid_dma_contig(save)
    else:
        _capture_default(save)
        _capture_orphans(save)
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz") as tar:
        for name in sorted(os.listdir(out)):
            tar.add(os.path.join(out, name), arcname=name)
    data = base64.b64encode(raw.getvalue()).decode()
    print(BEGIN)
    for i in range(0, len(data), 76):
        print(data[i : i + 76])
    print(END)


def unpack(target: str, text: str) -> list[str]:
    """Extract the tar printed between the markers in ``text`` into ``target``."""
    lines = [line.strip() for line in text.splitlines()]
    # pytest's progress output may share the marker's line: look for the marker inside lines.
    start = next(i for i, line in enumerate(lines) if line.endswith(BEGIN))
    stop = next(i for i, line in enumerate(lines) if line.startswith(END) and i > start)
    raw = base64.b64decode("".join(lines[start + 1 : stop]))
    with tarfile.open(fileobj=io.BytesIO(raw), mode="r:gz") as tar:
        tar.extractall(target, filter="data")
        return tar.getnames()


def main(argv: list[str]) -> int:
    """``--unpack DIR`` on the host; no arguments in the VM."""
    if argv[:1] == ["--unpack"] and len(argv) == 2:
        for extracted in unpack(argv[1], sys.stdin.read()):
            print(extracted)
        return 0
    if os.environ.get("DEVALLOC_IN_VM") != "1":
        print("capture.py: run it inside the test VM (see the module docstring)", file=sys.stderr)
        return 2
    capture()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:] if sys.argv[0].endswith("capture.py") else []))
