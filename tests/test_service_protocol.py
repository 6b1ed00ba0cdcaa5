"""The service protocol: message shapes, validation before action, framing with fds."""

from __future__ import annotations

import array
import contextlib
import errno
import json
import os
import socket
import threading
from collections.abc import Iterator

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from devalloc.constraints import Constraints
from devalloc.devices.verify import Verdict
from devalloc.errors import DevallocError, OutOfMemoryError, UsageError
from devalloc.formats import fourcc_code
from devalloc.heaps.properties import HeapProperties
from devalloc.negotiate import NegotiationError
from devalloc.negotiate.records import Conflict
from devalloc.service.client import ServiceClient, _ReceivedBuffers
from devalloc.service.protocol import (
    ALLOCATE_HEAD,
    MAX_FDS,
    MAX_MESSAGE,
    REQUESTS,
    VERSION,
    PolicyError,
    ProtocolError,
    QuotaError,
    ReplyDecoder,
    RequestDecoder,
    decode,
    decode_request,
    encode,
    encode_ok,
    error_from_reply,
    error_reply,
    json_text,
    recv_message,
    send_message,
)
from devalloc.service.server import listen

from .conftest import assert_fd_closed


def _packet(**fields: object) -> bytes:
    return json.dumps({"v": VERSION, **fields}).encode()


def test_allocate_defaults_filled_in() -> None:
    request = decode_request(_packet(op="allocate", id=3, width=64, height=32, usages=["x:y"]))
    assert request == {
        "op": "allocate",
        "id": 3,
        "width": 64,
        "height": 32,
        "formats": None,
        "usages": ["x:y"],
        "count": 1,
        "cpu_access": "none",
        "prefer_uncached": False,
        "verify": False,
        "frames": 1,
        "allow_cpu_only": False,
        "name": None,
    }


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ({"op": "allocate", "width": True, "height": 1, "usages": ["a"]}, "allocate.width"),
        ({"op": "allocate", "width": 0, "height": 1, "usages": ["a"]}, "allocate.width"),
        ({"op": "allocate", "width": 1, "height": 2**40, "usages": ["a"]}, "allocate.height"),
        ({"op": "allocate", "width": 1, "height": 1, "usages": [5]}, "a usage is"),
        ({"op": "allocate", "width": 1, "height": 1, "usages": [{"c": 1}]}, "a usage is"),
        ({"op": "allocate", "width": 1, "height": 1}, "missing field 'usages'"),
        ({"op": "allocate", "width": 1, "height": 1, "usages": ["a"], "count": 65}, "count"),
        ({"op": "allocate", "width": 1, "height": 1, "usages": ["a"], "cpu_access": "x"}, "one of"),
        ({"op": "allocate", "width": 1, "height": 1, "usages": ["a"], "verify": 1}, "true or"),
        ({"op": "allocate", "width": 1, "height": 1, "usages": ["a"], "name": "a\0b"}, "name"),
        ({"op": "allocate", "width": 1, "height": 1, "usages": ["a"], "extra": 1}, "unknown field"),
        ({"op": "release", "buffers": [-1]}, "non-negative"),
        ({"op": "release", "buffers": list(range(100))}, "at most 64"),
        ({"op": "join", "token": "x" * 65, "usages": ["a"]}, "join.token"),
        ({"op": "explode"}, "unknown request"),
        ({"op": 7}, "unknown request"),
    ],
)
def test_malformed_requests_are_protocol_errors(fields: dict[str, object], match: str) -> None:
    with pytest.raises(ProtocolError, match=match):
        decode_request(_packet(**fields))


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"\xff\xfe", "not UTF-8 JSON"),
        (b"[1, 2]", "JSON object"),
        (b'{"v": 1, "op": "status", "id": NaN}', "not UTF-8 JSON"),
        (b"[" * 100_000, "larger than|not UTF-8 JSON"),
        (b"[" * 60_000 + b"]" * 60_000, "larger than|not UTF-8 JSON"),
        (b'{"v": 2, "op": "status"}', "version 2"),
        (b'{"v": true, "op": "status"}', "version True"),
        (b'{"op": "status"}', "version None"),
    ],
)
def test_undecodable_packets(data: bytes, match: str) -> None:
    with pytest.raises(ProtocolError, match=match):
        decode_request(data)


