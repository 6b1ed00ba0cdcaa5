"""devalloc.limits: the per-buffer and total caps, their defaults, and the heaps that obey them."""

from __future__ import annotations

import contextlib
import gc
import itertools
import os
import pathlib
import pickle
import random
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from hypothesis import given
from hypothesis import strategies as st

import devalloc
from devalloc import AllocationLimitError, MemfdHeap, UsageError, limits
from devalloc.heaps.properties import HeapRequest
from devalloc.heaps.registry import HeapRegistry

from .conftest import assert_fd_closed, open_fds
from .test_pool_signals import Tick, ticking  # noqa: F401 (the fixture, used by name)

PAGE = os.sysconf("SC_PAGE_SIZE")
GIB = 1 << 30


@pytest.fixture
def caps() -> Iterator[None]:
    """Restores the default caps after a test that sets its own."""
    try:
        yield
    finally:
        limits.set_limits()


# -- defect 1: a huge request is refused before the kernel, nothing leaked ---------------------


def test_a_terabyte_memfd_is_refused_with_the_cap_and_the_variable() -> None:
    before, in_use = open_fds(), limits.in_use()
    with pytest.raises(AllocationLimitError) as info:
        MemfdHeap().allocate(1 << 40)
    err = info.value
    text = str(err)
    assert f"{1 << 40} bytes" in text
    assert f"cap of {limits.max_buffer()} bytes" in text
    assert "DEVALLOC_MAX_BUFFER" in text
    assert "set_limits(max_buffer=" in text
    assert (err.size, err.count, err.cap, err.variable) == (
        1 << 40,
        1,
        limits.max_buffer(),
        "DEVALLOC_MAX_BUFFER",
    )
    assert isinstance(err, UsageError)
    assert isinstance(err, devalloc.DevallocError)
    assert open_fds() == before
    assert limits.in_use() == in_use


def test_defaults_come_from_this_machine() -> None:
    machine = limits.machine_limits()
    if "DEVALLOC_MAX_BUFFER" not in os.environ and "DEVALLOC_MAX_TOTAL" not in os.environ:
        assert (limits.max_buffer(), limits.max_total()) == (machine.max_buffer, machine.max_total)
    assert 0 < machine.max_buffer <= machine.max_total <= machine.mem_total * 3 // 4
    assert machine.max_buffer <= machine.mem_total // 2


def test_the_total_cap_refuses_the_buffer_that_would_cross_it(caps: None) -> None:
    base = limits.in_use()
    limits.set_limits(max_buffer=4 * PAGE, max_total=base + 10 * PAGE)
    heap = MemfdHeap()
    first = heap.allocate(4 * PAGE)
    second = heap.allocate(3 * PAGE + 1)  # rounded up: 4 pages charged
    assert limits.in_use() == base + 8 * PAGE
    before = open_fds()
    with pytest.raises(AllocationLimitError) as info:
        heap.allocate(3 * PAGE)
    err = info.value
    assert err.variable == "DEVALLOC_MAX_TOTAL"
    assert (err.cap, err.in_use) == (base + 10 * PAGE, base + 8 * PAGE)
    assert "DEVALLOC_MAX_TOTAL" in str(err)
    assert "close buffers" in str(err)
    assert open_fds() == before
    heap.allocate(2 * PAGE).close()  # exactly up to the cap is allowed
    fd = first.fileno()
    first.close()
    assert_fd_closed(fd)
    with heap.allocate(3 * PAGE) as again:  # accepted again after a close
        assert again.size == 3 * PAGE
        assert limits.in_use() == base + 7 * PAGE
    second.close()
    assert limits.in_use() == base


def test_a_forgotten_buffer_is_discharged_by_the_garbage_collector(caps: None) -> None:
    base = limits.in_use()
    buf = MemfdHeap().allocate(PAGE)
    fd = buf.fileno()
    assert limits.in_use() == base + PAGE
    with pytest.warns(ResourceWarning):
        del buf
    assert_fd_closed(fd)
    assert limits.in_use() == base


