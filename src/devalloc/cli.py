"""The ``devalloc`` command line.

Example:
    $ devalloc              # what this machine offers, and a CPU round trip on the chosen backend
    $ devalloc info --json
    $ devalloc formats
    $ devalloc modifier 0x0100000000000002
    $ devalloc layout NV12 1920x1080 --pitch-align 64 --json

Exit codes: 0 ok, 1 a kernel/system failure, 2 bad input, 3 no plan (or a verification failed).
Errors are one line on stderr (``--debug`` shows the traceback).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from collections.abc import Sequence
from types import ModuleType
from typing import Any

from .commands import (
    alloc,
    bench,
    devices,
    examples,
    heaps,
    negotiate,
    ps,
    serve,
    service,
    size,
)
from .commands._common import (
    EXIT_FAILURE,
    EXIT_NO_PLAN,
    EXIT_OK,
    EXIT_USAGE,
    Parser,
    check_argv,
    int_at_least,
    int_or_text,
    one_line,
)
from .errors import DevallocError, NoPlanError, UsageError
from .formats import (
    LayoutRules,
    format_table,
    layout,
    lookup_format,
    modifier_spellings,
    parse_modifier,
    parse_size,
)
from .heaps.properties import HeapRequest
from .heaps.registry import HeapRegistry, NoHeapError
from .system import Node, Survey, survey

__all__ = [
    "COMMANDS",
    "EXIT_FAILURE",
    "EXIT_NO_PLAN",
    "EXIT_OK",
    "EXIT_USAGE",
    "build_parser",
    "main",
]

#: The modules of :mod:`devalloc.commands` whose ``register(sub)`` adds sub-commands, in help
#: order. Listed here, not found by listing the package directory at run time: a directory the
#: process cannot read (a clone inside a 0700 directory, privileges dropped) must not lose commands.
COMMANDS: tuple[ModuleType, ...] = (
    alloc,
    bench,
    devices,
    examples,
    heaps,
    negotiate,
    ps,
    size,
    serve,
    service,
)

_SELFTEST_BYTES = 1 << 20


def _selftest(report: Survey) -> dict[str, Any]:
    """Allocate 1 MiB from the heap the registry selects by properties (a device-importable one
    when there is one, else memfd), write a pattern, read it back."""
    pattern = bytes(range(256)) * (_SELFTEST_BYTES // 256)
    with HeapRegistry.discover() as registry:
        try:
            heap = registry.select(HeapRequest(cpu_access="rw", size=_SELFTEST_BYTES))
        except NoHeapError:
            heap = registry.select(
                HeapRequest(cpu_access="rw", size=_SELFTEST_BYTES, device_importable=False)
            )
        props = registry.properties(heap)
        with registry.allocate(heap, _SELFTEST_BYTES) as buf:
            with buf.cpu_access("w") as view:
                view[:] = pattern
            with buf.cpu_access("r") as view:
                ok = view.tobytes() == pattern
            if props.kind == "dma-heap":
                name = os.path.basename(props.name)
                source = f"dma-heap {name} (exporter {buf.info().exp_name})"
            elif props.kind == "memfd":
                source = "memfd (CPU only: devices cannot import it)"
            else:
                exporter = buf.info().exp_name if buf.is_dmabuf else "none"
                source = f"{props.kind} {props.name} (exporter {exporter})"
    return {"bytes": _SELFTEST_BYTES, "source": source, "ok": ok}


def _node_line(node: Node) -> str:
    extra = "".join(f" {k}={v}" for k, v in node.details.items() if v)
    access = "ok" if node.accessible else f"NOT ACCESSIBLE: {node.reason}"
    return f"  {node.path:<24} {node.name:<28}{extra}  [{access}]"


def _print_info(report: Survey, selftest: dict[str, Any]) -> None:
    print(f"devalloc on Linux {report.kernel}")
    print("dma-heaps:" if report.dma_heaps else "dma-heaps: none (/dev/dma_heap is absent)")
    for node in report.dma_heaps:
        print(_node_line(node))
    if report.udmabuf is None:
        print("udmabuf: none (/dev/udmabuf is absent)")
    else:
        print("udmabuf:")
        print(_node_line(report.udmabuf))
    print("DRM nodes:" if report.drm else "DRM nodes: none")
    for node in report.drm:
        print(_node_line(node))
    print("V4L2 nodes:" if report.v4l2 else "V4L2 nodes: none")
    for node in report.v4l2:
        print(_node_line(node))
    if report.backend == "memfd":
        print(
            "backend: memfd: no dma-buf provider is usable by this process, so the built-in memfd"
            " backend will be used (CPU-only buffers that no device can import)"
        )
    else:
        print(f"backend: {report.backend}")
    verdict = "ok" if selftest["ok"] else "FAILED: data read back differs"
    print(
        f"self-test: {selftest['bytes']} bytes from {selftest['source']}, written and read back"
        f" through cpu_access: {verdict}"
    )


def _cmd_info(args: argparse.Namespace) -> int:
    report = survey()
    selftest = _selftest(report)
    if args.json:
        print(json.dumps({**report.to_json(), "selftest": selftest}, indent=2))
    else:
        _print_info(report, selftest)
    return EXIT_OK if selftest["ok"] else EXIT_FAILURE


def _cmd_formats(args: argparse.Namespace) -> int:
    rows = format_table()
    if args.json:
        print(json.dumps(rows, indent=2))
        return EXIT_OK
    print(
        f"{'name':<14} {'fourcc':<6} {'planes':>6}  {'yuv':<3} {'alpha':<5} {'sub':<5}"
        f" {'gstreamer':<10} v4l2"
    )
    for row in rows:
        sub = f"{row['hsub']}x{row['vsub']}"
        v4l2 = ",".join(str(v) for v in row["v4l2"])  # type: ignore[attr-defined]
        gst = row["gstreamer"] or "-"
        print(
            f"{row['name']!s:<14} {row['fourcc_str']!s:<6} {row['planes']!s:>6}  "
            f"{'yes' if row['is_yuv'] else 'no':<3} {'yes' if row['has_alpha'] else 'no':<5} "
            f"{sub:<5} {gst!s:<10} {v4l2}"
        )
    return EXIT_OK


def _cmd_modifier(args: argparse.Namespace) -> int:
    mod = parse_modifier(int_or_text(args.modifier))
    spellings = modifier_spellings(mod)
    if args.json:
        print(json.dumps({**mod.to_dict(), "spellings": spellings}, indent=2))
    else:
        print(f"0x{mod.value:016x}  {mod}")
        exact = "" if spellings["modetest_exact"] else "  (libdrm does not print every bit)"
        print(f"  modetest  {spellings['modetest']}{exact}")
        if spellings["macro"] is not None:
            print(f"  macro     {spellings['macro']}")
    return EXIT_OK


def _cmd_layout(args: argparse.Namespace) -> int:
    width, height = parse_size(args.size)
    rules = LayoutRules(
        pitch_align=args.pitch_align,
        height_align=args.height_align,
        offset_align=args.offset_align,
        size_align=args.size_align,
        extra_rows=args.extra_rows,
        multi_buffer=args.multi_buffer,
    )
    modifier = parse_modifier(int_or_text(args.modifier))
    result = layout(lookup_format(args.format), width, height, modifier.value, rules)
    data = result.to_json()
    if args.json:
        print(json.dumps(data, indent=2))
        return EXIT_OK
    size = f"{data['size']} bytes" if data["size"] is not None else "size decided by the exporter"
    print(f"{data['format']} {width}x{height} modifier {data['modifier_name']}: {size}")
    if data["opaque"]:
        print(f"  {data['note']}")
    for i, plane in enumerate(result.planes):
        print(
            f"  plane {i}: offset {plane.offset:>10}  pitch {plane.pitch:>7}"
            f"  size {plane.size:>10}  buffer {plane.buffer}"
        )
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="devalloc",
        description="Linux device buffer allocator: what this machine offers for dma-bufs.",
        epilog="examples:\n  devalloc\n  devalloc info --json\n  devalloc formats\n"
        "  devalloc modifier 0x0100000000000002\n  devalloc layout NV12 1920x1080 --json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    sub = parser.add_subparsers(dest="command", parser_class=Parser)
    info = sub.add_parser("info", help="dma-heaps, udmabuf, DRM and V4L2 nodes (the default)")
    info.add_argument("--json", action="store_true", help="machine-readable output")
    info.set_defaults(func=_cmd_info)

    fmts = sub.add_parser("formats", help="the pixel formats devalloc knows (DRM fourccs + V4L2)")
    fmts.add_argument("--json", action="store_true", help="machine-readable output")
    fmts.set_defaults(func=_cmd_formats)

    mod = sub.add_parser(
        "modifier",
        help="decode a DRM format modifier (number or name)",
        epilog="examples:\n  devalloc modifier 0x0100000000000002\n"
        "  devalloc modifier I915_Y_TILED\n  devalloc modifier I915_FORMAT_MOD_Y_TILED\n"
        "  devalloc modifier 'ARM_BLOCK_SIZE=16x16,MODE=YTR|SPARSE'   (as modetest prints it)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    mod.add_argument(
        "modifier",
        help="a 64-bit value (0x...) or a name: devalloc's, drm_fourcc.h's, or as modetest and"
        " weston print it (INTEL_Y_TILED)",
    )
    mod.add_argument("--json", action="store_true", help="machine-readable output")
    mod.set_defaults(func=_cmd_modifier)

    lay = sub.add_parser(
        "layout",
        help="plane offsets, pitches and sizes of a format at a size",
        epilog="examples:\n  devalloc layout NV12 1920x1080 --pitch-align 64 --height-align 16",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    lay.add_argument(
        "format",
        help="a format: DRM name or fourcc (NV12, XR24, 0x3231564e), GStreamer or V4L2 name",
    )
    lay.add_argument("size", help="WIDTHxHEIGHT, e.g. 1920x1080")
    lay.add_argument("--modifier", default="LINEAR", help="modifier value or name (LINEAR)")
    lay.add_argument("--pitch-align", type=int_at_least(1), default=1, metavar="N")
    lay.add_argument("--height-align", type=int_at_least(1), default=1, metavar="N")
    lay.add_argument("--offset-align", type=int_at_least(1), default=1, metavar="N")
    lay.add_argument("--size-align", type=int_at_least(1), default=1, metavar="N")
    lay.add_argument("--extra-rows", type=int_at_least(0), default=0, metavar="N")
    lay.add_argument("--multi-buffer", action="store_true", help="one buffer (fd) per plane")
    lay.add_argument("--json", action="store_true", help="machine-readable output")
    lay.set_defaults(func=_cmd_layout)

    for module in COMMANDS:
        module.register(sub)

    parser.set_defaults(func=_cmd_info)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``devalloc`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    try:
        check_argv(argv)
        args = build_parser().parse_args(argv)
        result: int = args.func(args)
        return result
    except UsageError as exc:
        if debug:
            traceback.print_exc()
        print(f"devalloc: error: {one_line(str(exc))}", file=sys.stderr)
        return EXIT_USAGE
    except NoPlanError as exc:
        if debug:
            traceback.print_exc()
        print(f"devalloc: {one_line(str(exc))}", file=sys.stderr)
        return EXIT_NO_PLAN
    except BrokenPipeError:  # the reader went away (devalloc ... | head): not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except (DevallocError, OSError) as exc:
        if debug:
            traceback.print_exc()
        print(f"devalloc: {one_line(str(exc))}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return 130
    finally:
        try:
            sys.stdout.flush()
        except BrokenPipeError:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


if __name__ == "__main__":
    sys.exit(main())