def test_deep_nesting_is_refused_not_a_crash() -> None:
    data = b'{"v": 1, "op": "status", "id": ' + b"[" * 30_000 + b"]" * 30_000 + b"}"
    with pytest.raises(ProtocolError):
        decode_request(data)


def test_every_request_field_is_declared_once() -> None:
    for op, request in REQUESTS.items():
        names = [f.name for f in request.fields]
        assert len(names) == len(set(names)), op
        assert op == request.op


def test_encode_refuses_an_oversized_message() -> None:
    with pytest.raises(ProtocolError, match="larger than"):
        encode({"op": "status", "pad": "x" * MAX_MESSAGE})


@given(st.binary(max_size=512))
@settings(max_examples=300, deadline=None)
def test_random_bytes_only_ever_raise_protocol_error(data: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        decode_request(data)


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c),
    max_leaves=20,
)


@given(st.sampled_from(sorted(REQUESTS)), st.dictionaries(st.text(max_size=12), _JSON, max_size=6))
@settings(max_examples=400, deadline=None)
def test_random_fields_are_refused_or_fully_typed(op: str, fields: dict[str, object]) -> None:
    try:
        request = decode_request(_packet(**{**fields, "op": op, "v": VERSION}))
    except ProtocolError:
        return
    for f in REQUESTS[op].fields:
        value = request[f.name]
        if value is None:
            continue
        if f.kind == "int":
            assert type(value) is int
            assert f.minimum <= value <= f.maximum
        elif f.kind == "bool":
            assert type(value) is bool


_ALLOCATE = st.fixed_dictionaries(
    {
        "width": st.integers(-2, 70000),
        "height": st.integers(1, 64),
        "usages": st.lists(st.text(max_size=6) | st.integers(), max_size=3),
    },
    optional={
        "count": st.integers(-1, 70) | st.booleans(),
        "cpu_access": st.sampled_from(["none", "r", "rw", "x"]),
        "verify": st.booleans() | st.none(),
        "name": st.text(max_size=40),
        "formats": st.lists(st.text(max_size=5), max_size=3),
        "id": st.integers(0, 9),
        "op": st.sampled_from(["allocate", "release"]),
        "v": st.integers(0, 2),
    },
)
_IDS = st.sampled_from([b"0", b"7", b"123", b"007", b"-1", b"1e3", b"9007199254740993", b" 5"])


def _decoded(decoder: RequestDecoder, data: bytes) -> object:
    try:
        return decoder.decode(data)[0]
    except ProtocolError:
        return "refused"


def _plain(data: bytes) -> object:
    try:
        return decode_request(data)
    except ProtocolError:
        return "refused"


@given(_ALLOCATE, st.lists(_IDS, min_size=1, max_size=4))
@settings(max_examples=400)
def test_the_remembering_decoder_reads_exactly_as_decode_request(
    fields: dict[str, object], ids: list[bytes]
) -> None:
    """RequestDecoder answers every packet as decode_request does, whether or not it kept the
    request's tail before: the same packet bodies behind different ids (valid, leading zeros,
    negative, too large, not a number), tails holding head keys, malformed fields."""
    decoder = RequestDecoder(size=4)
    tail = json.dumps(fields, separators=(",", ":")).encode()[1:]
    for request_id in ids:
        data = ALLOCATE_HEAD + request_id + (b"," + tail if tail != b"}" else b"}")
        assert _decoded(decoder, data) == _plain(data), data


