"""Buffer extras on the host: importing fds (and refusing what is not a dma-buf), protected and
read-only buffers, close hooks, attached layouts and numpy plane views (numpy optional)."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import gc
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devalloc import ClosedResourceError, UsageError
from devalloc.buffer import Buffer
from devalloc.errors import BadFileDescriptorError
from devalloc.formats import LayoutRules, layout
from devalloc.heaps.memfd import MemfdHeap
from devalloc.heaps.udmabuf import Memfd
from devalloc.pool import BufferPool

from .conftest import assert_fd_closed, open_fds
from .test_api_typed_errors import WRONG, _bounded, _call_must_be_typed

PAGE = os.sysconf("SC_PAGE_SIZE")


@pytest.fixture(autouse=True)
def _leak_check(no_fd_leak: None) -> None:
    """Every test here fails if it leaves an fd open."""


@pytest.fixture
def pipe() -> Iterator[tuple[int, int]]:
    r, w = os.pipe()
    yield r, w
    os.close(r)
    os.close(w)


def memfd_buffer(size: int = PAGE, *, protected: bool = False, cpu_mappable: bool = True) -> Buffer:
    fd = Memfd(size).detach()
    return Buffer(
        fd, exporter="memfd", dmabuf=False, protected=protected, cpu_mappable=cpu_mappable
    )


# -- from_fd ---------------------------------------------------------------------------------


def test_from_fd_refuses_a_pipe(pipe: tuple[int, int]) -> None:
    before = open_fds()
    with pytest.raises(UsageError, match=r"fd \d+ \(pipe:\[\d+\]\) is not a dma-buf"):
        Buffer.from_fd(pipe[0])
    assert open_fds() == before


def test_from_fd_refuses_a_regular_file_and_a_memfd() -> None:
    before = open_fds()
    with open(sys.executable, "rb") as f, pytest.raises(UsageError, match="not a dma-buf"):
        Buffer.from_fd(f)  # an object with fileno() is borrowed, not taken
    with Memfd(PAGE) as mfd, pytest.raises(UsageError, match=r"/memfd:devalloc"):
        Buffer.from_fd(mfd)
    assert open_fds() == before


def test_from_fd_on_a_closed_fd() -> None:
    r, w = os.pipe()
    os.close(r)
    os.close(w)
    before = open_fds()
    with pytest.raises(BadFileDescriptorError) as info:
        Buffer.from_fd(r)
    assert info.value.errno == errno.EBADF
    assert open_fds() == before


@pytest.mark.parametrize("bad", [True, -1, "3", None, 3.0])
def test_from_fd_refuses_what_is_not_an_fd(bad: object) -> None:
    with pytest.raises(UsageError, match="from_fd"):
        Buffer.from_fd(bad)  # type: ignore[arg-type]


def test_exported_fds_are_close_on_exec() -> None:
    with MemfdHeap().allocate(PAGE) as buf, buf.export() as exported:
        assert fcntl.fcntl(exported.fileno(), fcntl.F_GETFD) & fcntl.FD_CLOEXEC
        assert fcntl.fcntl(buf.fileno(), fcntl.F_GETFD) & fcntl.FD_CLOEXEC


# -- protected and read-only buffers -----------------------------------------------------------


def test_a_protected_buffer_refuses_cpu_access() -> None:
    buf = memfd_buffer(protected=True)
    fd = buf.fileno()
    assert buf.protected
    assert not buf.cpu_mappable
    for mode in ("r", "w", "rw"):
        with (
            pytest.raises(UsageError, match="is protected memory: cpu_access is refused"),
            buf.cpu_access(mode),
        ):
            pass
    assert buf._map is None  # nothing was mapped
    with buf.export() as exported:  # it can still be handed on
        assert os.fstat(exported.fileno()).st_ino == os.fstat(fd).st_ino
    buf.close()
    assert_fd_closed(fd)


def test_an_unmappable_buffer_refuses_cpu_access() -> None:
    with (
        memfd_buffer(cpu_mappable=False) as buf,
        pytest.raises(UsageError, match="memory the CPU cannot map"),
        buf.cpu_access("r"),
    ):
        pass


def test_a_read_only_fd_gives_read_only_views() -> None:
    with Memfd(PAGE) as mfd:
        os.pwrite(mfd.fileno(), b"data", 0)
        ro = os.open(f"/proc/self/fd/{mfd.fileno()}", os.O_RDONLY | os.O_CLOEXEC)
        with Buffer(ro, exporter="memfd", dmabuf=False) as buf:
            with buf.cpu_access("r") as view:
                assert view.readonly
                assert bytes(view[:4]) == b"data"
                with pytest.raises(TypeError):
                    view[0] = 0
            for mode in ("w", "rw"):
                with (
                    pytest.raises(UsageError, match="read-only"),
                    buf.cpu_access(mode),
                ):
                    pass
            with buf.cpu_access("r") as view:
                assert bytes(view[:4]) == b"data"  # unchanged


def test_a_closed_buffer_refuses_everything() -> None:
    buf = MemfdHeap().allocate(PAGE)
    buf.close()
    calls: list[Callable[[], object]] = [
        lambda: buf.cpu_access("r").__enter__(),
        buf.export,
        buf.info,
        lambda: buf.add_close_hook(lambda size: None),
    ]
    for call in calls:
        with pytest.raises(ClosedResourceError, match="buffer from memfd is closed"):
            call()


# -- close hooks -------------------------------------------------------------------------------


def test_close_hooks_run_once_in_order() -> None:
    calls: list[tuple[str, int]] = []
    buf = MemfdHeap().allocate(3 * PAGE)
    buf.add_close_hook(lambda size: calls.append(("first", size)))
    buf.add_close_hook(lambda size: calls.append(("second", size)))
    assert calls == []
    buf.close()
    buf.close()
    assert calls == [("first", 3 * PAGE), ("second", 3 * PAGE)]


def test_a_forgotten_buffer_runs_its_hooks() -> None:
    calls: list[int] = []
    buf: Buffer | None = MemfdHeap().allocate(PAGE)
    assert buf is not None
    buf.add_close_hook(calls.append)
    fd = buf.fileno()
    with pytest.warns(ResourceWarning, match="unclosed buffer from memfd"):
        del buf
    gc.collect()
    assert calls == [PAGE]
    assert_fd_closed(fd)


def test_buffer_rejects_a_non_fd_and_closes_an_fd_it_cannot_inspect() -> None:
    with pytest.raises(ValueError, match="not a file descriptor"):
        Buffer(-1, exporter="nothing")
    r, w = os.pipe()
    os.close(w)
    # A pipe cannot seek: the buffer refuses it and closes the fd it was given.
    with pytest.raises(OSError, match="cannot inspect buffer from pipe"):
        Buffer(r, exporter="pipe")
    assert_fd_closed(r)


# -- layouts -----------------------------------------------------------------------------------


NV12 = layout("NV12", 64, 48, rules=LayoutRules(pitch_align=128))


def test_layout_is_none_by_default_and_can_be_attached() -> None:
    with MemfdHeap().allocate(NV12.size or 0) as buf:
        assert buf.layout is None
        buf.layout = NV12
        assert buf.layout is NV12
        buf.layout = None
        assert buf.layout is None
    with memfd_buffer(2 * PAGE) as buf:
        with pytest.raises(UsageError, match=r"plane 1 of the NV12 layout ends at \d+"):
            buf.attach_layout(layout("NV12", 64, 96))  # 6144 + 3072 bytes
        with pytest.raises(UsageError, match="must be a devalloc Layout"):
            buf.attach_layout("NV12")  # type: ignore[arg-type]
        with pytest.raises(UsageError, match="no buffer 1"):
            buf.attach_layout(NV12, buffer=1)
        assert buf.layout is None


def test_layout_passed_at_creation() -> None:
    size = NV12.size or 0
    with Buffer(Memfd(size).detach(), exporter="memfd", dmabuf=False, layout=NV12) as buf:
        assert buf.layout is NV12
    fd = Memfd(PAGE).detach()
    with pytest.raises(UsageError, match="past the buffer's"):
        Buffer(fd, exporter="memfd", dmabuf=False, layout=NV12)
    assert_fd_closed(fd)  # the buffer took the fd, and closed it when it could not be made


def test_planes_of_a_layout_with_numpy() -> None:
    np = pytest.importorskip("numpy")
    size = NV12.size or 0
    with MemfdHeap().allocate(size) as buf:
        buf.attach_layout(NV12)
        with buf.cpu_access("w") as view:
            y, uv = buf.planes(view)
            assert y.shape == (48, 128)
            assert uv.shape == (24, 128)
            assert y.dtype == np.uint8
            y[:, :64] = 0x10
            uv[3, 5] = 0x80
            del y, uv
        with buf.cpu_access("r") as view:
            assert bytes(view[:64]) == b"\x10" * 64
            assert view[64] == 0  # the padding after the row
            offset = NV12.planes[1].offset + 3 * 128 + 5
            assert view[offset] == 0x80
            y, uv = buf.planes(view)
            assert not y.flags.writeable
            with pytest.raises(ValueError, match="read-only"):
                y[0, 0] = 1
            assert int(uv[3, 5]) == 0x80
            del y, uv


def test_planes_of_one_buffer_of_a_multi_buffer_layout() -> None:
    np = pytest.importorskip("numpy")
    multi = layout("NV12", 64, 48, rules=LayoutRules(multi_buffer=True))
    with MemfdHeap().allocate(multi.buffer_sizes[1]) as chroma:
        chroma.attach_layout(multi, buffer=1)
        with chroma.cpu_access("rw") as view:
            [uv] = chroma.planes(view)
            assert uv.shape == (24, 64)
            uv[:] = np.uint8(7)
            del uv
            assert bytes(view[: 24 * 64]) == b"\x07" * 24 * 64


def test_planes_refuses_what_it_cannot_show() -> None:
    pytest.importorskip("numpy")
    with MemfdHeap().allocate(NV12.size or 0) as buf, MemfdHeap().allocate(PAGE) as other:
        with buf.cpu_access("r") as view, pytest.raises(UsageError, match="has no layout"):
            buf.planes(view)
        buf.attach_layout(NV12)
        with (
            other.cpu_access("r") as foreign,
            pytest.raises(UsageError, match="needs a view from cpu_access of"),
        ):
            buf.planes(foreign)
        with buf.cpu_access("r") as view:
            kept = view
        with pytest.raises(UsageError, match="open cpu_access block"):
            buf.planes(kept)
        opaque = layout("NV12", 64, 48, "NVIDIA_16BX2_BLOCK(0)")
        assert opaque.opaque
        with buf.cpu_access("r") as view:
            buf.layout = opaque
            with pytest.raises(UsageError, match="opaque"):
                buf.planes(view)


def test_a_plane_array_kept_past_the_access_does_not_stop_close() -> None:
    pytest.importorskip("numpy")
    buf = MemfdHeap().allocate(NV12.size or 0)
    buf.attach_layout(NV12)
    fd = buf.fileno()
    with buf.cpu_access("w") as view:
        y, _ = buf.planes(view)
    y[0, 0] = 9  # still mapped: memory-safe, just outside the bracket
    with pytest.raises(UsageError, match="outlived its cpu_access block"):
        buf.close()  # closed all the same, and said so
    assert buf.closed
    assert_fd_closed(fd)
    assert y[0, 0] == 9
    del y
    gc.collect()


def test_planes_without_numpy_is_a_usage_error() -> None:
    code = (
        "import sys; sys.modules['numpy'] = None\n"
        "from devalloc.heaps.memfd import MemfdHeap\n"
        "from devalloc.formats import layout\n"
        "from devalloc.errors import UsageError\n"
        "lay = layout('NV12', 64, 48)\n"
        "with MemfdHeap().allocate(lay.size) as buf:\n"
        "    buf.attach_layout(lay)\n"
        "    with buf.cpu_access('r') as view:\n"
        "        try:\n"
        "            buf.planes(view)\n"
        "        except UsageError as exc:\n"
        "            print(exc)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "Buffer.planes needs numpy (pip install numpy)"


# -- wrong arguments (issue 12, defect 3) ---------------------------------------------------

SMALL = layout("R8", 16, 16)
SIZES = {"size", "count", "max_count"}


def _on_a_fresh_buffer(method: str) -> Callable[..., object]:
    """Call ``method`` of a new memfd buffer (closed afterwards), entering what it returns if
    it is a context manager (cpu_access), so the whole call path sees the arguments."""

    def call(**kwargs: Any) -> object:
        with MemfdHeap().allocate(PAGE) as buf:
            result = getattr(buf, method)(**kwargs)
            if isinstance(result, contextlib.AbstractContextManager):
                with result:
                    pass
            return None

    return call


def _acquire(**kwargs: Any) -> object:
    with BufferPool(MemfdHeap(), PAGE, 1, name="fuzz") as pool:
        with pool.acquire(**kwargs) as lent, lent.cpu_access("w") as view:
            view[0] = 1
        return pool.stats()


BUFFER_TARGETS: dict[str, tuple[Callable[..., object], dict[str, object]]] = {
    "Buffer.from_fd": (Buffer.from_fd, {"fd": 0, "protected": False, "layout": None}),
    "cpu_access": (_on_a_fresh_buffer("cpu_access"), {"mode": "rw"}),
    "set_name": (_on_a_fresh_buffer("set_name"), {"name": "frames"}),
    "attach_layout": (_on_a_fresh_buffer("attach_layout"), {"layout": SMALL, "buffer": 0}),
    "add_close_hook": (_on_a_fresh_buffer("add_close_hook"), {"hook": print}),
    "BufferPool": (
        BufferPool,
        {
            "heap": MemfdHeap(),
            "size": PAGE,
            "count": 1,
            "grow": True,
            "max_count": 2,
            "zero_on_reuse": "always",
            "name": "fuzz",
        },
    ),
    "BufferPool.from_plan": (
        BufferPool.from_plan,
        {"plan": SimpleNamespace(layout=SMALL), "heap": MemfdHeap(), "count": 1},
    ),
    "acquire": (_acquire, {"timeout": 0, "owner": "a"}),
}


@settings(max_examples=400, deadline=None)
@given(data=st.data())
def test_wrong_arguments_to_buffers_and_pools_raise_typed_errors(data: st.DataObject) -> None:
    name = data.draw(st.sampled_from(sorted(BUFFER_TARGETS)), label="target")
    func, valid = BUFFER_TARGETS[name]
    # Each argument keeps its valid value or gets a wrong one (sizes and counts stay small).
    kwargs = data.draw(
        st.fixed_dictionaries(
            {
                key: st.one_of(st.just(value), WRONG.map(_bounded) if key in SIZES else WRONG)
                for key, value in valid.items()
            }
        ),
        label="arguments",
    )
    _call_must_be_typed(name, func, kwargs)
