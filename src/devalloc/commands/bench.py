"""``devalloc bench``: a quick in-process measurement of this machine's heaps.

Example:
    $ devalloc bench                  # every accessible heap, 4 KiB / 1 MiB / 8 MiB
    $ devalloc bench --sizes 4096 --seconds 0.05 --json

Per heap (chosen and listed by the registry) and size: the median time of one allocate + close,
and the CPU write bandwidth through ``cpu_access("w")`` against ``ctypes.memset`` into ordinary
memory of the same size, measured in the same run (the baseline). It is a quick look, not the
benchmark: bench/heaps.py compares every path with a C program in the test VM
(bench/README.md).
"""

from __future__ import annotations

import argparse
import ctypes
import statistics
import time
from typing import Any

from ..errors import DevallocError, UsageError
from ..heaps.registry import HeapId, HeapRegistry
from ._common import EXIT_OK, SubParsers, add_json_flag, print_json

DEFAULT_SIZES = (4096, 1 << 20, 8 << 20)


def register(sub: SubParsers) -> None:
    """Add ``devalloc bench``."""
    parser = sub.add_parser(
        "bench",
        help="quick per-heap allocation latency and cpu_access write bandwidth (in-process)",
    )
    parser.add_argument(
        "--sizes",
        default=",".join(str(s) for s in DEFAULT_SIZES),
        help="comma-separated buffer sizes in bytes (default 4096,1048576,8388608)",
    )
    parser.add_argument(
        "--seconds", type=float, default=0.2, help="time spent per measurement (default 0.2)"
    )
    add_json_flag(parser)
    parser.set_defaults(func=_run)


def _sizes(text: str) -> list[int]:
    try:
        sizes = [int(part, 0) for part in text.split(",") if part.strip()]
    except ValueError:
        raise UsageError(f"--sizes: not a comma-separated list of integers: {text!r}") from None
    if not sizes or any(s < 1 or s > 1 << 30 for s in sizes):
        raise UsageError(f"--sizes: each size must be 1 byte to 1 GiB: {text!r}")
    return sizes


def _median_ns(step: Any, seconds: float) -> tuple[float, int]:
    """Run ``step`` repeatedly for about ``seconds``; its median duration in ns and the count."""
    samples: list[int] = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(samples) < 3:
        started = time.perf_counter_ns()
        step()
        samples.append(time.perf_counter_ns() - started)
    return statistics.median(samples), len(samples)


def _cell(registry: HeapRegistry, heap: HeapId, size: int, seconds: float) -> dict[str, Any]:
    """One heap at one size: allocate+close latency and cpu_access write bandwidth."""
    row: dict[str, Any] = {}

    def alloc_close() -> None:
        registry.allocate(heap, size).close()

    row["alloc_close_ns"], row["alloc_close_n"] = _median_ns(alloc_close, seconds)
    if not registry.properties(heap).cpu_mappable:
        return row
    plain = bytearray(size)
    address = ctypes.addressof(ctypes.c_char.from_buffer(plain))
    with registry.allocate(heap, size) as buf:

        def write() -> None:
            with buf.cpu_access("w") as view:
                ctypes.memset(ctypes.addressof(ctypes.c_char.from_buffer(view)), 0x5A, size)

        def baseline() -> None:
            ctypes.memset(address, 0x5A, size)

        write()  # fault the pages in once, as the baseline's are
        w_ns, _ = _median_ns(write, seconds)
        b_ns, _ = _median_ns(baseline, seconds)
    row["write_gbps"] = size / w_ns
    row["memset_gbps"] = size / b_ns
    row["write_vs_memset"] = b_ns / w_ns
    return row


def measure(registry: HeapRegistry, sizes: list[int], seconds: float) -> list[dict[str, Any]]:
    """Allocation latency and write bandwidth of every accessible heap at each size."""
    rows: list[dict[str, Any]] = []
    for heap, props in registry.heaps():
        if not props.accessible:
            continue
        for size in sizes:
            row: dict[str, Any] = {"heap": props.name, "kind": props.kind, "size": size}
            try:
                row.update(_cell(registry, heap, size, seconds))
            except DevallocError as exc:
                row["error"] = str(exc)
            rows.append(row)
    return rows


def _human(ns: float) -> str:
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("µs", 1e3)):
        if ns >= scale:
            return f"{ns / scale:.2f} {unit}"
    return f"{ns:.0f} ns"


def _run(args: argparse.Namespace) -> int:
    sizes = _sizes(args.sizes)
    if not 0 < args.seconds <= 60:
        raise UsageError(f"--seconds must be in (0, 60], not {args.seconds}")
    with HeapRegistry.discover() as registry:
        rows = measure(registry, sizes, args.seconds)
    if args.json:
        print_json({"seconds_per_cell": args.seconds, "results": rows})
        return EXIT_OK
    print(f"{'heap':<28} {'size':>9}  {'alloc+close':>12}  {'cpu write':>10}  {'vs memset':>9}")
    for row in rows:
        if "error" in row:
            print(f"{row['heap']:<28} {row['size']:>9}  FAILED: {row['error']}")
            continue
        write = f"{row['write_gbps']:.2f} GB/s" if "write_gbps" in row else "-"
        ratio = f"{row['write_vs_memset']:.2f}x" if "write_vs_memset" in row else "-"
        print(
            f"{row['heap']:<28} {row['size']:>9}  {_human(row['alloc_close_ns']):>12}"
            f"  {write:>10}  {ratio:>9}"
        )
    print("(medians in this process; bench/heaps.py compares each path with C in the test VM)")
    return EXIT_OK
