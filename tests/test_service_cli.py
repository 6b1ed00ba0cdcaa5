"""The service's command lines: ``devalloc service status`` against malformed replies (a fake
service on a temporary AF_UNIX SOCK_SEQPACKET socket, hypothesis-fuzzed reply shapes),
``python -m devalloc.service`` (the CLI's own error handling), and ``devalloc serve``'s argument
checks (one-line errors, exit status 2, nothing left behind)."""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devalloc import cli
from devalloc.commands._common import EXIT_FAILURE, EXIT_OK, EXIT_USAGE
from devalloc.errors import UsageError
from devalloc.service.protocol import VERSION

from ._service_helpers import NOBODY, SERVE, run, wait_for

#: ``python -m devalloc.service``: the service's commands alone.
MODULE = [sys.executable, "-m", "devalloc.service"]
#: Seconds a command that must fail at once may take (a TCG VM imports slowly).
QUICK = 60


# --- a fake service --------------------------------------------------------------------------


#: A status reply that is never sent.
SILENT = object()


class FakeService:
    """A peer that speaks the framing (one JSON object per SEQPACKET packet) and answers
    ``hello`` properly and ``status`` with :attr:`status_reply` (a dict, sent as the ``status``
    field of an ok reply, or raw bytes sent as the whole packet); :data:`SILENT`: no answer.

    Attributes:
        requests: how many requests arrived (any connection).
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.status_reply: object = {}
        self.requests = 0
        self._stop = False
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._listener.bind(path)
        self._listener.listen(8)
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            conn, _ = self._listener.accept()
            if self._stop:
                conn.close()
                return
            with conn:
                conn.settimeout(10)
                with contextlib.suppress(OSError):
                    self._answer(conn)

    def _answer(self, conn: socket.socket) -> None:
        while not self._stop:
            data = conn.recv(65536)
            if not data:
                return
            request = json.loads(data)
            self.requests += 1
            base = {"v": VERSION, "id": request.get("id"), "ok": True}
            if request.get("op") == "hello":
                conn.send(json.dumps({**base, "service": "devalloc", "version": "0"}).encode())
                continue
            reply = self.status_reply
            if reply is SILENT:
                continue  # silent: the client waits
            if isinstance(reply, bytes):
                conn.send(reply)
            else:
                conn.send(json.dumps({**base, "status": reply}).encode())

    def close(self) -> None:
        self._stop = True
        with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as wake:
            wake.connect(self.path)  # the accept() above returns
        self._thread.join(10)
        self._listener.close()


@pytest.fixture
def short_dir() -> Iterator[str]:
    """A fresh directory with a short path (an AF_UNIX path holds at most 107 bytes)."""
    directory = tempfile.mkdtemp(prefix="dvs-")
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def fake(short_dir: str) -> Iterator[FakeService]:
    service = FakeService(os.path.join(short_dir, "fake"))
    try:
        yield service
    finally:
        service.close()


def _status(**overrides: Any) -> dict[str, Any]:
    """A well-formed status (the shape the real service sends), with ``overrides``."""
    by_class = {"cpu-only": 8192}
    status: dict[str, Any] = {
        "pid": 4242,
        "version": "1.0",
        "uptime": 12.5,
        "connections": 1,
        "books": {
            "bytes": 8192,
            "buffers": 2,
            "bytes_by_class": by_class,
            "clients": [
                {
                    "pid": 77,
                    "uid": 1000,
                    "gid": 1000,
                    "groups": [1000],
                    "comm": "camera",
                    "connected": True,
                    "since": 1.0,
                    "requests": 3,
                    "bytes": 8192,
                    "buffers": 2,
                    "collections": ["c1"],
                    "bytes_by_class": by_class,
                    "bytes_by_collection": {"c1": 8192},
                }
            ],
            "collections": {"c1": {"bytes": 8192, "buffers": 2, "bytes_by_class": by_class}},
        },
        "policy": {
            "source": "built-in policy",
            "global": {"max_bytes": 1 << 30, "max_buffers": 4096},
            "default": {},
            "rules": [],
        },
        "heaps": [{"name": "memfd", "kind": "memfd", "accessible": True}],
        "open_collections": [{"id": "c2", "state": "open", "participants": 1, "expected": 2}],
    }
    status.update(overrides)
    return status


def _run_cli(argv: list[str]) -> tuple[int, str, str]:
    """``devalloc ARGV`` in this process: exit status, stdout, stderr (an exception the CLI
    lets through fails the test)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(argv)
    return code, out.getvalue(), err.getvalue()


