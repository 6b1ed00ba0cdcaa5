"""System-wide dma-buf accounting: which process holds which dma-buf, per exporter, and orphans.

Example:
    >>> report = scan()                                             # doctest: +SKIP
    >>> for proc in report.processes:                               # doctest: +SKIP
    ...     print(proc.pid, proc.comm, proc.buffers, proc.bytes, ",".join(proc.exporters))
    412 camera-daemon 6 24883200 system
    >>> [(e.exp_name, e.buffers, e.bytes) for e in report.exporters()]  # doctest: +SKIP
    [('system', 6, 24883200)]
    >>> [b.inode for b in report.orphans]                           # doctest: +SKIP
    []

Three kernel sources, each with a pure parser over its text so it can be tested on captured
samples (tests/data/accounting):

- ``/proc/<pid>/fdinfo/<fd>`` of a dma-buf fd (:func:`parse_fdinfo`): pos, flags, mnt_id, ino, then
  what dma-buf adds: size, count, exp_name and, once the buffer was named, name.
- ``/sys/kernel/dmabuf/buffers/<inode>/{exporter_name,size}`` (:func:`parse_sysfs_buffer`), present
  only with CONFIG_DMABUF_SYSFS_STATS (deprecated; Debian's 6.12 kernel lacks it).
- debugfs ``dma_buf/bufinfo`` (:func:`parse_bufinfo`): every dma-buf the kernel has, with its
  fences and attached devices, and the ``Total N objects, M bytes`` line. debugfs is root-only.

:func:`scan` walks ``/proc/*/fd``, keeps the fds whose link names a dma-buf (``/dmabuf:NAME`` since
Linux 5.3, ``anon_inode:dmabuf`` before) and the mappings of dma-bufs in ``/proc/*/maps`` (a buffer
stays alive while mapped, even after its last fd is closed), groups them by inode so a buffer
shared by several processes is counted once, and compares the result with the kernel's full list
(bufinfo, else sysfs) to find orphans: buffers the kernel still has that no process holds (kept by
a driver, in flight in a socket, or leaked). Processes this user may not inspect are counted, not
fatal; processes that exit during the scan are skipped.
"""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from .errors import UsageError, error_from_oserror

__all__ = [
    "BUFINFO",
    "SYSFS_BUFFERS",
    "BufInfo",
    "BufInfoEntry",
    "DmaBuf",
    "DmaBufReport",
    "ExporterTotal",
    "FdInfo",
    "KernelList",
    "MapEntry",
    "ProcessUsage",
    "SysfsBuffer",
    "dmabuf_link_name",
    "is_dmabuf_link",
    "parse_bufinfo",
    "parse_fdinfo",
    "parse_maps",
    "parse_sysfs_buffer",
    "read_bufinfo",
    "read_sysfs_buffers",
    "scan",
]

#: debugfs's table of every dma-buf, relative to the debugfs mount.
BUFINFO = os.path.join("dma_buf", "bufinfo")
#: The per-buffer sysfs statistics directory, relative to the sysfs mount.
SYSFS_BUFFERS = os.path.join("kernel", "dmabuf", "buffers")

_LINK_PREFIX = "/dmabuf:"  # d_dname of the dma-buf pseudo filesystem (Linux >= 5.3)
_OLD_LINK = "anon_inode:dmabuf"  # before 5.3 dma-bufs were anonymous-inode files


# --- parsers (pure) --------------------------------------------------------------------------


def is_dmabuf_link(target: str) -> bool:
    """Whether a ``/proc/<pid>/fd/<fd>`` link target (or a maps path) names a dma-buf."""
    return target.startswith(_LINK_PREFIX) or target == _OLD_LINK


def dmabuf_link_name(target: str) -> str | None:
    """The buffer name in a dma-buf link target (``/dmabuf:camera 0`` -> ``camera 0``).

    None when the link carries no name: an unnamed buffer and one named ``""`` both read
    ``/dmabuf:``, and ``anon_inode:dmabuf`` never has one (fdinfo tells them apart).
    """
    if target.startswith(_LINK_PREFIX):
        return target[len(_LINK_PREFIX) :] or None
    return None


