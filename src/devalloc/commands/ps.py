"""``devalloc ps``: which process holds which dma-buf, totals per exporter, and orphans.

Example:
    $ devalloc ps
    $ devalloc ps --pid 412
    $ devalloc ps --json

Every dma-buf a process holds by an fd or a mapping is counted once per process, and once in the
totals however many processes share it. Orphans are buffers the kernel still has (debugfs
``dma_buf/bufinfo``, else ``/sys/kernel/dmabuf/buffers``) that no process holds; without either
source (debugfs is root-only) the output says so and what that hides. Processes this user may not
inspect are counted, never fatal.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from typing import Any

from ..accounting import DmaBuf, DmaBufReport, ExporterTotal, scan
from ..errors import UsageError
from ._common import EXIT_OK, SubParsers, add_json_flag, directory, int_at_least, print_json


def human_size(value: int) -> str:
    """``4194304`` -> ``"4.0 MiB"`` (binary units; bytes below 1 KiB)."""
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if value >= 1 << shift:
            return f"{value / (1 << shift):.1f} {unit}"
    return f"{value} B"


def _name(name: str | None) -> str:
    if name is None:
        return "-"
    return name if name else '""'


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], right: set[int]) -> list[str]:
    """Lines of a table: columns padded to their widest cell, those in ``right`` right-aligned,
    the last column left free (names may be long or contain spaces)."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header) - 1)]
    lines = []
    for row in [header, *rows]:
        cells = [
            cell.rjust(width) if i in right else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=False))
        ]
        lines.append("  " + "  ".join([*cells, row[-1]]).rstrip())
    return lines


def _source(report: DmaBufReport) -> str:
    kernel = report.kernel
    if kernel.source is not None:
        return f"every dma-buf in {kernel.path}"
    return "only what processes hold: the kernel's list is not available"


def _exporter_lines(totals: Sequence[ExporterTotal]) -> list[str]:
    if not totals:
        return ["  none"]
    rows = [
        [t.exp_name, str(t.buffers), str(t.bytes), human_size(t.bytes), str(t.orphans)]
        for t in totals
    ]
    buffers = sum(t.buffers for t in totals)
    nbytes = sum(t.bytes for t in totals)
    orphans = sum(t.orphans for t in totals)
    rows.append(["total", str(buffers), str(nbytes), human_size(nbytes), str(orphans)])
    return _table(["EXPORTER", "BUFFERS", "BYTES", "SIZE", "ORPHANS"], rows, {1, 2, 3, 4})


def _orphan_lines(report: DmaBufReport) -> list[str]:
    kernel = report.kernel
    if kernel.source is None:
        return [f"orphans: unknown: {kernel.reason}", f"  so {kernel.hides}"]
    orphans = report.orphans
    caveat = ""
    if not report.orphans_certain:
        caveat = (
            f"; {len(report.unreadable)} processes could not be inspected, so some of these "
            "may be theirs"
        )
    if not orphans:
        return [f"orphans: none (every dma-buf in {kernel.path} is held by a process{caveat})"]
    lines = [f"orphans (in {kernel.path} but held by no process{caveat}):"]
    rows = [
        [
            str(b.inode),
            str(b.size),
            human_size(b.size),
            b.exp_name,
            "-" if b.count is None else str(b.count),
            ",".join(b.attachments) or "-",
            _name(b.name),
        ]
        for b in orphans
    ]
    header = ["INODE", "BYTES", "SIZE", "EXPORTER", "COUNT", "ATTACHED", "NAME"]
    return lines + _table(header, rows, {0, 1, 2, 4})


def _footer_lines(report: DmaBufReport) -> list[str]:
    lines = []
    kernel = report.kernel
    if kernel.total_objects is not None and kernel.total_bytes is not None:
        lines.append(
            f"kernel: {kernel.total_objects} dma-bufs, {kernel.total_bytes} bytes"
            f" ({human_size(kernel.total_bytes)}) in {kernel.path}"
        )
    if report.unreadable:
        lines.append(
            f"unreadable processes: {len(report.unreadable)} (this user may not read their fd "
            "tables: what they hold is not counted)"
        )
    if report.vanished:
        lines.append(f"processes that exited during the scan: {report.vanished}")
    lines.extend(f"problem: {p}" for p in report.problems)
    return lines


def _print_all(report: DmaBufReport) -> None:
    if report.processes:
        rows = [
            [
                str(p.pid),
                p.comm,
                str(p.buffers),
                str(p.bytes),
                human_size(p.bytes),
                ",".join(p.exporters),
            ]
            for p in report.processes
        ]
        header = ["PID", "COMM", "BUFFERS", "BYTES", "SIZE", "EXPORTERS"]
        print("dma-bufs held by processes:")
        print("\n".join(_table(header, rows, {0, 2, 3, 4})))
    else:
        print("dma-bufs held by processes: none")
    print(f"totals per exporter ({_source(report)}):")
    print("\n".join(_exporter_lines(report.exporters())))
    print("\n".join(_orphan_lines(report)))
    for line in _footer_lines(report):
        print(line)