def _assert_one_line_error(err: str, *fragments: str) -> None:
    assert "Traceback" not in err, err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("devalloc: "), err
    for fragment in fragments:
        assert fragment in lines[0], err


# --- devalloc service status -----------------------------------------------------------------


@pytest.mark.parametrize("as_json", [False, True])
def test_status_of_a_well_formed_reply(fake: FakeService, as_json: bool) -> None:
    fake.status_reply = _status()
    code, out, err = _run_cli(
        ["service", "status", "--socket", fake.path, *(["--json"] if as_json else [])]
    )
    assert (code, err) == (EXIT_OK, "")
    if as_json:
        assert json.loads(out) == fake.status_reply
    else:
        assert "pid 4242" in out
        assert "camera pid 77 uid 1000: 2 buffers, 8.0 KiB" in out
        assert "c2: open, 1 of 2 participants joined" in out


def _without(path: tuple[str | int, ...]) -> dict[str, Any]:
    status = _status()
    node: Any = status
    for key in path[:-1]:
        node = node[key]
    del node[path[-1]]
    return status


def _with(path: tuple[str | int, ...], value: object) -> dict[str, Any]:
    status = _status()
    node: Any = status
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return status


MALFORMED: list[tuple[str, dict[str, Any], str]] = [
    ("books missing", _without(("books",)), "books"),
    ("books a list", _with(("books",), []), "books"),
    ("policy a string", _with(("policy",), "strict"), "policy"),
    ("global cap text", _with(("policy", "global", "max_bytes"), "1G"), "max_bytes"),
    ("global cap missing", _without(("policy", "global")), "global"),
    ("bytes text", _with(("books", "bytes"), "8K"), "books.bytes"),
    ("bytes negative", _with(("books", "bytes"), -1), "books.bytes"),
    ("bytes too large for a float", _with(("books", "bytes"), 10**400), "books.bytes"),
    ("bytes a float", _with(("books", "bytes"), 1.5), "books.bytes"),
    ("bytes a bool", _with(("books", "bytes"), True), "books.bytes"),
    ("by class a list", _with(("books", "bytes_by_class"), [1]), "bytes_by_class"),
    ("by class value null", _with(("books", "bytes_by_class"), {"x": None}), "bytes_by_class"),
    ("clients an int", _with(("books", "clients"), 3), "clients"),
    ("client a string", _with(("books", "clients"), ["camera"]), "clients[0]"),
    ("client bytes missing", _without(("books", "clients", 0, "bytes")), "clients[0]"),
    ("client comm a number", _with(("books", "clients", 0, "comm"), 5), "comm"),
    ("client connected text", _with(("books", "clients", 0, "connected"), "yes"), "connected"),
    ("collections a list", _with(("books", "collections"), []), "collections"),
    ("collection entry null", _with(("books", "collections", "c1"), None), "c1"),
    ("open collections a dict", _with(("open_collections",), {}), "open_collections"),
    ("open collection without id", _without(("open_collections", 0, "id")), "id"),
    ("pid text", _with(("pid",), "4242"), "pid"),
    ("connections null", _with(("connections",), None), "connections"),
]


@pytest.mark.parametrize("as_json", [False, True])
@pytest.mark.parametrize(
    ("status", "field"), [m[1:] for m in MALFORMED], ids=[m[0] for m in MALFORMED]
)
def test_malformed_status_is_a_one_line_error(
    fake: FakeService, status: dict[str, Any], field: str, as_json: bool
) -> None:
    fake.status_reply = status
    code, out, err = _run_cli(
        ["service", "status", "--socket", fake.path, *(["--json"] if as_json else [])]
    )
    assert code == EXIT_FAILURE
    assert out == ""
    _assert_one_line_error(err, "status reply", field, fake.path)


@pytest.mark.parametrize(
    "reply",
    [
        b"\xff not json",
        b"[1, 2]",
        json.dumps({"v": VERSION + 1, "id": 1, "ok": True}).encode(),
        json.dumps({"v": VERSION, "id": 1, "ok": True}).encode(),
        json.dumps({"v": VERSION, "id": 1, "ok": True, "status": [1]}).encode(),
        json.dumps({"v": VERSION, "id": 1, "ok": False, "error": 7}).encode(),
    ],
)
def test_malformed_reply_frames_are_one_line_errors(fake: FakeService, reply: bytes) -> None:
    fake.status_reply = reply
    code, out, err = _run_cli(["service", "status", "--socket", fake.path])
    assert (code, out) == (EXIT_FAILURE, "")
    _assert_one_line_error(err)


