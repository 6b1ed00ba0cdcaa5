"""``devalloc negotiate``: one buffer that every given device can use, or why there is none.

Example:
    $ devalloc negotiate --device camera.toml:capture --device display.toml:primary \\
          --size 1920x1080 --format NV12 --cpu-access w --explain
    $ devalloc negotiate --device rk3399-vop --size 1920x1080 --json
    $ devalloc negotiate --pipeline examples/decode-display.toml --explain

With ``--pipeline FILE`` the pipeline file names the devices, the size, the formats, the CPU
access and the application's buffer counts (``holds``, ``slack``, a fixed ``count``), which
are negotiated with the devices' own: the plan's ``count`` is printed with how it was combined,
and a fixed count that the devices' bounds cannot meet is a count conflict (exit 3).

Exit status: 0 with a plan; 3 when no single buffer fits (every conflict is printed, with the
copy-path proposal or "needs more than one copy step"); 2 for bad input (a missing or invalid
device or pipeline file, an unknown key, format or usage, a bad size, --pipeline with --device,
--size, --format or --cpu-access).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from typing import Any

from ..constraints import (
    CPU_ACCESS_VALUES,
    BufferCounts,
    Constraints,
    CpuAccess,
    load_constraints,
)
from ..errors import UsageError
from ..formats import gst_format_name, parse_size
from ..negotiate import NegotiationError, Plan, negotiate
from ..negotiate.combine import DEFAULT_SLACK
from ..pipeline import Pipeline, load_pipeline
from ._common import (
    EXIT_NO_PLAN,
    EXIT_OK,
    SubParsers,
    add_json_flag,
    device_usages,
    print_json,
)

__all__ = ["register"]

_EPILOG = """\
FILE is a device file (TOML, see docs/negotiation.md) or the name of a bundled profile;
:USAGE picks one of its usages (all of them when left out); caps:CAPS is what GStreamer caps
accept (e.g. caps:video/x-raw,format=NV12). --pipeline PIPELINE takes the
devices, size, formats, CPU access and buffer counts (holds, slack, count) from a pipeline file
(examples/README.md) instead of --device, --size, --format and --cpu-access.

examples:
  devalloc negotiate --device camera.toml:capture --device display.toml:primary --size 1920x1080
  devalloc negotiate -d cam.toml -d gpu.toml:texture --size 1280x720 --format NV12 --format YUYV
  devalloc negotiate -d display.toml --size 3840x2160 --cpu-access w --prefer-uncached --explain
  devalloc negotiate -d display.toml --size 640x480 --json
  devalloc negotiate --pipeline examples/decode-display.toml --explain

exit status: 0 plan, 2 bad input, 3 no plan (the conflicts and a copy-path proposal are printed)
"""


def register(sub: SubParsers) -> None:
    """Add ``negotiate`` to the CLI."""
    parser = sub.add_parser(
        "negotiate",
        help="one buffer every device can use: format, modifier, layout, memory, cache policy",
        description="Negotiate the constraints of every device that touches a buffer into one"
        " plan, or print what conflicts.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "-d",
        "--device",
        action="append",
        metavar="FILE[:USAGE]",
        help="a device's constraints (repeat for every device), or caps:CAPS for what GStreamer"
        " caps accept; required without --pipeline",
    )
    parser.add_argument("--size", metavar="WxH", help="e.g. 1920x1080; required without --pipeline")
    parser.add_argument(
        "-p",
        "--pipeline",
        metavar="PIPELINE",
        help="a pipeline file: its devices, size, formats, CPU access and buffer counts",
    )
    parser.add_argument(
        "--format",
        action="append",
        metavar="F",
        help="a format the application accepts (repeat; best first); default: any",
    )
    parser.add_argument(
        "--cpu-access",
        choices=CPU_ACCESS_VALUES,
        help="what the application does with the buffer on the CPU (default: none)",
    )
    parser.add_argument(
        "--prefer-uncached",
        action="store_true",
        help="map write-combined when the CPU only writes and a device is not coherent",
    )
    parser.add_argument(
        "--explain", action="store_true", help="say where every combined value comes from"
    )
    add_json_flag(parser)
    parser.set_defaults(func=_run)


def memory_text(plan: Plan) -> str:
    memory = plan.memory
    parts = []
    if memory.contiguous:
        parts.append("contiguous")
    elif memory.max_segments is not None:
        parts.append(f"at most {memory.max_segments} segments")
    else:
        parts.append("any pages")
    parts.append(f"{memory.dma_bits}-bit DMA")
    parts.append(f"location {memory.location}")
    parts.append("protected" if memory.protected else "not protected")
    parts.append("coherent" if memory.coherent else "not coherent")
    parts.append(f"CPU access {memory.cpu_access}")
    return ", ".join(parts)


def count_note(plan: Plan) -> str:
    """How the plan's buffer count was combined (its ``count`` provenance record's note)."""
    record = plan.find("count")
    return record.note if record is not None else "no count record (a plan made before counts)"


def print_plan(plan: Plan, explain: bool, show_count: bool = False) -> None:
    lay = plan.layout
    parties = ", ".join(plan.devices) or "the application alone (no device)"
    print(f"plan for {parties} at {plan.width}x{plan.height}")
    print(f"  format    {plan.format.name} (fourcc {plan.format.fourcc_str})")
    print(f"  modifier  {plan.modifier.name} ({plan.modifier.hex})")
    if plan.drm_format is not None:
        gst = gst_format_name(plan.format, plan.modifier) if plan.modifier.is_linear else None
        print(f"  gstreamer drm-format {plan.drm_format}" + (f", raw format {gst}" if gst else ""))
    if lay.size is None:
        print(f"  size      decided by the exporter: {lay.note}")
    else:
        count = len(lay.buffer_sizes)
        print(f"  size      {lay.size} bytes in {count} buffer{'s' if count > 1 else ''}")
    for i, plane in enumerate(lay.planes):
        print(
            f"  plane {i}: offset {plane.offset:>10}  pitch {plane.pitch:>7}"
            f"  size {plane.size:>10}  buffer {plane.buffer}"
        )
    print(f"  memory    {memory_text(plan)}")
    print(f"  cache     {plan.cache.cpu_mapping} mapping, DMA_BUF_IOCTL_SYNC {plan.cache.sync}")
    print(f"  heap      {plan.heap_hint}")
    if show_count:
        buffers = f"{plan.count} buffer{'s' if plan.count > 1 else ''}"
        print(f"  count     {buffers}: {count_note(plan)}")
    if explain:
        print("why:")
        for line in plan.explain():
            print(f"  - {line}")


def print_failure(error: NegotiationError, devices: list[Constraints], size: str) -> None:
    labels = sorted(d.label for d in devices)
    count = len(error.conflicts)
    print(f"no plan for {', '.join(labels)} at {size}: {count} conflict{'s' if count > 1 else ''}")
    for conflict in error.conflicts:
        print(f"  {conflict.attribute}: {conflict.message}")
        if conflict.suggestion:
            print(f"    suggestion: {conflict.suggestion}")
    if error.copy_path is not None:
        print(f"copy path: {error.copy_path.describe()}")
    else:
        print(f"copy path: none ({error.copy_note})")


@dataclass(frozen=True)
class _Request:
    """What to negotiate: from --device/--size/--format/--cpu-access, or from a pipeline file."""

    devices: list[Constraints]
    width: int
    height: int
    formats: list[str] | None
    cpu_access: CpuAccess
    counts: BufferCounts | None = None
    slack: int = DEFAULT_SLACK
    pipeline: Pipeline | None = None

    def to_json(self) -> dict[str, Any]:
        """The request's own JSON keys: the pipeline (name, path, counts) when there is one."""
        pipe = self.pipeline
        if pipe is None:
            return {}
        return {
            "pipeline": {
                "name": pipe.name,
                "path": pipe.path,
                "holds": pipe.holds,
                "slack": pipe.slack,
                "count": pipe.count if pipe.count_fixed else None,
            }
        }


