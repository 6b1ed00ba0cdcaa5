"""The heap benchmark: devalloc's Python paths against a C program doing the same loops.

Example:
    $ python bench/heaps.py --host --clock cpu   # memfd paths (plus any dma-heap/udmabuf here)
    $ bash bench/run-vm.sh                       # the test VM: dma-heap, udmabuf, pool, carveout
    $ bash bench/run-vm.sh --icount              # the same counted in instructions (load-proof)
    $ python bench/heaps.py --host --quick --out /tmp/h.json   # seconds; for the schema test

What is measured (each as ns per operation, median and p95 over timed batches):

- ``alloc``: allocate a buffer and close it (``DmaHeap.allocate(size).close()``; memfd + seal +
  ``UDMABUF_CREATE``; ``MemfdHeap.allocate``), Python against ``bench/heapbench.c``.
- ``write-memset``, ``write-copy``, ``read-copy``: fill or copy the whole buffer through
  ``Buffer.cpu_access`` (DMA_BUF_IOCTL_SYNC bracket included), against the C program doing the
  same on the same kind of buffer, and against C on plain anonymous memory.
- ``sync``: the cpu_access bracket alone (two DMA_BUF_IOCTL_SYNC calls).
- ``pool``: ``BufferPool`` acquire + release against a fresh allocation (when devalloc.pool exists).
- ``carveout``: allocation latency at each size (when devalloc.heaps.carveout exists).
- ``profile-alloc``, ``profile-access``: where the time of one Python allocation and of one empty
  ``cpu_access`` block goes, step by step, with prototypes of leaner code for comparison.
- ``--icount`` runs (see run-vm.sh) count instructions instead of time; ``--clock cpu`` on the
  host counts this thread's CPU time.

Each measurement is repeated in ``--rounds`` rounds (the order of C and Python alternates), each
round a calibrated number of operations per batch after a warm-up, so slow drift on a shared
machine lands in both. The result file (``--out``) holds every sample; a markdown summary goes to
stdout.
"""

from __future__ import annotations

import argparse
import ctypes
import datetime
import fcntl
import gc
import json
import mmap
import os
import platform
import re
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "src"))

from devalloc import limits  # noqa: E402
from devalloc._fd import ioctl as _fd_ioctl  # noqa: E402
from devalloc.buffer import Buffer  # noqa: E402
from devalloc.heaps.dmaheap import DmaHeap, heap_paths  # noqa: E402
from devalloc.heaps.memfd import MemfdHeap  # noqa: E402
from devalloc.heaps.stats import FOLD_AT, HeapStats  # noqa: E402
from devalloc.heaps.udmabuf import UDMABUF_PATH, Memfd, UdmabufDevice  # noqa: E402
from devalloc.uapi import dma_buf as _buf_uapi  # noqa: E402
from devalloc.uapi import dma_heap as _heap_uapi  # noqa: E402

SCHEMA = "devalloc-bench-heaps/1"
CLOCKS = {
    "wall": "wall",
    "cpu": "this thread's CPU time (time.thread_time_ns / CLOCK_THREAD_CPUTIME_ID)",
    "icount": "instructions: QEMU -icount shift=0 advances the guest clock 1 ns per instruction",
}
KIB = 1 << 10
MIB = 1 << 20
SIZES = (4 * KIB, 1 * MIB, 8 * MIB, 32 * MIB)
QUICK_SIZES = (4 * KIB, 1 * MIB)
SYSTEM_HEAP = "/dev/dma_heap/system"
MIN_BATCHES = 3  # as heapbench.c: a budget never cuts a cell below this many batches
BANDWIDTH_OPS = ("write-memset", "write-copy", "read-copy")

RunFn = Callable[[int], "int | None"]
"""Runs the measured operation n times; returns the ns to count if only part of it is timed."""
Setup = Callable[[ExitStack, int], RunFn]
"""Acquires what a measurement needs (released by the stack) and returns its loop."""


class BenchError(Exception):
    """A measurement could not be made (the message says which and why)."""


# -- statistics ------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0..100) with linear interpolation between closest ranks."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def summarize(samples: list[float]) -> dict[str, float]:
    """median, p95, min and mean of ns/op samples."""
    return {
        "median": statistics.median(samples),
        "p95": percentile(samples, 95),
        "min": min(samples),
        "mean": statistics.fmean(samples),
    }


def human_size(size: int) -> str:
    """4096 -> '4 KiB', 1048576 -> '1 MiB'."""
    if size % MIB == 0:
        return f"{size // MIB} MiB"
    if size % KIB == 0:
        return f"{size // KIB} KiB"
    return f"{size} B"