@dataclass(frozen=True)
class FdInfo:
    """``/proc/<pid>/fdinfo/<fd>`` of a dma-buf fd; a field the kernel did not print is None.

    Attributes:
        pos: file position (always 0 for a dma-buf).
        flags: the fd's open flags (printed in octal: ``02000002`` is O_CLOEXEC|O_RDWR).
        mnt_id: mount id of the dma-buf pseudo filesystem.
        ino: the buffer's inode number, unique per dma-buf (Linux >= 5.14 prints it).
        size: bytes.
        count: file references on the buffer (fds, mappings, kernel users).
        exp_name: the exporter ("system", "udmabuf", "drm", "vb2_dma_contig"...).
        name: the name set with DMA_BUF_SET_NAME; None if never named, ``""`` if named empty.
            It may contain spaces.
    """

    pos: int | None = None
    flags: int | None = None
    mnt_id: int | None = None
    ino: int | None = None
    size: int | None = None
    count: int | None = None
    exp_name: str | None = None
    name: str | None = None


_FDINFO_INTS = {"pos": 10, "flags": 8, "mnt_id": 10, "ino": 10, "size": 10, "count": 10}


def parse_fdinfo(text: str) -> FdInfo:
    """Parse the text of a dma-buf's ``/proc/<pid>/fdinfo/<fd>``.

    ``name`` is the last line the kernel prints, so everything after ``name:\\t`` up to the final
    newline is the name (spaces, tabs, even newlines kept). Unknown lines are ignored.

    Raises:
        UsageError: a numeric field is not a number, or the text has no dma-buf field.
    """
    values: dict[str, Any] = {}
    head, sep, name = text.partition("\nname:\t")
    if not sep and text.startswith("name:\t"):
        head, sep, name = "", "\n", text[len("name:\t") :]
    if sep:
        values["name"] = name[:-1] if name.endswith("\n") else name
    for line in head.split("\n"):
        key, colon, value = line.partition(":")
        if not colon:
            continue
        value = value.strip()
        if key in _FDINFO_INTS:
            try:
                values[key] = int(value, _FDINFO_INTS[key])
            except ValueError:
                raise UsageError(f"fdinfo field {key!r} is not a number: {value!r}") from None
        elif key == "exp_name":
            values[key] = value
    info = FdInfo(**values)
    if info.size is None and info.exp_name is None and info.count is None:
        raise UsageError("not the fdinfo of a dma-buf: it has no size, count or exp_name field")
    return info


@dataclass(frozen=True)
class SysfsBuffer:
    """One ``/sys/kernel/dmabuf/buffers/<inode>`` directory (CONFIG_DMABUF_SYSFS_STATS)."""

    inode: int
    exp_name: str
    size: int


def parse_sysfs_buffer(inode: str | int, exporter_name: str, size: str) -> SysfsBuffer:
    """Build a :class:`SysfsBuffer` from the directory name and its two files' text.

    Raises:
        UsageError: the directory name or the size is not a number.
    """
    try:
        number = int(inode)
        nbytes = int(size.strip())
    except ValueError:
        raise UsageError(
            f"dma-buf sysfs entry {inode!r}: inode and size must be numbers (size {size!r})"
        ) from None
    return SysfsBuffer(number, exporter_name.rstrip("\n"), nbytes)


@dataclass(frozen=True)
class BufInfoEntry:
    """One dma-buf in debugfs bufinfo.

    Attributes:
        size: bytes.
        flags: the file's f_flags (hex in the table; O_ACCMODE and O_NONBLOCK only).
        mode: the file's f_mode (hex).
        count: file references (fds, mappings, kernel users).
        exp_name: the exporter.
        inode: the inode number (None on kernels older than 5.x, whose table has no ino column).
        name: the name; None when the table says ``<none>`` (never named) or has no name column.
        fences: the reservation object's fences, one line each, as the kernel describes them.
        attachments: the devices attached to the buffer (``dev_name``: ``vgem``, ``vivid.0``).
    """

    size: int
    flags: int
    mode: int
    count: int
    exp_name: str
    inode: int | None
    name: str | None
    fences: tuple[str, ...] = ()
    attachments: tuple[str, ...] = ()


@dataclass(frozen=True)
class BufInfo:
    """The parsed bufinfo table and its ``Total N objects, M bytes`` line."""

    entries: tuple[BufInfoEntry, ...]
    total_objects: int
    total_bytes: int


