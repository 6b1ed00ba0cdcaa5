"""dma-buf accounting on the host: the parsers on samples captured from Linux 6.12 (tests/data/
accounting), scan() over fake /proc, sysfs and debugfs trees, and `devalloc ps`."""

from __future__ import annotations

import json
import os
import pathlib
import pickle
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from typing import TypeVar

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devalloc import cli
from devalloc.accounting import (
    BufInfoEntry,
    DmaBufReport,
    FdInfo,
    MapEntry,
    dmabuf_link_name,
    is_dmabuf_link,
    parse_bufinfo,
    parse_fdinfo,
    parse_maps,
    parse_sysfs_buffer,
    read_bufinfo,
    read_sysfs_buffers,
    scan,
)
from devalloc.errors import NotFoundError, UsageError

SAMPLES = pathlib.Path(__file__).parent / "data" / "accounting"
NAMED = ["camera", "0", "preview"]  # "camera 0 preview", split on spaces
T = TypeVar("T")


def sample(name: str) -> str:
    return (SAMPLES / name).read_text(encoding="utf-8")


# --- fdinfo ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("system_named", FdInfo(0, 0o2000002, 12, 1, 1 << 20, 3, "system", "camera 0 preview")),
        ("child_shared", FdInfo(0, 0o2000002, 12, 1, 1 << 20, 6, "system", "camera 0 preview")),
        ("system_empty_name", FdInfo(0, 0o2000002, 12, 2, 12288, 1, "system", "")),
        ("system_imported", FdInfo(0, 0o2000002, 12, 3, 8192, 4, "system", None)),
        ("udmabuf_named", FdInfo(0, 0o2000002, 12, 4, 65536, 1, "udmabuf", "udmabuf-frame")),
        ("vgem_dumb", FdInfo(0, 0o2000002, 12, 5, 12288, 3, "drm", None)),
    ],
)
def test_fdinfo_samples(name: str, expected: FdInfo) -> None:
    assert parse_fdinfo(sample(f"default_fdinfo_{name}.txt")) == expected


def test_fdinfo_of_older_kernels_and_odd_names() -> None:
    # Before 5.14 there is no ino line; before the name was set there is no name line.
    old = parse_fdinfo("pos:\t0\nflags:\t02\nmnt_id:\t9\nsize:\t4096\ncount:\t1\nexp_name:\tion\n")
    assert (old.ino, old.size, old.exp_name, old.name) == (None, 4096, "ion", None)
    # The name is the rest of the text: tabs, trailing spaces and newlines are part of it.
    odd = parse_fdinfo("size:\t1\ncount:\t1\nexp_name:\tsystem\nname:\t a\tb \nc\n")
    assert odd.name == " a\tb \nc"
    late = parse_fdinfo("size:\t1\nname:\tfirst\nsize:\t2\n")  # nothing follows the name
    assert (late.size, late.name) == (1, "first\nsize:\t2")


def test_fdinfo_that_is_not_a_dma_buf_or_is_damaged() -> None:
    with pytest.raises(UsageError, match="not the fdinfo of a dma-buf"):
        parse_fdinfo("pos:\t0\nflags:\t02\nmnt_id:\t15\nino:\t1234\n")  # a plain file
    with pytest.raises(UsageError, match="'size' is not a number: 'lots'"):
        parse_fdinfo("size:\tlots\ncount:\t1\nexp_name:\tsystem\n")


@given(
    raw=st.binary(max_size=40).filter(lambda b: b"\0" not in b),
    ino=st.integers(1, 2**63),
    size=st.integers(0, 2**48),
    count=st.integers(0, 2**31),
    exp_name=st.text(st.characters(codec="ascii", exclude_characters="\0\n\t\r"), min_size=1),
)
def test_fdinfo_round_trip(raw: bytes, ino: int, size: int, count: int, exp_name: str) -> None:
    name = raw.decode("utf-8", "surrogateescape")  # how the scan decodes /proc text
    text = (
        f"pos:\t0\nflags:\t02000002\nmnt_id:\t12\nino:\t{ino}\nsize:\t{size}\ncount:\t{count}\n"
        f"exp_name:\t{exp_name}\nname:\t{name}\n"
    )
    info = parse_fdinfo(text)
    assert (info.ino, info.size, info.count, info.name) == (ino, size, count, name)
    assert info.exp_name == exp_name.strip()