def test_the_remembering_decoder_keeps_a_checked_tail_and_reads_releases() -> None:
    decoder = RequestDecoder()
    body = b',"width":64,"height":32,"usages":["x:y"]}'
    first, key = decoder.decode(ALLOCATE_HEAD + b"1" + body)
    again, key_again = decoder.decode(ALLOCATE_HEAD + b"2" + body)
    assert key == key_again == body
    assert again == {**first, "id": 2}
    release, none = decoder.decode(b'{"v":%d,"op":"release","buffers":[42]}' % VERSION)
    assert none is None
    assert release == decode_request(b'{"v":%d,"op":"release","buffers":[42]}' % VERSION)
    with pytest.raises(ProtocolError):
        decoder.decode(b'{"v":%d,"op":"release","buffers":[042]}' % VERSION)
    # a tail that names a head key is never kept
    assert decoder.decode(ALLOCATE_HEAD + b"4" + body[:-1] + b',"id":4}')[1] is None


_MEMBERS = st.dictionaries(
    st.sampled_from(["plan_slot", "heap", "notes", "name", "buffers", "plan", 'x"y', "é"]),
    _JSON,
    max_size=5,
)


def _reply_outcome(decoder: ReplyDecoder | None, data: bytes) -> object:
    try:
        return decode(data) if decoder is None else decoder.decode(data)
    except ProtocolError:
        return "refused"


@given(
    _MEMBERS,
    st.lists(_JSON, max_size=3),
    st.integers(0, 2**53),
    st.lists(st.tuples(st.integers(0, 400), st.binary(max_size=3)), max_size=2),
)
@settings(max_examples=400)
def test_the_reply_decoder_reads_exactly_as_decode(
    members: dict[str, object],
    buffers: list[object],
    request_id: int,
    edits: list[tuple[int, bytes]],
) -> None:
    """ReplyDecoder, which reads an allocate reply's repeated members once and its buffer
    list each time, answers every packet as decode does: replies in the service's form (members
    that hold quotes, "buffers" keys, non-ASCII), and the same packets with bytes cut or
    inserted anywhere, read twice (kept members and fresh ones)."""
    try:
        fields = b'"allocation":{%s,"buffers":%s}' % (
            json_text({"plan_slot": 1, **members})[1:-1],
            json_text(buffers),
        )
    except ValueError:  # an infinite float: not JSON
        assume(False)
    data = encode_ok(request_id, fields)
    for at, insert in edits:
        data = data[:at] + insert + data[at + len(insert) :]
    decoder = ReplyDecoder(size=2)
    for _ in range(2):
        assert _reply_outcome(decoder, data) == _reply_outcome(None, data), data


def test_the_reply_decoder_keeps_what_repeats() -> None:
    """Two allocate replies of one kind: the second reuses the members parsed for the first
    (the same heap object) and reads its own id and buffers."""
    decoder = ReplyDecoder()
    members = b'"plan_slot":3,"heap":{"kind":"dma-heap","name":"system"},"notes":[],"name":null'
    got = []
    for request_id, buffer_id in ((7, 100), (12345678, 101)):
        fields = b'"allocation":{%s,"buffers":[{"id":%d,"size":4096}]}' % (members, buffer_id)
        got.append(decoder.decode(encode_ok(request_id, fields)))
    assert got[0]["allocation"]["heap"] is got[1]["allocation"]["heap"]
    assert got[1]["id"] == 12345678
    assert got[1]["allocation"]["buffers"] == [{"id": 101, "size": 4096}]
    assert got[1] == decode(encode_ok(12345678, fields))


# --- framing with fds ------------------------------------------------------------------------


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with a, b:
        yield a, b


def _send_raw(sock: socket.socket, data: bytes, fds: list[int]) -> None:
    anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))] if fds else []
    sock.sendmsg([data], anc)


def _received_numbers(before: set[int]) -> set[int]:
    return {int(n) for n in os.listdir("/proc/self/fd")} - before


