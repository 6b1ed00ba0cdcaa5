"""In-process allocation counters, one :class:`HeapStats` per heap of a registry.

Example:
    >>> stats = HeapStats()
    >>> stats.record_allocation(4096, 1500)
    >>> stats.record_close(4096)
    >>> snap = stats.snapshot("memfd", "memfd")
    >>> snap.allocations, snap.live_buffers, snap.peak_bytes, snap.to_json()["latency_ns"]
    (1, 0, 4096, {'1024': 1})

Counts only what this process allocated through a :class:`~devalloc.heaps.registry.HeapRegistry`
(the system-wide view is ``devalloc ps``). Latencies go into log2 buckets of nanoseconds: bucket
``i`` counts calls that took ``[2**i, 2**(i+1))`` ns. Threads may allocate and close
concurrently; an update costs about 0.1 us (an append to a log folded in batches, at C speed).
"""

from __future__ import annotations

import math
import threading
from bisect import bisect_left
from dataclasses import dataclass
from itertools import accumulate
from typing import Any

from ..errors import UsageError
from ..limits import add_release_source, discharge

#: Number of latency buckets (2**63 ns is about 292 years).
BUCKETS = 64
#: Events logged before the hot path folds them into the totals.
FOLD_AT = 4096


@dataclass(frozen=True)
class StatsSnapshot:
    """The counters of one heap at one moment.

    Attributes:
        heap: the heap's name (diagnostics only).
        kind: the heap's kind ("dma-heap", "udmabuf", ...).
        live_buffers: buffers allocated and not yet closed.
        live_bytes: their total size.
        peak_bytes: the highest ``live_bytes`` seen.
        allocations: successful allocations.
        failures: allocations that reached the heap and failed.
        latency_ns: per log2 bucket of successful allocations' latency: ``latency_ns[i]`` counts
            calls that took ``[2**i, 2**(i+1))`` nanoseconds.
    """

    heap: str
    kind: str
    live_buffers: int
    live_bytes: int
    peak_bytes: int
    allocations: int
    failures: int
    latency_ns: tuple[int, ...]

    def latency_quantile(self, q: float) -> int | None:
        """Upper bound (exclusive, ns) of the bucket holding quantile ``q`` (0 < q <= 1);
        None when nothing was allocated."""
        if not isinstance(q, (int, float)) or isinstance(q, bool) or not 0 < q <= 1:
            raise UsageError(f"quantile must be in (0, 1], not {q!r}")
        total = sum(self.latency_ns)
        if not total:
            return None
        rank = max(1, math.ceil(q * total))
        seen = 0
        for i, count in enumerate(self.latency_ns):
            seen += count
            if seen >= rank:
                return 1 << (i + 1)
        return 1 << BUCKETS  # pragma: no cover - rank <= total

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict; ``latency_ns`` maps each non-empty bucket's lower bound to its
        count."""
        return {
            "heap": self.heap,
            "kind": self.kind,
            "live_buffers": self.live_buffers,
            "live_bytes": self.live_bytes,
            "peak_bytes": self.peak_bytes,
            "allocations": self.allocations,
            "failures": self.failures,
            "latency_ns": {str(1 << i if i else 0): n for i, n in enumerate(self.latency_ns) if n},
        }


class HeapStats:
    """Thread-safe live counters of one heap. The registry updates them; read with
    :meth:`snapshot`.

    The hot path takes no lock: an allocation appends minus its size (and its latency) and a
    close appends its size to a log (``list.append`` is atomic), which :meth:`snapshot`, or the
    hot path once the log holds :data:`FOLD_AT` events, folds into the totals in order with a few
    C-level passes. The log's order is the order the events happened, so the peak is exact.
    (Closes are the positive events so that :attr:`close_hook` can be the log's own ``append``:
    a buffer's close then runs no Python function for the accounting.)

    Args:
        charged_closes: closes logged through :attr:`close_hook` are of buffers charged to
            :mod:`devalloc.limits`, and each fold discharges them there (so that such a buffer
            needs one close hook, not two; the registry's counters). The counters register with
            devalloc.limits, whose exact folds fold them first, until :meth:`retire` was called
            and nothing is live. :meth:`record_close` never discharges.
    """

    __slots__ = (
        "__weakref__",
        "_allocations",
        "_failures",
        "_forward",
        "_latency",
        "_latency_log",
        "_live_buffers",
        "_live_bytes",
        "_lock",
        "_log",
        "_peak_bytes",
        "_retired",
        "_uncharged",
        "close_hook",
        "latency_hook",
        "log",
    )

    def __init__(self, *, charged_closes: bool = False) -> None:
        if type(charged_closes) is not bool:
            raise UsageError(f"heap stats: charged_closes is True or False, not {charged_closes!r}")
        self._lock = threading.Lock()
        self._log: list[int] = []
        self._latency_log: list[int] = []
        self._uncharged: list[int] = []  # closes that are not to be discharged (record_close)
        self._live_buffers = 0
        self._live_bytes = 0
        self._peak_bytes = 0
        self._allocations = 0
        self._failures = 0
        self._latency = [0] * BUCKETS
        #: A buffer's close as a C-level callable (``hook(size)``): the log's append (with
        #: ``charged_closes``, the close is also discharged from devalloc.limits at the next fold).
        self.close_hook = self._log.append
        #: For a caller that inlines :meth:`record_allocation` (the registry's hot path):
        #: ``close_hook(-size)``, ``latency_hook(latency_ns)``, then :meth:`fold` once
        #: ``len(log) >= FOLD_AT``. ``log`` is the event log itself (read its length only).
        self.latency_hook = self._latency_log.append
        self.log = self._log
        self._forward = charged_closes
        self._retired = False
        if charged_closes:
            add_release_source(self)

    def record_allocation(self, size: int, latency_ns: int) -> None:
        """A buffer of ``size`` bytes (> 0) was allocated in ``latency_ns`` nanoseconds."""
        if type(size) is not int or type(latency_ns) is not int or size <= 0 or latency_ns < 0:
            raise UsageError(
                f"heap stats: size and latency must be ints (> 0, >= 0), not {size!r}, "
                f"{latency_ns!r}"
            )
        log = self._log
        log.append(-size)
        self._latency_log.append(latency_ns)
        if len(log) >= FOLD_AT:
            self._fold()

    def record_close(self, size: int) -> None:
        """A buffer of ``size`` bytes was closed (by its owner or the garbage collector); never
        discharged from devalloc.limits."""
        if type(size) is not int or size <= 0:
            raise UsageError(f"heap stats: size must be an int > 0, not {size!r}")
        self._uncharged.append(size)  # first: a fold between the two discharges less, not more
        self._log.append(size)

    def record_failure(self) -> None:
        """An allocation reached the heap and failed."""
        with self._lock:
            self._failures += 1

    def fold(self) -> None:
        """Fold the logged events into the totals now (:meth:`snapshot` does it first)."""
        self._fold()

    def retire(self) -> None:
        """No more allocations will be logged (the registry closed): once every buffer is
        closed, devalloc.limits stops folding these counters."""
        self._retired = True

    def forward(self) -> bool:
        """For devalloc.limits: fold (discharging the charged closes); True once retired with
        no buffer live and nothing logged."""
        self._fold()
        return self._retired and not self._live_buffers and not self._log

    def _fold(self) -> None:
        with self._lock:
            # Take exactly the events present now: only appends happen outside the lock, at the
            # end, so the first n stay put while they are copied and cut. Everything is computed
            # first and the logs are cut and the totals stored after it with no call in between:
            # a signal's exception (raised only after a call) cannot come between them.
            log, latency_log, uncharged = self._log, self._latency_log, self._uncharged
            n, m, k = len(log), len(latency_log), len(uncharged)
            events = log[:n]
            latencies = latency_log[:m]
            forward = -sum(uncharged[:k])
            live, peak, allocated, closed = self._live_bytes, self._peak_bytes, 0, 0
            if events:
                ordered = events[:]
                events.sort()  # allocations (the negative events) first
                allocated = bisect_left(events, 0)
                taken = -sum(events[:allocated])
                released = sum(events[allocated:])
                if live + taken > peak:
                    # a new peak is possible: replay the events in order (minus the live bytes
                    # after each event)
                    peak = max(peak, -min(accumulate(ordered, initial=-live)))
                live += taken - released
                closed = len(events) - allocated
                forward += released
            buckets = self._latency
            if latencies:
                # count per log2 bucket by bisecting the sorted latencies at each power of two
                latencies.sort()
                buckets = buckets[:]
                below = 0
                for bits in range(latencies[0].bit_length(), latencies[-1].bit_length() + 1):
                    upto = bisect_left(latencies, 1 << bits, below)
                    buckets[min(max(bits - 1, 0), BUCKETS - 1)] += upto - below
                    below = upto
            del log[:n]
            del latency_log[:m]
            del uncharged[:k]
            self._latency = buckets
            self._live_bytes = live
            self._peak_bytes = peak
            self._allocations += allocated
            self._live_buffers += allocated - closed
            if self._forward and forward:
                discharge(forward)  # the closes of charged buffers, to devalloc.limits

    def snapshot(self, heap: str, kind: str) -> StatsSnapshot:
        """The counters now, labelled with the heap's name and kind."""
        self._fold()
        with self._lock:
            return StatsSnapshot(
                heap=heap,
                kind=kind,
                live_buffers=self._live_buffers,
                live_bytes=self._live_bytes,
                peak_bytes=self._peak_bytes,
                allocations=self._allocations,
                failures=self._failures,
                latency_ns=tuple(self._latency),
            )
