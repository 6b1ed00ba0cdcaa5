"""The devalloc service protocol: message shapes declared once as data, validation, framing.

Example:
    >>> data = encode({"op": "status", "id": 1})
    >>> decode_request(data)["op"]
    'status'

Every message is one AF_UNIX ``SOCK_SEQPACKET`` packet (the kernel keeps message boundaries)
holding one UTF-8 JSON object, with any file descriptors beside it as ``SCM_RIGHTS`` ancillary
data. :data:`REQUESTS` declares each request's fields (type and range); :func:`decode_request`
checks a packet against it before anything acts on it, so the server only ever sees a dict whose
fields it declared. See docs/protocol.md for the full description.

Limits: a packet holds at most :data:`MAX_MESSAGE` bytes and :data:`MAX_FDS` fds; a request
carries no fds at all. A truncated packet (``MSG_TRUNC``), truncated ancillary data
(``MSG_CTRUNC``), an fd where none was declared or too many fds are protocol errors, and every fd
received with a rejected packet is closed.
"""

from __future__ import annotations

import array
import contextlib
import json
import os
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from ..errors import (
    DevallocError,
    KernelError,
    NoPlanError,
    UsageError,
    error_from_errno,
)
from ..negotiate import NegotiationError
from ..negotiate.records import Conflict

__all__ = [
    "ALLOCATE_HEAD",
    "ERROR_KINDS",
    "MAX_FDS",
    "MAX_MESSAGE",
    "PLAN_SLOTS",
    "RELEASE_HEAD",
    "RELEASE_TAIL",
    "REQUESTS",
    "VERSION",
    "CollectionError",
    "Field",
    "PolicyError",
    "ProtocolError",
    "QuotaError",
    "Received",
    "ReplyDecoder",
    "RequestDecoder",
    "ServiceError",
    "decode",
    "decode_request",
    "encode",
    "encode_ok",
    "error_from_reply",
    "error_reply",
    "json_text",
    "recv_message",
    "send_message",
    "send_packet",
]

#: The protocol version every message carries as ``"v"``; a different one is refused.
VERSION: Final = 1
#: The largest packet (bytes of JSON) in either direction.
MAX_MESSAGE: Final = 65536
#: The most fds one packet carries (service -> client only; a request carries none).
MAX_FDS: Final = 64
#: The largest number of buffers one allocation hands out (every buffer is one fd).
MAX_BUFFERS: Final = MAX_FDS
#: Plans a client keeps for its connection (``plan_slot`` 0..PLAN_SLOTS-1): an allocation names
#: the slot of a plan it sent before instead of sending it again.
PLAN_SLOTS: Final = 64
#: Largest image side, count, and text lengths accepted on the wire.
MAX_DIMENSION: Final = 65536
MAX_TEXT: Final = 256
MAX_LIST: Final = 64


class ServiceError(DevallocError):
    """An error the devalloc service reported, or a failure to talk to it."""


class ProtocolError(ServiceError):
    """A message that breaks the protocol (shape, size, fds, version)."""


class QuotaError(ServiceError):
    """A request the policy's quotas refuse.

    Attributes:
        rule: the policy rule that refused it (e.g. ``"rule 'video' (uid 1000): max_bytes"``).
    """

    def __init__(self, message: str, rule: str = "") -> None:
        super().__init__(message)
        self.rule = rule


class PolicyError(QuotaError):
    """A request the policy forbids (a heap property the client may not use)."""


class CollectionError(ServiceError):
    """A shared collection failed (a conflict, a participant that left, a bad token)."""


FieldKind = Literal["int", "bool", "text", "texts", "usages", "choice", "ints"]


@dataclass(frozen=True)
class Field:
    """One field of a message.

    Attributes:
        name: the JSON key.
        kind: ``int`` (an int, not a bool, within ``minimum``..``maximum``), ``bool``, ``text``
            (a str of at most ``maximum`` characters, no NUL), ``texts`` and ``ints`` (lists of
            at most :data:`MAX_LIST` of those), ``choice`` (one of ``choices``), ``usages`` (a
            list of ``"device[:usage]"`` texts or ``{"constraints": {...}}`` objects; empty:
            buffers for the application alone, as ``Allocator.allocate(usages=[])``).
        required: the key must be present (else it takes ``default``).
        default: the value of an absent optional key.
    """

    name: str
    kind: FieldKind
    required: bool = False
    default: Any = None
    minimum: int = 0
    maximum: int = MAX_TEXT
    choices: tuple[str, ...] = ()


