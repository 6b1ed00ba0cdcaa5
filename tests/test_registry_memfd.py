"""The heap registry on the host: discovery over fake /dev, /sys and /proc trees (permissions
included), the memfd heap, guards, counters, leaks, and ``devalloc heaps``."""

from __future__ import annotations

import contextlib
import gc
import json
import os
import pathlib
import random
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devalloc import ClosedResourceError, UsageError, cli, limits
from devalloc.errors import AllocationLimitError, NotSupportedError, PermissionDeniedError
from devalloc.heaps.properties import HeapRequest
from devalloc.heaps.registry import (
    HeapId,
    HeapRegistry,
    NoHeapError,
    default_cap,
    read_meminfo,
    system_ram_bits,
)
from devalloc.heaps.stats import BUCKETS, FOLD_AT, HeapStats
from devalloc.heaps.udmabuf import UdmabufHeap

from .conftest import assert_fd_closed, open_fds

PAGE = os.sysconf("SC_PAGE_SIZE")
NOBODY = 65534

MEMINFO = """MemTotal:        2000000 kB
MemFree:         1500000 kB
CmaTotal:         262144 kB
CmaFree:          200000 kB
"""
IOMEM = """00000000-00000fff : Reserved
00001000-0009fbff : System RAM
000f0000-000fffff : Reserved
  000f0000-000fffff : System ROM
00100000-7ffdffff : System RAM
  01000000-01ffffff : Kernel code
100000000-17fffffff : System RAM
fd000000-fdffffff : PCI Bus 0000:00
"""


@pytest.fixture(autouse=True)
def _leak_check(no_fd_leak: None) -> None:
    """Every test here fails if it leaves an fd open."""


@contextlib.contextmanager
def unprivileged() -> Iterator[None]:
    """Run the block as an ordinary user, so that file modes apply (root ignores them)."""
    if os.geteuid() != 0:
        yield
        return
    os.setegid(NOBODY)
    os.seteuid(NOBODY)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)


@pytest.fixture
def tree() -> Iterator[pathlib.Path]:
    """A fake machine root that an ordinary user can traverse (pytest's tmp_path is 0700)."""
    with tempfile.TemporaryDirectory(prefix="devalloc-tree-") as root:
        os.chmod(root, 0o755)
        path = pathlib.Path(root)
        for d in ("dev/dma_heap", "dev/dri", "sys/module/udmabuf/parameters", "proc"):
            (path / d).mkdir(parents=True)
        for d in ("dev", "dev/dma_heap", "dev/dri", "sys", "proc"):
            os.chmod(path / d, 0o755)
        (path / "proc" / "meminfo").write_text(MEMINFO)
        (path / "proc" / "iomem").write_text(IOMEM)
        yield path


def node(path: pathlib.Path, mode: int = 0o666) -> None:
    path.touch()
    os.chmod(path, mode)


def discover(root: pathlib.Path, **kwargs: int) -> HeapRegistry:
    return HeapRegistry.discover(
        str(root / "dev"), str(root / "sys"), proc=str(root / "proc"), **kwargs
    )


def test_proc_readers(tree: pathlib.Path) -> None:
    meminfo = read_meminfo(str(tree / "proc"))
    assert meminfo["MemTotal"] == 2000000 * 1024
    assert (meminfo["CmaTotal"], meminfo["CmaFree"]) == (256 << 20, 200000 * 1024)
    assert default_cap(str(tree / "proc")) == 1000000 * 1024
    assert system_ram_bits(str(tree / "proc")) == 33  # RAM ends at 0x17fffffff
    hidden = tree / "hidden"
    hidden.mkdir()
    (hidden / "iomem").write_text("00000000-00000000 : System RAM\n")  # as a non-root user sees
    assert system_ram_bits(str(hidden)) is None
    assert read_meminfo(str(tree / "nowhere")) == {}
    assert default_cap(str(tree / "nowhere")) > 0  # falls back to sysconf


