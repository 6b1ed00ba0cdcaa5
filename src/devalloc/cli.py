"""The ``devalloc`` command line.

Example:
    $ devalloc              # what this machine offers, and a CPU round trip on the chosen backend
    $ devalloc info --json

Exit codes: 0 ok, 1 a kernel/system failure, 2 bad input. Errors are one line on stderr
(``--debug`` shows the traceback).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from collections.abc import Sequence
from typing import Any

from .buffer import Buffer
from .errors import DevallocError, UsageError
from .heaps.dmaheap import DmaHeap
from .heaps.memfd import MemfdHeap
from .heaps.udmabuf import Memfd, UdmabufDevice
from .system import Node, Survey, survey

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2

_SELFTEST_BYTES = 1 << 20


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # argparse's own exits print usage; keep it one line
        raise UsageError(message)


def _selftest(report: Survey) -> dict[str, Any]:
    """Allocate 1 MiB from the backend the survey chose, write a pattern, read it back."""
    pattern = bytes(range(256)) * (_SELFTEST_BYTES // 256)

    def round_trip(buf: Buffer) -> bool:
        with buf.cpu_access("w") as view:
            view[:] = pattern
        with buf.cpu_access("r") as view:
            return view == pattern

    if report.backend == "dma-heap":
        node = next(h for h in report.dma_heaps if h.accessible)
        with DmaHeap(node.path) as heap, heap.allocate(_SELFTEST_BYTES) as buf:
            ok = round_trip(buf)
            source = f"dma-heap {heap.name} (exporter {buf.info().exp_name})"
    elif report.backend == "udmabuf":
        with (
            Memfd(_SELFTEST_BYTES) as mfd,
            UdmabufDevice() as dev,
            dev.create(mfd, 0, _SELFTEST_BYTES) as buf,
        ):
            ok = round_trip(buf)
            source = "udmabuf"
    else:
        with MemfdHeap().allocate(_SELFTEST_BYTES) as buf:
            ok = round_trip(buf)
            source = "memfd (CPU only: devices cannot import it)"
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


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="devalloc",
        description="Linux device buffer allocator: what this machine offers for dma-bufs.",
        epilog="examples:\n  devalloc\n  devalloc info --json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)
    info = sub.add_parser("info", help="dma-heaps, udmabuf, DRM and V4L2 nodes (the default)")
    info.add_argument("--json", action="store_true", help="machine-readable output")
    info.set_defaults(func=_cmd_info)
    parser.set_defaults(func=_cmd_info)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``devalloc`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    try:
        args = build_parser().parse_args(argv)
        result: int = args.func(args)
        return result
    except UsageError as exc:
        if debug:
            traceback.print_exc()
        print(f"devalloc: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (DevallocError, OSError) as exc:
        if debug:
            traceback.print_exc()
        print(f"devalloc: {exc}", file=sys.stderr)
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
