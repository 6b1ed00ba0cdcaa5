"""``devalloc examples``: run the example pipelines end to end (the main job's second half).

Example:
    $ devalloc examples                 # every examples/*.toml, then the live devices if any
    $ devalloc examples examples/decode-display.toml --json

For each pipeline file: negotiate with the file's counts (what the application holds, the slack,
a fixed ``count``; the plan's explanation says how its buffer count was combined), allocate the
negotiated count of buffers (at most :data:`MAX_DEMO_COUNT`, said so) through the front door
(:class:`devalloc.allocator.Allocator`; on a machine without a device-importable heap, CPU-only
memfd buffers, said so), fill every plane through ``cpu_access("w")`` and read it
back through ``cpu_access("r")``, and compare the outcome (plan, copy path or conflict) with the
file's ``expect``. A copy-path proposal allocates and checks both buffer sets. Then, when live
devices exist (the test VM: vivid and vgem), a live pipeline: the first V4L2 capture node that
imports dma-bufs plus every DRM device that imports them, allocated with verification (real
QBUF/DQBUF of a frame, PRIME import), and the captured frame read back.

Exit status 0 when every pipeline gave what its file expects and every buffer read back what was
written; 1 otherwise.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._toml import path_kind, shown
from ..allocator import Allocation, Allocator
from ..buffer import Buffer
from ..errors import DevallocError, NoPlanError, UsageError
from ..negotiate import NegotiationError, Plan
from ..pipeline import Pipeline, load_pipeline, pipeline_paths
from ._common import EXIT_FAILURE, EXIT_OK, SubParsers, add_json_flag, one_line, print_json
from .negotiate import count_note

__all__ = ["Outcome", "fill_and_check", "register", "run_live", "run_pipeline"]

#: Buffers allocated per plan at most (negotiation may give more; this is a demonstration).
MAX_DEMO_COUNT = 4
#: The live pipeline's request.
LIVE_SIZE = (640, 480)
LIVE_FORMATS = ("YUYV", "NV12", "XRGB8888")


@dataclass
class Outcome:
    """What one pipeline gave."""

    name: str
    expect: str | None
    result: str = ""
    ok: bool = True
    lines: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)

    def say(self, line: str) -> None:
        self.lines.append(line)

    def fail(self, line: str) -> None:
        self.ok = False
        self.lines.append(f"FAILED: {line}")

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "expect": self.expect,
            "result": self.result,
            "ok": self.ok,
            "lines": self.lines,
            **self.data,
        }


def register(sub: SubParsers) -> None:
    """Add ``devalloc examples``."""
    parser = sub.add_parser(
        "examples",
        help="run the example pipelines end to end: negotiate, explain, allocate, fill, read back",
    )
    parser.add_argument(
        "paths",
        nargs="*",
        default=["examples"],
        metavar="PATH",
        help="pipeline files or directories (default: examples)",
    )
    parser.add_argument("--no-live", action="store_true", help="skip the live-device pipeline")
    add_json_flag(parser)
    parser.set_defaults(func=_run)


def _pattern(seed: int, size: int) -> bytes:
    block = bytes((seed * 31 + i * 7) & 0xFF for i in range(251))
    return (block * (size // len(block) + 1))[:size]


def fill_and_check(buffers: list[tuple[Buffer, ...]]) -> tuple[bool, int, float]:
    """Write a distinct pattern into every buffer, read each back; (all equal, bytes, seconds)."""
    total = 0
    seconds = 0.0
    ok = True
    for i, image in enumerate(buffers):
        for j, buf in enumerate(image):
            data = _pattern(i * 8 + j, buf.size)
            started = time.perf_counter()
            with buf.cpu_access("w") as view:
                view[:] = data
            with buf.cpu_access("r") as view:
                ok = ok and view.tobytes() == data
            seconds += time.perf_counter() - started
            total += buf.size
    return ok, total, seconds


def _allocate_and_check(
    alloc: Allocator, pipe: Pipeline, plan: Plan, out: Outcome, label: str
) -> None:
    why = count_note(plan)
    out.say(f"{label}: count {plan.count}: {why}")
    counts: dict[str, Any] = {"negotiated": plan.count, "allocated": 0, "note": why}
    out.data.setdefault("counts", {})[label] = counts
    if plan.layout.size is None:
        out.say(f"{label}: not allocated: {plan.layout.note}")
        return
    if plan.memory.protected:
        out.say(f"{label}: protected memory: the CPU cannot fill it; not allocated here")
        return
    count = counts["allocated"] = min(plan.count, MAX_DEMO_COUNT)
    if count < plan.count:
        out.say(
            f"{label}: allocating {count} of the {plan.count} negotiated buffers"
            f" (a demonstration allocates at most {MAX_DEMO_COUNT})"
        )
    devices = [c for c in pipe.constraints() if c.label in plan.devices]
    with alloc.allocate(
        plan.width,
        plan.height,
        usages=devices,
        formats=[plan.format.name],
        count=count,
        cpu_access="rw",
        allow_cpu_only=True,
        name=pipe.name[:24],
    ) as result:
        _report_allocation(result, out, label)
        ok, total, seconds = fill_and_check(list(result.images))
        rate = total / seconds / 1e6 if seconds > 0 else 0.0
        if ok:
            out.say(
                f"{label}: wrote and read back {total} bytes through cpu_access ({rate:.0f} MB/s)"
            )
        else:
            out.fail(f"{label}: data read back through cpu_access differs from what was written")


def _report_allocation(result: Allocation, out: Outcome, label: str) -> None:
    props = result.heap_properties
    sizes = sorted({b.size for image in result.images for b in image})
    out.say(
        f"{label}: {len(result.images)} x {result.plan.format.name} from the {props.kind} heap"
        f" {props.name} ({', '.join(str(s) for s in sizes)} bytes each)"
    )
    for note in result.notes:
        out.say(f"{label}: note: {note}")
    out.data.setdefault("allocations", []).append(result.to_json())


def run_pipeline(alloc: Allocator, pipe: Pipeline) -> Outcome:
    """Negotiate (with the pipeline's counts and slack), explain, allocate the negotiated count,
    fill and read back one pipeline."""
    out = Outcome(pipe.name, pipe.expect)
    out.say(f"{pipe.name}: {pipe.description}" if pipe.description else pipe.name)
    out.say(f"devices: {', '.join(pipe.labels)} at {pipe.size}")
    try:
        plan = alloc.plan(
            pipe.width,
            pipe.height,
            usages=pipe.constraints(),
            formats=pipe.formats,
            cpu_access=pipe.cpu_access,
            counts=pipe.counts(),
            slack=pipe.slack,
        )
    except NegotiationError as exc:
        for conflict in exc.conflicts:
            out.say(f"conflict: {conflict.attribute}: {conflict.message}")
        if exc.copy_path is None:
            out.result = "conflict"
            out.say(f"copy path: none ({exc.copy_note})")
        else:
            out.result = "copy"
            out.say(f"copy path: {exc.copy_path.describe()}")
            _allocate_and_check(alloc, pipe, exc.copy_path.source, out, "source")
            _allocate_and_check(alloc, pipe, exc.copy_path.destination, out, "destination")
    else:
        out.result = "plan"
        out.say(
            f"plan: {plan.format.name} {plan.modifier.name}, "
            + (f"{plan.layout.size} bytes" if plan.layout.size else "size decided by the exporter")
        )
        out.lines.extend(f"  why: {line}" for line in plan.explain())
        out.data["plan"] = plan.to_json()
        _allocate_and_check(alloc, pipe, plan, out, "buffers")
    if pipe.expect is not None and pipe.expect != out.result:
        out.fail(f"expected {pipe.expect}, got {out.result}")
    return out


def run_live(alloc: Allocator) -> Outcome | None:
    """The live pipeline: a V4L2 capture node and the DRM importers, verified for real.

    Candidates are capture-only nodes (not mem-to-mem) that import dma-bufs, in discovery order;
    one that cannot deliver frames on its own (e.g. a media-controller camera whose pipeline is
    not configured) is reported and the next is tried.
    """
    cameras = [
        d
        for d in alloc.discovery.v4l2
        if [c.usage for c in d.usages] == ["capture"] and d.queue("capture").dmabuf
    ]
    if not cameras:
        return None
    importers: list[str | tuple[str, str]] = []
    for device in alloc.discovery.drm:  # what a display or GPU does with a frame: import, show it
        names = [c.usage for c in device.usages] if device.prime_import else []
        usage = next((u for u in ("import", "primary") if u in names), None)
        if usage is not None:
            importers.append((device.name, usage))
    out = Outcome("live", "plan", result="conflict")
    for camera in cameras:
        usages: list[str | tuple[str, str]] = [(camera.name, "capture"), *importers]
        labels = ", ".join(u if isinstance(u, str) else ":".join(u) for u in usages)
        out.say(f"live devices: {labels} at {LIVE_SIZE[0]}x{LIVE_SIZE[1]}")
        try:
            with alloc.allocate(
                *LIVE_SIZE,
                usages=usages,
                formats=list(LIVE_FORMATS),
                count=2,
                frames=2,
                cpu_access="r",
                verify=True,
                name="devalloc-live",
            ) as result:
                out.result = "plan"
                _report_allocation(result, out, "live")
                for verdict in result.verdicts:
                    out.say(f"verify {verdict}")
                frame = result.plan.size or 0
                for buf in result.buffers:
                    with buf.cpu_access("r") as view:
                        nonzero = any(view[i] for i in range(0, min(frame, len(view)), 4096))
                    if not nonzero:
                        out.fail("a captured buffer reads back as zeros")
                        break
                else:
                    out.say("live: captured frames read back through cpu_access (not all zero)")
                return out
        except (NegotiationError, NoPlanError) as exc:
            reason = (
                "; ".join(c.message for c in exc.conflicts)
                if isinstance(exc, NegotiationError)
                else str(exc)
            )
            out.say(f"live: {camera.name} gives no verified plan here: {reason}")
    out.fail("no capture device delivered frames into negotiated buffers")
    return out


def _pipelines(paths: list[str]) -> list[Pipeline]:
    files: list[Path] = []
    for text in paths:
        kind = path_kind(text, "pipeline file")
        if kind == "dir":
            files.extend(pipeline_paths(text))
        elif kind == "file":
            files.append(Path(text))
        else:
            raise UsageError(f"no pipeline file or directory {shown(text)}")
    return [load_pipeline(f) for f in files]


def _run(args: argparse.Namespace) -> int:
    pipelines = _pipelines(args.paths)
    outcomes: list[Outcome] = []
    with Allocator(discover_devices=not args.no_live) as alloc:
        for pipe in pipelines:
            try:
                outcomes.append(run_pipeline(alloc, pipe))
            except DevallocError as exc:
                out = Outcome(pipe.name, pipe.expect, result="error")
                out.fail(str(exc))
                outcomes.append(out)
        if not args.no_live:
            live = run_live(alloc)
            if live is not None:
                outcomes.append(live)
        live_names = [d.name for d in alloc.discovery.devices()]
    ok = all(o.ok for o in outcomes)
    if not ok:  # the reason is in the report on stdout; stderr says that it failed, and where
        failed = [o.name for o in outcomes if not o.ok]
        print(
            f"devalloc: examples: {len(failed)} of {len(outcomes)} pipelines did not give what"
            f" their file expects: {one_line(', '.join(failed))}",
            file=sys.stderr,
        )
    if args.json:
        print_json(
            {"ok": ok, "live_devices": live_names, "pipelines": [o.to_json() for o in outcomes]}
        )
    else:
        for o in outcomes:
            print(f"== {o.name} ({o.result}{', as expected' if o.ok else ''})")
            for line in o.lines:
                print(f"  {line}")
        passed = sum(o.ok for o in outcomes)
        print(f"examples: {passed}/{len(outcomes)} as expected")
        if not live_names:
            print("live devices: none here (no DRM or V4L2 device): profiles + heaps only")
    return EXIT_OK if ok else EXIT_FAILURE