# -- measurement -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Config:
    """How long and how often to measure."""

    batch_ns: int
    batches: int
    rounds: int
    budget_ns: int = 0  # per cell and round: stop adding batches after this (0: no limit)

    def warmup(self, size: int) -> int:
        """Operations run before calibration: more for small, cheap sizes."""
        return max(1, min(200, (16 * MIB) // size))


@dataclass
class Cell:
    """One measurement: an operation on a source at a size, by one implementation."""

    group: str
    op: str
    source: str
    impl: str
    size: int
    setup: Setup | None = None  # Python cells; C cells run bench/heapbench
    c_source: str = ""  # C cells: heapbench's SOURCE; Python cells: the C baseline's source
    note: str = ""
    ops_per_batch: list[int] = field(default_factory=list)
    samples: list[float] = field(default_factory=list)
    error: str = ""

    @property
    def key(self) -> str:
        return f"{self.group}|{self.op}|{self.source}|{self.impl}|{self.size}"


_CLOCK: list[Callable[[], int]] = [time.perf_counter_ns]


def now_ns() -> int:
    """The bench clock: wall time (perf_counter_ns) or, with --clock cpu, this thread's CPU time."""
    return _CLOCK[0]()


def calibrate(run: RunFn, batch_ns: int) -> int:
    """Operations per batch so that a batch lasts at least ``batch_ns`` (as heapbench.c does)."""
    n = 1
    while True:
        t0 = now_ns()
        run(n)
        elapsed = now_ns() - t0
        if elapsed * 10 >= batch_ns or n >= 1 << 24:
            break
        n *= 2
    per_batch = -(-batch_ns * n // elapsed) if elapsed else n
    return max(1, min(per_batch, n * 10))


def measure_python(cell: Cell, cfg: Config) -> tuple[int, list[float]]:
    """Warm up, calibrate and time ``cfg.batches`` batches of the cell's Python loop."""
    assert cell.setup is not None
    with ExitStack() as stack:
        run = cell.setup(stack, cell.size)
        run(cfg.warmup(cell.size))
        n = calibrate(run, cfg.batch_ns)
        samples: list[float] = []
        spent = 0
        while len(samples) < cfg.batches:
            if cfg.budget_ns and len(samples) >= MIN_BATCHES and spent >= cfg.budget_ns:
                break
            t0 = now_ns()
            timed = run(n)
            elapsed = now_ns() - t0
            spent += elapsed
            samples.append((elapsed if timed is None else timed) / n)
    return n, samples


def measure_c(cbin: str, cell: Cell, cfg: Config) -> tuple[int, list[float]]:
    """Run heapbench for the cell and parse its JSON line."""
    argv = [
        cbin,
        cell.op,
        cell.c_source,
        str(cell.size),
        str(cfg.batch_ns),
        str(cfg.batches),
        str(cfg.warmup(cell.size)),
        str(cfg.budget_ns),
    ]
    env = dict(os.environ, HEAPBENCH_CLOCK="cpu" if _CLOCK[0] is time.thread_time_ns else "wall")
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, env=env)
    if proc.returncode != 0:
        raise BenchError(f"{' '.join(argv)}: exit {proc.returncode}: {proc.stderr.strip()}")
    data = json.loads(proc.stdout)
    return int(data["ops_per_batch"]), [float(x) for x in data["ns_per_op"]]


def run_cells(cells: list[Cell], cfg: Config, cbin: str, *, progress: bool) -> None:
    """Every cell, ``cfg.rounds`` times; the order reverses every other round."""
    for r in range(cfg.rounds):
        order = cells if r % 2 == 0 else cells[::-1]
        for cell in order:
            if cell.error:
                continue
            t0 = time.monotonic()
            try:
                if cell.impl == "c":
                    n, samples = measure_c(cbin, cell, cfg)
                else:
                    n, samples = measure_python(cell, cfg)
            except Exception as exc:
                cell.error = f"{type(exc).__name__}: {exc}"
                print(f"bench: {cell.key}: {cell.error}", file=sys.stderr)
                continue
            cell.ops_per_batch.append(n)
            cell.samples.extend(samples)
            if progress:
                print(
                    f"bench: round {r + 1}/{cfg.rounds} {cell.key}: "
                    f"{statistics.median(samples):.0f} ns/op ({time.monotonic() - t0:.1f} s)",
                    file=sys.stderr,
                    flush=True,
                )


# -- Python operations -----------------------------------------------------------------------


def source_name(source: str) -> str:
    """'dmaheap:/dev/dma_heap/system' -> 'dma-heap system'."""
    if source.startswith("dmaheap:"):
        return f"dma-heap {os.path.basename(source[8:])}"
    return source


def py_alloc(source: str) -> Setup:
    """alloc+close through devalloc's public API."""

    def setup(stack: ExitStack, size: int) -> RunFn:
        if source.startswith("dmaheap:"):
            heap = stack.enter_context(DmaHeap(source[8:]))

            def run_heap(n: int) -> None:
                for _ in range(n):
                    heap.allocate(size).close()

            return run_heap
        if source == "udmabuf":
            dev = stack.enter_context(UdmabufDevice())

            def run_udmabuf(n: int) -> None:
                for _ in range(n):
                    with Memfd(size) as mfd:
                        dev.create(mfd, 0, size).close()

            return run_udmabuf
        if source == "memfd":
            memfd_heap = MemfdHeap()

            def run_memfd(n: int) -> None:
                for _ in range(n):
                    memfd_heap.allocate(size).close()

            return run_memfd
        raise BenchError(f"no Python allocation for source {source!r}")

    return setup


def make_buffer(stack: ExitStack, source: str, size: int) -> Buffer:
    """One buffer of ``size`` bytes from ``source``, released by ``stack``."""
    if source.startswith("dmaheap:"):
        heap = stack.enter_context(DmaHeap(source[8:]))
        return stack.enter_context(heap.allocate(size))
    if source == "udmabuf":
        mfd = stack.enter_context(Memfd(size))
        dev = stack.enter_context(UdmabufDevice())
        return stack.enter_context(dev.create(mfd, 0, size))
    if source == "memfd":
        return stack.enter_context(MemfdHeap().allocate(size))
    raise BenchError(f"no Python buffer for source {source!r}")


def py_access(source: str, op: str) -> Setup:
    """One CPU access of the whole buffer per op, through ``Buffer.cpu_access``."""

    def setup(stack: ExitStack, size: int) -> RunFn:
        buf = make_buffer(stack, source, size)
        with buf.cpu_access("w") as view:  # fault every page in, as heapbench does
            ctypes.memset(ctypes.addressof(ctypes.c_char.from_buffer(view)), 0x11, size)
        memset = ctypes.memset
        addressof = ctypes.addressof
        c_char = ctypes.c_char
        src = bytes([0xA5]) * size
        dst = memoryview(bytearray(size))

        def write_memset(n: int) -> None:
            for _ in range(n):
                with buf.cpu_access("w") as view:
                    memset(addressof(c_char.from_buffer(view)), 0x5A, size)

        def write_copy(n: int) -> None:
            for _ in range(n):
                with buf.cpu_access("w") as view:
                    view[:] = src

        def read_copy(n: int) -> None:
            for _ in range(n):
                with buf.cpu_access("r") as view:
                    dst[:] = view

        def sync_only(n: int) -> None:
            for _ in range(n):
                with buf.cpu_access("w"):
                    pass

        runs: dict[str, RunFn] = {
            "write-memset": write_memset,
            "write-copy": write_copy,
            "read-copy": read_copy,
            "sync": sync_only,
        }
        stack.callback(dst.release)
        return runs[op]

    return setup


# -- the profile of one Python allocation ----------------------------------------------------


class _LeanOwner:
    """A prototype of a cheaper fd owner: __slots__ and __del__ instead of weakref.finalize."""

    __slots__ = ("fd",)

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def close(self) -> None:
        fd, self.fd = self.fd, -1
        if fd >= 0:
            os.close(fd)

    def __del__(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)


class _LeanAccess:
    """A prototype of a cheaper cpu_access bracket: a plain class (no generator), sync
    arguments packed once, the view made on entry and released on exit."""

    __slots__ = ("_begin", "_end", "_fd", "_map", "_view")

    def __init__(self, fd: int, mapping: mmap.mmap, rw: int) -> None:
        self._fd = fd
        self._map = mapping
        # Mutable buffers: fcntl.ioctl tries a writable buffer first, and for bytes it builds
        # (and drops) a TypeError before falling back.
        self._begin = bytearray(struct.pack("=Q", int(_buf_uapi.DMA_BUF_SYNC_START) | rw))
        self._end = bytearray(struct.pack("=Q", int(_buf_uapi.DMA_BUF_SYNC_END) | rw))
        self._view: memoryview | None = None

    def __enter__(self) -> memoryview:
        fcntl.ioctl(self._fd, _buf_uapi.DMA_BUF_IOCTL_SYNC, self._begin, True)
        self._view = memoryview(self._map)
        return self._view

    def __exit__(self, *exc: object) -> None:
        if self._view is not None:
            self._view.release()
            self._view = None
        fcntl.ioctl(self._fd, _buf_uapi.DMA_BUF_IOCTL_SYNC, self._end, True)


def _ignore(*_: object) -> None:
    """A finalizer callback that does nothing."""


def profile_steps(source: str) -> list[tuple[str, str, Setup]]:
    """(name, what it measures, setup) for each step of one Python allocation on ``source``."""
    whole = (
        "DmaHeap.allocate(size).close()"
        if source.startswith("dmaheap:")
        else (f"{'MemfdHeap()' if source == 'memfd' else source}.allocate(size).close()")
    )
    steps: list[tuple[str, str, Setup]] = [(whole, "the whole public path", py_alloc(source))]

    def with_spare_fd(stack: ExitStack, size: int) -> int:
        # A real buffer fd of the source, to dup / inspect without allocating.
        return make_buffer(stack, source, size).fileno()

    def dup_close(stack: ExitStack, size: int) -> RunFn:
        fd = with_spare_fd(stack, size)

        def run(n: int) -> None:
            for _ in range(n):
                os.close(os.dup(fd))

        return run

    def buffer_known(stack: ExitStack, size: int) -> RunFn:
        fd = with_spare_fd(stack, size)
        exporter = source_name(source)

        def run(n: int) -> None:
            for _ in range(n):
                Buffer(os.dup(fd), exporter=exporter, size=size).close()

        return run

    def buffer_adopt(hooks: tuple[Callable[[int], None], ...]) -> Setup:
        def setup(stack: ExitStack, size: int) -> RunFn:
            fd = with_spare_fd(stack, size)
            exporter = source_name(source)
            description = f"buffer from {exporter}"
            adopt = Buffer._adopt

            def run(n: int) -> None:
                for _ in range(n):
                    buf = adopt(os.dup(fd), exporter, description, size)
                    if hooks:
                        buf._close_hooks = hooks
                    buf.close()

            return run

        return setup

    def buffer_inspect(stack: ExitStack, size: int) -> RunFn:
        fd = with_spare_fd(stack, size)
        exporter = source_name(source)

        def run(n: int) -> None:
            for _ in range(n):
                Buffer(os.dup(fd), exporter=exporter).close()

        return run

    def lseek(stack: ExitStack, size: int) -> RunFn:
        fd = with_spare_fd(stack, size)

        def run(n: int) -> None:
            for _ in range(n):
                os.lseek(fd, 0, os.SEEK_END)

        return run

    def getfl(stack: ExitStack, size: int) -> RunFn:
        fd = with_spare_fd(stack, size)

        def run(n: int) -> None:
            for _ in range(n):
                fcntl.fcntl(fd, fcntl.F_GETFL)

        return run

    def finalize(stack: ExitStack, size: int) -> RunFn:
        class Obj:
            pass

        def run(n: int) -> None:
            for _ in range(n):
                obj = Obj()  # alive until after detach(), as a Buffer is when it closes
                weakref.finalize(obj, _ignore, 3, "x").detach()
                del obj

        return run

    def minimal_pool(stack: ExitStack, size: int) -> RunFn:
        free = deque([object(), object()])
        lock = threading.Lock()

        def run(n: int) -> None:
            for _ in range(n):
                with lock:
                    item = free.pop()
                with lock:
                    free.append(item)

        return run

    def plain_object(stack: ExitStack, size: int) -> RunFn:
        class Obj:
            pass

        def run(n: int) -> None:
            for _ in range(n):
                Obj()

        return run

    if source.startswith("dmaheap:"):
        path = source[8:]
        req = _heap_uapi.DMA_HEAP_IOCTL_ALLOC
        flags = os.O_RDWR | os.O_CLOEXEC
        alloc_struct = _heap_uapi.dma_heap_allocation_data

        def raw_ioctl(stack: ExitStack, size: int) -> RunFn:
            heap_fd = stack.enter_context(DmaHeap(path)).fileno()
            # The kernel wants fd == 0 on entry: a fresh copy of the argument each time.
            template = struct.pack("=QIIQ", size, 0, flags, 0)
            ioctl = fcntl.ioctl
            close = os.close
            unpack = struct.unpack_from

            def run(n: int) -> None:
                for _ in range(n):
                    arg = bytearray(template)
                    ioctl(heap_fd, req, arg, True)
                    close(unpack("=I", arg, 8)[0])

            return run

        def helper_ioctl(stack: ExitStack, size: int) -> RunFn:
            heap = stack.enter_context(DmaHeap(path))
            heap_fd = heap.fileno()
            name = heap.name

            def run(n: int) -> None:
                for _ in range(n):
                    data = alloc_struct(len=size, fd_flags=flags, heap_flags=0)
                    _fd_ioctl(
                        heap_fd,
                        req,
                        data,
                        name="DMA_HEAP_IOCTL_ALLOC",
                        what=f"allocate {size} bytes from dma-heap {name}",
                        path=path,
                    )
                    os.close(data.fd)

            return run

        def ctypes_ioctl(stack: ExitStack, size: int) -> RunFn:
            heap_fd = stack.enter_context(DmaHeap(path)).fileno()

            def run(n: int) -> None:
                for _ in range(n):
                    data = alloc_struct(len=size, fd_flags=flags, heap_flags=0)
                    fcntl.ioctl(heap_fd, req, data, True)
                    os.close(data.fd)

            return run

        def lean_owner(stack: ExitStack, size: int) -> RunFn:
            heap_fd = stack.enter_context(DmaHeap(path)).fileno()

            def run(n: int) -> None:
                for _ in range(n):
                    data = alloc_struct(len=size, fd_flags=flags, heap_flags=0)
                    fcntl.ioctl(heap_fd, req, data, True)
                    _LeanOwner(data.fd).close()

            return run

        def struct_only(stack: ExitStack, size: int) -> RunFn:
            def run(n: int) -> None:
                for _ in range(n):
                    alloc_struct(len=size, fd_flags=flags, heap_flags=0)

            return run

        steps += [
            ("floor: fcntl.ioctl(bytearray) + os.close", "the least Python can do", raw_ioctl),
            (
                "ctypes struct + fcntl.ioctl + os.close",
                "as allocate builds its argument",
                ctypes_ioctl,
            ),
            (
                "ctypes struct + ioctl + lean owner",
                "prototype: __slots__ + __del__ owner",
                lean_owner,
            ),
            (
                "ctypes struct + devalloc _fd.ioctl + os.close",
                "the ioctl helper, eager message",
                helper_ioctl,
            ),
            ("ctypes struct construction only", "dma_heap_allocation_data(...)", struct_only),
        ]
    elif source == "memfd":

        def raw_memfd(stack: ExitStack, size: int) -> RunFn:
            def run(n: int) -> None:
                for _ in range(n):
                    fd = os.memfd_create("devalloc", os.MFD_CLOEXEC)
                    os.ftruncate(fd, size)
                    os.close(fd)

            return run

        def memfd_owner(stack: ExitStack, size: int) -> RunFn:
            def run(n: int) -> None:
                for _ in range(n):
                    Memfd(size).close()

            return run

        steps += [
            (
                "floor: memfd_create + ftruncate + close",
                "the least Python can do",
                raw_memfd,
            ),
            ("Memfd(size).close()", "the sealed memfd owner (udmabuf's path)", memfd_owner),
        ]

    def limits_charge(stack: ExitStack, size: int) -> RunFn:
        charge, discharge = limits.charge, limits.discharge

        def run(n: int) -> None:
            for _ in range(n):
                charge(size, "bench")
                discharge(size)
            limits.in_use()  # its share of the fold

        return run

    def two_clocks(stack: ExitStack, size: int) -> RunFn:
        clock = time.perf_counter_ns

        def run(n: int) -> None:
            for _ in range(n):
                clock() - clock()

        return run

    def stats_events(stack: ExitStack, size: int) -> RunFn:
        stats = HeapStats()
        record, hook = stats.record_allocation, stats.close_hook

        def run(n: int) -> None:
            for _ in range(n):
                record(size, 1000)
                hook(size)
            stats.snapshot("bench", "memfd")  # its share of the fold

        return run

    def limits_inline(stack: ExitStack, size: int) -> RunFn:
        log, charges, discharge, admit = (
            limits.log_charge,
            limits.charges,
            limits.discharge,
            limits.admit,
        )

        def run(n: int) -> None:
            for _ in range(n):
                log(size)
                if len(charges) > limits.bound or size > limits.fast_max:
                    admit(size, "bench")
                discharge(size)
            limits.in_use()  # its share of the fold

        return run

    steps += [
        (
            "limits.charge + discharge",
            "the public charge function, folds included",
            limits_charge,
        ),
        (
            "limits inline charge + discharge",
            "the heaps' inlined lock-free charge, folds included",
            limits_inline,
        ),
        ("perf_counter_ns() x 2", "the registry's latency clock", two_clocks),
        ("HeapStats.record_allocation + close hook", "the registry's counters", stats_events),
        (
            "Buffer._adopt + 1 close hook, close",
            "a registry buffer's object (one hook: the counters' log)",
            buffer_adopt((HeapStats().close_hook,)),
        ),
        ("os.close(os.dup(fd))", "dup + close of a buffer fd", dup_close),
        ("Buffer(dup, size=...).close()", "Buffer with the size given", buffer_known),
        ("Buffer._adopt(dup, ...).close()", "the heaps' constructor", buffer_adopt(())),
        ("Buffer(dup).close()", "Buffer that inspects the fd (lseek + F_GETFL)", buffer_inspect),
        ("os.lseek(fd, 0, SEEK_END)", "one syscall Buffer makes without size=", lseek),
        ("fcntl(fd, F_GETFL)", "one syscall Buffer makes without writable=", getfl),
        ("weakref.finalize(...).detach()", "the GC safety net, made and dropped", finalize),
        ("Lock + deque pop, Lock + deque append", "the least a pool can do", minimal_pool),
        ("object()", "a plain Python object, for scale", plain_object),
    ]
    return steps


def access_profile_steps(source: str) -> list[tuple[str, str, Setup]]:
    """(name, what it measures, setup) for the parts of one empty ``cpu_access("w")`` block."""
    steps: list[tuple[str, str, Setup]] = []
    req = _buf_uapi.DMA_BUF_IOCTL_SYNC
    write = _buf_uapi.DMA_BUF_SYNC_WRITE
    start = _buf_uapi.DMA_BUF_SYNC_START
    end = _buf_uapi.DMA_BUF_SYNC_END
    sync_struct = _buf_uapi.dma_buf_sync

    def whole(stack: ExitStack, size: int) -> RunFn:
        return py_access(source, "sync")(stack, size)

    @contextmanager
    def empty_cm() -> Iterator[None]:
        yield

    def context_manager(stack: ExitStack, size: int) -> RunFn:
        def run(n: int) -> None:
            for _ in range(n):
                with empty_cm():
                    pass

        return run

    def views(stack: ExitStack, size: int) -> RunFn:
        mapping = make_buffer(stack, source, size)
        buf_map = stack.enter_context(mmap_of(mapping, size))

        def run(n: int) -> None:
            for _ in range(n):
                view = memoryview(buf_map)
                ro = view.toreadonly()
                ro.release()
                view.release()

        return run

    if source.startswith(("dmaheap:", "udmabuf")):

        def raw_sync(mutable: bool) -> Setup:
            def setup(stack: ExitStack, size: int) -> RunFn:
                fd = make_buffer(stack, source, size).fileno()
                begin = struct.pack("=Q", int(start | write))
                finish = struct.pack("=Q", int(end | write))
                ioctl = fcntl.ioctl

                def run_bytes(n: int) -> None:
                    for _ in range(n):
                        ioctl(fd, req, begin)
                        ioctl(fd, req, finish)

                mbegin, mfinish = bytearray(begin), bytearray(finish)

                def run_bytearray(n: int) -> None:
                    for _ in range(n):
                        ioctl(fd, req, mbegin, True)
                        ioctl(fd, req, mfinish, True)

                return run_bytearray if mutable else run_bytes

            return setup

        def ctypes_sync(stack: ExitStack, size: int) -> RunFn:
            fd = make_buffer(stack, source, size).fileno()
            begin = int(start | write)
            finish = int(end | write)

            def run(n: int) -> None:
                for _ in range(n):
                    fcntl.ioctl(fd, req, sync_struct(flags=begin), True)
                    fcntl.ioctl(fd, req, sync_struct(flags=finish), True)

            return run

        def flag_or(stack: ExitStack, size: int) -> RunFn:
            def run(n: int) -> None:
                for _ in range(n):
                    _ = start | write
                    _ = end | write

            return run

        def flag_message(stack: ExitStack, size: int) -> RunFn:
            desc = f"buffer from {source_name(source)}"
            begin = start | write
            finish = end | write

            def run(n: int) -> None:
                for _ in range(n):
                    _ = f"CPU access sync ({begin!r}) of {desc}"
                    _ = f"CPU access sync ({finish!r}) of {desc}"

            return run

        def lean_access(stack: ExitStack, size: int) -> RunFn:
            buf = make_buffer(stack, source, size)
            buf_map = stack.enter_context(mmap_of(buf, size))
            access = _LeanAccess(buf.fileno(), buf_map, int(write))

            def run(n: int) -> None:
                for _ in range(n):
                    with access:
                        pass

            return run

        steps += [
            (
                "prototype: class-based bracket, prebuilt sync args",
                "what a lean cpu_access costs",
                lean_access,
            ),
            (
                "floor: 2 x fcntl.ioctl(SYNC, bytearray)",
                "START|WRITE and END|WRITE, nothing else",
                raw_sync(mutable=True),
            ),
            (
                "2 x fcntl.ioctl(SYNC, bytes)",
                "the same with immutable arguments (fcntl makes and drops a TypeError)",
                raw_sync(mutable=False),
            ),
            (
                "2 x (ctypes dma_buf_sync + fcntl.ioctl)",
                "as _sync builds its argument",
                ctypes_sync,
            ),
            ("2 x DmaBufSyncFlag |", "IntFlag arithmetic per access", flag_or),
            ('2 x f"... {flags!r} ..."', "the error text built before every sync", flag_message),
        ]
    steps += [
        ('Buffer.cpu_access("w"), empty block', "the whole bracket", whole),
        ("@contextmanager, empty", "generator-based context manager alone", context_manager),
        ("memoryview + toreadonly + 2 x release", "the views cpu_access hands out", views),
    ]
    steps.sort(key=lambda step: step[2] is not whole)  # the whole bracket first
    return steps


@contextmanager
def mmap_of(buf: Buffer, size: int) -> Iterator[mmap.mmap]:
    """A separate shared mapping of ``buf`` (for measuring view costs without the bracket)."""
    mapping = mmap.mmap(buf.fileno(), size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
    try:
        yield mapping
    finally:
        mapping.close()


# -- optional layers (pool, carveout), used when they exist ----------------------------------


def optional_cells(sizes: tuple[int, ...], *, vm: bool) -> tuple[list[Cell], list[str]]:
    """Cells for the layers that may not exist yet (registry, pool, carveout), if they work."""
    cells: list[Cell] = []
    skipped: list[str] = []
    for name, make in (
        ("registry", registry_cells),
        ("pool", pool_cells),
        ("carveout", carveout_cells),
    ):
        try:
            cells += make(sizes, skipped, vm=vm)
        except ImportError as exc:
            skipped.append(f"{name}: not importable ({exc})")
    return cells, skipped


def registry_cells(sizes: tuple[int, ...], skipped: list[str], *, vm: bool) -> list[Cell]:
    """HeapRegistry.allocate(select(HeapRequest()), size).close(): the registry's own cost, with
    its bookkeeping counted. The counters fold their log every FOLD_AT events (2048 allocations
    and closes), and a batch in the VM is ~60 operations: a cell that just loops shows the fold
    in one batch of ~35 and in no other, so its median leaves the fold out. Up to 64 KiB a batch
    therefore runs whole fold cycles (its operations rounded up to a multiple of FOLD_AT / 2, the
    time scaled back to the operations asked for); above, where that would take minutes, a batch
    ends with a forced fold (which counts the fold's fixed cost once per batch, more than its
    share). Either way a batch also folds devalloc.limits' log of closes (limits.in_use())."""
    from devalloc.heaps.properties import HeapRequest
    from devalloc.heaps.registry import HeapRegistry

    if dma_heap_usable(SYSTEM_HEAP) is not None:
        skipped.append("registry: measured only over the system dma-heap, which is absent")
        return []
    cycle = FOLD_AT // 2  # alloc + close: two events each

    def setup(stack: ExitStack, size: int) -> RunFn:
        registry = stack.enter_context(HeapRegistry.discover())
        heap = registry.select(HeapRequest())
        chosen = registry.properties(heap).name
        if os.path.basename(chosen) != "system":
            raise BenchError(f"the registry chose {chosen}, not the system dma-heap")
        # The heap's counters (private: the bench folds what the hot path would, where
        # registry.stats() would add building a snapshot).
        stats = registry._entry(heap).stats
        stats.fold()

        def whole_cycles(n: int) -> int:
            ops = -(-n // cycle) * cycle
            t0 = now_ns()
            for _ in range(ops):
                registry.allocate(heap, size).close()
            limits.in_use()
            return (now_ns() - t0) * n // ops

        def forced_fold(n: int) -> None:
            for _ in range(n):
                registry.allocate(heap, size).close()
            stats.fold()
            limits.in_use()

        return whole_cycles if size <= 64 * KIB else forced_fold

    def unfolded(stack: ExitStack, size: int) -> RunFn:
        registry = stack.enter_context(HeapRegistry.discover())
        heap = registry.select(HeapRequest())

        def run(n: int) -> None:
            for _ in range(n):
                registry.allocate(heap, size).close()

        return run

    baseline = f"dmaheap:{SYSTEM_HEAP}"
    cells = [
        Cell("alloc", "alloc", "registry:system", "python", size, setup, c_source=baseline)
        for size in sizes
    ]
    note = "the old, too short cell: no fold inside a batch"
    cells.append(
        Cell(
            "profile-alloc",
            "registry.allocate(size).close(), folds not counted",
            f"dmaheap:{SYSTEM_HEAP}",
            "python",
            sizes[0],
            unfolded,
            note=note,
        )
    )
    return cells


def pool_cells(sizes: tuple[int, ...], skipped: list[str], *, vm: bool) -> list[Cell]:
    """BufferPool acquire + release over the system heap (memfd where there is none)."""
    from devalloc.pool import BufferPool

    source = f"dmaheap:{SYSTEM_HEAP}" if dma_heap_usable(SYSTEM_HEAP) is None else "memfd"

    def pool_setup(owner: str | None) -> Setup:
        def setup(stack: ExitStack, size: int) -> RunFn:
            if source == "memfd":
                heap: Any = MemfdHeap()
            else:
                heap = stack.enter_context(DmaHeap(SYSTEM_HEAP))
            pool = stack.enter_context(BufferPool(heap, size, 2, name="bench"))

            def run(n: int) -> None:
                for _ in range(n):
                    pool.acquire(owner=owner).release()

            return run

        return setup

    cells = []
    for label, owner, note in (
        ("same owner", "bench", "acquire(owner=same).release(): no zeroing"),
        ("no owner", None, "acquire().release(): zeroed on every reuse (the default)"),
    ):
        for size in sizes:
            cells.append(
                Cell(
                    "pool",
                    "acquire+release",
                    f"pool:{label}",
                    "python",
                    size,
                    pool_setup(owner),
                    c_source=source,
                    note=note,
                )
            )
    return cells


def reserve_huge_pages(pages: int) -> str | None:
    """In the VM, make sure ``pages`` 2 MiB huge pages are reserved; None, or why not."""
    path = "/proc/sys/vm/nr_hugepages"
    try:
        with open(path, encoding="ascii") as f:
            have = int(f.read())
        if have < pages:
            with open(path, "w", encoding="ascii") as f:
                f.write(str(pages))
        with open(path, encoding="ascii") as f:
            have = int(f.read())
    except (OSError, ValueError) as exc:
        return f"cannot reserve huge pages in {path}: {exc}"
    return None if have >= pages else f"only {have} of {pages} huge pages could be reserved"


def carveout_cells(sizes: tuple[int, ...], skipped: list[str], *, vm: bool) -> list[Cell]:
    """Carveout allocation latency (allocate alone, and allocate + close with its zeroing)."""
    from devalloc.heaps.carveout import HUGE_PAGE_SIZE, Carveout

    if udmabuf_usable() is not None:
        skipped.append(f"carveout: needs udmabuf: {udmabuf_usable()}")
        return []

    def region_for(size: int) -> int:
        # Room for two buffers, in whole huge pages (made per cell: small cells stay cheap).
        return max(HUGE_PAGE_SIZE, -(-2 * size // HUGE_PAGE_SIZE) * HUGE_PAGE_SIZE)

    backings = ["shmem"]
    if vm:
        why = reserve_huge_pages(region_for(max(sizes)) // HUGE_PAGE_SIZE + 2)
        if why is None:
            backings.append("hugetlb")
        else:
            skipped.append(f"carveout on hugetlb: {why}")
    else:
        skipped.append("carveout on hugetlb: measured only in the VM (needs reserved huge pages)")

    def carveout_setup(hugetlb: bool, with_close: bool) -> Setup:
        def setup(stack: ExitStack, size: int) -> RunFn:
            region = region_for(size)
            carveout = stack.enter_context(Carveout(region, hugetlb=hugetlb, name="bench"))
            clock = now_ns

            def alloc_close(n: int) -> None:
                for _ in range(n):
                    carveout.allocate(size).close()

            def alloc_only(n: int) -> int:
                total = 0
                for _ in range(n):
                    t0 = clock()
                    buf = carveout.allocate(size)
                    total += clock() - t0
                    buf.close()
                return total

            return alloc_close if with_close else alloc_only

        return setup

    cells = []
    for backing in backings:
        for op, with_close, note in (
            ("allocate", False, "allocate() alone (close untimed)"),
            ("alloc+close", True, "allocate + close, which zeroes the range for reuse"),
        ):
            for size in sizes:
                cells.append(
                    Cell(
                        "carveout",
                        op,
                        f"carveout:{backing}",
                        "python",
                        size,
                        carveout_setup(backing == "hugetlb", with_close),
                        note=note,
                    )
                )
    return cells


# -- the plan of cells -----------------------------------------------------------------------


def dma_heap_usable(path: str) -> str | None:
    """None if ``path`` can allocate, else why not."""
    if not os.path.exists(path):
        return f"{path} is absent (no dma-heap support)"
    if not os.access(path, os.R_OK):
        return f"{path} is not accessible to this user"
    return None


def udmabuf_usable() -> str | None:
    """None if /dev/udmabuf can be used, else why not."""
    if not os.path.exists(UDMABUF_PATH):
        return f"{UDMABUF_PATH} is absent (no udmabuf support)"
    if not os.access(UDMABUF_PATH, os.R_OK | os.W_OK):
        return f"{UDMABUF_PATH} is not accessible to this user"
    return None


def plan(
    sizes: tuple[int, ...], *, require_kernel: bool, bandwidth: bool = True
) -> tuple[list[Cell], list[str]]:
    """Every cell this machine can run, and a line for each one it cannot."""
    cells: list[Cell] = []
    skipped: list[str] = []
    sources: list[str] = []
    heap_why = dma_heap_usable(SYSTEM_HEAP)
    udmabuf_why = udmabuf_usable()
    for why in (heap_why, udmabuf_why):
        if why and require_kernel:
            raise BenchError(f"the VM must provide this: {why}")
    if heap_why is None:
        sources.append(f"dmaheap:{SYSTEM_HEAP}")
    else:
        skipped.append(f"dma-heap system: {heap_why}")
    # Other heaps (the full kernel's CMA heap "reserved", ...): allocation only.
    for path in heap_paths():
        if path != SYSTEM_HEAP and dma_heap_usable(path) is None:
            sources.append(f"dmaheap:{path}")
    if udmabuf_why is None:
        sources.append("udmabuf")
    else:
        skipped.append(f"udmabuf: {udmabuf_why}")
    sources.append("memfd")
    # memfd is the host's path; in the VM the dma-buf paths are what is measured.
    access_source = sources[0]

    for source in sources:
        for size in sizes:
            cells.append(
                Cell("alloc", "alloc", source, "python", size, py_alloc(source), c_source=source)
            )
            cells.append(Cell("alloc", "alloc", source, "c", size, c_source=source))
    for op in BANDWIDTH_OPS if bandwidth else ():
        for size in sizes:
            setup = py_access(access_source, op)
            cells.append(
                Cell("access", op, access_source, "python", size, setup, c_source=access_source)
            )
            cells.append(Cell("access", op, access_source, "c", size, c_source=access_source))
            cells.append(Cell("access", op, "anon", "c", size, c_source="anon"))
    setup = py_access(access_source, "sync")
    cells.append(
        Cell("access", "sync", access_source, "python", sizes[0], setup, c_source=access_source)
    )
    cells.append(Cell("access", "sync", access_source, "c", sizes[0], c_source=access_source))
    for name, note, setup in profile_steps(access_source):
        cells.append(
            Cell("profile-alloc", name, access_source, "python", sizes[0], setup, note=note)
        )
    for name, note, setup in access_profile_steps(access_source):
        cells.append(
            Cell("profile-access", name, access_source, "python", sizes[0], setup, note=note)
        )
    extra, extra_skipped = optional_cells(sizes, vm=require_kernel)
    return cells + extra, skipped + extra_skipped


# -- results ---------------------------------------------------------------------------------


def cell_record(cell: Cell) -> dict[str, Any]:
    """A cell as it goes into the result file."""
    rec: dict[str, Any] = {
        "group": cell.group,
        "op": cell.op,
        "source": cell.source,
        "impl": cell.impl,
        "size": cell.size,
        "unit": "ns/op",
        "note": cell.note,
        "c_baseline": cell.c_source if cell.impl == "python" else "",
        "ops_per_batch": cell.ops_per_batch,
        "samples": [round(s, 3) for s in cell.samples],
        "error": cell.error,
    }
    if cell.samples:
        rec.update({k: round(v, 3) for k, v in summarize(cell.samples).items()})
        if cell.group == "access" and cell.op != "sync":
            rec["gbps_median"] = round(cell.size / rec["median"], 3)
            rec["gbps_p95"] = round(cell.size / rec["p95"], 3)
    return rec


def comparisons(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every ratio the issue asks for, with its target and whether it is met."""
    by = {
        (r["group"], r["op"], r["source"], r["impl"], r["size"]): r
        for r in records
        if "median" in r
    }
    out: list[dict[str, Any]] = []

    def add(
        name: str, size: int, num: dict[str, Any], den: dict[str, Any], op: str, target: float
    ) -> None:
        ratio = num["median"] / den["median"]
        ratio_min = num["min"] / den["min"]
        met = {"<=": ratio <= target, ">=": ratio >= target, "<": ratio < target}[op]
        out.append(
            {
                "name": name,
                "size": size,
                "numerator": f"{num['impl']} {num['op']} {num['source']}",
                "denominator": f"{den['impl']} {den['op']} {den['source']}",
                "numerator_median_ns": num["median"],
                "denominator_median_ns": den["median"],
                "ratio": round(ratio, 3),
                "ratio_of_minimums": round(ratio_min, 3),
                "target": f"{op} {target}",
                "met": met,
            }
        )

    for (group, op, source, impl, size), py in sorted(by.items(), key=lambda kv: kv[0]):
        if impl != "python":
            continue
        c = by.get((group, op, py["c_baseline"], "c", size))
        if group == "alloc" and c is not None:
            # memfd_create + ftruncate touch no pages: the cost does not grow with the size, so
            # the per-call target (2x) applies at every size.
            target = 2.0 if size < MIB or source == "memfd" else 1.1
            add(f"alloc+close python/c ({source_name(source)})", size, py, c, "<=", target)
        if group == "access" and op != "sync" and c is not None:
            # Bandwidth ratio python/c = c time / python time.
            add(f"{op} bandwidth python/c ({source_name(source)})", size, c, py, ">=", 0.9)
            plain = by.get((group, op, "anon", "c", size))
            if plain is not None:
                add(f"{op} bandwidth python/plain C memory", size, plain, py, ">=", 0.9)
        if group == "pool":
            fresh = by.get(("alloc", "alloc", py["c_baseline"], "c", size))
            if fresh is not None:
                if source == "pool:no owner":  # zeroed for a new owner on every lend (issue 12)
                    limit = 2.0 if size < MIB else 1.0
                    add(f"{source} acquire+release / C fresh alloc", size, py, fresh, "<=", limit)
                else:
                    add(f"{source} acquire+release / C fresh alloc", size, py, fresh, "<", 1.0)
    for source in sorted({k[2] for k in by if k[0] == "carveout"}):
        for op in ("allocate", "alloc+close"):
            big = by.get(("carveout", op, source, "python", 8 * MIB))
            small = by.get(("carveout", op, source, "python", 4 * KIB))
            if big is not None and small is not None:
                add(f"{source} {op} latency 8 MiB / 4 KiB", 8 * MIB, big, small, "<=", 2.0)
    return out


def machine_info(mode: str) -> dict[str, Any]:
    """What ran the bench: CPU, memory, where (host or the VM), kernel."""
    cpu = ""
    with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_kib = 0
    with open("/proc/meminfo", encoding="utf-8") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    clocksource = ""
    with open(
        "/sys/devices/system/clocksource/clocksource0/current_clocksource", encoding="ascii"
    ) as f:
        clocksource = f.read().strip()
    info: dict[str, Any] = {
        "arch": platform.machine(),
        "cpu_model": cpu,
        "cpus": os.cpu_count(),
        "mem_total_mib": mem_kib // 1024,
        "clocksource": clocksource,
        "page_size": os.sysconf("SC_PAGE_SIZE"),
        "where": mode,
    }
    for key, env in (
        ("vm", "DEVALLOC_BENCH_VM"),
        ("host_cpu_model", "DEVALLOC_BENCH_HOST_CPU"),
        ("host_kernel", "DEVALLOC_BENCH_HOST_KERNEL"),
        ("host_load", "DEVALLOC_BENCH_HOST_LOAD"),
    ):
        if os.environ.get(env):
            info[key] = os.environ[env]
    return info


def git_revision() -> str:
    """The checkout's revision (``+dirty`` with local changes), from the runner or git."""
    if os.environ.get("DEVALLOC_BENCH_GIT"):
        return os.environ["DEVALLOC_BENCH_GIT"]
    try:
        proc = subprocess.run(
            ["git", "-C", REPO, "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            check=False,
        )
    except OSError:
        return "unknown"
    return proc.stdout.strip() or "unknown"


# -- the markdown summary --------------------------------------------------------------------


def fmt_ns(ns: float) -> str:
    """ns with a unit that keeps 3 significant digits."""
    if ns >= 1e6:
        return f"{ns / 1e6:.2f} ms"
    if ns >= 1e3:
        return f"{ns / 1e3:.2f} µs"
    return f"{ns:.0f} ns"


def cell_text(text: str) -> str:
    """Text safe inside a markdown table cell."""
    return text.replace("|", "\\|")


def markdown(result: dict[str, Any]) -> str:
    """The tables the README shows."""
    recs: dict[tuple[str, str, str, str, int], dict[str, Any]] = {
        (r["group"], r["op"], r["source"], r["impl"], r["size"]): r
        for r in result["cells"]
        if "median" in r
    }
    comps = {(c["name"], c["size"]): c for c in result["comparisons"]}
    lines = [
        f"### devalloc heap bench: {result['label']} (Linux {result['kernel']}, "
        f"Python {result['python']['version']}, {result['machine']['where']})",
        "",
    ]

    def verdict(name: str, size: int) -> tuple[str, str]:
        c = comps.get((name, size))
        if c is None:
            return "", ""
        return f"{c['ratio']:.2f}", f"{c['target']} {'✅' if c['met'] else '❌'}"

    sources = sorted({k[2] for k in recs if k[0] == "alloc" and k[3] == "python"})
    if sources:
        lines += [
            "alloc+close, ns/op: median (p95)",
            "",
            "| source | size | Python | C | Python/C | target |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for source in sources:
            for size in result["config"]["sizes"]:
                py = recs.get(("alloc", "alloc", source, "python", size))
                if py is None:
                    continue
                c = recs.get(("alloc", "alloc", py["c_baseline"], "c", size))
                if c is None:
                    continue
                ratio, target = verdict(f"alloc+close python/c ({source_name(source)})", size)
                lines.append(
                    f"| {source_name(source)} | {human_size(size)} | {fmt_ns(py['median'])} "
                    f"({fmt_ns(py['p95'])}) | {fmt_ns(c['median'])} ({fmt_ns(c['p95'])}) | "
                    f"{ratio} | {target} |"
                )
        lines.append("")
    clock = result["config"]["clock"]
    if clock == CLOCKS["icount"]:
        lines += [f"Clock: {clock} (1 µs = 1000 instructions), independent of the host's load.", ""]
    elif clock != "wall":
        lines += [f"Clock: {clock}.", ""]
    access = sorted({k[2] for k in recs if k[0] == "access" and k[3] == "python"})
    for source in access:
        if not any(k[0] == "access" and k[2] == source and k[1] != "sync" for k in recs):
            continue
        lines += [
            f"CPU access bandwidth on {source_name(source)} through cpu_access, GB/s: median "
            "(p95, the slow tail)",
            "",
            "| op | size | Python | C, same buffer | Python/C | C, plain memory | "
            "Python/plain | target |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for op in BANDWIDTH_OPS:
            for size in result["config"]["sizes"]:
                py = recs.get(("access", op, source, "python", size))
                c = recs.get(("access", op, source, "c", size))
                plain = recs.get(("access", op, "anon", "c", size))
                if py is None or c is None:
                    continue
                ratio, target = verdict(f"{op} bandwidth python/c ({source_name(source)})", size)
                pratio, _ = verdict(f"{op} bandwidth python/plain C memory", size)
                plain_txt = f"{plain['gbps_median']:.2f} ({plain['gbps_p95']:.2f})" if plain else ""
                lines.append(
                    f"| {op} | {human_size(size)} | {py['gbps_median']:.2f} "
                    f"({py['gbps_p95']:.2f}) | {c['gbps_median']:.2f} ({c['gbps_p95']:.2f}) | "
                    f"{ratio} | {plain_txt} | {pratio} | {target} |"
                )
        lines.append("")
    for source in access:
        py_sync = recs.get(("access", "sync", source, "python", result["config"]["sizes"][0]))
        c_sync = recs.get(("access", "sync", source, "c", result["config"]["sizes"][0]))
        if py_sync and c_sync:
            lines += [
                f"The cpu_access bracket alone on {source_name(source)} (SYNC START + END, no "
                f"data): Python {fmt_ns(py_sync['median'])} ({fmt_ns(py_sync['p95'])}), C "
                f"{fmt_ns(c_sync['median'])} ({fmt_ns(c_sync['p95'])}): "
                f"{py_sync['median'] / c_sync['median']:.2f}x.",
                "",
            ]
    pool = [r for k, r in recs.items() if k[0] == "pool"]
    if pool:
        lines += [
            "pool acquire+release vs a fresh allocation, ns/op: median (p95)",
            "",
            "| pool | size | acquire+release | C fresh | Python fresh | pool/C fresh | target |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        for r in sorted(pool, key=lambda r: (r["source"], r["size"])):
            fresh = r["c_baseline"]
            c = recs.get(("alloc", "alloc", fresh, "c", r["size"]))
            pyf = recs.get(("alloc", "alloc", fresh, "python", r["size"]))
            ratio, target = verdict(f"{r['source']} acquire+release / C fresh alloc", r["size"])
            lines.append(
                f"| {r['source']} | {human_size(r['size'])} | {fmt_ns(r['median'])} "
                f"({fmt_ns(r['p95'])}) | {fmt_ns(c['median']) if c else ''} | "
                f"{fmt_ns(pyf['median']) if pyf else ''} | {ratio} | {target} |"
            )
        lines.append("")
    carve = sorted(
        (r for k, r in recs.items() if k[0] == "carveout"),
        key=lambda r: (r["source"], r["op"], r["size"]),
    )
    if carve:
        lines += [
            "carveout latency (Python), ns/op: median (p95)",
            "",
            "| carveout | op | size | time | what |",
            "| --- | --- | --- | --- | --- |",
        ]
        lines += [
            f"| {r['source']} | {r['op']} | {human_size(r['size'])} | {fmt_ns(r['median'])} "
            f"({fmt_ns(r['p95'])}) | {r['note']} |"
            for r in carve
        ]
        lines.append("")
        for c in result["comparisons"]:
            if c["name"].startswith("carveout:"):
                lines.append(
                    f"- {c['name']}: {c['ratio']:.2f} (target {c['target']} "
                    f"{'✅' if c['met'] else '❌'})"
                )
        lines.append("")
    for group, title in (
        ("profile-alloc", "Where a Python allocation's time goes"),
        ("profile-access", "Where the time of an empty cpu_access block goes"),
    ):
        prof = [r for k, r in recs.items() if k[0] == group]
        if not prof:
            continue
        lines += [
            f"{title} ({source_name(prof[0]['source'])}, {human_size(prof[0]['size'])}), "
            "ns/op: median (p95)",
            "",
            "| step | time | what |",
            "| --- | --- | --- |",
        ]
        lines += [
            f"| {cell_text(r['op'])} | {fmt_ns(r['median'])} ({fmt_ns(r['p95'])}) | "
            f"{cell_text(r['note'])} |"
            for r in prof
        ]
        lines.append("")
    if result["skipped"]:
        lines += ["Not measured:", ""] + [f"- {s}" for s in result["skipped"]] + [""]
    errors = [r for r in result["cells"] if r["error"]]
    if errors:
        lines += ["Failed:", ""] + [
            f"- {r['group']} {r['op']} {r['source']} {r['impl']} {r['size']}: {r['error']}"
            for r in errors
        ]
    return "\n".join(lines)


# -- main ------------------------------------------------------------------------------------


@contextmanager
def c_binary(path: str | None) -> Iterator[str]:
    """The C baseline: ``path`` if given, else bench/heapbench.c compiled into a temp dir."""
    if path:
        if not os.access(path, os.X_OK):
            raise BenchError(f"the C baseline {path} is not an executable")
        yield path
        return
    gcc = shutil.which("gcc")
    if gcc is None:
        raise BenchError("gcc is needed to build bench/heapbench.c (apt-get install gcc libc6-dev)")
    with tempfile.TemporaryDirectory(prefix="heapbench-") as tmp:
        out = os.path.join(tmp, "heapbench")
        src = os.path.join(HERE, "heapbench.c")
        proc = subprocess.run(
            [gcc, "-O2", "-static", "-o", out, src], capture_output=True, text=True, check=False
        )
        if proc.returncode != 0:
            raise BenchError(f"gcc -O2 -static {src} failed:\n{proc.stderr.strip()}")
        yield out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="devalloc heap benchmark: Python paths against bench/heapbench.c",
        epilog="examples: python bench/heaps.py --host; bash bench/run-vm.sh (the VM run)",
    )
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--host", action="store_true", help="measure on this machine")
    where.add_argument("--vm", action="store_true", help="inside the test VM (run-vm.sh uses it)")
    p.add_argument("--quick", action="store_true", help="seconds, not minutes (schema checks)")
    p.add_argument("--cbin", help="a prebuilt heapbench (default: build it with gcc)")
    p.add_argument("--out", help="result file (default bench/results/heaps-LABEL.json)")
    p.add_argument("--label", help="names the result (default: host, or the VM's kernel)")
    p.add_argument("--rounds", type=int, help="rounds over all cells (default 3; quick 1)")
    p.add_argument("--batches", type=int, help="timed batches per cell per round (default 7)")
    p.add_argument("--batch-ms", type=float, help="length of one batch in ms (default 10)")
    p.add_argument(
        "--budget-ms",
        type=float,
        help="time per cell and round after which no batch is added, if 3 were made "
        "(default 1000; quick 50)",
    )
    p.add_argument(
        "--no-bandwidth",
        action="store_true",
        help="skip the bandwidth cells (meaningless when the clock counts instructions)",
    )
    p.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="wall time, or this thread's CPU time (steadier on a busy host; not in the VM, "
        "whose guest cannot see the host taking its CPU)",
    )
    p.add_argument(
        "--only", help="measure only cells whose key (group|op|source|impl|size) matches this regex"
    )
    p.add_argument("--sizes", help="comma-separated byte sizes (default 4K,1M,8M,32M)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    mode = "vm" if args.vm else "host"
    label = args.label or ("host" if args.host else platform.release())
    if args.sizes:
        sizes = tuple(int(s, 0) for s in args.sizes.split(","))
    else:
        sizes = QUICK_SIZES if args.quick else SIZES
    cfg = Config(
        batch_ns=int((args.batch_ms or (1.0 if args.quick else 10.0)) * 1e6),
        batches=args.batches or (3 if args.quick else 7),
        rounds=args.rounds or (1 if args.quick else 3),
        budget_ns=int((args.budget_ms or (50.0 if args.quick else 1000.0)) * 1e6),
    )
    out = args.out or os.path.join(HERE, "results", f"heaps-{label}.json")
    if args.clock == "cpu":
        _CLOCK[0] = time.thread_time_ns
    started = time.monotonic()
    try:
        cells, skipped = plan(sizes, require_kernel=args.vm, bandwidth=not args.no_bandwidth)
        if args.no_bandwidth:
            skipped.append("bandwidth: not measured in this run (--no-bandwidth)")
        if args.only:
            pattern = re.compile(args.only)
            cells = [c for c in cells if pattern.search(c.key)]
            skipped.append(f"cells whose key does not match {args.only!r} (--only)")
        with c_binary(args.cbin) as cbin:
            run_cells(cells, cfg, cbin, progress=not args.quick)
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    records = [cell_record(c) for c in cells]
    result: dict[str, Any] = {
        "schema": SCHEMA,
        "label": label,
        "mode": mode,
        "quick": bool(args.quick),
        # In the VM the runner passes the host's clock: the guest's drifts (with -icount it jumps
        # whenever the guest idles).
        "timestamp": os.environ.get("DEVALLOC_BENCH_HOST_TIME")
        or datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "guest_timestamp": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "kernel": platform.release(),
        "python": {
            "version": platform.python_version(),
            "implementation": platform.python_implementation(),
            "executable": sys.executable,
            "gc_enabled": gc.isenabled(),
        },
        "devalloc_revision": git_revision(),
        "machine": machine_info(mode),
        "config": {
            "sizes": list(sizes),
            "batch_ns": cfg.batch_ns,
            "batches_per_round": cfg.batches,
            "rounds": cfg.rounds,
            "budget_ns_per_cell_round": cfg.budget_ns,
            "min_batches": MIN_BATCHES,
            "warmup_ops": {str(s): cfg.warmup(s) for s in sizes},
            "timer": (
                "time.thread_time_ns / clock_gettime(CLOCK_THREAD_CPUTIME_ID)"
                if args.clock == "cpu"
                else "time.perf_counter_ns / clock_gettime(CLOCK_MONOTONIC)"
            ),
            "clock": CLOCKS[
                "cpu" if args.clock == "cpu" else os.environ.get("DEVALLOC_BENCH_CLOCK", "wall")
            ],
        },
        "elapsed_s": round(time.monotonic() - started, 1),
        "cells": records,
        "comparisons": comparisons(records),
        "skipped": skipped,
    }
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    tmp = f"{out}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1)
        f.write("\n")
    os.replace(tmp, out)
    print(markdown(result))
    print(f"\nbench: results in {out} ({result['elapsed_s']} s)", file=sys.stderr)
    failed = [r for r in records if r["error"]]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
