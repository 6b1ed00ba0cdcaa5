"""dma-buf accounting on a real kernel: our buffers in scan(), in bufinfo and in `devalloc ps`.

Example (in the test VM; the second run puts vivid's instance 0 on the dma-contig allocator):
    $ bash tests/vm/run.sh --timeout 900 -- -m kernel tests/kernel/test_accounting.py
    $ bash tests/vm/run.sh --timeout 900 --append "vivid.allocators=1" -- -m kernel \\
        tests/kernel/test_accounting.py

Orphans (buffers the kernel has that no process holds) are made for real: a buffer imported into
vgem, queued on vivid, or in flight in a unix socket, whose last fd we then close.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import mmap
import os
import pathlib
import socket
from collections.abc import Callable, Iterator

import pytest

from devalloc import cli
from devalloc._fd import ioctl
from devalloc.accounting import DmaBuf, DmaBufReport, read_bufinfo, scan
from devalloc.buffer import Buffer
from devalloc.drm import DrmDevice
from devalloc.errors import FaultError
from devalloc.heaps.dmaheap import DmaHeap
from devalloc.heaps.udmabuf import Memfd, UdmabufDevice
from devalloc.uapi import videodev2 as v4l2
from devalloc.v4l2 import V4l2Device, v4l2_node_name, v4l2_nodes_of_driver

from ..conftest import assert_fd_closed, require

pytestmark = pytest.mark.kernel

DEBUGFS = "/sys/kernel/debug"
SYSFS_BUFFERS = "/sys/kernel/dmabuf/buffers"
VIVID_ALLOCATORS = "/sys/module/vivid/parameters/allocators"
MIB = 1 << 20


@pytest.fixture(autouse=True)
def _bufinfo_readable() -> None:
    require(
        os.access(os.path.join(DEBUGFS, "dma_buf", "bufinfo"), os.R_OK),
        f"{DEBUGFS}/dma_buf/bufinfo is not readable (debugfs not mounted, or not root)",
    )


def _ino(buf: Buffer) -> int:
    return os.fstat(buf.fileno()).st_ino


def _bufinfo_inodes() -> set[int]:
    return {e.inode for e in read_bufinfo(DEBUGFS).entries if e.inode is not None}


def _mine(report: DmaBufReport) -> set[int]:
    usage = report.process(os.getpid())
    return set(usage.inodes) if usage else set()


def _buffer(report: DmaBufReport, inode: int) -> DmaBuf:
    buf = report.buffer(inode)
    assert buf is not None, f"inode {inode} is not in the report: {report.to_json()}"
    return buf


# --- what our process holds ------------------------------------------------------------------


def test_scan_finds_exactly_our_buffers_then_nothing_once_closed(
    system_heap: DmaHeap, udmabuf: UdmabufDevice, vgem: DrmDevice
) -> None:
    with contextlib.ExitStack() as stack:
        named = stack.enter_context(system_heap.allocate(MIB))
        named.set_name("camera 0 preview")
        mfd = stack.enter_context(Memfd(1 << 16))
        udma = stack.enter_context(udmabuf.create(mfd, 0, 1 << 16))
        dumb = stack.enter_context(vgem.create_dumb(64, 48, 32))
        exported = stack.enter_context(vgem.export(dumb))
        expected = {
            _ino(named): (MIB, "system", "camera 0 preview", named.fileno()),
            _ino(udma): (1 << 16, "udmabuf", None, udma.fileno()),
            _ino(exported): (dumb.layout.size, "drm", None, exported.fileno()),
        }
        with named.cpu_access("w") as view:  # mapped as well as held by an fd
            view[:4] = b"ps!\0"

            report = scan()

        me = report.process(os.getpid())
        assert me is not None
        assert set(me.inodes) == set(expected), "we hold exactly these dma-bufs"
        assert me.bytes == sum(size for size, *_ in expected.values())
        assert me.exporters == ("drm", "system", "udmabuf")
        mine = set()
        for inode, (size, exp_name, name, fd) in expected.items():
            buf = _buffer(report, inode)
            assert (buf.size, buf.exp_name, buf.name) == (size, exp_name, name)
            assert (os.getpid(), fd) in buf.fds
            assert buf.holders == (os.getpid(),)
            assert buf.kernel_listed
            assert not buf.orphan
            mine |= {f for _, f in buf.fds}
        assert set(me.fds) == mine
        # Python's mmap keeps a duplicate fd of what it maps: the mapped buffer has two fds.
        assert len(_buffer(report, _ino(named)).fds) == 2
        assert _buffer(report, _ino(named)).mapped_by == (os.getpid(),)
        assert len(_buffer(report, _ino(udma)).fds) == 1
        assert report.kernel.source == "debugfs"
        assert report.kernel.total_objects is not None
        assert report.kernel.total_objects >= len(expected)
        table = {e.inode: e for e in read_bufinfo(DEBUGFS).entries}
        for inode, (size, exp_name, name, _) in expected.items():
            assert (table[inode].size, table[inode].exp_name) == (size, exp_name)
            assert table[inode].name == name
        inodes = set(expected)
    after = scan()
    assert not _mine(after) & inodes
    assert not {b.inode for b in after.buffers} & inodes, "closed buffers left the kernel's list"
    assert not _bufinfo_inodes() & inodes


def test_a_buffer_shared_with_a_child_is_counted_once(system_heap: DmaHeap) -> None:
    with system_heap.allocate(2 * MIB) as buf:
        buf.set_name("shared")
        inode = _ino(buf)
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child keeps the inherited fd until the pipe closes
            os.close(w)
            os.read(r, 1)
            os._exit(0)
        os.close(r)
        try:
            report = scan()
        finally:
            os.close(w)
            os.waitpid(pid, 0)
    shared = _buffer(report, inode)
    assert shared.holders == tuple(sorted((os.getpid(), pid)))
    assert {p for p, _ in shared.fds} == {os.getpid(), pid}
    child = report.process(pid)
    assert child is not None
    assert inode in child.inodes
    assert child.comm  # read from /proc/<pid>/comm
    system = next(e for e in report.exporters() if e.exp_name == "system")
    assert system.buffers == sum(1 for b in report.buffers if b.exp_name == "system")
    assert system.bytes == sum(b.size for b in report.buffers if b.exp_name == "system")


_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = (
    ctypes.c_void_p,
    ctypes.c_size_t,
    ctypes.c_int,
    ctypes.c_int,
    ctypes.c_int,
    ctypes.c_long,
)
_libc.munmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t)


@contextlib.contextmanager
def raw_mapping(fd: int, size: int) -> Iterator[int]:
    """mmap without keeping an fd (Python's mmap keeps a duplicate of it)."""
    addr = _libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
    if addr in (None, ctypes.c_void_p(-1).value):
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    try:
        yield int(addr)
    finally:
        _libc.munmap(addr, size)


def test_a_mapping_holds_a_buffer_after_its_last_fd_is_closed(system_heap: DmaHeap) -> None:
    buf = system_heap.allocate(3 * MIB)
    buf.set_name("mapped only")
    inode = _ino(buf)
    with contextlib.ExitStack() as stack:
        stack.callback(buf.close)
        stack.enter_context(raw_mapping(buf.fileno(), 3 * MIB))
        fd = buf.fileno()
        buf.close()
        assert_fd_closed(fd)
        report = scan()
        held = _buffer(report, inode)
        assert held.fds == ()
        assert held.mapped_by == (os.getpid(),)
        assert (held.size, held.exp_name, held.name) == (3 * MIB, "system", "mapped only")
        assert not held.orphan
        assert inode in _mine(report)
        assert inode not in _mine(scan(maps=False)), "without maps, a mapping is not seen"
    assert inode not in _bufinfo_inodes(), "unmapping released the last reference"


# --- orphans: the kernel keeps a buffer that no process holds --------------------------------


def _ps_json(*args: str, capsys: pytest.CaptureFixture[str]) -> dict[str, object]:
    assert cli.main(["ps", "--json", *args]) == 0
    data: dict[str, object] = json.loads(capsys.readouterr().out)
    return data


def test_a_buffer_imported_into_vgem_is_an_orphan_once_our_fd_is_closed(
    system_heap: DmaHeap, vgem: DrmDevice, capsys: pytest.CaptureFixture[str]
) -> None:
    buf = system_heap.allocate(MIB)
    buf.set_name("held by vgem")
    inode = _ino(buf)
    with vgem.import_buffer(buf):
        buf.close()
        report = scan()
        orphan = _buffer(report, inode)
        assert orphan.orphan
        assert orphan in report.orphans
        assert orphan.holders == ()
        assert (orphan.size, orphan.exp_name, orphan.name) == (MIB, "system", "held by vgem")
        assert orphan.attachments == ("vgem",)  # dev_name of vgem's platform device
        assert orphan.count is not None
        assert orphan.count >= 1
        data = _ps_json(capsys=capsys)
        assert inode in [o["inode"] for o in data["orphans"]]  # type: ignore[attr-defined]
        assert cli.main(["ps"]) == 0
        human = capsys.readouterr().out
        with capsys.disabled():
            print(f"\n$ devalloc ps\n{human}")  # the real output, in the VM's console
        line = next(ln for ln in human.splitlines() if ln.rstrip().endswith("held by vgem"))
        assert line.split()[0] == str(inode)
        assert "vgem" in line.split()
    # GEM_CLOSE drops vgem's reference: the buffer is freed.
    assert inode not in _bufinfo_inodes()


def test_a_buffer_in_flight_in_a_unix_socket_is_an_orphan(system_heap: DmaHeap) -> None:
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with left, right:
        buf = system_heap.allocate(MIB)
        inode = _ino(buf)
        with buf:
            socket.send_fds(left, [b"x"], [buf.fileno()])
        report = scan()
        assert _buffer(report, inode).orphan, "in flight: held by the socket, by no process"
        _, fds, _, _ = socket.recv_fds(right, 1, 1, socket.MSG_CMSG_CLOEXEC)
        assert len(fds) == 1
        with Buffer(fds[0], exporter="the socket") as back:
            assert _ino(back) == inode
            again = _buffer(scan(), inode)
            assert not again.orphan
            assert again.fds == ((os.getpid(), back.fileno()),)
    assert inode not in _bufinfo_inodes()


def test_scan_without_debugfs_says_what_is_hidden(
    system_heap: DmaHeap, tmp_path: pathlib.Path
) -> None:
    with system_heap.allocate(MIB) as buf:
        report = scan(debugfs=str(tmp_path))  # an empty directory: no bufinfo there
        inode = _ino(buf)
        assert inode in _mine(report)
    if os.path.isdir(SYSFS_BUFFERS):  # CONFIG_DMABUF_SYSFS_STATS: the full list comes from sysfs
        assert report.kernel.source == "sysfs"
        assert _buffer(report, inode).kernel_listed
    else:  # Debian's 6.12 has no dma-buf sysfs statistics
        assert report.kernel.source is None
        assert "no CONFIG_DMABUF_SYSFS_STATS" in report.kernel.reason
        assert "orphans" in report.kernel.hides
        assert report.orphans == ()


# --- V4L2 (vivid): REQBUFS/QBUF with V4L2_MEMORY_DMABUF ---------------------------------------


def vivid_capture() -> tuple[str, int]:
    """vivid instance 0's video capture node and its allocator (0 vmalloc, 1 dma-contig)."""
    nodes = [n for n in v4l2_nodes_of_driver("vivid") if v4l2_node_name(n) == "vivid-000-vid-cap"]
    require(bool(nodes), "no vivid capture node (modprobe vivid)")
    with open(VIVID_ALLOCATORS, encoding="ascii") as f:
        allocator = int(f.read().split(",")[0])
    return nodes[0], allocator


def _vidioc(dev: V4l2Device, request: int, arg: ctypes.Structure, name: str) -> None:
    ioctl(dev.fileno(), request, arg, name=name, what=name, path=dev.path)


def set_capture_format(dev: V4l2Device, width: int, height: int) -> int:
    """VIDIOC_S_FMT YUYV on the capture queue; the driver's sizeimage."""
    fmt = v4l2.v4l2_format(type=v4l2.V4l2BufType.VIDEO_CAPTURE)
    fmt.fmt.pix.width, fmt.fmt.pix.height = width, height
    fmt.fmt.pix.pixelformat = v4l2.v4l2_fourcc("Y", "U", "Y", "V")
    _vidioc(dev, v4l2.VIDIOC_S_FMT, fmt, "VIDIOC_S_FMT")
    assert (fmt.fmt.pix.width, fmt.fmt.pix.height) == (width, height)
    return int(fmt.fmt.pix.sizeimage)


def request_dmabuf_buffers(dev: V4l2Device, count: int) -> int:
    req = v4l2.v4l2_requestbuffers(
        count=count, type=v4l2.V4l2BufType.VIDEO_CAPTURE, memory=v4l2.V4L2_MEMORY_DMABUF
    )
    _vidioc(dev, v4l2.VIDIOC_REQBUFS, req, "VIDIOC_REQBUFS")
    return int(req.count)


def queue_dmabuf(dev: V4l2Device, index: int, buf: Buffer) -> None:
    qbuf = v4l2.v4l2_buffer(
        index=index, type=v4l2.V4l2BufType.VIDEO_CAPTURE, memory=v4l2.V4L2_MEMORY_DMABUF
    )
    qbuf.m.fd = buf.fileno()
    qbuf.length = buf.size
    _vidioc(dev, v4l2.VIDIOC_QBUF, qbuf, "VIDIOC_QBUF")


def scattered_buffer(heap: DmaHeap, size: int) -> Buffer:
    """A system-heap buffer whose 1 MiB chunks are not adjacent: a fresh machine's allocator may
    hand out adjacent chunks (a contiguous buffer), so the chunks of a batch are held every other
    one while the buffer is allocated into the holes between them."""
    with contextlib.ExitStack() as spacers:
        batch = [spacers.enter_context(heap.allocate(MIB)) for _ in range(2 * size // MIB + 8)]
        for odd in batch[1::2]:
            odd.close()
        return heap.allocate(size)


def test_vivid_queued_buffer_by_allocator(
    system_heap: DmaHeap, record_property: Callable[[str, object], None]
) -> None:
    """A 4 MiB scattered buffer for a 1920x1080 YUYV capture (4147200 bytes), queued on vivid.

    vmalloc (allocators=0, the default): QBUF takes it; once our fd is closed the buffer lives on
    in vivid's queue, an orphan, until REQBUFS(0) frees the queue.
    dma-contig (vivid.allocators=1): QBUF fails with EFAULT (the buffer is not contiguous); on
    6.12 vb2 releases the buffer on that failure, so closing our fd frees it: no leak, no orphan.
    """
    node, allocator = vivid_capture()
    record_property("vivid_allocator", allocator)  # which branch ran, in the JUnit report
    with V4l2Device(node) as dev:
        assert set_capture_format(dev, 1920, 1080) == 1920 * 1080 * 2
        assert request_dmabuf_buffers(dev, 1) >= 1
        if allocator == 0:
            buf = system_heap.allocate(4 * MIB)
            buf.set_name("queued on vivid")
            inode = _ino(buf)
            with buf:
                queue_dmabuf(dev, 0, buf)
            report = scan()
            orphan = _buffer(report, inode)
            assert orphan.orphan
            assert orphan.holders == ()
            assert (orphan.size, orphan.name) == (4 * MIB, "queued on vivid")
            request_dmabuf_buffers(dev, 0)
            assert inode not in _bufinfo_inodes(), "REQBUFS(0) released vivid's reference"
        else:
            assert allocator == 1, f"unknown vivid allocator {allocator}"
            for _attempt in range(8):
                with scattered_buffer(system_heap, 4 * MIB) as buf:
                    inode = _ino(buf)
                    try:
                        queue_dmabuf(dev, 0, buf)
                    except FaultError as exc:
                        refused = exc
                        break
                # Contiguous by chance: dma-contig took it. Free the queue and try again.
                request_dmabuf_buffers(dev, 0)
                request_dmabuf_buffers(dev, 1)
            else:
                pytest.fail("8 system-heap buffers in a row were contiguous: cannot test EFAULT")
            assert refused.errno == errno.EFAULT
            assert refused.operation == "VIDIOC_QBUF"
            report = scan()
            assert report.buffer(inode) is None, "vb2 kept (leaked) the buffer QBUF refused"
            assert inode not in _bufinfo_inodes()
