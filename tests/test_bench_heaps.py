"""The heap benchmark (bench/heaps.py): its statistics, its verdicts, and a quick host run.

Example:
    $ .venv/bin/pytest -q tests/test_bench_heaps.py

The quick run measures the memfd path against the C baseline (bench/heapbench.c, built with gcc)
and checks the result file's schema and internal consistency; no timing is asserted.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench" / "heaps.py"


def _load_bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("devalloc_bench_heaps", BENCH)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


bench = _load_bench()

finite = st.floats(min_value=0, max_value=1e12, allow_nan=False, allow_infinity=False)


@given(st.lists(finite, min_size=1, max_size=50), st.floats(min_value=0, max_value=100))
def test_percentile_lies_between_min_and_max(values: list[float], q: float) -> None:
    p = bench.percentile(values, q)
    tol = 1e-9 * max(1.0, max(values))
    assert min(values) - tol <= p <= max(values) + tol


@given(st.lists(finite, min_size=1, max_size=50))
def test_percentile_ends_and_middle(values: list[float]) -> None:
    ordered = sorted(values)
    assert bench.percentile(values, 0) == ordered[0]
    assert bench.percentile(values, 100) == ordered[-1]
    assert math.isclose(bench.percentile(values, 50), bench.summarize(values)["median"])


@given(st.lists(finite, min_size=2, max_size=50), st.floats(0, 100), st.floats(0, 100))
def test_percentile_is_monotonic(values: list[float], a: float, b: float) -> None:
    lo, hi = sorted((a, b))
    assert bench.percentile(values, lo) <= bench.percentile(values, hi) * (1 + 1e-12) + 1e-9


def test_percentile_interpolates() -> None:
    # 95th of 1..21: rank 0.95 * 20 = 19 -> the 20th value exactly; of 1..11: rank 9.5.
    assert bench.percentile([float(v) for v in range(1, 22)], 95) == 20.0
    assert bench.percentile([float(v) for v in range(1, 12)], 95) == 10.5
    with pytest.raises(ValueError, match="no values"):
        bench.percentile([], 50)


def _record(group: str, op: str, source: str, impl: str, size: int, ns: float) -> dict[str, Any]:
    return {
        "group": group,
        "op": op,
        "source": source,
        "impl": impl,
        "size": size,
        "c_baseline": source if impl == "python" else "",
        "median": ns,
        "min": ns,
        "p95": ns,
    }


def test_comparisons_apply_each_target() -> None:
    heap = "dmaheap:/dev/dma_heap/system"
    kib4, mib = 4096, 1 << 20
    records = [
        _record("alloc", "alloc", heap, "python", kib4, 300.0),
        _record("alloc", "alloc", heap, "c", kib4, 100.0),  # 3.0 > 2.0: missed
        _record("alloc", "alloc", heap, "python", mib, 105.0),
        _record("alloc", "alloc", heap, "c", mib, 100.0),  # 1.05 <= 1.1: met
        _record("access", "write-memset", heap, "python", mib, 100.0),
        _record("access", "write-memset", heap, "c", mib, 95.0),  # 0.95 >= 0.9: met
        _record("access", "write-memset", "anon", "c", mib, 50.0),  # 0.5: missed
    ]
    got = {(c["name"], c["size"]): (c["ratio"], c["met"]) for c in bench.comparisons(records)}
    assert got == {
        ("alloc+close python/c (dma-heap system)", kib4): (3.0, False),
        ("alloc+close python/c (dma-heap system)", mib): (1.05, True),
        ("write-memset bandwidth python/c (dma-heap system)", mib): (0.95, True),
        ("write-memset bandwidth python/plain C memory", mib): (0.5, False),
    }


@pytest.fixture(scope="module")
def quick_result(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], str]:
    if shutil.which("gcc") is None:
        pytest.skip("gcc is needed to build bench/heapbench.c (apt-get install gcc libc6-dev)")
    out = tmp_path_factory.mktemp("bench") / "heaps-quick.json"
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--host", "--quick", "--label", "test", "--out", str(out)],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr
    with open(out, encoding="utf-8") as f:
        return json.load(f), proc.stdout


def test_quick_run_result_schema(quick_result: tuple[dict[str, Any], str]) -> None:
    result, _ = quick_result
    assert result["schema"] == "devalloc-bench-heaps/1"
    assert result["label"] == "test"
    assert result["mode"] == "host"
    assert result["quick"] is True
    assert result["kernel"] == os.uname().release
    assert result["python"]["version"] == ".".join(map(str, sys.version_info[:3]))
    assert result["timestamp"].endswith("+00:00")
    machine = result["machine"]
    assert machine["cpus"] >= 1
    assert machine["mem_total_mib"] > 0
    assert machine["page_size"] == os.sysconf("SC_PAGE_SIZE")
    assert machine["where"] == "host"
    cfg = result["config"]
    assert cfg["sizes"] == [4096, 1 << 20]
    assert cfg["rounds"] == 1
    assert isinstance(result["skipped"], list)
    assert all(isinstance(s, str) and s for s in result["skipped"])


def test_quick_run_measures_memfd_in_python_and_c(
    quick_result: tuple[dict[str, Any], str],
) -> None:
    result, _ = quick_result
    cells = result["cells"]
    assert not [c for c in cells if c["error"]], [c["error"] for c in cells if c["error"]]
    seen = {(c["group"], c["op"], c["source"], c["impl"], c["size"]) for c in cells}
    for size in (4096, 1 << 20):
        assert ("alloc", "alloc", "memfd", "python", size) in seen
        assert ("alloc", "alloc", "memfd", "c", size) in seen
    access_source = next(c["source"] for c in cells if c["group"] == "access")
    for op in ("write-memset", "write-copy", "read-copy"):
        assert ("access", op, access_source, "python", 4096) in seen
        assert ("access", op, access_source, "c", 4096) in seen
        assert ("access", op, "anon", "c", 4096) in seen
    assert any(c["group"] == "profile-alloc" for c in cells)
    assert any(c["group"] == "profile-access" for c in cells)
    for c in cells:
        samples = c["samples"]
        assert len(samples) >= 3, c  # the minimum a time budget leaves
        assert len(c["ops_per_batch"]) == result["config"]["rounds"]
        assert all(n >= 1 for n in c["ops_per_batch"])
        assert all(s > 0 for s in samples)
        assert min(samples) == pytest.approx(c["min"], abs=1e-3)
        assert c["min"] <= c["median"] <= c["p95"] <= max(samples) + 1e-3
        if c["group"] == "access" and c["op"] != "sync":
            # Stored rounded to 3 decimals: a slow path's few MB/s need the absolute margin.
            assert c["gbps_median"] == pytest.approx(c["size"] / c["median"], rel=1e-3, abs=1e-3)


def test_quick_run_comparisons_follow_the_cells(quick_result: tuple[dict[str, Any], str]) -> None:
    result, markdown = quick_result
    medians = {
        (c["group"], c["op"], c["source"], c["impl"], c["size"]): c["median"]
        for c in result["cells"]
    }
    comps = result["comparisons"]
    names = {c["name"] for c in comps}
    assert "alloc+close python/c (memfd)" in names
    for comp in comps:
        op, target = comp["target"].split()
        ratio = comp["numerator_median_ns"] / comp["denominator_median_ns"]
        assert comp["ratio"] == pytest.approx(ratio, abs=1e-3)
        assert (
            comp["met"]
            == {
                "<=": ratio <= float(target),
                ">=": ratio >= float(target),
                "<": ratio < float(target),
            }[op]
        )
        assert comp["numerator_median_ns"] in medians.values()
        assert comp["denominator_median_ns"] in medians.values()
    alloc = next(c for c in comps if c["name"] == "alloc+close python/c (memfd)")
    assert alloc["target"] == ("<= 2.0" if alloc["size"] < 1 << 20 else "<= 1.1")
    # The markdown summary carries the same verdicts.
    assert "| memfd | 4 KiB |" in markdown
    assert "alloc+close, ns/op: median (p95)" in markdown


def test_cpu_clock_and_only_filter(tmp_path: Path) -> None:
    if shutil.which("gcc") is None:
        pytest.skip("gcc is needed to build bench/heapbench.c (apt-get install gcc libc6-dev)")
    out = tmp_path / "heaps-cpu.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(BENCH),
            "--host",
            "--quick",
            "--clock",
            "cpu",
            "--only",
            r"^alloc\|alloc\|memfd\|",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text(encoding="utf-8"))
    assert result["config"]["clock"].startswith("this thread's CPU time")
    assert "CLOCK_THREAD_CPUTIME_ID" in result["config"]["timer"]
    keys = {(c["group"], c["source"], c["impl"], c["size"]) for c in result["cells"]}
    assert keys == {
        ("alloc", "memfd", impl, size) for impl in ("python", "c") for size in (4096, 1 << 20)
    }
    assert any("--only" in s for s in result["skipped"])