def test_check_refuses_a_count_times_size_request_whole(caps: None) -> None:
    limits.set_limits(max_buffer=GIB, max_total=limits.in_use() + 4 * GIB)
    limits.check(GIB, 4, what="pool")
    with pytest.raises(AllocationLimitError, match=r"pool: 5 x 1073741824 bytes") as info:
        limits.check(GIB, 5, what="pool")
    assert info.value.count == 5
    with pytest.raises(AllocationLimitError, match="per-buffer cap"):
        limits.check(GIB + 1, what="allocator")
    for size, count in ((0, 1), (-1, 1), (1.5, 1), (True, 1), (PAGE, 0), (PAGE, None)):
        with pytest.raises(UsageError):
            limits.check(size, count, what="x")  # type: ignore[arg-type]
    assert not isinstance(UsageError("x"), AllocationLimitError)


def test_set_limits_validates_and_restores(caps: None) -> None:
    default = limits.max_buffer()
    limits.set_limits(max_buffer=PAGE)
    assert limits.max_buffer() == PAGE
    for bad in (0, -1, 1.0, True, "1G", None):
        if bad is not None:
            with pytest.raises(UsageError, match="max_total"):
                limits.set_limits(max_total=bad)  # type: ignore[arg-type]
    assert limits.max_buffer() == PAGE  # a refused call changes nothing
    limits.set_limits()
    assert limits.max_buffer() == default


def test_the_registry_cap_is_the_limits_cap(caps: None) -> None:
    with HeapRegistry() as reg:
        memfd = reg.add(MemfdHeap())
        assert reg.cap == limits.max_buffer()
        limits.set_limits(max_buffer=2 * PAGE)
        assert reg.cap == 2 * PAGE
        with pytest.raises(AllocationLimitError):
            reg.allocate(memfd, 2 * PAGE + 1)
        assert reg.stats(memfd).failures == 0
        with reg.allocate(memfd, 2 * PAGE) as buf:
            assert limits.in_use() >= 2 * PAGE
            fd = buf.fileno()
        assert_fd_closed(fd)
        assert reg.stats(memfd).live_bytes == 0
    with HeapRegistry(cap=PAGE) as own:  # a registry's own, smaller cap stays its own
        assert own.cap == PAGE


# -- the environment ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("4096", 4096),
        ("512K", 512 << 10),
        ("512M", 512 << 20),
        ("2G", 2 << 30),
        ("2g", 2 << 30),
        ("2GiB", 2 << 30),
        ("1T", 1 << 40),
        (" 64M ", 64 << 20),
    ],
)
def test_parse_size(text: str, value: int) -> None:
    assert limits.parse_size(text, "DEVALLOC_MAX_BUFFER") == value


@pytest.mark.parametrize("text", ["", "0", "-1", "1.5G", "12Q", "G", "0x10", "\xff", "1 G B"])
def test_a_bad_size_names_the_variable(text: str) -> None:
    with pytest.raises(UsageError, match=r"DEVALLOC_MAX_TOTAL=.*is not a size"):
        limits.parse_size(text, "DEVALLOC_MAX_TOTAL")


@given(st.text(max_size=12))
def test_parse_size_never_raises_untyped(text: str) -> None:
    with contextlib.suppress(UsageError):
        assert limits.parse_size(text, "V") > 0


