"""The service benchmark: brokered allocate+close against the in-process Allocator and the C
loop, and throughput with 1, 10 and 100 clients.

Example:
    $ python bench/service.py                 # this machine (memfd when there is no dma-heap)
    $ python bench/service.py --quick --json  # a few seconds
    $ bash bench/run-vm.sh --icount --script service   # the VM, in instructions: results file

What is measured:

- ``latency``: one ``allocate(...)`` + ``close()`` of one buffer of 4 KiB, 1 MiB, 8 MiB and
  32 MiB (XR24 images of 32x32, 512x512, 1024x2048, 2048x4096), median and p95 in microseconds,
  in-process (``Allocator.allocate``, which reuses the plan of a request asked for again, as the
  service does) and brokered (``devalloc.service.connect().allocate`` to a ``devalloc serve``
  subprocess), and their ratio; also in-process without the plan cache
  (``Allocator(plan_cache_size=0)``: a negotiation every call, as before). With ``--cbin``
  (bench/heapbench, as bench/heaps.py runs it) also the C loop on the heap the allocation came
  from (allocate ioctl or memfd_create + close), and the steps of the in-process path: the
  negotiation alone (``Allocator.plan`` without the plan cache) and the heap alone
  (``registry.allocate(...).close()``).
- ``throughput``: N client processes (1, 10, 100), each with its own connection, allocating and
  closing 4 KiB buffers for a fixed time: allocations per second in all, and the median and p99
  latency the clients saw.

The service runs as a subprocess exactly as ``devalloc serve`` (``--no-discover``); both sides
use the heap the registry selects for the request (the system dma-heap when the process may open
it, else CPU-only memfd: ``--cpu-only`` is then implied). Every latency sample is one operation
(under ``run-vm.sh --icount`` the guest clock counts instructions: 1 "ns" = 1 instruction).
Results go to stdout as a markdown table, or as JSON with ``--json``; ``--out FILE`` also writes
the JSON: median, p95, p99 and count of every cell, the machine and the revision (run-vm.sh
keeps it as bench/results/service-KERNEL[-icount].json). Method and results: bench/service.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.join(os.path.dirname(HERE), "src")
sys.path.insert(0, SRC)

from heaps import git_revision, machine_info  # noqa: E402

from devalloc.allocator import Allocator  # noqa: E402
from devalloc.constraints import Constraints  # noqa: E402
from devalloc.formats import fourcc_code  # noqa: E402
from devalloc.heaps.properties import HeapProperties, HeapRequest  # noqa: E402
from devalloc.heaps.registry import HeapRegistry, NoHeapError  # noqa: E402
from devalloc.service import connect  # noqa: E402

XR24 = Constraints("display", "in", ((fourcc_code("XR24"), 0),))
#: size label -> (width, height) of an XR24 image of that many bytes.
SIZES = {"4K": (32, 32), "1M": (512, 512), "8M": (1024, 2048), "32M": (2048, 4096)}


def _device_heap_here() -> bool:
    with HeapRegistry.discover() as registry:
        try:
            registry.select(HeapRequest(size=4096))
        except NoHeapError:
            return False
    return True


def _times(op: Any, count: int) -> list[float]:
    out = []
    for _ in range(count):
        start = time.perf_counter()
        op()
        out.append(time.perf_counter() - start)
    return out


def _summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "median_us": statistics.median(ordered) * 1e6,
        "p95_us": ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))] * 1e6,
        "p99_us": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1e6,
        "n": len(ordered),
    }


def c_source(props: HeapProperties) -> str | None:
    """heapbench's SOURCE for the heap an allocation came from (None: no C loop for it)."""
    if props.kind == "memfd":
        return "memfd"
    if props.kind == "dma-heap":
        return props.name if props.name.startswith("/") else f"/dev/dma_heap/{props.name}"
    return None


def c_loop(cbin: str, source: str, size: int, count: int) -> dict[str, float]:
    """heapbench's alloc loop (allocate + close) on ``source``: ``count`` batches of one
    operation each (the samples are per operation, like the Python ones)."""
    argv = [cbin, "alloc", source if source == "memfd" else f"dmaheap:{source}", str(size)]
    argv += ["1", str(count), "5"]  # BATCH_NS 1: one operation per batch
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)}: exit {proc.returncode}: {proc.stderr.strip()}")
    return _summary([float(ns) / 1e9 for ns in json.loads(proc.stdout)["ns_per_op"]])


