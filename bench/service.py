"""The service benchmark: brokered allocate+close against the in-process Allocator, and
throughput with 1, 10 and 100 clients.

Example:
    $ python bench/service.py                 # this machine (memfd when there is no dma-heap)
    $ python bench/service.py --quick --json  # a few seconds
    $ tests/vm/run.sh -- ... (in the VM: python bench/service.py, system heap as root)

What is measured:

- ``latency``: one ``allocate(...)`` + ``close()`` of one buffer of 4 KiB, 1 MiB, 8 MiB and
  32 MiB (XR24 images of 32x32, 512x512, 1024x2048, 2048x4096), median and p95 in microseconds,
  in-process (``Allocator.allocate``) and brokered (``devalloc.service.connect().allocate`` to a
  ``devalloc serve`` subprocess), and their ratio.
- ``throughput``: N client processes (1, 10, 100), each with its own connection, allocating and
  closing 4 KiB buffers for a fixed time: allocations per second in all, and the median and p99
  latency the clients saw.

The service runs as a subprocess exactly as ``devalloc serve`` (``--no-discover``); both sides
use the heap the registry selects for the request (the system dma-heap when the process may open
it, else CPU-only memfd: ``--cpu-only`` is then implied). Results go to stdout as a table, or as
JSON with ``--json``; nothing is written to bench/results.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

from devalloc.allocator import Allocator
from devalloc.constraints import Constraints
from devalloc.formats import fourcc_code
from devalloc.heaps.properties import HeapRequest
from devalloc.heaps.registry import HeapRegistry, NoHeapError
from devalloc.service import connect

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


def latency(path: str, cpu_only: bool, count: int) -> dict[str, Any]:
    """Median/p95 of allocate+close per size, in-process and brokered."""
    results: dict[str, Any] = {}
    with Allocator(discover_devices=False) as alloc, connect(path) as client:
        for label, (w, h) in SIZES.items():
            n = max(count // (8 if label in ("8M", "32M") else 1), 20)

            def local(w: int = w, h: int = h) -> None:
                alloc.allocate(w, h, usages=[XR24], allow_cpu_only=cpu_only).close()

            def brokered(w: int = w, h: int = h) -> None:
                client.allocate(w, h, usages=[XR24], allow_cpu_only=cpu_only).close()

            for op in (local, brokered):  # warm-up
                _times(op, 5)
            inproc = _summary(_times(local, n))
            broker = _summary(_times(brokered, n))
            results[label] = {
                "in_process": inproc,
                "brokered": broker,
                "ratio": broker["median_us"] / inproc["median_us"],
            }
    return results


def _client_loop(path: str, cpu_only: bool, seconds: float, out: int) -> None:
    samples: list[float] = []
    with connect(path, timeout=120) as client:
        w, h = SIZES["4K"]
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            start = time.perf_counter()
            client.allocate(w, h, usages=[XR24], allow_cpu_only=cpu_only).close()
            samples.append(time.perf_counter() - start)
    os.write(out, json.dumps(samples).encode())


def throughput(path: str, cpu_only: bool, clients: int, seconds: float) -> dict[str, Any]:
    """N forked clients allocating 4 KiB buffers for ``seconds``."""
    children = []
    for _ in range(clients):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            os.close(r)
            try:
                _client_loop(path, cpu_only, seconds, w)
            finally:
                os._exit(0)
        os.close(w)
        children.append((pid, r))
    samples: list[float] = []
    for pid, r in children:
        chunks = []
        while chunk := os.read(r, 1 << 20):
            chunks.append(chunk)
        os.close(r)
        os.waitpid(pid, 0)
        if chunks:
            samples.extend(json.loads(b"".join(chunks)))
    summary = _summary(samples) if samples else {"n": 0}
    return {"clients": clients, "allocations_per_s": len(samples) / seconds, **summary}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few seconds")
    parser.add_argument("--json", action="store_true", help="JSON on stdout")
    parser.add_argument("--clients", default="1,10,100", help="client counts (1,10,100)")
    args = parser.parse_args()
    cpu_only = not _device_heap_here()
    count = 50 if args.quick else 400
    seconds = 1.0 if args.quick else 3.0
    directory = tempfile.mkdtemp(prefix="devalloc-bench-")
    path = os.path.join(directory, "socket")
    proc = subprocess.Popen(
        [sys.executable, "-m", "devalloc.service", "serve", "--no-discover", "--socket", path],
        stderr=subprocess.DEVNULL,
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
            "heap": "memfd (CPU only)" if cpu_only else "device-importable heap",
            "latency": latency(path, cpu_only, count),
            "throughput": [
                throughput(path, cpu_only, int(n), seconds) for n in args.clients.split(",")
            ],
        }
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        os.rmdir(directory)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"heap: {report['heap']}")
    print("| size | in-process median µs | brokered median µs | ratio | brokered p95 µs |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for label, row in report["latency"].items():
        print(
            f"| {label} | {row['in_process']['median_us']:.0f} | {row['brokered']['median_us']:.0f}"
            f" | {row['ratio']:.2f}x | {row['brokered']['p95_us']:.0f} |"
        )
    print("\n| clients | allocations/s | median µs | p99 µs |")
    print("| ---: | ---: | ---: | ---: |")
    for row in report["throughput"]:
        print(
            f"| {row['clients']} | {row['allocations_per_s']:.0f} |"
            f" {row.get('median_us', 0):.0f} | {row.get('p99_us', 0):.0f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