_TOTAL_OBJECTS = re.compile(r"Total (\d+) objects, (\d+) bytes")
_TOTAL_DEVICES = re.compile(r"Total (\d+) devices attached")
_HEX = re.compile(r"[0-9a-fA-F]+")


def _bufinfo_row(line: str) -> BufInfoEntry | None:
    """A table row (size, flags, mode, count, exp_name[, ino, name]), or None if it is not one."""
    parts = line.split("\t", 6)
    if len(parts) not in (5, 7):
        return None
    size, flags, mode, count, exp_name = parts[:5]
    if not (size.isdigit() and count.isdigit() and _HEX.fullmatch(flags) and _HEX.fullmatch(mode)):
        return None
    inode: int | None = None
    name: str | None = None
    if len(parts) == 7:
        if not parts[5].isdigit():
            return None
        inode = int(parts[5])
        name = None if parts[6] == "<none>" else parts[6]
    return BufInfoEntry(int(size), int(flags, 16), int(mode, 16), int(count), exp_name, inode, name)


def parse_bufinfo(text: str) -> BufInfo:
    """Parse debugfs ``dma_buf/bufinfo`` (``dma_buf_debug_show`` in drivers/dma-buf/dma-buf.c).

    The format (6.12; tab-separated, numbers zero-padded)::

        Dma-buf Objects:
        size    	flags   	mode    	count   	exp_name	ino     	name
        01048576	00000002	00080007	00000003	system	00000001	camera 0
                write fence: <driver> <timeline> seq 12 signalled
                Attached Devices:
                vgem
        Total 1 devices attached

        Total 1 objects, 1048576 bytes

    A name of ``<none>`` means never named (so a buffer literally named ``<none>`` reads as
    unnamed); an empty name is ``""``. A name containing a newline continues on the next lines,
    which are joined back. Tables without the ino and name columns (kernels before 5.x) parse with
    ``inode`` and ``name`` None.

    Raises:
        UsageError: no table header, a line that fits nowhere, an attachment count or the totals
            line that disagree with the rows, or no totals line (a truncated read).
    """
    lines = text.split("\n")
    start = next((i for i, line in enumerate(lines) if line.startswith("size")), None)
    if start is None or "Dma-buf Objects:" not in text:
        raise UsageError("not a dma-buf bufinfo table: no 'Dma-buf Objects:' header")
    entries: list[BufInfoEntry] = []
    current: BufInfoEntry | None = None
    fences: list[str] = []
    attached: list[str] | None = None  # None until "Attached Devices:"
    for number, line in enumerate(lines[start + 1 :], start + 2):
        if not line:
            continue
        total = _TOTAL_OBJECTS.fullmatch(line)
        if total and current is None:
            objects, nbytes = int(total.group(1)), int(total.group(2))
            if objects != len(entries) or nbytes != sum(e.size for e in entries):
                raise UsageError(
                    f"bufinfo totals say {objects} objects, {nbytes} bytes but the table has "
                    f"{len(entries)} objects, {sum(e.size for e in entries)} bytes"
                )
            return BufInfo(tuple(entries), objects, nbytes)
        devices = _TOTAL_DEVICES.fullmatch(line)
        if current is not None and devices:
            found = attached or []
            if int(devices.group(1)) != len(found):
                raise UsageError(
                    f"bufinfo line {number}: {devices.group(1)} devices attached to inode "
                    f"{current.inode} but {len(found)} listed"
                )
            entries.append(replace(current, fences=tuple(fences), attachments=tuple(found)))
            current, fences, attached = None, [], None
        elif current is not None and line == "\tAttached Devices:":
            attached = []
        elif current is not None and line.startswith("\t"):
            (fences if attached is None else attached).append(line[1:])
        elif current is None:
            row = _bufinfo_row(line)
            if row is None:
                raise UsageError(f"bufinfo line {number} is not a dma-buf row: {line!r}")
            current = row
        elif attached is None and not fences and current.name is not None:
            # The name had a newline in it: the rest of it is on this line.
            current = replace(current, name=f"{current.name}\n{line}")
        else:
            raise UsageError(f"bufinfo line {number} fits nowhere in its entry: {line!r}")
    raise UsageError("bufinfo ends without its 'Total N objects, M bytes' line (truncated read?)")