def test_status_escapes_control_characters_of_client_names(fake: FakeService) -> None:
    """A client names itself (its comm): the human report must not pass its escape sequences
    or line breaks to the terminal of whoever asks."""
    status = _status()
    status["books"]["clients"][0]["comm"] = "evil\x1b[2J\nfake line"
    fake.status_reply = status
    code, out, err = _run_cli(["service", "status", "--socket", fake.path])
    assert (code, err) == (EXIT_OK, "")
    assert "\x1b" not in out
    assert "\nfake line" not in out
    assert "evil\\x1b[2J\\nfake line pid 77" in out


def test_malformed_status_from_the_command_line_has_no_traceback(fake: FakeService) -> None:
    """The real process, end to end: one line on stderr, exit status 1."""
    fake.status_reply = _with(("books", "clients"), [None])
    proc = subprocess.run(
        [*MODULE, "service", "status", "--socket", fake.path],
        capture_output=True,
        text=True,
        timeout=QUICK,
    )
    assert proc.returncode == EXIT_FAILURE
    assert proc.stdout == ""
    _assert_one_line_error(proc.stderr, "clients[0]")


# --- hypothesis: every field of the status reply, of every type ---------------------------------

#: The reply's shape, declared here independently of the command (the oracle): "count" an
#: integer 0..2**63-1 (not a bool), "text", "flag" (a bool); a dict is an object with those keys
#: (others allowed), ``("list", kind)`` and ``("map", kind)`` (text keys) their containers,
#: ``("optional", kind)`` a key that may be absent.
Shape = Any
BY_CLASS: Shape = ("map", "count")
STATUS_SHAPE: Shape = {
    "pid": "count",
    "version": "text",
    "connections": "count",
    "books": {
        "bytes": "count",
        "buffers": "count",
        "bytes_by_class": BY_CLASS,
        "clients_omitted": ("optional", "count"),
        "clients": (
            "list",
            {
                "comm": "text",
                "pid": "count",
                "uid": "count",
                "buffers": "count",
                "bytes": "count",
                "bytes_by_class": BY_CLASS,
                "connected": "flag",
            },
        ),
        "collections": (
            "map",
            {"buffers": "count", "bytes": "count", "bytes_by_class": BY_CLASS},
        ),
    },
    "policy": {"source": "text", "global": {"max_bytes": "count"}},
    "open_collections": ("list", {"id": "text", "participants": "count", "expected": "count"}),
}

_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
)
_ANY_JSON = st.recursive(
    _SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=6,
)
_NOT: Mapping[str, st.SearchStrategy[object]] = {
    "count": st.one_of(
        st.integers(max_value=-1),
        st.integers(min_value=1 << 63),
        st.booleans(),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=6),
        st.none(),
        st.lists(st.integers(), max_size=2),
        st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    ),
    "text": st.one_of(
        st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.lists(_SCALARS)
    ),
    "flag": st.one_of(st.none(), st.integers(), st.text(max_size=6), st.lists(_SCALARS)),
    "list": st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=6), st.just({})),
    "object": st.one_of(
        st.none(), st.booleans(), st.integers(), st.text(max_size=6), st.lists(_SCALARS)
    ),
}


def _fitting(kind: Shape) -> st.SearchStrategy[object]:
    """Values that fit ``kind`` (extra keys in objects, optional keys present or not)."""
    if kind == "count":
        return st.integers(0, (1 << 63) - 1)
    if kind == "text":
        return st.text(max_size=12)
    if kind == "flag":
        return st.booleans()
    if isinstance(kind, dict):
        required = {k: _fitting(v) for k, v in kind.items() if not _optional(v)}
        optional = {k: _fitting(v[1]) for k, v in kind.items() if _optional(v)}
        extra = st.dictionaries(
            st.text(max_size=6).filter(lambda k: k not in kind), _ANY_JSON, max_size=2
        )
        return st.tuples(extra, st.fixed_dictionaries(required, optional=optional)).map(
            lambda t: {**t[0], **t[1]}
        )
    container, item = kind
    if container == "optional":
        return _fitting(item)
    if container == "list":
        return st.lists(_fitting(item), max_size=3)
    return st.dictionaries(st.text(max_size=6), _fitting(item), max_size=3)


