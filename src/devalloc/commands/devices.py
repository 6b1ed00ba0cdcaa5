"""``devalloc devices``: the DRM and V4L2 devices of this machine and the constraints they declare.

Example:
    $ devalloc devices
    $ devalloc devices --json

One row per device: its id (what ``device:usage`` labels use), node(s), driver, capabilities,
usages and how many (format, modifier) pairs each usage accepts. ``--json`` gives everything
discovery found, with each usage's constraints (``Constraints.to_json()``). A device this process
cannot open is listed with the reason; nothing here fails for it.
"""

from __future__ import annotations

import argparse

from ..devices.discover import Discovery, DrmInfo, V4l2Info, discover
from ._common import EXIT_OK, SubParsers, add_json_flag, directory, print_json


def _usages(device: DrmInfo | V4l2Info) -> str:
    return ", ".join(f"{c.usage} ({len(c.pairs)} pairs)" for c in device.usages) or "-"


def _drm_row(d: DrmInfo) -> list[str]:
    caps: list[str] = []
    prime = [w for w, on in (("import", d.prime_import), ("export", d.prime_export)) if on]
    if prime:
        caps.append("prime:" + "+".join(prime))
    if d.dumb:
        caps.append("dumb")
    if d.kms:
        caps.append(f"kms:{len(d.planes)} planes")
        if d.addfb2_modifiers:
            caps.append("modifiers")
    if d.max_width and d.max_height:
        caps.append(f"max {d.max_width}x{d.max_height}")
    nodes = " ".join(d.nodes) or "-"
    return [d.name, nodes, d.driver or "?", " ".join(caps) or "-", _usages(d)]


def _v4l2_row(d: V4l2Info) -> list[str]:
    caps: list[str] = []
    if d.caps is not None and d.queues:
        caps.append("multi-planar" if d.caps.is_multiplanar else "single-planar")
    elif d.caps is not None:
        kinds = [t.name.lower().replace("_", "-") for t in d.caps.buffer_types]
        caps.append(f"no video queue ({', '.join(kinds) or 'no buffer types'})")
    if d.caps is not None and d.caps.is_streaming:
        caps.append("streaming")
    for q in d.queues:
        dmabuf = {True: "dmabuf", False: "no-dmabuf", None: "dmabuf?"}[q.dmabuf]
        size = f" max {q.max_width}x{q.max_height}" if q.max_width and q.max_height else ""
        caps.append(f"{q.usage}:{len(q.formats)} formats {dmabuf}{size}")
    return [d.name, d.path, d.driver or "?", ", ".join(caps) or "-", _usages(d)]


_HEADER = ["device", "nodes", "driver", "capabilities", "usages"]


def _print_table(title: str, rows: list[list[str]]) -> None:
    if not rows:
        print(f"{title}: none")
        return
    print(f"{title}:")
    widths = [max(len(r[i]) for r in [_HEADER, *rows]) for i in range(len(_HEADER) - 1)]
    for row in [_HEADER, *rows]:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        print("  " + "  ".join([*cells, row[-1]]).rstrip())


def _print(found: Discovery) -> None:
    _print_table("DRM devices", [_drm_row(d) for d in found.drm])
    _print_table("V4L2 devices", [_v4l2_row(d) for d in found.v4l2])
    notes: list[str] = []
    for drm in found.drm:
        if drm.unmapped:
            notes.append(f"{drm.name}: formats devalloc does not know: {', '.join(drm.unmapped)}")
        notes.extend(f"{drm.name}: {p}" for p in drm.problems)
    for v4l2 in found.v4l2:
        for q in v4l2.queues:
            if q.unmapped:
                notes.append(
                    f"{v4l2.name}: {q.usage} formats without a DRM equivalent: "
                    + ", ".join(q.unmapped)
                )
        notes.extend(f"{v4l2.name}: {p}" for p in v4l2.problems)
    for note in notes:
        print(f"note: {note}")


def _cmd_devices(args: argparse.Namespace) -> int:
    found = discover(args.dev, args.sysfs)
    if args.json:
        print_json(found.to_json())
    else:
        _print(found)
    return EXIT_OK


def register(sub: SubParsers) -> None:
    """Add ``devalloc devices``."""
    parser = sub.add_parser(
        "devices",
        help="DRM and V4L2 devices with the constraints they declare (formats, layout, limits)",
        description="Discover the DRM devices (driver, PRIME, dumb buffers, KMS planes and their "
        "IN_FORMATS) and V4L2 nodes (queues, formats mapped to DRM, layout rules learned from "
        "TRY_FMT, DMABUF import) and show the constraints each usage declares.",
        epilog="examples:\n  devalloc devices\n  devalloc devices --json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_json_flag(parser)
    parser.add_argument("--dev", type=directory, default="/dev", help=argparse.SUPPRESS)
    parser.add_argument("--sysfs", type=directory, default="/sys", help=argparse.SUPPRESS)
    parser.set_defaults(func=_cmd_devices)