@dataclass(frozen=True)
class MapEntry:
    """A dma-buf mapping from ``/proc/<pid>/maps``."""

    start: int
    end: int
    inode: int
    path: str


def parse_maps(text: str) -> list[MapEntry]:
    """The dma-buf mappings in the text of ``/proc/<pid>/maps``.

    A line is ``start-end perms offset major:minor inode path``; dma-bufs live on a pseudo
    filesystem (major 0) and their path is ``/dmabuf:NAME`` (``anon_inode:dmabuf`` before 5.3), so
    a real file named ``/dmabuf:...`` on a disk is not taken for one.
    """
    found = []
    for line in text.split("\n"):
        if "dmabuf" not in line:
            continue
        fields = line.split(maxsplit=5)
        if len(fields) < 6 or not is_dmabuf_link(fields[5]):
            continue
        span, dev, inode = fields[0], fields[3], fields[4]
        start, _, end = span.partition("-")
        if dev.partition(":")[0].strip("0") or not inode.isdigit():
            continue
        try:
            found.append(MapEntry(int(start, 16), int(end, 16), int(inode), fields[5]))
        except ValueError:
            continue
    return found


# --- readers ---------------------------------------------------------------------------------


def _read_text(path: str) -> str:
    with open(path, encoding="utf-8", errors="surrogateescape") as f:
        return f.read()


def read_bufinfo(debugfs: str = "/sys/kernel/debug") -> BufInfo:
    """Read and parse ``<debugfs>/dma_buf/bufinfo``.

    Raises:
        KernelError: it cannot be read (NotFoundError: debugfs is not mounted or the kernel has no
            CONFIG_DEBUG_FS; PermissionDeniedError: debugfs is root-only).
        UsageError: its text is not a bufinfo table.
    """
    path = os.path.join(debugfs, BUFINFO)
    try:
        text = _read_text(path)
    except OSError as exc:
        raise error_from_oserror(exc, "cannot read the kernel's dma-buf table", path=path) from exc
    return parse_bufinfo(text)


def read_sysfs_buffers(sysfs: str = "/sys") -> list[SysfsBuffer] | None:
    """Every ``<sysfs>/kernel/dmabuf/buffers/<inode>`` entry, or None when the directory is absent
    (a kernel without CONFIG_DMABUF_SYSFS_STATS). A buffer released while it is read is skipped.

    Raises:
        KernelError: the directory exists but cannot be listed.
    """
    base = os.path.join(sysfs, SYSFS_BUFFERS)
    try:
        names = os.listdir(base)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise error_from_oserror(exc, "cannot list dma-buf sysfs statistics", path=base) from exc
    found = []
    for name in names:
        if not name.isdigit():
            continue
        entry = os.path.join(base, name)
        try:
            exporter = _read_text(os.path.join(entry, "exporter_name"))
            size = _read_text(os.path.join(entry, "size"))
        except (FileNotFoundError, NotADirectoryError):
            continue  # released meanwhile
        except OSError as exc:
            raise error_from_oserror(
                exc, "cannot read dma-buf sysfs statistics", path=entry
            ) from exc
        found.append(parse_sysfs_buffer(name, exporter, size))
    found.sort(key=lambda b: b.inode)
    return found


# --- the report ------------------------------------------------------------------------------