@dataclass(frozen=True)
class Request:
    """A request's shape: its fields. ``reply`` says whether a reply always follows (a request
    without ``id`` never gets one, except an error without ``id`` for a malformed packet)."""

    op: str
    fields: tuple[Field, ...] = field(default_factory=tuple)


_CPU = ("none", "r", "w", "rw")
_ID = Field("id", "int", minimum=0, maximum=2**53)
_IMAGE = (
    Field("width", "int", required=True, minimum=1, maximum=MAX_DIMENSION),
    Field("height", "int", required=True, minimum=1, maximum=MAX_DIMENSION),
    Field("formats", "texts"),
)

#: Every request the service understands, by ``op``.
REQUESTS: Final[dict[str, Request]] = {
    r.op: r
    for r in (
        Request("hello", (_ID,)),
        Request(
            "allocate",
            (
                _ID,
                *_IMAGE,
                Field("usages", "usages", required=True),
                Field("count", "int", default=1, minimum=1, maximum=MAX_BUFFERS),
                Field("cpu_access", "choice", default="none", choices=_CPU),
                Field("prefer_uncached", "bool", default=False),
                Field("verify", "bool", default=False),
                Field("frames", "int", default=1, minimum=1, maximum=1000),
                Field("allow_cpu_only", "bool", default=False),
                Field("name", "text", maximum=31),
            ),
        ),
        Request(
            "release",
            (_ID, Field("buffers", "ints", maximum=2**53), Field("collection", "text", maximum=64)),
        ),
        Request("status", (_ID,)),
        Request(
            "create",
            (
                _ID,
                *_IMAGE,
                Field("participants", "int", default=1, minimum=1, maximum=MAX_LIST),
                Field("extra", "int", default=0, minimum=0, maximum=MAX_BUFFERS),
                Field("prefer_uncached", "bool", default=False),
                Field("allow_cpu_only", "bool", default=False),
            ),
        ),
        Request(
            "join",
            (
                _ID,
                Field("token", "text", required=True, maximum=64),
                Field("usages", "usages", required=True),
                Field("cpu_access", "choice", default="none", choices=_CPU),
                Field("count", "int", default=1, minimum=0, maximum=MAX_BUFFERS),
                Field("optional", "bool", default=False),
            ),
        ),
        Request("commit", (_ID, Field("token", "text", required=True, maximum=64))),
    )
}

#: Per op: the keys a request may hold ("v", "op" and its fields), and its fields.
_SHAPES: Final[dict[str, tuple[frozenset[str], tuple[Field, ...]]]] = {
    op: (frozenset({"v", "op", *(f.name for f in r.fields)}), r.fields)
    for op, r in REQUESTS.items()
}

#: Error kinds on the wire -> the exception the client raises (one place).
ERROR_KINDS: Final[dict[str, type[DevallocError]]] = {
    "usage": UsageError,
    "negotiation": NegotiationError,
    "no-plan": NoPlanError,
    "quota": QuotaError,
    "policy": PolicyError,
    "protocol": ProtocolError,
    "collection": CollectionError,
    "kernel": KernelError,
    "service": ServiceError,
}


def _kind_of(exc: BaseException) -> str:
    for kind, cls in (
        ("policy", PolicyError),
        ("quota", QuotaError),
        ("protocol", ProtocolError),
        ("collection", CollectionError),
        ("negotiation", NegotiationError),
        ("no-plan", NoPlanError),
        ("usage", UsageError),
        ("kernel", KernelError),
    ):
        if isinstance(exc, cls):
            return kind
    return "service"


def error_reply(request_id: object, exc: BaseException) -> dict[str, Any]:
    """The reply that reports ``exc``: ``{"id", "ok": false, "error": {kind, message, ...}}``."""
    error: dict[str, Any] = {"kind": _kind_of(exc), "message": str(exc)[:4096]}
    if isinstance(exc, QuotaError):
        error["rule"] = exc.rule
    if isinstance(exc, NegotiationError):
        error["conflicts"] = [c.to_json() for c in exc.conflicts[:16]]
    if isinstance(exc, KernelError) and exc.errno:
        error["errno"] = exc.errno
    return {"id": request_id if isinstance(request_id, int) else None, "ok": False, "error": error}