# --- fd links and maps -----------------------------------------------------------------------


def test_links() -> None:
    named = sample("default_fd_system_named.link").rstrip("\n")
    assert named == "/dmabuf:camera 0 preview"
    assert is_dmabuf_link(named)
    assert dmabuf_link_name(named) == "camera 0 preview"
    for unnamed in ("system_empty_name", "vgem_dumb", "system_imported"):
        link = sample(f"default_fd_{unnamed}.link").rstrip("\n")
        assert link == "/dmabuf:"  # unnamed and named "" look alike: fdinfo tells them apart
        assert dmabuf_link_name(link) is None
    assert is_dmabuf_link("anon_inode:dmabuf")  # before Linux 5.3
    assert dmabuf_link_name("anon_inode:dmabuf") is None
    for other in ("anon_inode:[eventfd]", "/dev/dri/card0", "/memfd:dmabuf (deleted)", "dmabuf"):
        assert not is_dmabuf_link(other)


def test_maps_samples_and_lookalikes() -> None:
    (mapped,) = parse_maps(sample("default_maps_dmabuf.txt"))
    assert mapped.inode == 1
    assert mapped.path == "/dmabuf:camera 0 preview"
    assert mapped.end - mapped.start == 1 << 20
    (only,) = parse_maps(sample("default_maps_mapped_only.txt"))
    assert (only.inode, only.end - only.start, only.path) == (10, 3 << 20, "/dmabuf:mapped only")
    text = (
        "7f00000000-7f00001000 rw-s 00000000 08:01 42   /dmabuf:a file on a disk\n"
        "7f00001000-7f00002000 rw-s 00000000 00:0e 7    anon_inode:dmabuf\n"
        "7f00002000-7f00003000 r--p 00000000 00:00 0    [heap]\n"
        "7f00003000-7f00004000 rw-s 00000000 00:01 9    /memfd:dmabuf (deleted)\n"
        "7f00004000-7f00005000 rw-s 00000000 00:0b 11   /dmabuf:\n"
        "garbage dmabuf\n"
    )
    assert parse_maps(text) == [
        MapEntry(0x7F00001000, 0x7F00002000, 7, "anon_inode:dmabuf"),
        MapEntry(0x7F00004000, 0x7F00005000, 11, "/dmabuf:"),
    ]


# --- bufinfo ---------------------------------------------------------------------------------


def test_bufinfo_sample_with_held_buffers() -> None:
    table = parse_bufinfo(sample("default_bufinfo_held.txt"))
    assert (table.total_objects, table.total_bytes) == (5, 1146880)
    assert table.entries == (
        BufInfoEntry(12288, 2, 0x80007, 4, "drm", 5, None),
        BufInfoEntry(65536, 2, 0x80007, 2, "udmabuf", 4, "udmabuf-frame"),
        BufInfoEntry(8192, 2, 0x80007, 5, "system", 3, None, attachments=("vgem",)),
        BufInfoEntry(12288, 2, 0x80007, 2, "system", 2, ""),
        BufInfoEntry(1048576, 2, 0x80007, 6, "system", 1, "camera 0 preview"),
    )


def test_bufinfo_samples_of_orphans_and_empty_tables() -> None:
    table = parse_bufinfo(sample("default_bufinfo_orphans.txt"))
    by_inode = {e.inode: e for e in table.entries if e.inode is not None}
    assert sorted(by_inode) == [6, 7, 8, 9, 10]
    assert by_inode[7].name == "held by vgem"
    assert by_inode[7].attachments == ("vgem",)
    assert by_inode[8].size == 4 << 20
    assert by_inode[9].name is None
    assert table.total_bytes == sum(e.size for e in table.entries) == 9502720
    for empty in (
        "default_bufinfo_after_close.txt",
        "default_bufinfo_orphans_released.txt",
        "dma_contig_bufinfo_refused_fd_closed.txt",
        "dma_contig_bufinfo_refused_all_closed.txt",
    ):
        assert parse_bufinfo(sample(empty)) == parse_bufinfo(sample(empty)).__class__((), 0, 0)
    (refused,) = parse_bufinfo(sample("dma_contig_bufinfo_refused_still_open.txt")).entries
    assert (refused.inode, refused.count, refused.name) == (17, 1, "refused by vivid")
    assert refused.attachments == ()  # vb2 detached it when QBUF failed