def _request(args: argparse.Namespace) -> _Request:
    """The request the arguments name.

    Raises:
        UsageError: --pipeline with --device, --size, --format or --cpu-access; neither
            --pipeline nor both --device and --size; a bad file or size.
    """
    if args.pipeline is not None:
        given = [
            flag
            for flag, value in (
                ("--device", args.device),
                ("--size", args.size),
                ("--format", args.format),
                ("--cpu-access", args.cpu_access),
            )
            if value is not None
        ]
        if given:
            raise UsageError(
                f"--pipeline names the devices, size, formats and CPU access; leave out"
                f" {', '.join(given)} (or leave out --pipeline)"
            )
        pipe = load_pipeline(args.pipeline)
        formats = None if pipe.formats is None else list(pipe.formats)
        return _Request(
            pipe.constraints(),
            pipe.width,
            pipe.height,
            formats,
            pipe.cpu_access,
            pipe.counts(),
            pipe.slack,
            pipe,
        )
    missing = [f for f, v in (("-d/--device", args.device), ("--size", args.size)) if not v]
    if missing:
        raise UsageError(
            f"the following arguments are required: {', '.join(missing)} (or --pipeline PIPELINE)"
        )
    width, height = parse_size(args.size)
    devices = [
        c
        for spec in device_usages(args.device)
        for c in (load_constraints(spec) if isinstance(spec, str) else [spec])
    ]
    return _Request(devices, width, height, args.format, args.cpu_access or "none")


def _run(args: argparse.Namespace) -> int:
    request = _request(args)
    devices, width, height = request.devices, request.width, request.height
    try:
        plan = negotiate(
            devices,
            width,
            height,
            request.formats,
            cpu_access=request.cpu_access,
            prefer_uncached=args.prefer_uncached,
            counts=request.counts,
            slack=request.slack,
        )
    except NegotiationError as exc:
        if args.json:
            print_json(
                {
                    **request.to_json(),
                    "devices": sorted(d.label for d in devices),
                    "size": {"width": width, "height": height},
                    "conflicts": [c.to_json() for c in exc.conflicts],
                    "copy_path": exc.copy_path.to_json() if exc.copy_path else None,
                    "copy_note": exc.copy_note,
                }
            )
        else:
            print_failure(exc, devices, f"{width}x{height}")
        count = len(exc.conflicts)
        print(
            f"devalloc: no plan: {count} conflict{'s' if count > 1 else ''}"
            + (" (a copy path is proposed)" if exc.copy_path else ""),
            file=sys.stderr,
        )
        return EXIT_NO_PLAN
    if args.json:
        data = {**request.to_json(), **plan.to_json()}
        if args.explain:
            data["explain"] = plan.explain()
        print_json(data)
    else:
        print_plan(plan, args.explain, show_count=True)
    return EXIT_OK