def test_an_empty_machine_has_only_memfd(tree: pathlib.Path) -> None:
    with discover(tree) as reg:
        [(heap_id, props)] = reg.heaps()
        assert (props.kind, props.device_importable, props.dma_bits) == ("memfd", False, 33)
        assert reg.cap == limits.max_buffer()  # devalloc's per-buffer cap, not a second rule
        with pytest.raises(NoHeapError, match="memfd is not importable by devices"):
            reg.select(HeapRequest())
        assert reg.select(HeapRequest(device_importable=False)) == heap_id


def test_discovery_of_a_fake_machine(tree: pathlib.Path) -> None:
    for name in ("system", "system-uncached", "reserved", "protected,video", "vendor,heap"):
        node(tree / "dev" / "dma_heap" / name)
    node(tree / "dev" / "udmabuf")
    (tree / "sys/module/udmabuf/parameters/size_limit_mb").write_text("32\n")
    node(tree / "dev" / "dri" / "card0")  # a regular file: no dumb buffers, so not a heap
    with discover(tree) as reg:
        heaps = reg.heaps()
        assert [p.name.rsplit("/", 1)[-1] for _, p in heaps] == [
            "system",
            "system-uncached",
            "reserved",
            "protected,video",
            "vendor,heap",
            "udmabuf",
            "memfd",
        ]
        props = {p.name.rsplit("/", 1)[-1]: p for _, p in heaps}
        assert all(p.accessible for p in props.values())
        assert props["system"].name == str(tree / "dev" / "dma_heap" / "system")
        assert props["reserved"].max_size == 256 << 20  # bounded by CmaTotal
        assert props["reserved"].contiguous is True
        assert props["udmabuf"].max_size == 32 << 20
        assert props["system"].dma_bits == props["udmabuf"].dma_bits == 33
        assert props["vendor,heap"].contiguous is None
        system, reserved = heaps[0][0], heaps[2][0]
        assert reg.select(HeapRequest()) == system
        assert reg.select(HeapRequest(contiguous=True, dma_bits=34)) == reserved
        with pytest.raises(NoHeapError, match="reaches 33 address bits, beyond the device's 32"):
            reg.select(HeapRequest(dma_bits=32, device_importable=False))
        # The fake node is a regular file: the kernel's answer (ENOTTY) comes back typed, and the
        # failure is counted.
        before = open_fds()
        with pytest.raises(NotSupportedError) as info:
            reg.allocate(system, 4096)
        assert info.value.operation == "DMA_HEAP_IOCTL_ALLOC"
        assert open_fds() == before
        assert reg.stats(system).failures == 1
        assert reg.stats(system).allocations == 0


@pytest.mark.skipif(not hasattr(os, "seteuid"), reason="needs seteuid")
def test_nodes_this_user_cannot_open_are_listed_with_the_reason(tree: pathlib.Path) -> None:
    node(tree / "dev" / "dma_heap" / "system", 0o000)
    node(tree / "dev" / "udmabuf", 0o666)
    node(tree / "dev" / "dri" / "card0", 0o000)
    with unprivileged():
        reg = discover(tree)
    with reg:
        heaps = reg.heaps()
        kinds = [p.kind for _, p in heaps]
        assert kinds == ["dma-heap", "udmabuf", "device", "memfd"]
        system, card = heaps[0][1], heaps[2][1]
        assert not system.accessible
        assert "EACCES" in system.reason
        assert "/dev/dma_heap/system" in system.reason
        assert not card.accessible
        assert "dumb buffers is unknown" in card.reason
        assert card.contiguous is None
        # selection moves on to udmabuf
        assert reg.select(HeapRequest()) == heaps[1][0]
        candidates = reg.candidates(HeapRequest())
        assert candidates[0].heap_id == heaps[1][0]
        rejected = {c.properties.kind: c.reasons for c in candidates[1:]}
        assert rejected["dma-heap"][0].startswith("is not accessible (cannot open dma-heap system")
        with pytest.raises(PermissionDeniedError, match="not accessible"):
            reg.allocate(heaps[0][0], 4096)


