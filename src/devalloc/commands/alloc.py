"""``devalloc alloc``: negotiate, allocate, optionally verify on live devices, and report.

Example:
    $ devalloc alloc --device vivid-000-vid-cap:capture --device vgem --size 640x480 \\
          --format YUYV --count 2 --verify
    $ devalloc alloc --device rkisp1:mainpath --device rk3399-vop:primary --size 1920x1080 \\
          --cpu-only --json
    $ devalloc alloc --size 640x480 --format YUYV --cpu-access rw     # no device: for the CPU
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..allocator import Allocation, Allocator
from ..constraints import CPU_ACCESS_VALUES, Constraints, load_constraints
from ..errors import DevallocError
from ..formats import parse_size
from ..negotiate import NegotiationError
from ..service.client import ServiceClient, connect
from ._common import (
    EXIT_NO_PLAN,
    EXIT_OK,
    SubParsers,
    add_json_flag,
    device_usages,
    int_at_least,
    one_line,
    print_json,
    utf8_text,
)
from .negotiate import print_failure, print_plan


def register(sub: SubParsers) -> None:
    """Add ``devalloc alloc``."""
    parser = sub.add_parser(
        "alloc",
        help="negotiate and allocate buffers for devices; report fd info, heap and layout",
        epilog="devices: a live device id (see `devalloc devices`), a bundled profile name (see"
        " `devalloc negotiate --help`) or a device file, each optionally :USAGE.\n"
        "exit codes: 0 ok, 1 system failure, 2 bad input, 3 no plan or verification failed\n"
        "examples:\n  devalloc alloc -d vivid-000-vid-cap:capture -d vgem --size 640x480 "
        "--format YUYV --verify\n  devalloc alloc -d uvc-webcam -d rk3399-vop:primary --size "
        "1280x720 --cpu-only\n  devalloc alloc --size 640x480 --format YUYV --cpu-access rw",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "-d",
        "--device",
        action="append",
        default=[],
        metavar="DEVICE[:USAGE]",
        help="a device that will use the buffers (repeat for each), or caps:CAPS for what"
        " GStreamer caps accept; none: buffers for the application alone (--format decides;"
        " any heap, CPU-only memfd included)",
    )
    parser.add_argument("--size", required=True, metavar="WxH", help="e.g. 1920x1080")
    parser.add_argument(
        "-f", "--format", action="append", metavar="F", help="candidate format (repeatable)"
    )
    parser.add_argument("--count", type=int_at_least(1), default=1, metavar="N")
    parser.add_argument(
        "--cpu-access", choices=CPU_ACCESS_VALUES, default="none", help="the CPU's own access"
    )
    parser.add_argument("--verify", action="store_true", help="import into every live device")
    parser.add_argument(
        "--cpu-only",
        action="store_true",
        help="fall back to CPU-only memfd buffers when no device-importable heap fits",
    )
    parser.add_argument("--name", type=utf8_text, help="dma-buf name prefix (shown by devalloc ps)")
    parser.add_argument(
        "--service",
        nargs="?",
        const="",
        metavar="PATH",
        help="allocate through the devalloc service (devalloc serve) at PATH (default: "
        "$DEVALLOC_SOCKET or /run/devalloc/socket) instead of opening the heaps here",
    )
    add_json_flag(parser)
    parser.set_defaults(func=_run)


def print_allocation(result: Allocation) -> None:
    """The human report of an allocation: plan, heap, buffers, verdicts, notes."""
    print_plan(result.plan, explain=False)
    props = result.heap_properties
    contiguous = {True: "contiguous", False: "scattered", None: "contiguity unknown"}
    print(
        f"heap: {props.kind} {props.name} ({contiguous[props.contiguous]}, "
        f"{props.cpu_cache or 'cache mode unknown'} CPU mapping"
        + ("" if props.device_importable else ", CPU ONLY: not importable by devices")
        + ")"
    )
    for i, image in enumerate(result.images):
        for j, buf in enumerate(image):
            line = f"  buffer {i}.{j}: fd {buf.fileno()} size {buf.size}"
            if buf.is_dmabuf:
                info = buf.info()
                line += f" inode {info.inode} exporter {info.exp_name}"
                if info.name:
                    line += f" name {info.name}"
            print(line)
    for attempt in result.attempts:
        print(f"attempt with {attempt.plan.format.name} from {attempt.heap} failed:")
        for verdict in attempt.verdicts:
            print(f"  {verdict}")
    for verdict in result.verdicts:
        print(f"verified {verdict}")
    if result.unverified:
        print(f"not verified: {', '.join(result.unverified)}")
    for note in result.notes:
        print(f"note: {note}")


def _local_constraints(spec: str | Constraints) -> list[Constraints]:
    """A usage's constraints for the failure report of a service allocation, when this process
    can read them (a profile or device file; none for a live device only the service sees)."""
    if isinstance(spec, Constraints):
        return [spec]
    try:
        return load_constraints(spec)
    except DevallocError:
        return []


def _run(args: argparse.Namespace) -> int:
    width, height = parse_size(args.size)
    usages = device_usages(args.device)
    alloc: Allocator | ServiceClient
    alloc = Allocator() if args.service is None else connect(args.service or None)
    with alloc:
        try:
            result = alloc.allocate(
                width,
                height,
                usages=usages,
                formats=args.format,
                count=args.count,
                cpu_access=args.cpu_access,
                verify=args.verify,
                allow_cpu_only=args.cpu_only,
                name=args.name,
            )
        except NegotiationError as exc:
            if args.json:
                print_json(
                    {
                        "conflicts": [c.to_json() for c in exc.conflicts],
                        "copy_path": exc.copy_path.to_json() if exc.copy_path else None,
                        "copy_note": exc.copy_note,
                    }
                )
            else:  # the devices are looked up again only for the human report
                devices = (
                    [c for spec in usages for c, _ in alloc.resolve(spec)]
                    if isinstance(alloc, Allocator)
                    else [c for spec in usages for c in _local_constraints(spec)]
                )
                print_failure(exc, devices, f"{width}x{height}")
            print(f"devalloc: {one_line(str(exc))}", file=sys.stderr)
            return EXIT_NO_PLAN
        with result:
            if args.json:
                data: dict[str, Any] = result.to_json()
                print_json(data)
            else:
                print_allocation(result)
    return EXIT_OK