@dataclass(frozen=True)
class DmaBuf:
    """One dma-buf, wherever it was seen.

    Attributes:
        inode: its inode number (the key: equal for every fd and mapping of the buffer).
        size: bytes.
        exp_name: the exporter ("unknown" when no source said).
        name: its name; None if never named (or no source said).
        count: the kernel's file reference count, when a source gave one.
        fds: (pid, fd) of every fd on it.
        mapped_by: pids that map it (``/proc/<pid>/maps``).
        kernel_listed: the kernel's full list (bufinfo or sysfs) has it.
        orphan: the kernel listed it before and after the walk of /proc, and no process held it
            by an fd or a mapping (among the processes this user can inspect).
        attachments: devices attached to it (bufinfo only).
    """

    inode: int
    size: int
    exp_name: str
    name: str | None
    count: int | None = None
    fds: tuple[tuple[int, int], ...] = ()
    mapped_by: tuple[int, ...] = ()
    kernel_listed: bool = False
    orphan: bool = False
    attachments: tuple[str, ...] = ()

    @property
    def holders(self) -> tuple[int, ...]:
        """The pids that hold it, by an fd or a mapping, sorted."""
        return tuple(sorted({pid for pid, _ in self.fds} | set(self.mapped_by)))

    def to_json(self) -> dict[str, Any]:
        return {
            "inode": self.inode,
            "size": self.size,
            "exp_name": self.exp_name,
            "name": self.name,
            "count": self.count,
            "fds": [{"pid": pid, "fd": fd} for pid, fd in self.fds],
            "mapped_by": list(self.mapped_by),
            "holders": list(self.holders),
            "kernel_listed": self.kernel_listed,
            "orphan": self.orphan,
            "attachments": list(self.attachments),
        }


@dataclass(frozen=True)
class ProcessUsage:
    """The dma-bufs one process holds.

    Attributes:
        pid: the process.
        comm: its command name (``/proc/<pid>/comm``; "?" if it could not be read).
        fds: its fds that are dma-bufs, sorted.
        inodes: the distinct buffers it holds by an fd or a mapping, sorted.
        bytes: their total size (a buffer shared with another process counts for both).
        exporters: their exporters, sorted, each once.
    """

    pid: int
    comm: str
    fds: tuple[int, ...]
    inodes: tuple[int, ...]
    bytes: int
    exporters: tuple[str, ...]

    @property
    def buffers(self) -> int:
        """How many distinct dma-bufs it holds."""
        return len(self.inodes)

    def to_json(self) -> dict[str, Any]:
        return {
            "pid": self.pid,
            "comm": self.comm,
            "buffers": self.buffers,
            "bytes": self.bytes,
            "exporters": list(self.exporters),
            "fds": list(self.fds),
            "inodes": list(self.inodes),
        }


@dataclass(frozen=True)
class ExporterTotal:
    """The buffers of one exporter: how many, their bytes, and how many are orphans."""

    exp_name: str
    buffers: int
    bytes: int
    orphans: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "exp_name": self.exp_name,
            "buffers": self.buffers,
            "bytes": self.bytes,
            "orphans": self.orphans,
        }


@dataclass(frozen=True)
class KernelList:
    """Whether the kernel's full list of dma-bufs was read, from where, and what its absence hides.

    Attributes:
        source: ``"debugfs"`` or ``"sysfs"``, or None when neither could be read.
        path: the file or directory read (bufinfo's path when neither could be).
        reason: why it is unavailable ("" when it was read).
        hides: what its absence hides ("" when it was read).
        total_objects: bufinfo's totals line (None from sysfs or when unavailable).
        total_bytes: likewise.
    """

    source: str | None
    path: str
    reason: str = ""
    hides: str = ""
    total_objects: int | None = None
    total_bytes: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "available": self.source is not None,
            "path": self.path,
            "reason": self.reason,
            "hides": self.hides,
            "total_objects": self.total_objects,
            "total_bytes": self.total_bytes,
        }