def test_allocations_counters_and_close_hooks(tree: pathlib.Path) -> None:
    with discover(tree) as reg:
        memfd = reg.select(HeapRequest(device_importable=False))
        bufs = [reg.allocate(memfd, size) for size in (1, PAGE, 3 * PAGE + 1)]
        assert [b.size for b in bufs] == [PAGE, PAGE, 4 * PAGE]
        snap = reg.stats(memfd)
        assert (snap.live_buffers, snap.live_bytes, snap.peak_bytes) == (3, 6 * PAGE, 6 * PAGE)
        assert snap.allocations == 3 == sum(snap.latency_ns)
        bufs[2].close()
        bufs[2].close()  # idempotent: counted once
        snap = reg.stats(memfd)
        assert (snap.live_buffers, snap.live_bytes, snap.peak_bytes) == (2, 2 * PAGE, 6 * PAGE)
        fd = bufs[1].fileno()
        with pytest.warns(ResourceWarning, match="unclosed buffer from memfd"):
            del bufs[1]  # the last reference: the finalizer runs now
        assert_fd_closed(fd)
        assert reg.stats(memfd).live_buffers == 1  # the collector's close counts too
        bufs[0].close()
        snap = reg.stats(memfd)
        assert (snap.live_buffers, snap.live_bytes, snap.failures) == (0, 0, 0)
        data = snap.to_json()
        assert json.loads(json.dumps(data)) == data
        assert sum(data["latency_ns"].values()) == 3
        assert snap.latency_quantile(0.5) is not None
        assert list(reg.stats_all()) == [h for h, _ in reg.heaps()]


@pytest.mark.parametrize("size", [0, -1, 1.5, True, "4096", None, 1 << 64])
def test_bad_sizes_are_refused_before_the_heap(tree: pathlib.Path, size: object) -> None:
    with discover(tree) as reg:
        memfd = reg.select(HeapRequest(device_importable=False))
        before = open_fds()
        with pytest.raises(UsageError, match="memfd"):
            reg.allocate(memfd, size)  # type: ignore[arg-type]
        assert open_fds() == before
        assert reg.stats(memfd).failures == 0


def test_the_cap_refuses_large_allocations(tree: pathlib.Path) -> None:
    with discover(tree, cap=8 * PAGE) as reg:
        memfd = reg.select(HeapRequest(device_importable=False))
        reg.allocate(memfd, 8 * PAGE).close()
        with pytest.raises(UsageError) as info:
            reg.allocate(memfd, 8 * PAGE + 1)
        message = str(info.value)
        assert f"{8 * PAGE + 1} bytes" in message
        assert f"cap of {8 * PAGE} bytes" in message
        assert "heap memfd" in message
    limits.set_limits(max_buffer=16 * PAGE)
    try:
        with discover(tree) as reg:  # default: devalloc's per-buffer cap
            assert reg.cap == 16 * PAGE
            memfd = reg.select(HeapRequest(device_importable=False))
            before = open_fds()
            with pytest.raises(AllocationLimitError, match=f"cap of {16 * PAGE} bytes") as err:
                reg.allocate(memfd, 16 * PAGE + 1)
            assert err.value.variable == "DEVALLOC_MAX_BUFFER"
            assert open_fds() == before
            assert reg.stats(memfd).failures == 0  # refused before the kernel
    finally:
        limits.set_limits()
    for cap in (0, -1, True, 1.0):
        with pytest.raises(UsageError, match="cap"):
            HeapRegistry(cap=cap)  # type: ignore[arg-type]


def test_names(tree: pathlib.Path) -> None:
    with discover(tree) as reg:
        memfd = reg.select(HeapRequest(device_importable=False))
        with reg.allocate(memfd, PAGE, name="camera-0") as buf:
            assert os.readlink(f"/proc/self/fd/{buf.fileno()}").startswith("/memfd:camera-0")
        before = open_fds()
        for bad in ("x" * 32, "nul\0"):
            with pytest.raises(UsageError, match="at most 31 bytes"):
                reg.allocate(memfd, PAGE, name=bad)
        assert open_fds() == before
        assert reg.stats(memfd).allocations == 1