HEADER = "\nDma-buf Objects:\nsize    \tflags   \tmode    \tcount   \texp_name\tino     \tname\n"


def test_bufinfo_with_fences_old_columns_and_a_newline_in_a_name() -> None:
    text = (
        HEADER
        + "00004096\t00000002\t00080007\t00000002\tvgem\t00000031\ttwo\nlines\n"
        + "\twrite fence:vgem vgem.1 seq 4 signalled\n"
        + "\tread fence:i915 ring0 seq 9 unsignalled\n"
        + "\tAttached Devices:\n\t0000:00:02.0\n\tvivid.0\nTotal 2 devices attached\n\n"
        + "\nTotal 1 objects, 4096 bytes\n"
    )
    (entry,) = parse_bufinfo(text).entries
    assert entry.name == "two\nlines"
    assert entry.fences == (
        "write fence:vgem vgem.1 seq 4 signalled",
        "read fence:i915 ring0 seq 9 unsignalled",
    )
    assert entry.attachments == ("0000:00:02.0", "vivid.0")
    # Kernels before 5.x: no ino and no name column.
    old = (
        "\nDma-buf Objects:\nsize    \tflags   \tmode    \tcount   \texp_name\n"
        "00008192\t00000002\t00000007\t00000001\tion\n\tAttached Devices:\n"
        "Total 0 devices attached\n\nTotal 1 objects, 8192 bytes\n"
    )
    (ion,) = parse_bufinfo(old).entries
    assert (ion.size, ion.exp_name, ion.inode, ion.name) == (8192, "ion", None, None)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "no 'Dma-buf Objects:' header"),
        ("size\n", "no 'Dma-buf Objects:' header"),
        (HEADER + "00004096\t00000002\t00080007\t1\tsystem\t1\tx\n", "truncated"),
        (HEADER + "\nTotal 1 objects, 4096 bytes\n", "totals say 1 objects"),
        (HEADER + "hello\n", "line 4 is not a dma-buf row: 'hello'"),
        (
            HEADER + "4096\t2\t7\t1\tsystem\t1\tx\n\tAttached Devices:\nTotal 1 devices attached\n",
            "1 devices attached to inode 1 but 0 listed",
        ),
        (
            HEADER + "4096\t2\t7\t1\tsystem\t1\tx\n\tAttached Devices:\nstray\n",
            "line 6 fits nowhere in its entry",
        ),
    ],
)
def test_bufinfo_that_does_not_parse(text: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse_bufinfo(text)


_NAME_CHARS = st.characters(codec="utf-8", exclude_characters="\n")
_ONE_LINE = st.text(st.characters(codec="utf-8", exclude_characters="\n\t"))


@st.composite
def bufinfo_entries(draw: st.DrawFn) -> list[BufInfoEntry]:
    inodes = draw(st.lists(st.integers(1, 2**40), unique=True, max_size=6))
    entries = []
    for inode in inodes:
        entries.append(
            BufInfoEntry(
                size=draw(st.integers(0, 2**40)),
                flags=draw(st.integers(0, 2**32 - 1)),
                mode=draw(st.integers(0, 2**32 - 1)),
                count=draw(st.integers(0, 2**31)),
                exp_name=draw(_ONE_LINE.filter(bool)),
                inode=inode,
                name=draw(st.none() | st.text(_NAME_CHARS).filter(lambda n: n != "<none>")),
                fences=tuple(draw(st.lists(_ONE_LINE.map(lambda f: f"write fence:{f}")))),
                attachments=tuple(draw(st.lists(_ONE_LINE.filter(bool), max_size=3))),
            )
        )
    return entries


def format_bufinfo(entries: list[BufInfoEntry]) -> str:
    """The table as dma_buf_debug_show prints it (drivers/dma-buf/dma-buf.c, 6.12)."""
    out = [HEADER]
    for e in entries:
        name = "<none>" if e.name is None else e.name
        out.append(
            f"{e.size:08d}\t{e.flags:08x}\t{e.mode:08x}\t{e.count:08d}\t{e.exp_name}\t"
            f"{e.inode:08d}\t{name}\n"
        )
        out.extend(f"\t{f}\n" for f in e.fences)
        out.append("\tAttached Devices:\n")
        out.extend(f"\t{a}\n" for a in e.attachments)
        out.append(f"Total {len(e.attachments)} devices attached\n\n")
    out.append(f"\nTotal {len(entries)} objects, {sum(e.size for e in entries)} bytes\n")
    return "".join(out)


@given(bufinfo_entries())
def test_bufinfo_round_trip(entries: list[BufInfoEntry]) -> None:
    table = parse_bufinfo(format_bufinfo(entries))
    assert list(table.entries) == entries
    assert table.total_objects == len(entries)


def test_read_bufinfo(tmp_path: pathlib.Path) -> None:
    with pytest.raises(NotFoundError, match="cannot read the kernel's dma-buf table"):
        read_bufinfo(str(tmp_path))
    (tmp_path / "dma_buf").mkdir()
    (tmp_path / "dma_buf" / "bufinfo").write_text(sample("default_bufinfo_held.txt"))
    assert read_bufinfo(str(tmp_path)).total_objects == 5


# --- sysfs statistics (absent from Debian's 6.12: a tree in the documented format) -----------


def make_sysfs(root: pathlib.Path, buffers: dict[int, tuple[str, int]]) -> str:
    base = root / "kernel" / "dmabuf" / "buffers"
    base.mkdir(parents=True)
    for inode, (exporter, size) in buffers.items():
        (base / str(inode)).mkdir()
        (base / str(inode) / "exporter_name").write_text(f"{exporter}\n")
        (base / str(inode) / "size").write_text(f"{size}\n")
    return str(root)


def test_sysfs_statistics(tmp_path: pathlib.Path) -> None:
    assert read_sysfs_buffers(str(tmp_path)) is None  # no CONFIG_DMABUF_SYSFS_STATS
    sysfs = make_sysfs(tmp_path, {12: ("system", 4096), 3: ("udmabuf", 65536)})
    (tmp_path / "kernel" / "dmabuf" / "buffers" / "40").mkdir()  # released while read
    found = read_sysfs_buffers(sysfs)
    assert found is not None
    assert [(b.inode, b.exp_name, b.size) for b in found] == [
        (3, "udmabuf", 65536),
        (12, "system", 4096),
    ]
    assert parse_sysfs_buffer("7", "vb2_dma_sg\n", "1024\n").exp_name == "vb2_dma_sg"
    with pytest.raises(UsageError, match="must be numbers"):
        parse_sysfs_buffer("7", "system\n", "big\n")


# --- scan() over fake trees ------------------------------------------------------------------


class FakeProc:
    """A /proc tree: pid directories with comm, fd links, fdinfo files and maps."""

    def __init__(self, root: pathlib.Path, mounts: str = "") -> None:
        self.root = root
        (root / "self").mkdir(parents=True)
        (root / "self" / "mounts").write_text(mounts)

    def process(self, pid: int, comm: str, maps: str = "") -> pathlib.Path:
        d = self.root / str(pid)
        (d / "fd").mkdir(parents=True)
        (d / "fdinfo").mkdir()
        (d / "comm").write_text(f"{comm}\n")
        (d / "maps").write_text(maps)
        return d

    def fd(self, pid: int, fd: int, target: str, fdinfo: str | None) -> None:
        d = self.root / str(pid)
        (d / "fd" / str(fd)).symlink_to(target)
        if fdinfo is not None:
            (d / "fdinfo" / str(fd)).write_text(fdinfo)


def make_debugfs(root: pathlib.Path, bufinfo: str) -> str:
    (root / "dma_buf").mkdir(parents=True)
    (root / "dma_buf" / "bufinfo").write_text(bufinfo)
    return str(root)


def held_tree(root: pathlib.Path) -> FakeProc:
    """The capture's held state: pid 100 holds five buffers (one mapped), pid 101 shares one,
    pid 102 holds only ordinary files."""
    proc = FakeProc(root / "proc")
    proc.process(100, "capture", maps=sample("default_maps_dmabuf.txt"))
    for fd, label in enumerate(
        ["system_named", "system_empty_name", "system_imported", "udmabuf_named", "vgem_dumb"], 3
    ):
        link = sample(f"default_fd_{label}.link").rstrip("\n")
        proc.fd(100, fd, link, sample(f"default_fdinfo_{label}.txt"))
    proc.fd(100, 0, "/dev/null", "pos:\t0\nflags:\t02\nmnt_id:\t5\nino:\t4\n")
    proc.process(101, "capture child")
    link = sample("default_fd_child_shared.link").rstrip("\n")
    proc.fd(101, 3, link, sample("default_fdinfo_child_shared.txt"))
    proc.process(102, "bash")
    proc.fd(102, 0, "pipe:[1234]", "pos:\t0\nflags:\t0\nmnt_id:\t14\nino:\t1234\n")
    return proc


def test_scan_of_the_held_sample(tmp_path: pathlib.Path) -> None:
    proc = held_tree(tmp_path)
    debugfs = make_debugfs(tmp_path / "debug", sample("default_bufinfo_held.txt"))
    report = scan(str(proc.root), str(tmp_path / "sys"), debugfs)
    assert [(p.pid, p.comm, p.buffers, p.bytes) for p in report.processes] == [
        (100, "capture", 5, 1146880),
        (101, "capture child", 1, 1 << 20),
    ]
    assert report.processes[0].fds == (3, 4, 5, 6, 7)
    assert report.processes[0].exporters == ("drm", "system", "udmabuf")
    named = report.buffer(1)
    assert named is not None
    assert named.fds == ((100, 3), (101, 3))
    assert named.mapped_by == (100,)
    assert named.holders == (100, 101)
    assert (named.name, named.count) == ("camera 0 preview", 6)  # count from bufinfo
    assert [b.name for b in report.buffers] == ["camera 0 preview", "", None, "udmabuf-frame", None]
    assert report.buffer(3) is not None
    assert report.buffer(3).attachments == ("vgem",)  # type: ignore[union-attr]
    # Shared buffers count once in the totals.
    assert [(e.exp_name, e.buffers, e.bytes, e.orphans) for e in report.exporters()] == [
        ("drm", 1, 12288, 0),
        ("system", 3, (1 << 20) + 12288 + 8192, 0),
        ("udmabuf", 1, 65536, 0),
    ]
    assert report.orphans == ()
    assert report.orphans_certain
    assert (report.kernel.source, report.kernel.total_objects) == ("debugfs", 5)
    assert report.problems == ()
    json.dumps(report.to_json())


def orphans_tree(root: pathlib.Path) -> tuple[FakeProc, str]:
    """The capture's orphan state: pid 100 holds 'still held' and maps 'mapped only'."""
    proc = FakeProc(root / "proc")
    proc.process(100, "capture", maps=sample("default_maps_mapped_only.txt"))
    link = sample("default_fd_still_held.link").rstrip("\n")
    proc.fd(100, 3, link, sample("default_fdinfo_still_held.txt"))
    return proc, make_debugfs(root / "debug", sample("default_bufinfo_orphans.txt"))


def test_scan_of_the_orphans_sample(tmp_path: pathlib.Path) -> None:
    proc, debugfs = orphans_tree(tmp_path)
    report = scan(str(proc.root), str(tmp_path / "sys"), debugfs)
    assert [(b.inode, b.size, b.name) for b in report.orphans] == [
        (7, 1 << 20, "held by vgem"),
        (8, 4 << 20, "queued on vivid"),
        (9, 1 << 16, None),
    ]
    assert report.buffer(7).attachments == ("vgem",)  # type: ignore[union-attr]
    mapped = report.buffer(10)
    assert mapped is not None
    assert (mapped.fds, mapped.mapped_by, mapped.orphan) == ((), (100,), False)
    assert mapped.size == 3 << 20  # the kernel's list knows it
    usage = report.process(100)
    assert usage is not None
    assert (usage.inodes, usage.fds, usage.bytes) == ((6, 10), (3,), (1 << 20) + (3 << 20))
    system = report.exporters()[0]
    assert (system.exp_name, system.buffers, system.orphans) == ("system", 5, 3)
    # Without the maps the mapped buffer looks like an orphan too.
    assert 10 in [
        b.inode for b in scan(str(proc.root), "/nonexistent", debugfs, maps=False).orphans
    ]


def test_scan_with_sysfs_statistics_instead_of_debugfs(tmp_path: pathlib.Path) -> None:
    proc, _ = orphans_tree(tmp_path)
    sysfs = make_sysfs(tmp_path / "sys", {6: ("system", 1 << 20), 7: ("system", 1 << 20)})
    report = scan(str(proc.root), sysfs, str(tmp_path / "no-debugfs"))
    assert report.kernel.source == "sysfs"
    assert report.kernel.total_objects is None
    assert [(b.inode, b.exp_name, b.name) for b in report.orphans] == [(7, "system", None)]
    assert report.buffer(10) is not None  # mapped only, not in sysfs: size from the mapping
    assert report.buffer(10).size == 3 << 20  # type: ignore[union-attr]
    assert not report.buffer(10).kernel_listed  # type: ignore[union-attr]


def test_scan_without_any_kernel_list_says_why(tmp_path: pathlib.Path) -> None:
    proc = held_tree(tmp_path)
    report = scan(str(proc.root), str(tmp_path / "sys"), str(tmp_path / "debug"))
    assert report.kernel.source is None
    assert report.kernel.reason == (
        f"debugfs is not mounted at {tmp_path}/debug (mount -t debugfs none {tmp_path}/debug), "
        f"and {tmp_path}/sys/kernel/dmabuf/buffers is absent (no CONFIG_DMABUF_SYSFS_STATS)"
    )
    assert "orphans" in report.kernel.hides
    assert report.orphans == ()
    assert len(report.buffers) == 5  # what the processes hold is still there
    named = report.buffer(1)
    assert named is not None
    assert named.count == 3  # from fdinfo now
    assert not named.kernel_listed
    # debugfs mounted there, but no dma_buf directory in it:
    (proc.root / "self" / "mounts").write_text(f"debugfs {tmp_path}/debug debugfs rw 0 0\n")
    (tmp_path / "debug").mkdir()
    report = scan(str(proc.root), str(tmp_path / "sys"), str(tmp_path / "debug"))
    assert report.kernel.reason.startswith(
        f"{tmp_path}/debug/dma_buf/bufinfo is not available (No such file or directory)"
    )


def test_scan_reports_an_unparsable_bufinfo(tmp_path: pathlib.Path) -> None:
    proc = held_tree(tmp_path)
    cut = sample("default_bufinfo_held.txt").rpartition("Total 5 objects")[0]  # a short read
    debugfs = make_debugfs(tmp_path / "debug", cut)
    report = scan(str(proc.root), str(tmp_path / "sys"), debugfs)
    assert report.kernel.source is None
    assert "could not be parsed" in report.kernel.reason
    assert any("truncated" in p for p in report.problems)


def test_scan_of_older_kernels_uses_the_link(tmp_path: pathlib.Path) -> None:
    """Before 5.3 a dma-buf fd is anon_inode:dmabuf and fdinfo has no ino: stat the link."""
    proc = FakeProc(tmp_path / "proc")
    d = proc.process(300, "old")
    target = d / "fd" / "anon_inode:dmabuf"  # resolves relative to the fd directory
    target.write_bytes(b"\0" * 8192)
    proc.fd(300, 5, "anon_inode:dmabuf", "pos:\t0\nflags:\t02\nmnt_id:\t9\ncount:\t1\n")
    report = scan(str(proc.root), str(tmp_path / "sys"), str(tmp_path / "debug"))
    (buf,) = report.buffers
    assert (buf.inode, buf.size, buf.exp_name) == (target.stat().st_ino, 8192, "unknown")
    assert buf.fds == ((300, 5),)


def test_scan_skips_what_vanished_during_the_walk(tmp_path: pathlib.Path) -> None:
    proc = held_tree(tmp_path)
    (proc.root / "200").mkdir()  # listed, but its fd table is gone: it exited
    proc.process(201, "closing")
    proc.fd(201, 9, "/dmabuf:", None)  # the fd closed between readlink and fdinfo
    proc.process(202, "exiting")
    (proc.root / "202" / "maps").unlink()  # exited between the fd table and the maps
    proc.fd(202, 3, "/dmabuf:", sample("default_fdinfo_udmabuf_named.txt"))
    report = scan(str(proc.root), str(tmp_path / "sys"), str(tmp_path / "debug"))
    assert report.vanished == 2
    assert [p.pid for p in report.processes] == [100, 101]
    assert report.buffer(4) is not None
    assert report.buffer(4).fds == ((100, 6),)  # type: ignore[union-attr]  # not 202's


def test_scan_survives_real_processes_exiting_during_the_walk() -> None:
    """On this machine's /proc, with short-lived processes coming and going all the time."""
    stop = threading.Event()

    def churn() -> None:
        while not stop.is_set():
            subprocess.run([sys.executable, "-c", "pass"], check=True)

    workers = [threading.Thread(target=churn) for _ in range(2)]
    for w in workers:
        w.start()
    try:
        reports = [scan() for _ in range(10)]
    finally:
        stop.set()
        for w in workers:
            w.join()
    for report in reports:
        assert isinstance(report, DmaBufReport)
        assert os.getpid() not in report.unreadable


@pytest.fixture
def shared_tmp() -> Iterator[pathlib.Path]:
    """A directory other users may enter (pytest's tmp_path is private to its owner)."""
    path = pathlib.Path(tempfile.mkdtemp(prefix="devalloc-accounting-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path)


def as_nobody(fn: Callable[[], T]) -> T:
    """Run ``fn`` as an unprivileged user: in a forked child that drops to nobody when this is
    root (root reads every /proc entry and every 000 file), else in this process."""
    if os.geteuid() != 0:
        return fn()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        try:
            os.close(r)
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            outcome: tuple[str, object] = ("ok", fn())
        except BaseException as exc:
            outcome = ("error", repr(exc))
        try:
            data = pickle.dumps(outcome)
            while data:
                data = data[os.write(w, data) :]
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        data = f.read()
    os.waitpid(pid, 0)
    status, value = pickle.loads(data)
    assert status == "ok", value
    return value  # type: ignore[no-any-return]


def test_processes_and_debugfs_this_user_may_not_read(shared_tmp: pathlib.Path) -> None:
    proc = held_tree(shared_tmp)
    (proc.root / "101" / "fd").chmod(0o000)  # another user's process
    debugfs = make_debugfs(shared_tmp / "debug", sample("default_bufinfo_held.txt"))
    (shared_tmp / "debug" / "dma_buf" / "bufinfo").chmod(0o000)  # debugfs is root-only
    proc_root, sysfs = str(proc.root), str(shared_tmp / "sys")
    report = as_nobody(lambda: scan(proc_root, sysfs, debugfs))
    assert report.unreadable == (101,)
    assert not report.orphans_certain
    assert [p.pid for p in report.processes] == [100]
    assert report.kernel.source is None
    assert report.kernel.reason.startswith(
        f"{debugfs}/dma_buf/bufinfo is not readable by this user (debugfs is root-only)"
    )


def test_scan_of_the_real_proc_as_an_unprivileged_user() -> None:
    report = as_nobody(scan)
    if os.geteuid() == 0:  # this root pytest process is hidden from nobody
        assert os.getpid() in report.unreadable
    assert report.kernel.source in (None, "sysfs")  # debugfs is root-only


# --- devalloc ps -----------------------------------------------------------------------------


def ps(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    status = cli.main(["ps", *args])
    out, err = capsys.readouterr()
    return status, out, err


def tree_args(root: pathlib.Path, debugfs: str) -> list[str]:
    return ["--proc", str(root / "proc"), "--sysfs", str(root / "sys"), "--debugfs", debugfs]


def test_ps_table_totals_and_orphans(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, debugfs = orphans_tree(tmp_path)
    status, out, err = ps(capsys, *tree_args(tmp_path, debugfs))
    assert (status, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == "dma-bufs held by processes:"
    assert lines[1].split() == ["PID", "COMM", "BUFFERS", "BYTES", "SIZE", "EXPORTERS"]
    assert lines[2].split() == ["100", "capture", "2", "4194304", "4.0", "MiB", "system"]
    assert lines[3] == f"totals per exporter (every dma-buf in {debugfs}/dma_buf/bufinfo):"
    assert lines[5].split() == ["system", "5", "9502720", "9.1", "MiB", "3"]
    assert lines[6].split() == ["total", "5", "9502720", "9.1", "MiB", "3"]
    assert lines[7] == f"orphans (in {debugfs}/dma_buf/bufinfo but held by no process):"
    assert lines[8].split() == ["INODE", "BYTES", "SIZE", "EXPORTER", "COUNT", "ATTACHED", "NAME"]
    assert lines[9].split() == [
        "7",
        "1048576",
        "1.0",
        "MiB",
        "system",
        "3",
        "vgem",
        "held",
        "by",
        "vgem",
    ]
    assert lines[10].split()[-3:] == ["queued", "on", "vivid"]
    assert lines[11].split() == ["9", "65536", "64.0", "KiB", "system", "1", "-", "-"]
    assert lines[12] == f"kernel: 5 dma-bufs, 9502720 bytes (9.1 MiB) in {debugfs}/dma_buf/bufinfo"
    assert len(lines) == 13


def test_ps_json_is_the_report(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    proc = held_tree(tmp_path)
    debugfs = make_debugfs(tmp_path / "debug", sample("default_bufinfo_held.txt"))
    status, out, _ = ps(capsys, "--json", *tree_args(tmp_path, debugfs))
    assert status == 0
    data = json.loads(out)
    assert data == scan(str(proc.root), str(tmp_path / "sys"), debugfs).to_json()
    assert [p["pid"] for p in data["processes"]] == [100, 101]
    assert data["buffers"][0]["holders"] == [100, 101]
    assert data["kernel_list"]["available"] is True


def test_ps_without_the_kernel_list(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    held_tree(tmp_path)
    status, out, _ = ps(capsys, *tree_args(tmp_path, str(tmp_path / "debug")))
    assert status == 0
    assert (
        "totals per exporter (only what processes hold: the kernel's list is not available):" in out
    )
    assert f"orphans: unknown: debugfs is not mounted at {tmp_path}/debug" in out
    assert "  so buffers that no process holds (orphans: kept by a driver" in out


def test_ps_of_one_process(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    held_tree(tmp_path)
    debugfs = make_debugfs(tmp_path / "debug", sample("default_bufinfo_held.txt"))
    args = tree_args(tmp_path, debugfs)
    status, out, _ = ps(capsys, "--pid", "100", *args)
    assert status == 0
    lines = out.splitlines()
    assert lines[0] == "pid 100 (capture): 5 dma-bufs, 1146880 bytes (1.1 MiB)"
    assert lines[1].split() == [
        "INODE",
        "FDS",
        "BYTES",
        "SIZE",
        "EXPORTER",
        "SHARED",
        "WITH",
        "NAME",
    ]
    assert lines[2].split() == [
        "1",
        "3",
        "(mapped)",
        "1048576",
        "1.0",
        "MiB",
        "system",
        "101",
        *NAMED,
    ]
    assert lines[3].split()[-2:] == ["-", '""']  # named "" is not unnamed
    status, out, _ = ps(capsys, "--pid", "102", *args)
    assert (status, out) == (0, "pid 102 (bash) holds no dma-buf\n")
    status, out, _ = ps(capsys, "--pid", "101", "--json", *args)
    data = json.loads(out)
    assert [b["inode"] for b in data["buffers"]] == [1]
    assert data["process"]["comm"] == "capture child"
    assert data["exporters"] == [
        {"exp_name": "system", "buffers": 1, "bytes": 1 << 20, "orphans": 0}
    ]


def test_ps_of_a_process_that_does_not_exist(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    held_tree(tmp_path)
    status, out, err = ps(capsys, "--pid", "4242", *tree_args(tmp_path, "/nonexistent"))
    assert (status, out) == (2, "")
    assert err == f"devalloc: error: no process 4242 (not in {tmp_path}/proc)\n"
    status, _, err = ps(capsys, "--pid", "0")
    assert status == 2
    assert "must be at least 1" in err


def test_ps_on_this_machine(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = ps(capsys)
    assert (status, err) == (0, "")
    assert out.startswith("dma-bufs held by processes")
    status, out, _ = ps(capsys, "--json", "--pid", str(os.getpid()))
    assert status == 0
    assert json.loads(out)["pid"] == os.getpid()