@dataclass(frozen=True)
class DmaBufReport:
    """What :func:`scan` found.

    Attributes:
        buffers: every dma-buf seen, by inode: held by a process or listed by the kernel.
        processes: the processes holding at least one dma-buf, by pid.
        unreadable: pids whose fd table this user may not read. What they hold is not seen, so
            a buffer only they hold is reported as an orphan: orphans are certain only when this
            is empty (see :attr:`orphans_certain`).
        vanished: processes that exited during the scan.
        kernel: the kernel's full list: where it came from, or why it is missing.
        problems: anything odd met on the way (a field that did not parse ...), one line each.
    """

    buffers: tuple[DmaBuf, ...]
    processes: tuple[ProcessUsage, ...]
    unreadable: tuple[int, ...]
    vanished: int
    kernel: KernelList
    problems: tuple[str, ...] = field(default=())

    @property
    def orphans(self) -> tuple[DmaBuf, ...]:
        """Buffers the kernel has that no inspected process holds (empty without the kernel's
        list)."""
        return tuple(b for b in self.buffers if b.orphan)

    @property
    def orphans_certain(self) -> bool:
        """Every process could be inspected, so no orphan is really held by a hidden process."""
        return not self.unreadable

    def process(self, pid: int) -> ProcessUsage | None:
        """The usage of ``pid``, or None if it holds no dma-buf (or could not be read)."""
        return next((p for p in self.processes if p.pid == pid), None)

    def buffer(self, inode: int) -> DmaBuf | None:
        """The buffer with this inode, or None."""
        return next((b for b in self.buffers if b.inode == inode), None)

    def exporters(self, buffers: Iterable[DmaBuf] | None = None) -> tuple[ExporterTotal, ...]:
        """Totals per exporter over ``buffers`` (default: every buffer seen), by exporter name."""
        totals: dict[str, list[int]] = {}
        for buf in self.buffers if buffers is None else buffers:
            entry = totals.setdefault(buf.exp_name, [0, 0, 0])
            entry[0] += 1
            entry[1] += buf.size
            entry[2] += int(buf.orphan)
        return tuple(ExporterTotal(name, *totals[name]) for name in sorted(totals))

    def to_json(self) -> dict[str, Any]:
        return {
            "processes": [p.to_json() for p in self.processes],
            "exporters": [e.to_json() for e in self.exporters()],
            "orphans": [b.to_json() for b in self.orphans],
            "orphans_certain": self.orphans_certain,
            "buffers": [b.to_json() for b in self.buffers],
            "unreadable_processes": {"count": len(self.unreadable), "pids": list(self.unreadable)},
            "vanished_processes": self.vanished,
            "kernel_list": self.kernel.to_json(),
            "problems": list(self.problems),
        }


# --- the scan --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Listed:
    """A buffer as the kernel's list gives it."""

    size: int
    exp_name: str
    name: str | None
    count: int | None
    attachments: tuple[str, ...]


@dataclass(frozen=True)
class _FdSeen:
    """A dma-buf fd as the walk of /proc met it."""

    fd: int
    inode: int
    size: int
    info: FdInfo
    target: str


class _VanishedError(Exception):
    """The process exited while it was read."""


class _UnreadableError(Exception):
    """This user may not read the process's fd table."""


_GONE = (errno.ENOENT, errno.ESRCH, errno.ENOTDIR)
_DENIED = (errno.EACCES, errno.EPERM)


def _classify(exc: OSError) -> Exception:
    if exc.errno in _GONE:
        return _VanishedError()
    if exc.errno in _DENIED:
        return _UnreadableError()
    return exc


def _debugfs_mounted(proc: str, debugfs: str) -> bool | None:
    """Whether a debugfs is mounted at ``debugfs`` (None if /proc/self/mounts cannot tell)."""
    try:
        text = _read_text(os.path.join(proc, "self", "mounts"))
    except OSError:
        return None
    target = os.path.normpath(debugfs)
    return any(
        len(f) >= 3 and f[2] == "debugfs" and f[1] == target
        for f in (line.split() for line in text.split("\n"))
    )


_HIDES = (
    "buffers that no process holds (orphans: kept by a driver, in flight in a socket, leaked) "
    "cannot be found, and the totals cover only buffers held by processes this user can inspect"
)


def _read_kernel_list(
    proc: str, sysfs: str, debugfs: str
) -> tuple[KernelList, dict[int, _Listed], list[str]]:
    """The kernel's full list of dma-bufs: bufinfo if readable, else sysfs statistics."""
    problems: list[str] = []
    bufinfo_path = os.path.join(debugfs, BUFINFO)
    try:
        table = read_bufinfo(debugfs)
    except UsageError as exc:
        why = f"{bufinfo_path} could not be parsed ({exc})"
        problems.append(why)
    except OSError as exc:
        if exc.errno in _DENIED:
            why = f"{bufinfo_path} is not readable by this user (debugfs is root-only)"
        elif _debugfs_mounted(proc, debugfs) is False:
            why = f"debugfs is not mounted at {debugfs} (mount -t debugfs none {debugfs})"
        else:
            why = f"{bufinfo_path} is not available ({os.strerror(exc.errno or 0)})"
    else:
        listed = {
            e.inode: _Listed(e.size, e.exp_name, e.name, e.count, e.attachments)
            for e in table.entries
            if e.inode is not None
        }
        if len(listed) != len(table.entries):
            problems.append(f"{bufinfo_path} has no inode column: orphans cannot be matched")
        kernel = KernelList(
            "debugfs",
            bufinfo_path,
            total_objects=table.total_objects,
            total_bytes=table.total_bytes,
        )
        return kernel, listed, problems
    sysfs_path = os.path.join(sysfs, SYSFS_BUFFERS)
    try:
        stats = read_sysfs_buffers(sysfs)
    except (OSError, UsageError) as exc:
        problems.append(f"{sysfs_path}: {exc}")
        stats = None
    if stats is not None:
        listed = {s.inode: _Listed(s.size, s.exp_name, None, None, ()) for s in stats}
        return KernelList("sysfs", sysfs_path), listed, problems
    reason = f"{why}, and {sysfs_path} is absent (no CONFIG_DMABUF_SYSFS_STATS)"
    return KernelList(None, bufinfo_path, reason, _HIDES), {}, problems


