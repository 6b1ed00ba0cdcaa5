"""``devalloc heaps``: every heap this process could allocate from, with its properties.

Example:
    $ devalloc heaps
    $ devalloc heaps --json

Heaps are listed in selection order (the order the registry tries them); one this process
cannot open is listed with the reason. CMA totals come from /proc/meminfo when the kernel has CMA.
"""

from __future__ import annotations

import argparse
from typing import Any

from ..heaps.properties import HeapProperties
from ..heaps.registry import HeapRegistry, read_meminfo
from ._common import EXIT_OK, SubParsers, add_json_flag, directory, print_json


def _yes_no(value: bool | None) -> str:
    return "unknown" if value is None else ("yes" if value else "no")


def _size(value: int | None) -> str:
    if value is None:
        return "-"
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if value >= 1 << shift:
            if value % (1 << shift) == 0:
                return f"{value >> shift} {unit}"
            return f"{value / (1 << shift):.1f} {unit}"
    return f"{value} B"


def _row(props: HeapProperties) -> list[str]:
    if props.contiguous is None:
        layout = "unknown"
    else:
        layout = "contiguous" if props.contiguous else "scattered"
    access = "ok" if props.accessible else f"NOT ACCESSIBLE: {props.reason}"
    if not props.device_importable:
        access += " (not importable by devices)"
    return [
        props.kind,
        props.name,
        layout,
        props.cpu_cache or "unknown",
        _yes_no(props.protected),
        _yes_no(props.cpu_mappable),
        str(props.dma_bits) if props.dma_bits is not None else "unknown",
        props.location or "unknown",
        _size(props.max_size),
        access,
    ]


_HEADER = [
    "kind",
    "name",
    "memory",
    "cpu cache",
    "protected",
    "cpu map",
    "dma bits",
    "location",
    "max size",
    "access",
]


def _print_table(rows: list[list[str]]) -> None:
    widths = [max(len(r[i]) for r in [_HEADER, *rows]) for i in range(len(_HEADER) - 1)]
    for row in [_HEADER, *rows]:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        print("  " + "  ".join([*cells, row[-1]]).rstrip())


def _cmd_heaps(args: argparse.Namespace) -> int:
    with HeapRegistry.discover(args.dev, args.sysfs, proc=args.proc) as registry:
        heaps = [props for _, props in registry.heaps()]
        cap = registry.cap
    meminfo = read_meminfo(args.proc)
    cma: dict[str, int] | None = None
    if "CmaTotal" in meminfo:
        cma = {"total": meminfo["CmaTotal"], "free": meminfo.get("CmaFree", 0)}
    if args.json:
        data: dict[str, Any] = {
            "heaps": [p.to_json() for p in heaps],
            "cma": cma,
            "allocation_cap": cap,
        }
        print_json(data)
        return EXIT_OK
    print("heaps (in selection order):")
    _print_table([_row(p) for p in heaps])
    if cma is not None:
        print(f"CMA: {_size(cma['total'])} total, {_size(cma['free'])} free")
    else:
        print("CMA: none (no CmaTotal in /proc/meminfo)")
    print(
        f"largest single allocation: {_size(cap)}"
        " (devalloc.limits: DEVALLOC_MAX_BUFFER, or min(MemTotal, cgroup memory.max) / 2)"
    )
    return EXIT_OK


def register(sub: SubParsers) -> None:
    """Add ``devalloc heaps``."""
    parser = sub.add_parser(
        "heaps",
        help="every heap with its properties and accessibility, in selection order",
        description="List every heap (dma-heaps, udmabuf, DRM device heaps, memfd) with its "
        "properties, whether this process can use it (and why not), and the CMA totals.",
        epilog="examples:\n  devalloc heaps\n  devalloc heaps --json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_json_flag(parser)
    parser.add_argument("--dev", type=directory, default="/dev", help=argparse.SUPPRESS)
    parser.add_argument("--sysfs", type=directory, default="/sys", help=argparse.SUPPRESS)
    parser.add_argument("--proc", type=directory, default="/proc", help=argparse.SUPPRESS)
    parser.set_defaults(func=_cmd_heaps)