def _pid_buffers(report: DmaBufReport, pid: int) -> list[DmaBuf]:
    usage = report.process(pid)
    if usage is None:
        return []
    return [b for b in report.buffers if b.inode in usage.inodes]


def _pid_json(report: DmaBufReport, pid: int, comm: str) -> dict[str, Any]:
    usage = report.process(pid)
    buffers = _pid_buffers(report, pid)
    return {
        "pid": pid,
        "comm": comm,
        "readable": pid not in report.unreadable,
        "process": usage.to_json() if usage else None,
        "buffers": [b.to_json() for b in buffers],
        "exporters": [e.to_json() for e in report.exporters(buffers)],
        "kernel_list": report.kernel.to_json(),
        "problems": list(report.problems),
    }


def _print_pid(report: DmaBufReport, pid: int, comm: str) -> None:
    usage = report.process(pid)
    if pid in report.unreadable:
        print(
            f"pid {pid} ({comm}): this user may not read its fd table, so its dma-bufs are not "
            "known (run as its owner or as root)"
        )
        return
    if usage is None:
        print(f"pid {pid} ({comm}) holds no dma-buf")
        return
    print(
        f"pid {pid} ({usage.comm}): {usage.buffers} dma-bufs, {usage.bytes} bytes"
        f" ({human_size(usage.bytes)})"
    )
    rows = []
    for b in _pid_buffers(report, pid):
        fds = [str(fd) for holder, fd in b.fds if holder == pid]
        how = ",".join(fds) if fds else "-"
        if pid in b.mapped_by:
            how += " (mapped)"
        others = [str(p) for p in b.holders if p != pid]
        rows.append(
            [
                str(b.inode),
                how,
                str(b.size),
                human_size(b.size),
                b.exp_name,
                ",".join(others) or "-",
                _name(b.name),
            ]
        )
    header = ["INODE", "FDS", "BYTES", "SIZE", "EXPORTER", "SHARED WITH", "NAME"]
    print("\n".join(_table(header, rows, {0, 2, 3})))
    print("totals per exporter:")
    print("\n".join(_exporter_lines(report.exporters(_pid_buffers(report, pid)))))


def _cmd_ps(args: argparse.Namespace) -> int:
    comm = ""
    if args.pid is not None:
        try:
            with open(os.path.join(args.proc, str(args.pid), "comm"), encoding="utf-8") as f:
                comm = f.read().rstrip("\n")
        except FileNotFoundError:
            raise UsageError(f"no process {args.pid} (not in {args.proc})") from None
        except OSError:
            comm = "?"
    report = scan(args.proc, args.sysfs, args.debugfs, maps=not args.no_maps)
    if args.pid is None:
        if args.json:
            print_json(report.to_json())
        else:
            _print_all(report)
    elif args.json:
        print_json(_pid_json(report, args.pid, comm))
    else:
        _print_pid(report, args.pid, comm)
    return EXIT_OK


def register(sub: SubParsers) -> None:
    """Add ``devalloc ps``."""
    parser = sub.add_parser(
        "ps",
        help="dma-bufs per process and per exporter, and orphans the kernel still holds",
        description="Account for every dma-buf on the system: per process (pid, command, "
        "buffers, bytes, exporters), totals per exporter, and orphans (buffers the kernel "
        "has that no process holds: kept by a driver, in flight, leaked). Orphans need the "
        "kernel's list: debugfs dma_buf/bufinfo (root) or /sys/kernel/dmabuf/buffers.",
        epilog="examples:\n  devalloc ps\n  sudo devalloc ps      # debugfs: orphans too\n"
        "  devalloc ps --pid 412\n  devalloc ps --json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_json_flag(parser)
    parser.add_argument(
        "--pid", type=int_at_least(1), metavar="PID", help="only this process, buffer by buffer"
    )
    parser.add_argument(
        "--no-maps",
        action="store_true",
        help="do not read /proc/PID/maps (buffers held only by a mapping are then missed)",
    )
    parser.add_argument(
        "--proc", type=directory, default="/proc", help="where procfs is mounted (/proc)"
    )
    parser.add_argument("--sysfs", default="/sys", help="where sysfs is mounted (/sys)")
    parser.add_argument(
        "--debugfs",
        default="/sys/kernel/debug",
        help="where debugfs is mounted (/sys/kernel/debug)",
    )
    parser.set_defaults(func=_cmd_ps)