def error_from_reply(error: object) -> DevallocError:
    """The exception an error reply describes (a ProtocolError for a malformed one)."""
    if not isinstance(error, Mapping):
        return ProtocolError(f"the service sent a malformed error: {error!r:.200}")
    kind, message = error.get("kind"), error.get("message")
    if not isinstance(kind, str) or not isinstance(message, str):
        return ProtocolError(f"the service sent a malformed error: {dict(error)!r:.200}")
    text = f"devalloc service: {message}"
    cls = ERROR_KINDS.get(kind, ServiceError)
    if issubclass(cls, QuotaError):
        rule = error.get("rule")
        return cls(text, rule if isinstance(rule, str) else "")
    if cls is NegotiationError:
        raw = error.get("conflicts")
        conflicts = []
        for item in raw if isinstance(raw, list) else []:
            try:
                conflicts.append(Conflict.from_json(item))
            except (UsageError, TypeError):
                continue
        return NegotiationError(text, conflicts)
    if cls is KernelError:
        err = error.get("errno")
        if isinstance(err, int) and not isinstance(err, bool) and 0 < err < 4096:
            return error_from_errno(err, text)
        return ServiceError(text)
    return cls(text)


# --- framing ---------------------------------------------------------------------------------


def encode(message: Mapping[str, Any]) -> bytes:
    """One packet's bytes for ``message`` (``"v"`` added).

    Raises:
        ProtocolError: the message is larger than :data:`MAX_MESSAGE`.
    """
    data = _ENCODER.encode({"v": VERSION, **message}).encode()
    if len(data) > MAX_MESSAGE:
        raise ProtocolError(
            f"a {message.get('op', 'reply')} message of {len(data)} bytes is larger than the"
            f" protocol's {MAX_MESSAGE}-byte maximum"
        )
    return data


def json_text(value: Any) -> bytes:
    """``value`` as the JSON text ``encode`` writes (compact, no NaN)."""
    return _ENCODER.encode(value).encode()


def encode_ok(request_id: int | None, fields: bytes) -> bytes:
    """The packet of an ok reply whose fields are JSON text already: ``fields`` is
    ``"key":value,...`` (an object's members without the braces), as :func:`json_text` and
    ``%``-formatting make them. The same message ``encode({"id": ..., "ok": True, ...})`` makes.

    Raises:
        ProtocolError: the packet is larger than :data:`MAX_MESSAGE`.
    """
    head = b"null" if request_id is None else b"%d" % request_id
    data = b'{"v":%d,"id":%s,"ok":true,%s}' % (VERSION, head, fields)
    if len(data) > MAX_MESSAGE:
        raise ProtocolError(
            f"a reply of {len(data)} bytes is larger than the protocol's {MAX_MESSAGE}-byte maximum"
        )
    return data