def _pids(proc: str) -> list[int]:
    try:
        names = os.listdir(proc)
    except OSError as exc:
        raise error_from_oserror(exc, "cannot list the processes", path=proc) from exc
    return sorted(int(n) for n in names if n.isdigit())


def _walk_fds(proc: str, pid: int, problems: list[str]) -> list[_FdSeen]:
    """The dma-buf fds of ``pid``.

    Raises:
        _VanishedError: the process exited.
        _UnreadableError: its fd table is not readable by this user.
    """
    fd_dir = os.path.join(proc, str(pid), "fd")
    try:
        names = os.listdir(fd_dir)
    except OSError as exc:
        raise _classify(exc) from exc
    found = []
    for fd in sorted(int(n) for n in names if n.isdigit()):
        link = os.path.join(fd_dir, str(fd))
        try:
            target = os.readlink(link)
        except OSError as exc:
            if exc.errno in _GONE:
                continue  # closed meanwhile
            raise _classify(exc) from exc
        if not is_dmabuf_link(target):
            continue
        fdinfo_path = os.path.join(proc, str(pid), "fdinfo", str(fd))
        try:
            info = parse_fdinfo(_read_text(fdinfo_path))
        except UsageError as exc:
            problems.append(f"{fdinfo_path}: {exc}")
            info = FdInfo()
        except OSError as exc:
            if exc.errno in _GONE:
                continue
            raise _classify(exc) from exc
        inode, size = info.ino, info.size
        if inode is None or size is None:  # older kernels: the link's inode knows both
            try:
                st = os.stat(link)
            except OSError as exc:
                if exc.errno not in _GONE:
                    problems.append(f"pid {pid} fd {fd}: cannot stat the dma-buf: {exc}")
                continue
            inode = st.st_ino if inode is None else inode
            size = st.st_size if size is None else size
        found.append(_FdSeen(fd, inode, size, info, target))
    return found


def _walk_maps(proc: str, pid: int) -> list[MapEntry]:
    """The dma-buf mappings of ``pid`` (a mapping keeps a buffer alive after its fd is closed).

    Raises:
        _VanishedError: the process exited.
        _UnreadableError: its maps are not readable by this user.
    """
    try:
        return parse_maps(_read_text(os.path.join(proc, str(pid), "maps")))
    except OSError as exc:
        raise _classify(exc) from exc


def _mapped_size(proc: str, pid: int, m: MapEntry) -> int:
    """The size of a buffer met only as a mapping: ``map_files`` gives its inode (root only),
    else the mapping's length (which may be shorter than the buffer)."""
    try:
        st = os.stat(os.path.join(proc, str(pid), "map_files", f"{m.start:x}-{m.end:x}"))
    except OSError:
        return m.end - m.start
    return st.st_size if st.st_ino == m.inode else m.end - m.start


def _comm(proc: str, pid: int) -> str:
    try:
        return _read_text(os.path.join(proc, str(pid), "comm")).rstrip("\n")
    except OSError:
        return "?"