def _paths(kind: Shape, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every place in ``kind`` a reply can go wrong: the value itself and everything inside
    (an element of a list or map stands for all of them)."""
    out = [path]
    if isinstance(kind, dict):
        for key, member in kind.items():
            out += _paths(member, (*path, key))
    elif isinstance(kind, tuple):
        out += _paths(kind[1], path if kind[0] == "optional" else (*path, "*"))
    return out


def _wrong(kind: Shape, path: tuple[str, ...]) -> st.SearchStrategy[object]:
    """Values that do not fit ``kind`` at ``path`` (of another type, or a missing key), all
    else fitting."""
    if _optional(kind):
        return _wrong(kind[1], path)
    if not path:
        if isinstance(kind, str):
            return _NOT[kind]
        if isinstance(kind, dict):
            required = [k for k, v in kind.items() if not _optional(v)]
            missing = st.tuples(_fitting(kind), st.sampled_from(required)).map(lambda t: _drop(*t))
            return st.one_of(_NOT["object"], missing)
        return _NOT["list" if kind[0] == "list" else "object"]
    head, rest = path[0], path[1:]
    if isinstance(kind, dict):
        return st.tuples(_fitting(kind), st.just(head), _wrong(kind[head], rest)).map(
            lambda t: _replace(*t)
        )
    fitting = _fitting(kind[1])
    if kind[0] == "list":
        return st.tuples(
            st.lists(fitting, max_size=2), _wrong(kind[1], rest), st.integers(0, 2)
        ).map(lambda t: [*t[0][: t[2]], t[1], *t[0][t[2] :]])
    return st.tuples(
        st.dictionaries(st.text(max_size=6), fitting, max_size=2),
        st.text(max_size=6),
        _wrong(kind[1], rest),
    ).map(lambda t: {**t[0], t[1]: t[2]})


def _optional(kind: Shape) -> bool:
    return isinstance(kind, tuple) and kind[0] == "optional"


def _drop(value: object, key: str) -> dict[str, object]:
    assert isinstance(value, dict)
    return {k: v for k, v in value.items() if k != key}


def _replace(value: object, key: str, member: object) -> dict[str, object]:
    assert isinstance(value, dict)
    return {**value, key: member}


_FITTING_STATUS = _fitting(STATUS_SHAPE).map(lambda v: (v, True))
#: One branch per place, so that a deep field goes wrong as often as the top.
_WRONG_STATUS = st.one_of(
    *(_wrong(STATUS_SHAPE, p).map(lambda v: (v, False)) for p in _paths(STATUS_SHAPE))
)


@settings(max_examples=150)
@given(
    drawn=st.booleans().flatmap(lambda fits: _FITTING_STATUS if fits else _WRONG_STATUS),
    as_json=st.booleans(),
)
def test_fuzzed_status_replies(
    fake_for_fuzz: FakeService, drawn: tuple[object, bool], as_json: bool
) -> None:
    status, fits = drawn
    fake_for_fuzz.status_reply = status
    code, out, err = _run_cli(
        ["service", "status", "--socket", fake_for_fuzz.path, *(["--json"] if as_json else [])]
    )
    if fits:
        assert (code, err) == (EXIT_OK, ""), err
        if as_json:
            assert json.loads(out) == status
        else:
            assert all(line.isprintable() for line in out.splitlines()), out
    else:
        assert (code, out) == (EXIT_FAILURE, "")
        _assert_one_line_error(err, "status reply")


@pytest.fixture(scope="module")
def fake_for_fuzz() -> Iterator[FakeService]:
    """One fake service for every hypothesis example (a function-scoped fixture would be shared
    between examples anyway)."""
    directory = tempfile.mkdtemp(prefix="dvs-")
    service = FakeService(os.path.join(directory, "fake"))
    try:
        yield service
    finally:
        service.close()
        shutil.rmtree(directory, ignore_errors=True)


# --- python -m devalloc.service: the CLI's own error handling ------------------------------------


def test_module_entry_takes_debug_and_shows_the_traceback(short_dir: str) -> None:
    absent = os.path.join(short_dir, "absent")
    proc = subprocess.run(
        [*MODULE, "--debug", "service", "status", "--socket", absent],
        capture_output=True,
        text=True,
        timeout=QUICK,
    )
    assert proc.returncode == EXIT_FAILURE, proc.stderr
    assert "Traceback" in proc.stderr
    assert proc.stderr.splitlines()[-1].startswith(f"devalloc: no devalloc service at {absent}")


def test_module_entry_interrupted_is_exit_130_without_traceback(fake: FakeService) -> None:
    fake.status_reply = SILENT  # never answers: the command waits until interrupted
    proc = subprocess.Popen(
        [*MODULE, "service", "status", "--socket", fake.path],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(lambda: fake.requests > 0, "the status request", timeout=QUICK)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=QUICK)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert out == ""


def test_module_entry_reader_gone_is_not_an_error(fake: FakeService) -> None:
    """``python -m devalloc.service service status --json | head -c0``: not an error."""
    fake.status_reply = _status()
    r, w = os.pipe()
    os.close(r)  # the reader is gone before anything is written
    try:
        proc = subprocess.run(
            [*MODULE, "service", "status", "--json", "--socket", fake.path],
            stdout=w,
            stderr=subprocess.PIPE,
            text=True,
            timeout=QUICK,
        )
    finally:
        os.close(w)
    assert (proc.returncode, proc.stderr) == (EXIT_OK, "")


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        ([], "serve, service"),
        (["alloc", "64x64"], "alloc"),
        (["--debug"], "serve, service"),
        (["service", "bogus"], "bogus"),
    ],
)
def test_module_entry_runs_only_the_service_commands(argv: list[str], fragment: str) -> None:
    proc = subprocess.run([*MODULE, *argv], capture_output=True, text=True, timeout=QUICK)
    assert (proc.returncode, proc.stdout) == (EXIT_USAGE, "")
    _assert_one_line_error(proc.stderr, fragment)


def test_module_entry_help_names_only_the_service_commands() -> None:
    proc = subprocess.run([*MODULE, "--help"], capture_output=True, text=True, timeout=QUICK)
    assert (proc.returncode, proc.stderr) == (EXIT_OK, "")
    assert "{serve,service}" in proc.stdout
    assert not re.search(r"^\s+(alloc|negotiate|info)\b", proc.stdout, re.MULTILINE), proc.stdout


# --- devalloc serve: argument checks ---------------------------------------------------------


@dataclass
class Refused:
    """What ``devalloc serve`` printed and returned."""

    returncode: int
    stderr: str


def _serve(args: list[str], *, entry: list[str] = SERVE) -> Refused:
    """``devalloc serve --no-discover ARGS``, which must fail at once; a service that starts
    instead is stopped and fails the test."""
    proc = subprocess.Popen(
        [*entry, *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _, err = proc.communicate(timeout=QUICK)
    except subprocess.TimeoutExpired:
        proc.terminate()
        _, err = proc.communicate()
        raise AssertionError(f"devalloc serve {args} did not refuse; it served: {err}") from None
    return Refused(proc.returncode, err)


def _tree(directory: str) -> list[tuple[str, int]]:
    """Every path under ``directory`` with its mode (what a refused start must leave as is)."""
    out = []
    for root, dirs, files in os.walk(directory):
        for name in dirs + files:
            path = os.path.join(root, name)
            out.append((os.path.relpath(path, directory), os.lstat(path).st_mode))
    return sorted(out)


Setup = Callable[[str], list[str]]


def _socket_is_a_directory(d: str) -> list[str]:
    os.mkdir(os.path.join(d, "dir"))
    return ["--socket", os.path.join(d, "dir")]


def _socket_in_a_missing_directory(d: str) -> list[str]:
    return ["--socket", os.path.join(d, "missing", "deeper", "socket")]


def _socket_under_a_file(d: str) -> list[str]:
    with open(os.path.join(d, "file"), "w") as f:
        f.write("x")
    return ["--socket", os.path.join(d, "file", "socket")]


def _socket_too_long(d: str) -> list[str]:
    return ["--socket", os.path.join(d, "s" * 110)]


def _socket_is_a_file(d: str) -> list[str]:
    with open(os.path.join(d, "file"), "w") as f:
        f.write("keep me")
    return ["--socket", os.path.join(d, "file")]


def _socket_is_a_symlink(d: str) -> list[str]:
    os.symlink(os.path.join(d, "nowhere"), os.path.join(d, "link"))
    return ["--socket", os.path.join(d, "link")]


def _socket_empty(d: str) -> list[str]:
    return ["--socket", ""]


def _socket_not_utf8(d: str) -> list[str]:
    return ["--socket", os.path.join(d, os.fsdecode(b"\xff-socket"))]


def _policy_missing(d: str) -> list[str]:
    return ["--socket", os.path.join(d, "socket"), "--policy", os.path.join(d, "absent.toml")]


def _policy_malformed(d: str) -> list[str]:
    with open(os.path.join(d, "policy.toml"), "w") as f:
        f.write("[global\nmax_bytes = 1\n")
    return ["--socket", os.path.join(d, "socket"), "--policy", os.path.join(d, "policy.toml")]


def _policy_bad_value(d: str) -> list[str]:
    with open(os.path.join(d, "policy.toml"), "w") as f:
        f.write('[global]\nmax_bytes = "lots"\n')
    return ["--socket", os.path.join(d, "socket"), "--policy", os.path.join(d, "policy.toml")]


def _policy_directory(d: str) -> list[str]:
    os.mkdir(os.path.join(d, "policy.d"))
    return ["--socket", os.path.join(d, "socket"), "--policy", os.path.join(d, "policy.d")]


def _policy_empty(d: str) -> list[str]:
    return ["--socket", os.path.join(d, "socket"), "--policy", ""]


BAD_ARGUMENTS: list[tuple[str, Setup, str]] = [
    ("socket is a directory", _socket_is_a_directory, "not a socket"),
    ("socket in a missing directory", _socket_in_a_missing_directory, "does not exist"),
    ("socket under a file", _socket_under_a_file, "not a directory"),
    ("socket path too long", _socket_too_long, "107 bytes"),
    ("socket is a file", _socket_is_a_file, "not a socket"),
    ("socket is a dangling symlink", _socket_is_a_symlink, "not a socket"),
    ("socket empty", _socket_empty, "--socket"),
    ("socket not UTF-8", _socket_not_utf8, "UTF-8"),
    ("policy missing", _policy_missing, "absent.toml"),
    ("policy malformed TOML", _policy_malformed, "invalid TOML"),
    ("policy bad value", _policy_bad_value, "max_bytes"),
    ("policy a directory", _policy_directory, "directory"),
    ("policy empty", _policy_empty, "policy"),
]


@pytest.mark.parametrize(
    ("setup", "fragment"), [b[1:] for b in BAD_ARGUMENTS], ids=[b[0] for b in BAD_ARGUMENTS]
)
def test_serve_refuses_bad_arguments(short_dir: str, setup: Setup, fragment: str) -> None:
    args = setup(short_dir)
    before = _tree(short_dir)
    refused = _serve(args)
    assert refused.returncode == EXIT_USAGE, refused.stderr
    assert "error: " in refused.stderr
    _assert_one_line_error(refused.stderr, fragment)
    assert _tree(short_dir) == before  # nothing made, nothing removed
    if os.path.exists(os.path.join(short_dir, "file")):
        with open(os.path.join(short_dir, "file")) as f:
            assert f.read() in ("x", "keep me")


def test_serve_refuses_a_socket_where_a_service_listens(short_dir: str) -> None:
    path = os.path.join(short_dir, "socket")
    with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as live:
        live.bind(path)
        live.listen(4)
        refused = _serve(["--socket", path])
        assert refused.returncode == EXIT_USAGE
        _assert_one_line_error(refused.stderr, "already listens", path)
        with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as probe:
            probe.connect(path)  # the other service's socket is still there and answers


def test_serve_refuses_a_directory_it_may_not_write(short_dir: str) -> None:
    """Permission denied names the path and is the caller's to fix (exit 2), not an errno
    without a path. Root writes anywhere: then the command runs in a forked child that dropped
    to nobody (a new interpreter as nobody may not reach the virtual environment's Python)."""
    locked = os.path.join(short_dir, "locked")
    os.mkdir(locked, 0o555)
    os.chmod(short_dir, 0o755)
    path = os.path.join(locked, "socket")
    args = cli.build_parser().parse_args(["serve", "--no-discover", "--socket", path])

    # The builtin policy reads /proc/meminfo as ASCII; the codec is imported on first use, and
    # nobody may not read the interpreter's library (a pyenv Python under /root): import it here.
    importlib.import_module("encodings.ascii")

    def serve() -> object:
        try:
            return args.func(args)
        except UsageError as exc:  # what cli.main prints as one line, exit status 2
            return f"UsageError: {exc}"

    result = run(serve, uid=NOBODY if os.geteuid() == 0 else None)
    message = result.get("ok")
    assert isinstance(message, str), result
    assert message.startswith("UsageError: "), message
    assert path in message
    assert "ermission denied" in message
    assert os.listdir(locked) == []


def test_module_entry_serve_refuses_like_the_cli(short_dir: str) -> None:
    refused = _serve(
        ["serve", "--no-discover", *_socket_in_a_missing_directory(short_dir)], entry=MODULE
    )
    assert refused.returncode == EXIT_USAGE
    _assert_one_line_error(refused.stderr, "does not exist")
    assert os.listdir(short_dir) == []