def decode(data: bytes) -> dict[str, Any]:
    """The JSON object of one packet, version checked.

    Raises:
        ProtocolError: too large, not UTF-8 JSON, not an object, too deeply nested, or another
            protocol version.
    """
    if len(data) > MAX_MESSAGE:
        raise ProtocolError(
            f"a message of {len(data)} bytes is larger than the {MAX_MESSAGE}-byte maximum"
        )
    try:
        message = _DECODER.decode(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ProtocolError(f"a message that is not UTF-8 JSON: {exc}"[:300]) from None
    if not isinstance(message, dict):
        raise ProtocolError(f"a message is a JSON object, not {type(message).__name__}")
    version = message.get("v")
    if version != VERSION or isinstance(version, bool):
        raise ProtocolError(
            f"protocol version {version!r:.40} is not supported (this service speaks {VERSION})"
        )
    return message


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


# One encoder and one decoder for every message (json.dumps/json.loads with options make a new
# one per call).
_ENCODER: Final = json.JSONEncoder(separators=(",", ":"), allow_nan=False)
_DECODER: Final = json.JSONDecoder(parse_constant=_no_constant)


def decode_request(data: bytes) -> dict[str, Any]:
    """A request checked against :data:`REQUESTS`: known ``op``, no unknown key, every field of
    its declared type and range; absent optional fields take their defaults.

    Raises:
        ProtocolError: anything else.
    """
    message = decode(data)
    op = message.get("op")
    if not isinstance(op, str) or op not in REQUESTS:
        raise ProtocolError(f"unknown request {op!r:.40} (known: {', '.join(REQUESTS)})")
    names, fields = _SHAPES[op]
    if not names.issuperset(message):
        unknown = [k for k in message if k not in names]
        raise ProtocolError(f"{op}: unknown field {unknown[0]!r:.40}")
    checked: dict[str, Any] = {"op": op}
    for f in fields:
        if f.name not in message:
            if f.required:
                raise ProtocolError(f"{op}: missing field {f.name!r}")
            checked[f.name] = f.default
            continue
        value = message[f.name]
        # the commonest cases inline (the same tests as _check, which words the errors)
        if f.kind == "int":
            if type(value) is int and f.minimum <= value <= f.maximum:
                checked[f.name] = value
                continue
        elif f.kind == "bool" and (value is True or value is False):
            checked[f.name] = value
            continue
        checked[f.name] = _check(op, f, value)
    return checked


#: The bytes every allocate request encoded as ``encode`` does starts with, up to its id.
ALLOCATE_HEAD: Final = b'{"v":%d,"op":"allocate","id":' % VERSION
#: The bytes of a one-buffer release as ``encode`` makes it, around the buffer's id.
RELEASE_HEAD: Final = b'{"v":%d,"op":"release","buffers":[' % VERSION
RELEASE_TAIL: Final = b"]}"
#: Largest request tail (the bytes after the id) a :class:`RequestDecoder` keeps.
_KEEP_TAIL = 8192


class RequestDecoder:
    """:func:`decode_request` that remembers: what a service reads again and again is read once.

    - An allocate request in ``encode``'s form (``{"v":1,"op":"allocate","id":N,...}``) whose
      bytes after the id equal those of a request checked before *is* that request with another
      id: it is answered from the checked copy, no JSON parsed and no field checked again. Only
      the id is read, by the JSON rules (digits, no leading zero, in range). A tail that holds a
      key of the head (``"v"``, ``"op"``, ``"id"``) is never kept, so the meaning of a kept
      tail cannot depend on the head.
    - A one-buffer release in ``encode``'s form is read from its fixed bytes.
    - Anything else goes through :func:`decode_request`, unchanged.

    :meth:`decode` returns the checked request and, for an allocate request whose tail is kept,
    the tail itself: equal tails, equal requests (a key for the caller's own caches). A kept
    request's lists are shared by every copy handed out: callers read them, never change them.
    """

    def __init__(self, size: int = 256) -> None:
        self._size = size
        self._checked: dict[bytes, dict[str, Any]] = {}
        self._release = decode_request(RELEASE_HEAD + b"0" + RELEASE_TAIL)

    def decode(self, data: bytes) -> tuple[dict[str, Any], bytes | None]:
        """The checked request of one packet, and its cache key (see the class doc).

        Raises:
            ProtocolError: as :func:`decode_request`.
        """
        if data.startswith(ALLOCATE_HEAD):
            start = len(ALLOCATE_HEAD)
            comma = data.find(b",", start, start + 18)
            if comma > start:
                tail = data[comma:]
                checked = self._checked.get(tail)
                request_id = _json_uint(data[start:comma], _ID.maximum)
                if checked is not None and request_id is not None:
                    request = checked.copy()
                    request["id"] = request_id
                    return request, tail
                request = decode_request(data)
                if (
                    request_id is not None
                    and request["op"] == "allocate"
                    and request["id"] == request_id
                    and len(tail) <= _KEEP_TAIL
                    and b'"id"' not in tail
                    and b'"op"' not in tail
                    and b'"v"' not in tail
                ):
                    if len(self._checked) >= self._size:
                        self._checked.clear()
                    self._checked[tail] = request
                    return request.copy(), tail
                return request, None
        elif data.startswith(RELEASE_HEAD) and data.endswith(RELEASE_TAIL):
            buffer_id = _json_uint(data[len(RELEASE_HEAD) : -len(RELEASE_TAIL)], 2**53)
            if buffer_id is not None:
                request = self._release.copy()
                request["buffers"] = [buffer_id]
                return request, None
        return decode_request(data), None

    def clear(self) -> None:
        """Forget every request kept."""
        self._checked.clear()


#: The bytes of an ok allocate reply as ``encode_ok`` makes it, around its id, and before the
#: buffer list that ends it.
REPLY_HEAD: Final = b'{"v":%d,"id":' % VERSION
ALLOCATION_HEAD: Final = b',"ok":true,"allocation":{'
BUFFERS_HEAD: Final = b',"buffers":['
_REPLY_TAIL = b"]}}"


class ReplyDecoder:
    """:func:`decode` for a client, remembering what repeats in allocate replies.

    An ok allocate reply in the service's form (:data:`REPLY_HEAD`, the id,
    :data:`ALLOCATION_HEAD`, the allocation's members, :data:`BUFFERS_HEAD`, the buffer list
    and ``]}}``) is read in parts: the members before the buffer list (plan slot, heap, notes,
    name: the same for every allocation of one kind) are parsed once and kept; only the id and
    the buffer list are read each time. Each part must be one whole JSON value on its own, so
    the parts say exactly what the whole packet says. Anything else goes through
    :func:`decode`. A kept allocation's members are shared by every reply handed out: callers
    read them, never change them.
    """

    def __init__(self, size: int = 64) -> None:
        self._size = size
        self._heads: dict[bytes, dict[str, Any]] = {}

    def decode(self, data: bytes) -> dict[str, Any]:
        """The JSON object of one packet, version checked (see the class doc).

        Raises:
            ProtocolError: as :func:`decode`.
        """
        if data.startswith(REPLY_HEAD) and data.endswith(_REPLY_TAIL):
            start = len(REPLY_HEAD)
            end = data.find(ALLOCATION_HEAD, start, start + 17 + len(ALLOCATION_HEAD))
            split = data.rfind(BUFFERS_HEAD)
            request_id = _json_uint(data[start:end], 2**53) if end > start else None
            if request_id is not None and split > end and len(data) <= MAX_MESSAGE:
                head = data[end + len(ALLOCATION_HEAD) : split]
                members = self._heads.get(head)
                try:
                    if members is None:
                        members = _DECODER.decode("{" + head.decode("utf-8") + "}")
                        if len(head) <= _KEEP_TAIL:
                            if len(self._heads) >= self._size:
                                self._heads.clear()
                            self._heads[head] = members
                    buffers = _DECODER.decode(
                        data[split + len(BUFFERS_HEAD) - 1 : -2].decode("utf-8")
                    )
                except (UnicodeDecodeError, ValueError, RecursionError):
                    pass  # not in the service's form after all: decode() words the error
                else:
                    allocation = dict(members)
                    allocation["buffers"] = buffers
                    return {"v": VERSION, "id": request_id, "ok": True, "allocation": allocation}
        return decode(data)


def _json_uint(digits: bytes, maximum: int) -> int | None:
    """``digits`` as JSON reads a non-negative integer (no sign, no leading zero) when it is at
    most ``maximum``; None for anything else."""
    if not digits.isdigit() or len(digits) > 16 or (digits[0] == 48 and len(digits) > 1):
        return None
    value = int(digits)
    return value if value <= maximum else None


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check(op: str, f: Field, value: object) -> Any:
    where = f"{op}.{f.name}"
    if f.kind == "int":
        if not _is_int(value) or not f.minimum <= value <= f.maximum:  # type: ignore[operator]
            raise ProtocolError(
                f"{where} is an integer {f.minimum}..{f.maximum}, not {value!r:.40}"
            )
        return value
    if f.kind == "bool":
        if not isinstance(value, bool):
            raise ProtocolError(f"{where} is true or false, not {value!r:.40}")
        return value
    if f.kind == "text":
        return _text(where, value, f.maximum)
    if f.kind == "choice":
        if value not in f.choices:
            raise ProtocolError(f"{where} is one of {', '.join(f.choices)}, not {value!r:.40}")
        return value
    if not isinstance(value, list) or len(value) > MAX_LIST:
        raise ProtocolError(f"{where} is a list of at most {MAX_LIST} items, not {value!r:.60}")
    if f.kind == "texts":
        return [_text(where, v, MAX_TEXT) for v in value]
    if f.kind == "ints":
        if not all(_is_int(v) and 0 <= v <= f.maximum for v in value):
            raise ProtocolError(f"{where} is a list of non-negative integers")
        return value
    usages: list[str | dict[str, Any]] = []
    for v in value:
        if (
            isinstance(v, dict)
            and list(v) == ["constraints"]
            and isinstance(v["constraints"], dict)
        ):
            usages.append(v)
        elif isinstance(v, str):
            usages.append(_text(where, v, MAX_TEXT))
        else:
            raise ProtocolError(
                f"{where}: a usage is 'device[:usage]' or {{\"constraints\": {{...}}}}, not"
                f" {v!r:.60}"
            )
    return usages


def _text(where: str, value: object, maximum: int) -> str:
    if not isinstance(value, str) or len(value) > maximum or "\0" in value:
        raise ProtocolError(f"{where} is text of at most {maximum} characters, not {value!r:.40}")
    return value


# --- packets with fds ------------------------------------------------------------------------


@dataclass
class Received:
    """One packet: its bytes and the fds that came with it (the receiver owns them)."""

    data: bytes
    fds: list[int]

    def close_fds(self) -> None:
        """Close every received fd (idempotent)."""
        fds, self.fds = self.fds, []
        for fd in fds:
            with contextlib.suppress(OSError):
                os.close(fd)


_FD_SIZE = array.array("i").itemsize
_ANCILLARY = socket.CMSG_SPACE(MAX_FDS * _FD_SIZE)
# As plain ints: ``int & socket.MSG_*`` goes through the IntFlag's Python-level ``__and__``.
_MSG_CTRUNC: Final = int(socket.MSG_CTRUNC)
_MSG_TRUNC: Final = int(socket.MSG_TRUNC)
_SOL_SOCKET: Final = int(socket.SOL_SOCKET)
_SCM_RIGHTS: Final = int(socket.SCM_RIGHTS)


def recv_message(sock: socket.socket, max_fds: int = MAX_FDS) -> Received | None:
    """Receive one packet; None at end of stream (the peer closed).

    Raises:
        ProtocolError: a truncated packet or truncated ancillary data, more than ``max_fds``
            fds, or ancillary data other than SCM_RIGHTS; every fd received is closed first.
        BlockingIOError: nothing to read on a non-blocking socket.
    """
    data, ancdata, flags, _ = sock.recvmsg(MAX_MESSAGE + 1, _ANCILLARY)
    fds: list[int] = []
    foreign = False
    for level, kind, payload in ancdata:
        if level == _SOL_SOCKET and kind == _SCM_RIGHTS:
            got = array.array("i")
            got.frombytes(payload[: len(payload) - len(payload) % _FD_SIZE])
            fds.extend(got)
        else:
            foreign = True
    received = Received(data, fds)
    problem = ""
    if flags & _MSG_CTRUNC:
        problem = "its file descriptors were truncated (too many)"
    elif flags & _MSG_TRUNC or len(data) > MAX_MESSAGE:
        problem = f"it is larger than the {MAX_MESSAGE}-byte maximum"
    elif foreign:
        problem = "it carries ancillary data other than file descriptors"
    elif len(fds) > max_fds:
        problem = f"it carries {len(fds)} file descriptors (at most {max_fds})"
    if problem:
        received.close_fds()
        raise ProtocolError(f"a message was refused: {problem}")
    if not data and not fds:
        return None
    return received


def send_message(sock: socket.socket, message: Mapping[str, Any], fds: Sequence[int] = ()) -> None:
    """Send one packet (blocking socket); the caller keeps its fds.

    Raises:
        ProtocolError: too large or too many fds.
        OSError: the socket failed (the peer is gone: BrokenPipeError, ConnectionResetError).
    """
    if len(fds) > MAX_FDS:
        raise ProtocolError(f"{len(fds)} file descriptors in one message (at most {MAX_FDS})")
    send_packet(sock, encode(message), fds)


def send_packet(sock: socket.socket, data: bytes, fds: Sequence[int] = ()) -> None:
    """Send one encoded packet with ``fds`` as SCM_RIGHTS (the caller keeps its fds).

    Raises:
        OSError: as ``sendmsg`` (BlockingIOError on a full non-blocking socket).
    """
    if fds:
        sock.sendmsg([data], [(_SOL_SOCKET, _SCM_RIGHTS, array.array("i", fds))])
    else:
        sock.send(data)