def test_unknown_foreign_and_closed(tree: pathlib.Path) -> None:
    other = discover(tree)
    foreign = other.heaps()[0][0]
    other.close()
    reg = discover(tree)
    memfd = reg.heaps()[0][0]
    for bad in (foreign, object(), "memfd", [1]):
        with pytest.raises(UsageError, match=r"another heap registry|not a HeapId"):
            reg.allocate(bad, PAGE)  # type: ignore[arg-type]
        with pytest.raises(UsageError):
            reg.properties(bad)  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="another heap registry"):
        reg.stats(foreign)
    assert isinstance(memfd, HeapId)
    buf = reg.allocate(memfd, PAGE)
    reg.close()
    reg.close()
    assert reg.closed
    for call in (
        lambda: reg.allocate(memfd, PAGE),
        lambda: reg.select(HeapRequest(device_importable=False)),
        reg.heaps,
        lambda: reg.stats(memfd),
        reg.stats_all,
        lambda: reg.properties(memfd),
    ):
        with pytest.raises(ClosedResourceError, match="registry is closed"):
            call()
    with buf.cpu_access("w") as view:  # buffers outlive their registry
        view[0] = 1
    buf.close()


def test_memfd_buffers_from_many_threads(tree: pathlib.Path) -> None:
    with discover(tree) as reg:
        memfd = reg.heaps()[0][0]
        errors: list[BaseException] = []

        def work() -> None:
            try:
                for _ in range(50):
                    with reg.allocate(memfd, PAGE) as buf, buf.cpu_access("rw") as view:
                        view[0] = 0xAA
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=work) for _ in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors
        snap = reg.stats(memfd)
        assert (snap.allocations, snap.live_buffers, snap.live_bytes) == (800, 0, 0)


def _statm_rss_bytes() -> int:
    with open("/proc/self/statm", encoding="ascii") as f:
        return int(f.read().split()[1]) * PAGE


CYCLES = 100_000


def test_fd_count_and_rss_stay_flat_over_many_cycles(tree: pathlib.Path) -> None:
    """100 000 memfd alloc/map/write/close cycles (about 2 s here): no fd and no memory may stay.

    RSS tolerance: 2 MiB after a 1 000-cycle warm-up. A leaked mapping or buffer page would add
    4 KiB a cycle (400 MiB), a leaked Buffer object a few hundred bytes a cycle (tens of MiB);
    2 MiB leaves room for the allocator's arena growth and nothing else.
    """
    with discover(tree) as reg:
        memfd = reg.heaps()[0][0]

        def cycle() -> None:
            buf = reg.allocate(memfd, PAGE)
            with buf.cpu_access("w") as view:
                view[0] = 1
            buf.close()

        for _ in range(1000):
            cycle()
        gc.collect()
        fds = open_fds()
        rss = _statm_rss_bytes()
        start = time.perf_counter()
        for _ in range(CYCLES):
            cycle()
        elapsed = time.perf_counter() - start
        gc.collect()
        assert open_fds() == fds
        grown = _statm_rss_bytes() - rss
        assert grown < 2 << 20, f"RSS grew by {grown} bytes over {CYCLES} cycles"
        snap = reg.stats(memfd)
        assert (snap.allocations, snap.live_buffers) == (CYCLES + 1000, 0)
        print(f"{CYCLES} memfd cycles in {elapsed:.2f} s")


# -- devalloc heaps ----------------------------------------------------------------------------


def _heaps_argv(tree: pathlib.Path, *extra: str) -> list[str]:
    return [
        "heaps",
        "--dev",
        str(tree / "dev"),
        "--sysfs",
        str(tree / "sys"),
        "--proc",
        str(tree / "proc"),
        *extra,
    ]


