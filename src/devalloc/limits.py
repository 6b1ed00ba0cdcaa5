"""Size caps on every allocation: one buffer, and this process's live devalloc total.

Example:
    >>> from devalloc import MemfdHeap, limits
    >>> limits.set_limits(max_buffer=1 << 20, max_total=4 << 20)
    >>> MemfdHeap().allocate(2 << 20)
    Traceback (most recent call last):
    ...
    devalloc.errors.AllocationLimitError: memfd: 2097152 bytes (2 MiB) is above devalloc's \
per-buffer cap of 1048576 bytes (1 MiB); raise it with DEVALLOC_MAX_BUFFER=BYTES (e.g. 2G) or \
devalloc.limits.set_limits(max_buffer=...)
    >>> with MemfdHeap().allocate(1 << 20) as buf:
    ...     limits.in_use()
    1048576
    >>> limits.set_limits()  # back to the defaults

Every heap (dma-heap, udmabuf, memfd, the DRM device heap, a carveout's region) checks a request
here *before* the kernel sees it, charges the buffer's size to the process total, and discharges
it when the buffer closes (by ``close()`` or the garbage collector). ``BufferPool`` and
``Allocator.allocate`` call :func:`check` with their count first, so a pool or a ``count x size``
request is refused whole, before its first buffer is made.

The defaults are read once, at the first allocation, from this machine:

- ``max_buffer = min(MemTotal / 2, memory.max / 2)``: no single buffer may take more than half of
  the machine (or of the cgroup), so one request can never get the process OOM-killed alone;
- ``max_total = min(MemTotal * 3/4, memory.max, max(MemAvailable, MemTotal / 4))``: the live
  total stays below what the machine had available when devalloc started (but never below a
  quarter of RAM, so a busy moment at start-up does not starve the process), below three
  quarters of RAM and below the cgroup's limit;
- ``max_buffer`` is never above ``max_total``.

``memory.max`` is the smallest cgroup v2 ``memory.max`` on the path from this process's cgroup
(``/proc/self/cgroup``, line ``0::PATH``) up to the root (cgroup v1's ``memory.limit_in_bytes``
on a v1 memory hierarchy); ``max`` (no limit) or an unreadable file leave it out.

The environment variables ``DEVALLOC_MAX_BUFFER`` and ``DEVALLOC_MAX_TOTAL`` (bytes, with an
optional K/M/G/T suffix: ``512M``, ``2G``) replace the machine's values, and :func:`set_limits`
replaces both in code.

The hot path takes no lock (charges run at allocation rate; a lock's acquire and release cost
about as much as the rest of a small allocation's Python code). It relies only on operations
that are atomic under the GIL because they run no Python code: ``list.append``, ``len``, and
reading or writing one module global. Charges and closes are *logged* (``log_charge(size)``,
``discharge(size)``: ``list.append``), and the logs are folded into the live total under the lock,
only on the slow path. A charge is logged first and admitted second:

- the fast path admits a logged charge of at most :data:`fast_max` (<= :data:`SLOT`) bytes when
  ``len(charges) <= bound``;
- a *big* charge (above SLOT: memfd's, whose cost must not grow with the size) is logged in a log
  of its own (``log_big(size)``: one entry, whatever the size) and admitted when ``len(big) <=
  big_bound`` and it is at most :data:`big_max`, the big log's unit: each fold sets it to the
  largest big charge it folded, rounded up to a SLOT (at most :data:`BIG_LIMIT` and
  ``max_buffer``; a larger charge goes to :func:`admit`, whose fold then raises the unit);
- each fold splits the free slots ``free = (max_total - live) // SLOT`` (``live``: the total the
  fold just computed) between the two logs in proportion to the slots each took since the last
  fold (so an all-small or an all-big load gets nearly all), and publishes ``bound`` (small
  slots) and ``big_bound = big_share * SLOT // big_max`` (units), so ``bound * SLOT + big_bound
  * big_max <= max_total - live``;
- anything else goes to :func:`admit`, which folds under the lock (counting the logged charge)
  and decides exactly against both caps.

Why the bounds are conservative: every entry of the small log is at most SLOT bytes once it is
admitted (a larger charge is only ever admitted by :func:`admit`, after a fold has counted it),
every entry of the big log at most the published ``big_max`` (see below), and releases only
lower the total, so while the bounds are published the live total is at most ``live +
len(charges) * SLOT + len(big) * big_max``; a charge admitted at ``len(charges) <= bound`` or
``len(big) <= big_bound`` therefore keeps it at or below ``max_total``. A fold sets both bounds
to -1 *before* it moves entries out of the logs and publishes the new ones (``big_max`` first)
only after the new ``live`` is stored, and a fast charge reads its log's length before its bound
(and a big one its bound before ``big_max``): so a charge never pairs a shortened log with an old
bound (it may pair an old, longer log with a new bound, which is only stricter). A charge that
reads a bound and then, after another fold, a newer ``big_max`` was logged before that fold, so
that fold counted it exactly. Charges logged while a fold runs stay in the log and are counted by
the next one. A refusal comes only from :func:`admit`, after a fold, so it is exact up to charges
of other threads that are being decided at the same moment: those are counted while they wait for
the lock, so under contention at the cap a request can be refused for bytes another request then
does not get (the total never goes above the cap).

Signals: the heaps log the charge as the first statement of a ``try`` whose handler discharges
it first (memfd chooses the small or the big log with a comparison, which cannot raise), and
CPython raises a signal handler's exception only between bytecodes, after a call returns (never
before the ``append`` inside it): an exception anywhere in that ``try`` finds the charge logged,
and one before it finds nothing logged. No lock is held on the fast path, and the
slow path's lock is a ``with`` section.

Charges may run from any thread; after ``fork`` the child keeps its copy of the total (it holds
copies of the parent's buffers) with a fresh lock.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Sized
from dataclasses import dataclass
from typing import Protocol

from ._fd import check_path
from .errors import AllocationLimitError, UsageError

__all__ = [
    "BIG_LIMIT",
    "BUFFER_VARIABLE",
    "CLOSE_HOOKS",
    "SLOT",
    "TOTAL_VARIABLE",
    "MachineLimits",
    "ReleaseSource",
    "add_release_source",
    "admit",
    "big",
    "cgroup_memory_max",
    "charge",
    "charges",
    "check",
    "check_buffer",
    "discharge",
    "in_use",
    "log_big",
    "log_charge",
    "machine_limits",
    "max_buffer",
    "max_total",
    "mem_total",
    "parse_size",
    "read_meminfo",
    "set_limits",
]

#: The environment variable that sets the per-buffer cap.
BUFFER_VARIABLE = "DEVALLOC_MAX_BUFFER"
#: The environment variable that sets the cap on this process's live total.
TOTAL_VARIABLE = "DEVALLOC_MAX_TOTAL"

_UNLIMITED = 1 << 62  # cgroup v1 writes "unlimited" as the largest page-aligned int64
_SUFFIXES = {"": 0, "K": 10, "M": 20, "G": 30, "T": 40, "P": 50}
_SIZE = re.compile(r"\s*(\d+)\s*([KMGTP]?)(?:I?B)?\s*", re.IGNORECASE)


@dataclass(frozen=True)
class MachineLimits:
    """The caps derived from one machine's memory (see the module for the rule).

    Attributes:
        max_buffer: the largest single buffer, bytes.
        max_total: the largest live total, bytes.
        mem_total: MemTotal, bytes.
        mem_available: MemAvailable, bytes (None when /proc/meminfo has no such line).
        cgroup_max: the smallest cgroup v2 memory.max on this process's path, or None.
    """

    max_buffer: int
    max_total: int
    mem_total: int
    mem_available: int | None
    cgroup_max: int | None


def read_meminfo(proc: str = "/proc") -> dict[str, int]:
    """/proc/meminfo in bytes ("MemTotal", "MemAvailable", "CmaTotal", ...); empty if
    unreadable."""
    proc = check_path(proc, what="proc")
    values: dict[str, int] = {}
    try:
        with open(os.path.join(proc, "meminfo"), encoding="ascii", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return values
    for line in lines:
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            values[key.strip()] = int(parts[0]) * (1024 if parts[1:] == ["kB"] else 1)
    return values


def mem_total(proc: str = "/proc", info: dict[str, int] | None = None) -> int:
    """MemTotal in bytes (from sysconf when /proc/meminfo cannot be read)."""
    total = (read_meminfo(proc) if info is None else info).get("MemTotal")
    return total or os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def cgroup_memory_max(proc: str = "/proc", cgroup_root: str = "/sys/fs/cgroup") -> int | None:
    """The smallest memory limit from this process's cgroup up to the root, in bytes: cgroup v2
    ``memory.max`` (line ``0::PATH`` of ``/proc/self/cgroup``), else cgroup v1's
    ``memory/PATH/memory.limit_in_bytes`` (line ``N:memory:PATH``); None when no level sets one
    (``max``, or v1's "unlimited" near 2**63) or nothing is readable.

    Args:
        proc: where procfs is mounted (``PROC/self/cgroup`` names the cgroup).
        cgroup_root: where the cgroup hierarchies are mounted.
    """
    proc, cgroup_root = check_path(proc, what="proc"), check_path(cgroup_root, what="cgroup_root")
    try:
        with open(os.path.join(proc, "self", "cgroup"), encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = [*line.split(":", 2), "", ""][:3]
        if line.startswith("0::"):
            found = _smallest_on_path(cgroup_root, path, "memory.max")
        elif "memory" in controllers.split(","):
            where = os.path.join(cgroup_root, "memory")
            found = _smallest_on_path(where, path, "memory.limit_in_bytes")
        else:
            continue
        if found is not None:
            return found
    return None


def _smallest_on_path(root: str, path: str, name: str) -> int | None:
    parts = [p for p in path.split("/") if p and p not in (".", "..")]
    smallest: int | None = None
    for depth in range(len(parts), -1, -1):
        try:
            with open(os.path.join(root, *parts[:depth], name), encoding="ascii") as f:
                text = f.read().strip()
        except (OSError, UnicodeDecodeError):
            continue
        if text.isdigit() and int(text) < _UNLIMITED and (smallest is None or int(text) < smallest):
            smallest = int(text)
    return smallest


def machine_limits(proc: str = "/proc", cgroup_root: str = "/sys/fs/cgroup") -> MachineLimits:
    """The default caps of the machine whose procfs is at ``proc`` and whose cgroup v2 hierarchy
    is at ``cgroup_root`` (another tree for tests); the environment is not consulted."""
    proc, cgroup_root = check_path(proc, what="proc"), check_path(cgroup_root, what="cgroup_root")
    info = read_meminfo(proc)
    total = max(mem_total(proc, info), 2)
    available = info.get("MemAvailable")
    cgroup = cgroup_memory_max(proc, cgroup_root)
    max_total = total * 3 // 4
    if available is not None:
        max_total = min(max_total, max(available, total // 4))
    buffer = total // 2
    if cgroup is not None:
        max_total = min(max_total, max(cgroup, 1))
        buffer = min(buffer, cgroup // 2)
    max_total = max(max_total, 1)
    return MachineLimits(
        max_buffer=max(min(buffer, max_total), 1),
        max_total=max_total,
        mem_total=total,
        mem_available=available,
        cgroup_max=cgroup,
    )


def parse_size(text: str, variable: str) -> int:
    """``"4096"``, ``"512K"``, ``"512M"``, ``"2G"``, ``"1T"`` (also ``"2GiB"``, ``"2gb"``: powers
    of 1024) as a positive number of bytes.

    Raises:
        UsageError: not such a size; the message names ``variable``.
    """
    m = _SIZE.fullmatch(text) if isinstance(text, str) else None
    value = int(m.group(1)) << _SUFFIXES[m.group(2).upper()] if m else 0
    if value <= 0:
        raise UsageError(
            f"{variable}={text!r} is not a size: give a positive number of bytes, optionally "
            "with a K, M, G or T suffix (e.g. 512M or 2G)"
        )
    return value


def _human(size: int) -> str:
    for shift, unit in ((40, "TiB"), (30, "GiB"), (20, "MiB"), (10, "KiB")):
        if size >= 1 << shift:
            value = size / (1 << shift)
            return f"{value:.0f} {unit}" if value == int(value) else f"{value:.1f} {unit}"
    return f"{size} B"


def _positive(label: str, value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise UsageError(f"{label} must be a positive integer of bytes, not {value!r}")
    return value


# -- the process's state ---------------------------------------------------------------------
# The caps start unloaded (_bound -1, _fast_max 0), so the first charge takes the slow path, which
# loads the defaults (reading the machine then, not at import: a bad environment variable is then
# a typed error of the first allocation, not an import failure).

#: The largest charge the lock-free bound admits; it counts every logged charge as this much.
SLOT = 1 << 20
#: The most charges logged between two folds (keeps the logs short: a fold at least every 16384
#: charges).
FOLD_ENTRIES = 16384

_lock = threading.Lock()
_charges: list[int] = []  # charges since the last fold, each logged *before* it is admitted
_released: list[int] = []  # closes (and failed charges' returns) since the last fold
#: A heap's first step of a charge: ``log_charge(size)`` (``list.append``: C-level, atomic).
log_charge = _charges.append
#: The log of charges since the last fold (for :func:`admitted`'s inline form: read its length).
charges: Sized = _charges
#: The close hook of every charged buffer: ``discharge(size)`` logs the release (C-level, atomic).
discharge = _released.append
#: ``(discharge,)``: the close hooks of a buffer a heap just charged (set as ``_close_hooks``).
CLOSE_HOOKS = (discharge,)
_live = 0  # live bytes at the last fold
_max_buffer = 0
_max_total = 0
_loaded = False
_set_buffer: int | None = None  # set_limits's values (None: the default)
_set_total: int | None = None
#: The lock-free bound, published by each fold: a logged charge of at most ``fast_max`` bytes
#: stands when ``len(charges) <= bound``. -1 while a fold runs, and before the caps are loaded.
bound = -1
#: The largest charge the bound may admit: ``min(SLOT, max_buffer)`` (0 before loading).
fast_max = 0

# Charges above SLOT (memfd's): one entry each in a log of their own, each counted as big_max.
#: The most a big charge may be and stand on the lock-free bound (a larger one goes to admit()).
BIG_LIMIT = 64 * SLOT
_big: list[int] = []  # charges above SLOT since the last fold, each logged before it is admitted
#: A big charge's first step: ``log_big(size)`` (``list.append``: C-level, atomic).
log_big = _big.append
#: The log of big charges since the last fold (its length against :data:`big_bound`).
big: Sized = _big
#: The lock-free bound of big charges: a logged big charge of at most :data:`big_max` bytes
#: stands when ``len(big) <= big_bound``. -1 while a fold runs and before loading.
big_bound = -1
#: The unit of the big log, published by each fold with :data:`big_bound`: the largest big charge
#: of the last period rounded up to a SLOT, at most ``BIG_LIMIT`` and ``max_buffer``.
big_max = 0


def _reinit_after_fork() -> None:
    global _lock
    _lock = threading.Lock()


os.register_at_fork(after_in_child=_reinit_after_fork)


def _load_locked() -> None:
    """Resolve the caps: set_limits's values, else the environment's, else the machine's."""
    global _max_buffer, _max_total, _loaded, fast_max, big_max, bound, big_bound
    bound = big_bound = -1  # no fast charge against caps that are changing
    buffer, total = _set_buffer, _set_total
    if buffer is None:
        text = os.environ.get(BUFFER_VARIABLE)
        buffer = parse_size(text, BUFFER_VARIABLE) if text is not None else None
    if total is None:
        text = os.environ.get(TOTAL_VARIABLE)
        total = parse_size(text, TOTAL_VARIABLE) if text is not None else None
    if buffer is None or total is None:
        machine = machine_limits()
        if total is None:
            total = machine.max_total
        if buffer is None:
            buffer = min(machine.max_buffer, total)
    _max_buffer, _max_total, _loaded = buffer, total, True
    fast_max = min(SLOT, buffer)
    big_max = min(2 * SLOT, buffer)
    _fold_locked()


class ReleaseSource(Protocol):
    """Something that logs closes of charged buffers elsewhere and passes them on to
    :data:`discharge` when it folds (a heap registry's counters: one close hook does both)."""

    def forward(self) -> bool:
        """Pass the closes logged so far on to :data:`discharge`; True once nothing more can
        be logged (then it is dropped)."""
        ...


_sources: set[ReleaseSource] = set()  # held until their forward() says they are done


def add_release_source(source: ReleaseSource) -> None:
    """Register ``source``: every exact fold here calls ``source.forward()`` first, so that
    closes it logged are counted, until it returns True."""
    with _lock:
        _sources.add(source)


def _fold_locked() -> int:
    """Fold both logs into the live total and publish the bound that goes with it (under the
    lock). Returns the live total."""
    global _live, bound, big_bound, big_max
    bound = big_bound = -1  # first: no charge is admitted against a moving total (see module)
    for source in list(_sources):
        if source.forward():  # its closes of charged buffers, into _released
            _sources.discard(source)
    # Only appends happen outside the lock, at the end: the first n stay put while summed and cut.
    # The new total is computed first and the logs cut after it with no call in between: a
    # signal's exception (raised only after a call) cannot come between a cut and the total.
    charged, released, bigs = _charges, _released, _big
    n, m, b = len(charged), len(released), len(bigs)
    cut = bigs[:b]
    live = _live + sum(charged[:n]) + sum(cut) - sum(released[:m])
    del charged[:n]
    del released[:m]
    del bigs[:b]
    _live = live
    if _loaded:
        # The free slots, shared between the two bounds as the last period's traffic was (in
        # slots); the big log's unit follows its largest charge.
        unit = big_max
        if cut:
            unit = min(-(-max(cut) // SLOT) * SLOT, BIG_LIMIT, _max_buffer)
        free = (_max_total - live) // SLOT
        traffic = b * unit // SLOT
        share = free * (traffic + 1) // (n + traffic + 2) if free > 0 else free
        big_max = unit  # before big_bound (see the module)
        bound = min(free - share if free > 0 else free, FOLD_ENTRIES)
        big_bound = min(share * SLOT // unit if unit > 0 else -1, FOLD_ENTRIES)
    return live


def _refuse(what: str, size: int, count: int, in_use_now: int) -> AllocationLimitError:
    if size > _max_buffer:
        return AllocationLimitError(
            f"{what}: {size} bytes ({_human(size)}) is above devalloc's per-buffer cap of "
            f"{_max_buffer} bytes ({_human(_max_buffer)}); raise it with "
            f"{BUFFER_VARIABLE}=BYTES (e.g. 2G) or devalloc.limits.set_limits(max_buffer=...)",
            size=size,
            count=count,
            cap=_max_buffer,
            in_use=in_use_now,
            variable=BUFFER_VARIABLE,
        )
    asked = f"{count} x {size} bytes" if count != 1 else f"{size} bytes"
    return AllocationLimitError(
        f"{what}: {asked} would take this process's devalloc total to "
        f"{in_use_now + count * size} bytes ({_human(in_use_now + count * size)}), above the cap "
        f"of {_max_total} bytes ({_human(_max_total)}; {in_use_now} bytes in use); close buffers, "
        f"or raise it with {TOTAL_VARIABLE}=BYTES (e.g. 8G) or "
        "devalloc.limits.set_limits(max_total=...)",
        size=size,
        count=count,
        cap=_max_total,
        in_use=in_use_now,
        variable=TOTAL_VARIABLE,
    )


def admit(size: int, what: str) -> None:
    """Decide exactly, under the lock, on a charge of ``size`` bytes that is already logged
    (``log_charge(size)``) and that the lock-free bound did not admit (see the module).

    Raises:
        AllocationLimitError: above a cap. The charge stays logged: the caller discharges it, as
            it does on any failure after ``log_charge``.
    """
    with _lock:
        if not _loaded:
            _load_locked()
        live = _fold_locked()  # counts this charge
        if size > _max_buffer or live > _max_total:
            raise _refuse(what, size, 1, live - size)


def _check_size(size: object, what: str) -> None:
    if type(size) is not int or size < 0:
        raise UsageError(f"{what}: size must be a non-negative integer of bytes, not {size!r}")


def charge(size: int, what: str) -> None:
    """Check one buffer of ``size`` bytes against both caps and charge it to the process total
    (for heap implementations: call it before the kernel, and make :data:`discharge` the
    buffer's close hook, or call ``discharge(size)`` if the allocation then fails).

    A hot path inlines it (so that no signal can come between the charge and the ``try`` that
    returns it on failure)::

        try:
            log_charge(size)  # first in the try: any exception below finds it logged
            if len(charges) > limits.bound or size > limits.fast_max:
                admit(size, what)
            ...  # the allocation
        except BaseException:
            discharge(size)
            raise

    Args:
        size: the bytes the buffer will hold (an int >= 0, the heap's rounded size; 0 charges
            nothing and lets the kernel judge a zero length).
        what: who asks, for the message (``"dma-heap system"``).

    Raises:
        AllocationLimitError: above a cap; nothing was charged.
    """
    _check_size(size, what)
    try:
        log_charge(size)
        if len(_charges) > bound or size > fast_max:
            admit(size, what)
    except BaseException:
        discharge(size)
        raise


def check(size: int, count: int = 1, *, what: str) -> None:
    """Refuse, before any kernel call, a buffer above :func:`max_buffer` or ``count`` buffers of
    ``size`` bytes that would take this process's live total above :func:`max_total`. Charges
    nothing (each heap charges its buffers as it makes them).

    Raises:
        AllocationLimitError: above a cap; the message names ``what``, the size, the cap and how
            to raise it.
        UsageError: ``size`` or ``count`` is not a positive int.
    """
    _positive(f"{what}: size", size)
    _positive(f"{what}: count", count)
    with _lock:
        if not _loaded:
            _load_locked()
        live = _fold_locked()
        if size > _max_buffer or live + count * size > _max_total:
            raise _refuse(what, size, count, live)


def check_buffer(size: int, *, what: str) -> None:
    """Refuse a single buffer above :func:`max_buffer` (for memory already charged, such as a
    range carved from a carveout's region); the total is not consulted."""
    _positive(f"{what}: size", size)
    with _lock:
        if not _loaded:
            _load_locked()
        if size > _max_buffer:
            raise _refuse(what, size, 1, _fold_locked())


def set_limits(max_buffer: int | None = None, max_total: int | None = None) -> None:
    """Set the caps of this process. Each argument: bytes, or None for the default (the
    environment variable when set, else the machine's value). ``set_limits()`` restores both.
    Buffers already allocated stay valid; only new requests meet the new caps.

    Raises:
        UsageError: a value that is not a positive int, or an environment variable that is not a
            size (when it is consulted).
    """
    global _set_buffer, _set_total
    buffer = None if max_buffer is None else _positive("set_limits: max_buffer", max_buffer)
    total = None if max_total is None else _positive("set_limits: max_total", max_total)
    with _lock:
        old = _set_buffer, _set_total
        _set_buffer, _set_total = buffer, total
        try:
            _load_locked()
        except BaseException:
            _set_buffer, _set_total = old
            raise


def max_buffer() -> int:
    """The largest single buffer devalloc will allocate in this process, in bytes."""
    with _lock:
        if not _loaded:
            _load_locked()
        return _max_buffer


def max_total() -> int:
    """The largest live total this process may hold through devalloc, in bytes."""
    with _lock:
        if not _loaded:
            _load_locked()
        return _max_total


def in_use() -> int:
    """Bytes this process holds through devalloc now (charged and not yet closed)."""
    with _lock:
        return _fold_locked()