def scan(
    proc: str = "/proc",
    sysfs: str = "/sys",
    debugfs: str = "/sys/kernel/debug",
    *,
    maps: bool = True,
) -> DmaBufReport:
    """Account for every dma-buf on the system (as far as this user can see).

    Args:
        proc: where procfs is mounted (a fake tree in tests).
        sysfs: where sysfs is mounted.
        debugfs: where debugfs is mounted.
        maps: also read ``/proc/<pid>/maps``, so buffers held only by a mapping are found.

    The kernel's list is read before and after the walk of /proc; a buffer is an orphan only if
    it is in both and no process held it, so buffers made or freed during the walk are not.

    Raises:
        KernelError: ``proc`` itself cannot be listed.
    """
    before, listed_before, problems = _read_kernel_list(proc, sysfs, debugfs)
    fds_of: dict[int, list[_FdSeen]] = {}
    maps_of: dict[int, list[MapEntry]] = {}
    unreadable: list[int] = []
    vanished = 0
    for pid in _pids(proc):
        try:
            fds = _walk_fds(proc, pid, problems)
            mappings = _walk_maps(proc, pid) if maps else []
        except _VanishedError:
            vanished += 1
            continue
        except _UnreadableError:
            unreadable.append(pid)
            continue
        except OSError as exc:
            problems.append(f"pid {pid}: cannot be read: {exc}")
            continue
        if fds:
            fds_of[pid] = fds
        if mappings:
            maps_of[pid] = mappings
    kernel, listed, more = _read_kernel_list(proc, sysfs, debugfs)
    problems.extend(p for p in more if p not in problems)
    if (kernel.source is None) != (before.source is None):
        problems.append("the kernel's dma-buf list appeared or went away during the scan")
    stable = set(listed_before) & set(listed)

    by_fd: dict[int, list[tuple[int, _FdSeen]]] = {}
    for pid, seen in fds_of.items():
        for item in seen:
            by_fd.setdefault(item.inode, []).append((pid, item))
    by_map: dict[int, list[tuple[int, MapEntry]]] = {}
    for pid, mappings in maps_of.items():
        for m in mappings:
            by_map.setdefault(m.inode, []).append((pid, m))

    buffers: dict[int, DmaBuf] = {}
    for inode in sorted(set(by_fd) | set(by_map) | set(listed)):
        held = by_fd.get(inode, [])
        mapped = by_map.get(inode, [])
        k = listed.get(inode) or listed_before.get(inode)
        infos = [item.info for _, item in held]
        exp_name = next((i.exp_name for i in infos if i.exp_name), None)
        # The name: fdinfo's (it tells "never named" from ""), else the kernel list's, else a
        # link's (kernels whose fdinfo has no name line).
        name = next((i.name for i in infos if i.name is not None), None)
        if name is None and k is not None:
            name = k.name
        if name is None:
            targets = [item.target for _, item in held] + [m.path for _, m in mapped]
            name = next((n for n in map(dmabuf_link_name, targets) if n is not None), None)
        if held:
            size = held[0][1].size
        elif k is not None:
            size = k.size
        else:
            size = _mapped_size(proc, *mapped[0])
        count = next((i.count for i in infos if i.count is not None), None)
        buffers[inode] = DmaBuf(
            inode=inode,
            size=size,
            exp_name=exp_name or (k.exp_name if k else "unknown"),
            name=name,
            count=k.count if k and k.count is not None else count,
            fds=tuple(sorted((pid, item.fd) for pid, item in held)),
            mapped_by=tuple(sorted({pid for pid, _ in mapped})),
            kernel_listed=inode in listed,
            orphan=inode in stable and not held and not mapped,
            attachments=k.attachments if k else (),
        )
    inodes_of: dict[int, set[int]] = {}
    for inode, buf in buffers.items():
        for pid in buf.holders:
            inodes_of.setdefault(pid, set()).add(inode)
    processes = [
        ProcessUsage(
            pid=pid,
            comm=_comm(proc, pid),
            fds=tuple(item.fd for item in fds_of.get(pid, [])),
            inodes=tuple(sorted(inodes)),
            bytes=sum(buffers[i].size for i in inodes),
            exporters=tuple(sorted({buffers[i].exp_name for i in inodes})),
        )
        for pid, inodes in sorted(inodes_of.items())
    ]
    return DmaBufReport(
        buffers=tuple(buffers.values()),
        processes=tuple(processes),
        unreadable=tuple(unreadable),
        vanished=vanished,
        kernel=kernel,
        problems=tuple(problems),
    )