def test_environment_variables_set_the_caps(caps: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEVALLOC_MAX_BUFFER", "8K")
    monkeypatch.setenv("DEVALLOC_MAX_TOTAL", "1G")
    limits.set_limits()  # re-read the environment
    assert (limits.max_buffer(), limits.max_total()) == (8192, GIB)
    with pytest.raises(AllocationLimitError, match="cap of 8192 bytes"):
        MemfdHeap().allocate(8193)
    limits.set_limits(max_buffer=16384)  # code wins over the environment
    assert (limits.max_buffer(), limits.max_total()) == (16384, GIB)
    monkeypatch.setenv("DEVALLOC_MAX_TOTAL", "lots")
    with pytest.raises(UsageError, match="DEVALLOC_MAX_TOTAL='lots' is not a size"):
        limits.set_limits()


def test_a_fresh_process_reads_the_environment_at_its_first_allocation() -> None:
    code = (
        "from devalloc import MemfdHeap, AllocationLimitError, UsageError, limits\n"
        "MemfdHeap().allocate(1 << 20).close()\n"
        "try:\n"
        "    MemfdHeap().allocate((1 << 20) + 1)\n"
        "except AllocationLimitError as e:\n"
        "    print('refused', e.cap, e.variable)\n"
    )
    env = dict(os.environ, DEVALLOC_MAX_BUFFER="1M")
    env.pop("DEVALLOC_MAX_TOTAL", None)
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["refused", str(1 << 20), "DEVALLOC_MAX_BUFFER"]
    env["DEVALLOC_MAX_BUFFER"] = "huge"
    bad = subprocess.run(
        [sys.executable, "-c", "import devalloc; devalloc.MemfdHeap().allocate(4096)"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode == 1  # importing works; the first allocation raises a typed error
    assert "devalloc.errors.UsageError: DEVALLOC_MAX_BUFFER='huge' is not a size" in bad.stderr


# -- the machine's defaults, from captured files -----------------------------------------------


def _machine(
    root: pathlib.Path,
    *,
    total_kb: int,
    available_kb: int | None,
    cgroup: str = "0::/user.slice/app.scope\n",
    limits_by_level: dict[str, str] | None = None,
) -> limits.MachineLimits:
    proc = root / "proc"
    (proc / "self").mkdir(parents=True, exist_ok=True)
    meminfo = f"MemTotal:       {total_kb} kB\nMemFree:        1000 kB\n"
    if available_kb is not None:
        meminfo += f"MemAvailable:   {available_kb} kB\n"
    (proc / "meminfo").write_text(meminfo)
    (proc / "self" / "cgroup").write_text(cgroup)
    cg = root / "cgroup"
    for level, value in (limits_by_level or {}).items():
        where = cg / level
        where.mkdir(parents=True, exist_ok=True)
        name = "memory.limit_in_bytes" if level.startswith("memory") else "memory.max"
        (where / name).write_text(value + "\n")
    return limits.machine_limits(str(proc), str(cg))


def test_machine_rule_without_a_cgroup(tmp_path: pathlib.Path) -> None:
    got = _machine(tmp_path, total_kb=16 << 20, available_kb=12 << 20)  # 16 GiB, 12 available
    assert (got.max_buffer, got.max_total) == (8 * GIB, 12 * GIB)
    assert (got.mem_total, got.mem_available, got.cgroup_max) == (16 * GIB, 12 * GIB, None)


def test_machine_rule_busy_at_start_keeps_a_quarter(tmp_path: pathlib.Path) -> None:
    got = _machine(tmp_path, total_kb=16 << 20, available_kb=1 << 20)
    assert (got.max_buffer, got.max_total) == (4 * GIB, 4 * GIB)  # buffer <= total


def test_machine_rule_with_cgroup_v2_takes_the_smallest_level(tmp_path: pathlib.Path) -> None:
    got = _machine(
        tmp_path,
        total_kb=16 << 20,
        available_kb=15 << 20,
        limits_by_level={
            "": "max",
            "user.slice": str(2 * GIB),
            "user.slice/app.scope": "max",
        },
    )
    assert got.cgroup_max == 2 * GIB
    assert (got.max_buffer, got.max_total) == (GIB, 2 * GIB)


def test_machine_rule_with_cgroup_v1(tmp_path: pathlib.Path) -> None:
    got = _machine(
        tmp_path,
        total_kb=8 << 20,
        available_kb=None,
        cgroup="4:memory:/job/42\n3:cpu:/\n",
        limits_by_level={"memory": "9223372036854771712", "memory/job/42": str(GIB)},
    )
    assert got.cgroup_max == GIB
    assert (got.max_buffer, got.max_total) == (GIB // 2, GIB)


def test_machine_rule_when_nothing_is_readable(tmp_path: pathlib.Path) -> None:
    got = limits.machine_limits(str(tmp_path / "none"), str(tmp_path / "none"))
    assert got.cgroup_max is None
    assert got.mem_available is None
    assert got.mem_total == os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    assert got.max_buffer == got.mem_total // 2


def test_cgroup_file_that_is_not_a_number_is_ignored(tmp_path: pathlib.Path) -> None:
    got = _machine(
        tmp_path,
        total_kb=4 << 20,
        available_kb=4 << 20,
        limits_by_level={"user.slice/app.scope": "garbage"},
    )
    assert got.cgroup_max is None


# -- threads and processes ---------------------------------------------------------------------


def _most_live_of_a_hundred_threads(size: int, rounds: int) -> int:
    """100 threads allocating and closing ``size``-byte memfds ``rounds`` times each (a refusal
    is skipped); returns the most buffers that were live at once, after checking that nothing
    stayed charged or open."""
    base = limits.in_use()
    heap = MemfdHeap()
    lock = threading.Lock()
    held = [0, 0, 0]  # live now, most live at once, refusals
    before = open_fds()

    def work(_: int) -> None:
        for _ in range(rounds):
            try:
                buf = heap.allocate(size)
            except AllocationLimitError:
                with lock:
                    held[2] += 1
                continue
            with lock:
                held[0] += 1
                held[1] = max(held[1], held[0])
            with lock:
                held[0] -= 1
            buf.close()

    with ThreadPoolExecutor(max_workers=100) as pool:
        list(pool.map(work, range(100)))  # re-raises any thread's exception
    assert limits.in_use() == base
    assert open_fds() == before
    return held[1]


def test_a_hundred_threads_never_exceed_the_total(caps: None) -> None:
    slots = 50
    limits.set_limits(max_buffer=PAGE, max_total=limits.in_use() + slots * PAGE)
    assert _most_live_of_a_hundred_threads(PAGE, 100) <= slots


def test_a_forked_child_has_its_own_total_and_a_working_lock(caps: None) -> None:
    heap = MemfdHeap()
    held = heap.allocate(PAGE)
    base = limits.in_use()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        ok = False
        try:
            with heap.allocate(2 * PAGE):
                ok = limits.in_use() == base + 2 * PAGE
            held.close()
            ok = ok and limits.in_use() == base - PAGE
        finally:
            os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert limits.in_use() == base  # the child's closes are its own
    held.close()


def test_the_error_survives_pickling() -> None:
    err = AllocationLimitError("x", size=1, count=2, cap=3, in_use=4, variable="V")
    back = pickle.loads(pickle.dumps(err))
    assert (str(back), back.size, back.count, back.cap, back.in_use, back.variable) == (
        "x",
        1,
        2,
        3,
        4,
        "V",
    )


def test_through_the_registry_the_total_is_charged_once(caps: None) -> None:
    base = limits.in_use()
    with HeapRegistry.discover() as reg:
        heap = reg.select(HeapRequest(device_importable=False))
        bufs = [reg.allocate(heap, PAGE) for _ in range(3)]
        assert limits.in_use() == base + 3 * PAGE
        for buf in bufs:
            buf.close()
        assert limits.in_use() == base
        assert reg.stats(heap).live_bytes == 0


# -- signals: an exception from a signal handler anywhere in allocate/close loses no charge ------


def _interrupted_cycles(allocate: Callable[[], devalloc.Buffer], cycles: int) -> int:
    """``cycles`` allocate + close cycles, each with a one-shot timer armed to fire somewhere in
    it (the delays spread over about one cycle's length); whatever the caller got is closed once
    the timer is off. Returns how many cycles a tick interrupted."""
    rng = random.Random(12)
    interrupted = 0
    for _ in range(cycles):
        buf: devalloc.Buffer | None = None
        try:
            signal.setitimer(signal.ITIMER_REAL, rng.uniform(1e-6, 30e-6))
            buf = allocate()
            buf.close()
            signal.setitimer(signal.ITIMER_REAL, 0)
        except Tick:
            interrupted += 1  # one-shot: it has fired, no other tick can come
        if buf is not None:
            with contextlib.suppress(Tick):  # (close is idempotent)
                buf.close()
    gc.collect()  # buffers lost to a tick are closed (and discharged) by __del__
    return interrupted


# a buffer made just before a tick never reaches the caller: __del__ closes it with a warning
@pytest.mark.filterwarnings("ignore::ResourceWarning")
@pytest.mark.usefixtures("ticking")
def test_ticks_during_memfd_allocations_lose_no_charge(caps: None) -> None:
    heap = MemfdHeap()
    heap.allocate(PAGE).close()
    base = limits.in_use()
    interrupted = _interrupted_cycles(lambda: heap.allocate(PAGE), 3000)
    assert interrupted >= 300, f"only {interrupted} cycles were interrupted"
    assert limits.in_use() == base


@pytest.mark.filterwarnings("ignore::ResourceWarning")
@pytest.mark.usefixtures("ticking")
def test_ticks_near_the_cap_lose_no_charge(caps: None) -> None:
    """With the total cap two pages above what is held, every charge takes the locked path."""
    heap = MemfdHeap()
    base = limits.in_use()
    limits.set_limits(max_buffer=PAGE, max_total=base + 2 * PAGE)
    held = heap.allocate(PAGE)
    interrupted = _interrupted_cycles(lambda: heap.allocate(PAGE), 2000)
    assert interrupted >= 200, f"only {interrupted} cycles were interrupted"
    assert limits.in_use() == base + PAGE
    held.close()
    assert limits.in_use() == base


@pytest.mark.filterwarnings("ignore::ResourceWarning")
@pytest.mark.usefixtures("ticking")
def test_ticks_through_the_registry_keep_the_caps_and_the_counters_exact(caps: None) -> None:
    with HeapRegistry.discover() as reg:
        heap = reg.select(HeapRequest(device_importable=False))
        reg.allocate(heap, PAGE).close()
        base = limits.in_use()
        interrupted = _interrupted_cycles(lambda: reg.allocate(heap, PAGE), 3000)
        assert interrupted >= 300, f"only {interrupted} cycles were interrupted"
        assert limits.in_use() == base
        stats = reg.stats(heap)
        assert (stats.live_buffers, stats.live_bytes) == (0, 0), stats


# -- issue 12: a charge above SLOT stands on its own lock-free bound (weighed in slots) --------

MIB = 1 << 20


def _counting_admit(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts memfd's calls of the locked path (limits.admit) in the returned list."""
    calls: list[int] = []
    admit = limits.admit

    def counted(size: int, what: str) -> None:
        calls.append(size)
        admit(size, what)

    monkeypatch.setattr("devalloc.heaps.memfd._admit", counted)
    return calls


def test_a_big_memfd_charge_stands_on_the_fast_path_and_stays_exact(
    caps: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = limits.in_use()
    limits.set_limits(max_buffer=GIB, max_total=base + 4 * GIB)
    heap = MemfdHeap()
    heap.allocate(32 * MIB).close()  # the first big charge after loading folds (no bound yet)
    calls = _counting_admit(monkeypatch)
    sizes = [32 * MIB, 8 * MIB, MIB + PAGE, 5 * MIB + 3 * PAGE]
    bufs = [heap.allocate(size) for size in sizes]
    assert calls == []  # before the fix every charge above 1 MiB took limits.admit
    assert len(limits.big) >= len(sizes)
    assert limits.in_use() == base + sum(sizes)
    for buf in bufs:
        buf.close()
    assert limits.in_use() == base


def test_big_charges_near_the_cap_are_refused_exactly(caps: None) -> None:
    base = limits.in_use()
    limits.set_limits(max_buffer=64 * MIB, max_total=base + 100 * MIB)
    heap = MemfdHeap()
    held = [heap.allocate(32 * MIB) for _ in range(3)]
    assert limits.in_use() == base + 96 * MIB
    before = open_fds()
    with pytest.raises(AllocationLimitError) as info:
        heap.allocate(32 * MIB)
    assert (info.value.cap, info.value.in_use) == (base + 100 * MIB, base + 96 * MIB)
    with pytest.raises(AllocationLimitError):
        heap.allocate(4 * MIB + PAGE)  # one page above the cap
    assert open_fds() == before
    assert limits.in_use() == base + 96 * MIB
    last = heap.allocate(2 * MIB + PAGE)  # big, and exactly up to the cap with the next one
    heap.allocate(2 * MIB - PAGE).close()
    with pytest.raises(AllocationLimitError):
        heap.allocate(2 * MIB)
    for buf in [*held, last]:
        buf.close()
    assert limits.in_use() == base
    heap.allocate(64 * MIB).close()  # all free again
    with pytest.raises(AllocationLimitError) as info:
        heap.allocate(64 * MIB + PAGE)  # above the per-buffer cap
    assert info.value.variable == "DEVALLOC_MAX_BUFFER"
    assert limits.in_use() == base


def test_a_charge_above_the_slots_bound_is_decided_under_the_lock(
    caps: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = limits.in_use()
    limits.set_limits(max_buffer=GIB, max_total=base + 4 * GIB)
    calls = _counting_admit(monkeypatch)
    size = limits.BIG_LIMIT + PAGE
    with MemfdHeap().allocate(size):
        assert limits.in_use() == base + size
    assert calls == [size]
    assert limits.in_use() == base


def test_a_hundred_threads_of_big_charges_never_exceed_the_total(caps: None) -> None:
    slots = 20
    limits.set_limits(max_buffer=GIB, max_total=limits.in_use() + slots * 3 * MIB)
    assert _most_live_of_a_hundred_threads(3 * MIB, 30) <= slots


@pytest.mark.filterwarnings("ignore::ResourceWarning")
@pytest.mark.usefixtures("ticking")
def test_ticks_during_big_memfd_allocations_lose_no_charge(caps: None) -> None:
    heap = MemfdHeap()
    limits.set_limits(max_buffer=GIB, max_total=limits.in_use() + 4 * GIB)
    heap.allocate(8 * MIB).close()
    base = limits.in_use()
    rng = random.Random(5)
    # a C-level iterator: a tick cannot end it as it ends a generator
    sizes = itertools.cycle([rng.choice([2 * MIB + PAGE, 8 * MIB, 33 * MIB]) for _ in range(3000)])
    interrupted = _interrupted_cycles(lambda: heap.allocate(next(sizes)), 3000)
    assert interrupted >= 300, f"only {interrupted} cycles were interrupted"
    assert limits.in_use() == base


@pytest.mark.filterwarnings("ignore::ResourceWarning")
@pytest.mark.usefixtures("ticking")
def test_ticks_on_big_charges_near_the_cap_lose_no_charge(caps: None) -> None:
    heap = MemfdHeap()
    base = limits.in_use()
    limits.set_limits(max_buffer=GIB, max_total=base + 12 * MIB)
    held = heap.allocate(4 * MIB)
    interrupted = _interrupted_cycles(lambda: heap.allocate(8 * MIB), 2000)
    assert interrupted >= 200, f"only {interrupted} cycles were interrupted"
    assert limits.in_use() == base + 4 * MIB
    held.close()
    assert limits.in_use() == base