def test_heaps_command_json(tree: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    node(tree / "dev" / "dma_heap" / "system")
    node(tree / "dev" / "dma_heap" / "reserved")
    assert cli.main(_heaps_argv(tree, "--json")) == 0
    data = json.loads(capsys.readouterr().out)
    assert [h["kind"] for h in data["heaps"]] == ["dma-heap", "dma-heap", "memfd"]
    assert data["heaps"][1]["contiguous"] is True
    assert data["heaps"][2]["device_importable"] is False
    assert data["cma"] == {"total": 256 << 20, "free": 200000 * 1024}
    assert data["allocation_cap"] == limits.max_buffer()


def test_heaps_command_table(tree: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    node(tree / "dev" / "dma_heap" / "system", 0o000)
    node(tree / "dev" / "dma_heap" / "system-uncached")
    with unprivileged():
        status = cli.main(_heaps_argv(tree))
    assert status == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "heaps (in selection order):"
    assert lines[1].split()[:3] == ["kind", "name", "memory"]
    system = next(line for line in lines if line.rstrip().find("/system ") > 0)
    assert "NOT ACCESSIBLE" in system
    assert "EACCES" in system
    uncached = next(line for line in lines if "system-uncached" in line)
    assert "write-combined" in uncached
    assert uncached.rstrip().endswith("ok")
    memfd = next(line for line in lines if line.split()[0] == "memfd")
    assert memfd.rstrip().endswith("ok (not importable by devices)")
    assert "CMA: 256 MiB total, 195.3 MiB free" in lines


def test_heaps_command_on_this_machine(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["heaps", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["heaps"][-1]["kind"] == "memfd"
    assert cli.main(["heaps"]) == 0
    assert "memfd" in capsys.readouterr().out


def test_the_core_imports_without_numpy() -> None:
    code = (
        "import sys; sys.modules['numpy'] = None\n"
        "import devalloc, devalloc.heaps, devalloc.buffer\n"
        "from devalloc.heaps import HeapRegistry, HeapRequest\n"
        "with HeapRegistry.discover() as reg:\n"
        "    heap = reg.select(HeapRequest(device_importable=False))\n"
        "    reg.allocate(heap, 4096).close()\n"
        "print('ok')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"


def test_udmabuf_limit_is_checked_before_the_kernel(tree: pathlib.Path) -> None:
    node(tree / "dev" / "udmabuf")  # a regular file: the kernel is never reached below
    with discover(tree) as reg:
        udmabuf = reg.heaps()[0][0]
        assert reg.properties(udmabuf).max_size == 64 << 20  # no parameter file: the default
        with pytest.raises(UsageError, match=f"above the heap's largest buffer, {64 << 20}"):
            reg.allocate(udmabuf, (64 << 20) + 1)
        assert reg.stats(udmabuf).failures == 0
    param = tree / "sys/module/udmabuf/parameters/size_limit_mb"
    param.write_text("16\n")
    with UdmabufHeap(str(tree / "dev" / "udmabuf"), size_limit_param=str(param)) as heap:
        assert heap.size_limit == 16 << 20
        before = open_fds()
        with pytest.raises(UsageError) as info:
            heap.allocate((16 << 20) + 1)
        assert "16 MiB" in str(info.value)
        assert str(param) in str(info.value)
        # at the limit the request goes on: the memfd is made, and the fake node's ENOTTY comes
        # back typed with the memfd closed
        with pytest.raises(NotSupportedError) as err:
            heap.allocate(16 << 20)
        assert err.value.operation == "UDMABUF_CREATE"
        assert open_fds() == before


# -- the counters themselves -------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.integers(1, 1 << 30), st.integers(0, 1 << 40)), max_size=60),
    st.randoms(use_true_random=False),
)
def test_stats_match_a_plain_model(allocs: list[tuple[int, int]], rnd: random.Random) -> None:
    """Interleave allocations and closes at random (snapshots in between): the counters equal a
    straightforward replay, peak included."""
    stats = HeapStats()
    live: list[int] = []
    model_live = model_peak = 0
    buckets = [0] * BUCKETS
    pending = list(allocs)
    while pending or live:
        if pending and (not live or rnd.random() < 0.6):
            size, ns = pending.pop()
            stats.record_allocation(size, ns)
            live.append(size)
            model_live += size
            model_peak = max(model_peak, model_live)
            buckets[min(max(ns.bit_length() - 1, 0), BUCKETS - 1)] += 1
        else:
            size = live.pop(rnd.randrange(len(live)))
            stats.record_close(size)
            model_live -= size
        if rnd.random() < 0.1:
            snap = stats.snapshot("h", "memfd")
            assert (snap.live_buffers, snap.live_bytes) == (len(live), model_live)
            assert snap.peak_bytes == model_peak
    snap = stats.snapshot("h", "memfd")
    assert (snap.allocations, snap.live_buffers, snap.live_bytes) == (len(allocs), 0, 0)
    assert snap.peak_bytes == model_peak
    assert list(snap.latency_ns) == buckets


def test_stats_fold_on_the_hot_path_and_across_threads() -> None:
    stats = HeapStats()
    rounds = 3 * FOLD_AT

    def work() -> None:
        for _ in range(rounds):
            stats.record_allocation(PAGE, 1000)
            stats.record_close(PAGE)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(stats._log) < FOLD_AT  # the hot path folded as it went
    snap = stats.snapshot("h", "memfd")
    assert (snap.allocations, snap.live_buffers, snap.live_bytes) == (4 * rounds, 0, 0)
    assert PAGE <= snap.peak_bytes <= 4 * PAGE
    assert snap.latency_ns[9] == 4 * rounds  # 1000 ns is in [512, 1024)
    assert snap.latency_quantile(1.0) == 1024
    with pytest.raises(UsageError, match="quantile"):
        snap.latency_quantile(0)


def test_a_registry_buffer_has_one_close_hook_that_also_discharges_the_caps() -> None:
    base = limits.in_use()
    with HeapRegistry.discover() as reg:
        heap = reg.select(HeapRequest(device_importable=False))
        buf = reg.allocate(heap, PAGE)
        assert len(buf._close_hooks) == 1  # the counters' log; no second hook to lose
        assert limits.in_use() == base + PAGE
        fd = buf.fileno()
        buf.close()
        assert_fd_closed(fd)
        assert limits.in_use() == base  # devalloc.limits folds the counters first
        snap = reg.stats(heap)
        assert (snap.allocations, snap.live_buffers, snap.live_bytes) == (1, 0, 0)


def test_only_charged_closes_are_discharged() -> None:
    base = limits.in_use()
    charged = HeapStats(charged_closes=True)
    limits.charge(PAGE, "test")
    charged.close_hook(-PAGE)  # the registry's inlined record_allocation ...
    charged.latency_hook(10)
    charged.close_hook(PAGE)  # ... and the buffer's close hook
    assert limits.in_use() == base
    charged.record_allocation(PAGE, 10)
    charged.record_close(PAGE)  # not charged: counted here, never discharged
    plain = HeapStats()
    plain.record_allocation(PAGE, 10)
    plain.close_hook(PAGE)
    plain.fold()
    assert limits.in_use() == base
    assert charged.snapshot("t", "memfd").allocations == 2
    assert plain.snapshot("t", "memfd").live_bytes == 0
    with pytest.raises(UsageError, match="charged_closes"):
        HeapStats(charged_closes=1)  # type: ignore[arg-type]


@pytest.mark.parametrize("closed", [True, False])
def test_closes_after_the_registry_is_gone_are_discharged(closed: bool) -> None:
    base = limits.in_use()
    reg = HeapRegistry.discover()
    heap = reg.select(HeapRequest(device_importable=False))
    first, second = reg.allocate(heap, PAGE), reg.allocate(heap, 2 * PAGE)
    stats = weakref.ref(reg._entry(heap).stats)
    first.close()
    if closed:
        reg.close()
    del reg  # (dropped without close(): the memfd heap holds no fd)
    gc.collect()
    assert limits.in_use() == base + 2 * PAGE
    assert stats() is not None  # devalloc.limits keeps folding it: a buffer of it is live
    second.close()
    assert limits.in_use() == base
    gc.collect()
    assert stats() is None  # retired and idle: dropped
