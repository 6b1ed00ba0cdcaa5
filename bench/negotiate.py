"""Benchmark of ``devalloc.negotiate.negotiate``: how long one negotiation takes.

Usage:
    python bench/negotiate.py            # prints a table, writes bench/results/negotiate.json
    python bench/negotiate.py --quick    # fewer iterations (a smoke run)

What is measured (``time.perf_counter_ns`` around each call, after a warm-up):
    * 4 devices with 200 (format, modifier) pairs each (a shared core of 120 pairs plus 80 of the
      device's own, each list in its own random order), different alignments and memory rules:
      the median and p95 of ``negotiate()``. "warm" reuses the Constraints objects (their
      pair -> position dicts are cached, as in an application that negotiates again);
      "cold" drops those caches before every call, so building them is counted.
    * growth: the same with 2, 4, 8, 16 and 32 devices (median and p95, warm and cold).
    * the failure path for 4 devices: no common format, conflicts plus the copy-path search.

Not a timed unit test: the numbers depend on the machine; the result file records which.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from devalloc.constraints import Constraints, MemoryRules
from devalloc.errors import NoPlanError
from devalloc.formats import FORMATS, LayoutRules, parse_modifier
from devalloc.negotiate import negotiate

PAIRS_PER_DEVICE = 200
SHARED = 120
MODIFIERS = (
    "LINEAR",
    "I915_X_TILED",
    "I915_Y_TILED",
    "ARM_AFBC(16x16,SPARSE)",
    "NVIDIA_BLOCK_LINEAR_2D(h=4,k=0xfe,g=2,s=1,c=0)",
)
RESULTS = Path(__file__).resolve().parent / "results" / "negotiate.json"


def _pool() -> list[tuple[int, int]]:
    mods = [parse_modifier(m).value for m in MODIFIERS]
    return [(f.fourcc, m) for f in FORMATS.values() for m in mods]


def make_devices(count: int, seed: int = 1) -> list[Constraints]:
    """``count`` devices of :data:`PAIRS_PER_DEVICE` pairs each; NV12 LINEAR is in every list
    (in the shared core), so a plan always exists."""
    rng = random.Random(seed)
    pool = _pool()
    nv12_linear = (FORMATS["NV12"].fourcc, 0)
    rest = [p for p in pool if p != nv12_linear]
    rng.shuffle(rest)
    shared = [nv12_linear, *rest[: SHARED - 1]]
    others = rest[SHARED - 1 :]
    devices = []
    for i in range(count):
        own = rng.sample(others, PAIRS_PER_DEVICE - SHARED)
        pairs = shared + own
        rng.shuffle(pairs)
        devices.append(
            Constraints(
                device=f"dev{i:02d}",
                usage="bench",
                pairs=tuple(pairs),
                layout=LayoutRules(
                    pitch_align=rng.choice((1, 16, 64, 256)),
                    height_align=rng.choice((1, 2, 16)),
                    size_align=rng.choice((1, 4096)),
                ),
                max_width=rng.choice((None, 8192)),
                memory=MemoryRules(
                    contiguous=rng.random() < 0.3,
                    dma_bits=rng.choice((32, 40, 64)),
                    coherent=rng.random() < 0.5,
                ),
                access=rng.choice(("read", "write", "read-write")),
            )
        )
    return devices


def _drop_caches(devices: list[Constraints]) -> None:
    for device in devices:
        device.__dict__.pop("positions", None)
        device.__dict__.pop("fourccs", None)


def measure(call: Callable[[], object], iterations: int, before: Callable[[], None]) -> list[int]:
    """Nanoseconds of each of ``iterations`` calls (after ``iterations // 10`` warm-up calls)."""
    for _ in range(max(1, iterations // 10)):
        before()
        call()
    times = []
    for _ in range(iterations):
        before()
        start = time.perf_counter_ns()
        call()
        times.append(time.perf_counter_ns() - start)
    return times


@dataclass(frozen=True)
class Summary:
    """Median, p95 and minimum of a run, in microseconds."""

    median_us: float
    p95_us: float
    min_us: float
    iterations: int

    @classmethod
    def of(cls, times: list[int]) -> Summary:
        ordered = sorted(times)
        p95 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]
        return cls(
            round(statistics.median(ordered) / 1000, 1),
            round(p95 / 1000, 1),
            round(ordered[0] / 1000, 1),
            len(ordered),
        )


@dataclass(frozen=True)
class Case:
    """One negotiation measured warm and cold."""

    devices: int
    chosen: str
    warm: Summary
    cold: Summary

    def to_json(self) -> dict[str, object]:
        return {
            "devices": self.devices,
            "pairs_per_device": PAIRS_PER_DEVICE,
            "chosen": self.chosen,
            "warm": asdict(self.warm),
            "cold": asdict(self.cold),
        }


def run_case(devices: list[Constraints], iterations: int) -> Case:
    """Measure ``negotiate(devices, 1920, 1080, cpu_access="w")``."""

    def call() -> object:
        return negotiate(devices, 1920, 1080, cpu_access="w")

    plan = negotiate(devices, 1920, 1080, cpu_access="w")
    chosen = plan.find("pair")
    return Case(
        len(devices),
        str(chosen.value) if chosen is not None else "",
        Summary.of(measure(call, iterations, lambda: None)),
        Summary.of(measure(call, iterations, lambda: _drop_caches(devices))),
    )


def run_failure(iterations: int) -> Summary:
    """Two camps that share no format: conflicts plus the copy-path search (4 devices)."""
    nv12 = (FORMATS["NV12"].fourcc, 0)
    xr24 = (FORMATS["XRGB8888"].fourcc, 0)
    camps = [
        Constraints("dev00", "bench", (nv12,), access="write"),
        Constraints("dev01", "bench", (nv12,), access="read"),
        Constraints("dev02", "bench", (xr24,), access="read"),
        Constraints("dev03", "bench", (xr24,), access="read"),
    ]

    def call() -> object:
        try:
            negotiate(camps, 1920, 1080)
        except NoPlanError as exc:
            return exc
        raise AssertionError("expected no plan")

    return Summary.of(measure(call, iterations, lambda: None))


def main() -> int:
    parser = argparse.ArgumentParser(description="Benchmark of devalloc.negotiate.negotiate")
    parser.add_argument("--quick", action="store_true", help="fewer iterations (a smoke run)")
    parser.add_argument("--output", type=Path, default=RESULTS, help="where to write the JSON")
    args = parser.parse_args()
    iterations = 200 if args.quick else 2000

    headline = run_case(make_devices(4), iterations)
    growth = [
        run_case(make_devices(n), max(100, iterations * 4 // max(4, n))) for n in (2, 4, 8, 16, 32)
    ]
    failure = run_failure(max(50, iterations // 20))
    result = {
        "benchmark": "negotiate",
        "command": "python bench/negotiate.py" + (" --quick" if args.quick else ""),
        "timestamp": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "machine": {
            "platform": platform.platform(),
            "machine": platform.machine(),
            "processor": platform.processor() or "unknown",
            "cpus": os.cpu_count(),
            "load_average_1min": round(os.getloadavg()[0], 2),
        },
        "size": "1920x1080",
        "cpu_access": "w",
        "headline_4_devices": headline.to_json(),
        "growth": [case.to_json() for case in growth],
        "failure_path_4_devices": {
            "case": "two camps sharing no format: conflicts and the copy-path search",
            **asdict(failure),
        },
        "budget_us": 1000,
        "within_budget": headline.warm.median_us < 1000 and headline.cold.median_us < 1000,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")

    print(
        f"negotiate() on {platform.python_implementation()} {platform.python_version()},"
        f" {platform.machine()}, 1920x1080, {PAIRS_PER_DEVICE} pairs per device (times in us)"
    )
    print(
        f"{'devices':>7}  {'warm median':>11}  {'warm p95':>8}"
        f"  {'cold median':>11}  {'cold p95':>8}"
    )
    for case in growth:
        print(
            f"{case.devices:>7}  {case.warm.median_us:>11}  {case.warm.p95_us:>8}"
            f"  {case.cold.median_us:>11}  {case.cold.p95_us:>8}"
        )
    print(
        f"headline, 4 devices: warm median {headline.warm.median_us} us, p95"
        f" {headline.warm.p95_us} us; cold median {headline.cold.median_us} us, p95"
        f" {headline.cold.p95_us} us (budget: median under 1000 us)"
    )
    print(f"failure path, 4 devices (conflicts + copy path): median {failure.median_us} us")
    print(f"written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