def latency(path: str, cpu_only: bool, count: int, cbin: str | None) -> dict[str, Any]:
    """Median/p95 of allocate+close per size: in-process, brokered, C, and the in-process
    path's steps."""
    results: dict[str, Any] = {}
    with (
        Allocator(discover_devices=False) as alloc,
        Allocator(discover_devices=False, plan_cache_size=0) as uncached,
        connect(path) as client,
    ):
        for label, (w, h) in SIZES.items():
            n = max(count // (8 if label in ("8M", "32M") else 1), 20)

            def local(w: int = w, h: int = h) -> None:
                alloc.allocate(w, h, usages=[XR24], allow_cpu_only=cpu_only).close()

            def local_uncached(w: int = w, h: int = h) -> None:
                uncached.allocate(w, h, usages=[XR24], allow_cpu_only=cpu_only).close()

            def brokered(w: int = w, h: int = h) -> None:
                client.allocate(w, h, usages=[XR24], allow_cpu_only=cpu_only).close()

            def negotiate(w: int = w, h: int = h) -> None:
                uncached.plan(w, h, usages=[XR24])

            with alloc.allocate(w, h, usages=[XR24], allow_cpu_only=cpu_only) as first:
                heap, props, size = first.heap, first.heap_properties, first.plan.layout.size
            assert size is not None

            def heap_alone(heap: Any = heap, size: int = size) -> None:
                alloc.registry.allocate(heap, size).close()

            ops: dict[str, Callable[[], None]] = {
                "in_process": local,
                "brokered": brokered,
                "in_process_uncached": local_uncached,
            }
            ops |= {"negotiate": negotiate, "heap_alone": heap_alone}
            for op in ops.values():  # warm-up
                _times(op, 5)
            row: dict[str, Any] = {"size": size, "heap_name": props.name}
            # in-process and brokered alternate in halves, so drift lands on both
            samples: dict[str, list[float]] = {name: [] for name in ops}
            for _ in range(2):
                for name, op in ops.items():
                    samples[name] += _times(op, n // 2)
            row |= {name: _summary(values) for name, values in samples.items()}
            row["ratio"] = row["brokered"]["median_us"] / row["in_process"]["median_us"]
            row["ratio_uncached"] = (
                row["brokered"]["median_us"] / row["in_process_uncached"]["median_us"]
            )
            source = c_source(props)
            if cbin is not None and source is not None:
                row["c"] = c_loop(cbin, source, size, n)
                row["c_source"] = source
                row["in_process_vs_c"] = row["in_process"]["median_us"] / row["c"]["median_us"]
                row["brokered_vs_c"] = row["brokered"]["median_us"] / row["c"]["median_us"]
            results[label] = row
    return results


def _client_loop(path: str, cpu_only: bool, seconds: float, go: int, out: int) -> None:
    """One client: connect, wait for ``go`` (every client connected), allocate and close 4 KiB
    buffers until ``deadline``; report the samples and the loop's start and end."""
    samples: list[float] = []
    with connect(path, timeout=120) as client:
        client.hello()  # connected and known to the service before the clock starts
        os.read(go, 1)
        w, h = SIZES["4K"]
        begin = time.monotonic()
        deadline = begin + seconds
        while time.monotonic() < deadline:
            start = time.perf_counter()
            client.allocate(w, h, usages=[XR24], allow_cpu_only=cpu_only).close()
            samples.append(time.perf_counter() - start)
        end = time.monotonic()
    os.write(out, json.dumps({"samples": samples, "begin": begin, "end": end}).encode())


def throughput(path: str, cpu_only: bool, clients: int, seconds: float) -> dict[str, Any]:
    """N forked clients, all connected first, allocating 4 KiB buffers for ``seconds`` each;
    allocations per second over the window from the first client's start to the last one's
    end (CLOCK_MONOTONIC is one clock for every process)."""
    go_r, go_w = os.pipe()
    children = []
    for _ in range(clients):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            os.close(r)
            os.close(go_w)
            try:
                _client_loop(path, cpu_only, seconds, go_r, w)
            finally:
                os._exit(0)
        os.close(w)
        children.append((pid, r))
    os.close(go_r)
    # each child says hello before it reads its byte: ask the service until all are connected
    with connect(path) as probe:
        while probe.status()["connections"] < clients + 1:
            time.sleep(0.01)
    os.write(go_w, b"g" * clients)
    os.close(go_w)
    samples: list[float] = []
    begins, ends = [], []
    for pid, r in children:
        chunks = []
        while chunk := os.read(r, 1 << 20):
            chunks.append(chunk)
        os.close(r)
        os.waitpid(pid, 0)
        if chunks:
            report = json.loads(b"".join(chunks))
            samples.extend(report["samples"])
            begins.append(report["begin"])
            ends.append(report["end"])
    window = max(ends) - min(begins) if ends else seconds
    summary = _summary(samples) if samples else {"n": 0}
    return {
        "clients": clients,
        "allocations_per_s": len(samples) / window,
        "window_s": window,
        **summary,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few seconds")
    parser.add_argument("--json", action="store_true", help="JSON on stdout")
    parser.add_argument("--clients", default="1,10,100", help="client counts (1,10,100)")
    parser.add_argument("--count", type=int, help="samples per size (400; --quick 50)")
    parser.add_argument("--seconds", type=float, help="seconds per throughput run (3; --quick 1)")
    parser.add_argument("--cbin", help="bench/heapbench, built: add the C loop per size")
    parser.add_argument("--out", help="write the JSON report (every sample's summary) here")
    parser.add_argument("--label", default="", help="a label for the report (run-vm.sh)")
    parser.add_argument("--vm", action="store_true", help="running in the test VM (run-vm.sh)")
    args = parser.parse_args()
    cpu_only = not _device_heap_here()
    count = args.count or (50 if args.quick else 400)
    seconds = args.seconds or (1.0 if args.quick else 3.0)
    directory = tempfile.mkdtemp(prefix="devalloc-bench-")
    path = os.path.join(directory, "socket")
    # the service of this checkout (not whichever devalloc the interpreter has installed)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.Popen(
        [sys.executable, "-m", "devalloc.service", "serve", "--no-discover", "--socket", path],
        stderr=subprocess.DEVNULL,
        env=env,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as probe:
                try:
                    probe.connect(path)
                    break
                except OSError:
                    if time.monotonic() > deadline or proc.poll() is not None:
                        raise SystemExit("the service did not start") from None
                    time.sleep(0.05)
        report: dict[str, Any] = {
            "bench": "service",
            "label": args.label,
            "clock": os.environ.get("DEVALLOC_BENCH_CLOCK", "wall"),
            "timestamp": os.environ.get("DEVALLOC_BENCH_HOST_TIME")
            or datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "kernel": platform.release(),
            "python": platform.python_version(),
            "devalloc_git": git_revision(),
            "machine": machine_info("vm" if args.vm else "host"),
            "heap": "memfd (CPU only)" if cpu_only else "device-importable heap",
            "latency": latency(path, cpu_only, count, args.cbin),
            "throughput": [
                throughput(path, cpu_only, int(n), seconds) for n in args.clients.split(",")
            ],
        }
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        os.rmdir(directory)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump(report, f, indent=1)
            f.write("\n")
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(markdown(report))
    return 0


def markdown(report: dict[str, Any]) -> str:
    """The report's tables (medians; "µs" are instructions/1000 under --icount)."""
    unit = "k instr" if report["clock"] == "icount" else "µs"
    lines = [
        f"heap: {report['heap']}; clock: {report['clock']}; {report['kernel']}",
        "",
        f"| size | heap | C {unit} | in-process {unit} | brokered {unit} | brokered / in-process"
        f" | in-process / C | brokered / C | negotiate {unit} | heap alone {unit}"
        f" | in-process, no plan cache {unit} | brokered / that |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for label, row in report["latency"].items():
        c = row.get("c", {}).get("median_us")
        lines.append(
            f"| {label} | {row['heap_name']} | {'-' if c is None else f'{c:.1f}'}"
            f" | {row['in_process']['median_us']:.1f} | {row['brokered']['median_us']:.1f}"
            f" | {row['ratio']:.2f}x | {row.get('in_process_vs_c', 0):.2f}x"
            f" | {row.get('brokered_vs_c', 0):.2f}x | {row['negotiate']['median_us']:.1f}"
            f" | {row['heap_alone']['median_us']:.1f}"
            f" | {row['in_process_uncached']['median_us']:.1f} | {row['ratio_uncached']:.2f}x |"
        )
    lines += ["", f"| clients | allocations/s | median {unit} | p99 {unit} |"]
    lines.append("| ---: | ---: | ---: | ---: |")
    for row in report["throughput"]:
        lines.append(
            f"| {row['clients']} | {row['allocations_per_s']:.0f} |"
            f" {row.get('median_us', 0):.1f} | {row.get('p99_us', 0):.1f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