def test_message_and_fds_round_trip(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    r, w = os.pipe()
    try:
        send_message(a, {"op": "status", "id": 1}, [r])
        got = recv_message(b)
        assert got is not None
        assert json.loads(got.data)["op"] == "status"
        assert len(got.fds) == 1
        assert os.fstat(got.fds[0]).st_ino == os.fstat(r).st_ino
        fd = got.fds[0]
        got.close_fds()
        assert_fd_closed(fd)
    finally:
        os.close(r)
        os.close(w)


@pytest.mark.parametrize(
    ("count", "max_fds", "match"),
    [(3, 0, "3 file descriptors"), (MAX_FDS + 20, MAX_FDS, "truncated")],
)
def test_refused_fds_are_closed(
    pair: tuple[socket.socket, socket.socket], count: int, max_fds: int, match: str
) -> None:
    """Unexpected fds, and too many (MSG_CTRUNC): refused, and every received fd closed."""
    a, b = pair
    r, w = os.pipe()
    try:
        before = {int(n) for n in os.listdir("/proc/self/fd")}
        _send_raw(a, encode({"op": "status"}), [r, w] * (count // 2) + [r] * (count % 2))
        with pytest.raises(ProtocolError, match=match):
            recv_message(b, max_fds=max_fds)
        assert _received_numbers(before) == set()
    finally:
        os.close(r)
        os.close(w)


def test_oversized_packet_is_truncation(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
    _send_raw(a, b"x" * (MAX_MESSAGE + 4096), [])
    with pytest.raises(ProtocolError, match="larger than"):
        recv_message(b)


def test_end_of_stream_is_none(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    a.close()
    assert recv_message(b) is None


# --- errors on the wire ------------------------------------------------------------------------


def test_quota_error_keeps_its_rule() -> None:
    reply = error_reply(4, QuotaError("too much", "rule 'x': max_bytes = 1"))
    assert reply["id"] == 4
    assert reply["ok"] is False
    exc = error_from_reply(json.loads(json.dumps(reply))["error"])
    assert type(exc) is QuotaError
    assert exc.rule == "rule 'x': max_bytes = 1"
    assert "too much" in str(exc)
    policy = error_from_reply(error_reply(1, PolicyError("no", "r"))["error"])
    assert type(policy) is PolicyError
    assert policy.rule == "r"


def test_negotiation_error_keeps_its_conflicts() -> None:
    conflict = Conflict("format", ("a:x", "b:y"), ("NV12", "XR24"), "no common format")
    exc = error_from_reply(error_reply(1, NegotiationError("no plan", [conflict]))["error"])
    assert isinstance(exc, NegotiationError)
    assert exc.conflicts == (conflict,)


def test_kernel_error_keeps_errno_and_usage_stays_usage() -> None:
    from devalloc.errors import error_from_errno

    exc = error_from_reply(error_reply(1, error_from_errno(errno.ENOMEM, "oom"))["error"])
    assert isinstance(exc, OutOfMemoryError)
    assert exc.errno == errno.ENOMEM
    assert type(error_from_reply(error_reply(1, UsageError("bad"))["error"])) is UsageError


@pytest.mark.parametrize("error", [None, 5, {"kind": 1}, {"kind": "quota"}, {"message": "x"}])
def test_malformed_error_replies(error: object) -> None:
    exc = error_from_reply(error)
    assert isinstance(exc, ProtocolError)
    assert isinstance(exc, DevallocError)


def test_a_received_fd_said_to_be_a_dmabuf_is_checked_and_closed_when_not() -> None:
    """The client checks a dma-buf it receives as Buffer.from_fd would (its fdinfo names an
    exporter), on the received fd itself; one that is not a dma-buf is refused and closed."""
    r, w = os.pipe()
    try:
        with pytest.raises(ProtocolError, match="not a dma-buf"):
            _ReceivedBuffers().buffer(
                r, {"dmabuf": True, "size": 4096}, HeapProperties("dma-heap", "system")
            )
        assert_fd_closed(r)
    finally:
        os.close(w)


@pytest.mark.parametrize("learned", ["other device", "this device"])
def test_a_later_buffer_of_a_known_heap_is_still_checked(learned: str) -> None:
    """Once a heap's first dma-buf taught the dma-buf file system's device, a later fd of
    that heap is checked by fstat: an fd on another file system (or one of size 0, as a pipe
    is) goes through fdinfo again and is refused and closed."""
    received = _ReceivedBuffers()
    r, w = os.pipe()
    received.exporters["system"] = "system"
    received.dev = os.fstat(r).st_dev + (1 if learned == "other device" else 0)
    try:
        with pytest.raises(ProtocolError, match="not a dma-buf"):
            received.buffer(r, {"dmabuf": True, "size": 4096}, HeapProperties("dma-heap", "system"))
        assert_fd_closed(r)
    finally:
        os.close(w)


def test_verdicts_cross_the_wire_as_verdicts() -> None:
    """What the service sends for a verdict (to_json) reads back as the same Verdict; a
    malformed one is a typed error naming the field."""
    learned = Constraints("vivid", "capture", ((fourcc_code("YUYV"), 0),))
    for verdict in (
        Verdict("vgem", "import", True, frames=2, seconds=0.25),
        Verdict(
            "vivid",
            "capture",
            False,
            operation="VIDIOC_QBUF",
            errno=22,
            message="too small",
            learned="pitch",
            constraints=learned,
            kernel_log=("vivid: bad plane",),
            written=False,
        ),
    ):
        assert Verdict.from_json(json.loads(json.dumps(verdict.to_json()))) == verdict
    for bad, match in (
        ([], "JSON object"),
        ({"device": "x", "usage": "y"}, "names its ok"),
        ({"device": "x", "usage": "y", "ok": 1}, "ok is not bool"),
        ({"device": "x", "usage": "y", "ok": True, "frames": "2"}, "frames is not int"),
        ({"device": "x", "usage": "y", "ok": True, "kernel_log": [1]}, "kernel_log"),
        ({"device": "x", "usage": "y", "ok": True, "spare": 1}, "no field 'spare'"),
    ):
        with pytest.raises(UsageError, match=match):
            Verdict.from_json(bad)


@pytest.mark.parametrize("answer", [b'"1"', b"true", b"99"])
def test_a_reply_with_an_impossible_id_is_a_protocol_error_not_a_wait(
    tmp_path: object, answer: bytes
) -> None:
    """A reply whose id is not an integer, or names a request not sent yet, is refused at once
    (before, a string id was taken for a stale reply and the client waited its whole timeout)."""
    path = os.path.join(str(tmp_path), "socket")
    with listen(path) as listener:
        listener.setblocking(True)

        def serve() -> None:
            conn, _ = listener.accept()
            with conn:
                conn.recv(65536)
                conn.send(b'{"v":%d,"id":%s,"ok":true}' % (VERSION, answer))
                conn.recv(65536)  # until the client goes

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        with ServiceClient(path, timeout=30) as client, pytest.raises(ProtocolError, match="id"):
            client.hello()
        thread.join(timeout=10)


@pytest.mark.parametrize("entry", [{"dmabuf": False}, {"dmabuf": False, "size": "x"}])
def test_a_received_memfd_with_a_malformed_size_is_refused_and_closed(
    entry: dict[str, object],
) -> None:
    """A buffer entry the client cannot read (no size, a size that is not a number) is an
    error, and the fd received for it is closed (it leaked before)."""
    fd = os.memfd_create("received", os.MFD_CLOEXEC)
    with pytest.raises((KeyError, ValueError)):
        _ReceivedBuffers().buffer(fd, entry, HeapProperties("memfd", "memfd"))
    assert_fd_closed(fd)
