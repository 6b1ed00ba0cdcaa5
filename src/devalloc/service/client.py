"""The Python client of the devalloc service: the same ``allocate()`` as the in-process Allocator.

Example:
    >>> import devalloc.service
    >>> with devalloc.service.connect() as alloc:                     # doctest: +SKIP
    ...     with alloc.allocate(1920, 1080, usages=["rk3399-vop:primary"], count=4,
    ...                         cpu_access="w", allow_cpu_only=True) as frames:
    ...         frames.plan.format.name, len(frames.buffers)
    ('XR24', 4)

Moving code between in-process and service allocation is one line: ``Allocator()`` becomes
``connect()``; ``allocate`` takes the same arguments and returns the same
:class:`~devalloc.allocator.Allocation` of :class:`~devalloc.buffer.Buffer` objects, made from the
fds the service sent, with the plan's layout attached. Closing a buffer tells the service (its
books drop it); closing the client keeps the buffers valid.

A device file named in ``usages`` is read here, by the client, and sent as constraints: the
service never opens a path a client names. Shared collections::

    token = a.create_collection(1280, 720, participants=2)   # give the token to the other process
    a.join(token, usages=["uvc-webcam"], count=2)             # each process joins ...
    frames = a.commit(token)                                  # ... commits, and gets the buffers
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import os
import socket
import struct
import threading
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, Self

from ..allocator import Allocation, UsageSpec
from ..buffer import Buffer, read_fdinfo
from ..constraints import Constraints, CpuAccess, load_constraints
from ..devices.verify import Verdict
from ..errors import ClosedResourceError, DevallocError, UsageError
from ..formats import fourcc_to_str
from ..heaps.properties import HeapProperties
from ..heaps.registry import HeapId
from ..negotiate import Plan
from .protocol import (
    ALLOCATE_HEAD,
    MAX_FDS,
    MAX_MESSAGE,
    PLAN_SLOTS,
    RELEASE_HEAD,
    RELEASE_TAIL,
    CollectionError,
    ProtocolError,
    ReplyDecoder,
    ServiceError,
    encode,
    error_from_reply,
    recv_message,
    send_message,
)
from .server import DEFAULT_SOCKET

__all__ = ["ServiceClient", "connect", "socket_path"]


def socket_path(path: str | None = None) -> str:
    """``path``, else ``$DEVALLOC_SOCKET``, else :data:`~devalloc.service.server.DEFAULT_SOCKET`."""
    return path or os.environ.get("DEVALLOC_SOCKET") or DEFAULT_SOCKET


def connect(path: str | None = None, *, timeout: float | None = 60.0) -> ServiceClient:
    """A client of the devalloc service at ``path`` (see :func:`socket_path`)."""
    return ServiceClient(path, timeout=timeout)


def _wire_usages(usages: Sequence[UsageSpec]) -> list[Any]:
    if isinstance(usages, str | bytes | Constraints) or not isinstance(usages, Sequence):
        raise UsageError(f"usages is a list of 'device[:usage]' or Constraints, not {usages!r:.80}")
    out: list[Any] = []
    for spec in usages:
        if isinstance(spec, Constraints):
            out.append({"constraints": spec.to_json()})
        elif isinstance(spec, tuple) and len(spec) == 2 and all(isinstance(s, str) for s in spec):
            out.append(f"{spec[0]}:{spec[1]}")
        elif isinstance(spec, str):
            name = spec.rpartition(":")[0] if ":" in spec else spec
            is_file = not spec.startswith("/dev/") and (
                "/" in spec or name.endswith(".toml") or os.path.isfile(name)
            )
            if is_file:  # read here: the service never opens a client's path
                out.extend({"constraints": c.to_json()} for c in load_constraints(spec))
            else:
                out.append(spec)
        else:
            raise UsageError(f"a usage is 'device', 'device:usage' or (device, usage): {spec!r}")
    return out


class ServiceClient:
    """A connection to the devalloc service (see the module doc).

    Args:
        path: the service's socket (see :func:`socket_path`).
        timeout: seconds to wait for a reply (None: forever).

    Raises:
        ServiceError: no service answers at ``path`` (the message says how to start one).
    """

    def __init__(self, path: str | None = None, *, timeout: float | None = 60.0) -> None:
        self.path = socket_path(path)
        self._sock: socket.socket | None = None
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        try:
            sock.settimeout(timeout)
            sock.connect(self.path)
            # Connected: blocking from now on, the reply timeout kept by the kernel
            # (SO_RCVTIMEO/SO_SNDTIMEO), so a send or receive is one system call, not a poll()
            # before each as Python's own socket timeout makes.
            _set_timeout(sock, timeout)
        except OSError as exc:
            sock.close()
            raise ServiceError(
                f"no devalloc service at {self.path}: {exc.strerror or exc}; start one with"
                " `devalloc serve` (or `systemctl start devalloc.socket`), or give its socket"
                " path (DEVALLOC_SOCKET, --service PATH)"
            ) from exc
        self._sock = sock
        self._timeout = timeout
        self._closing = False
        #: encoded allocate requests without their id, by arguments (see _cached_request)
        self._encoded: dict[tuple[Any, ...], tuple[tuple[object, ...], bytes]] = {}
        self._held: set[int] = set()  # ids of received buffers not closed yet
        self._plans: dict[int, Plan] = {}  # plan_slot -> the plan the service put there
        #: the last heap JSON, parsed, and its HeapId (one per heap, as a registry's)
        self._heap: tuple[object, HeapProperties, HeapId] | None = None
        #: the last unverified and notes lists, and their tuples
        self._texts: tuple[object, object, tuple[str, ...], tuple[str, ...]] = (None, None, (), ())
        self._received = _ReceivedBuffers()
        self._replies = ReplyDecoder()
        self._lock = threading.RLock()
        self._ids = itertools.count(1)
        self._events: deque[tuple[dict[str, Any], list[int]]] = deque()
        #: Collection notices the service sent (a conflicting join, an optional participant
        #: that left), as text, oldest first.
        self.notices: list[str] = []

    # --- plumbing ------------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """The client was closed (no more requests)."""
        return self._sock is None or self._closing

    def close(self) -> None:
        """Close the client (idempotent). Buffers already received stay valid: the connection
        itself stays open, for nothing but their releases, until the last of them is closed, so
        the service's books stay exact."""
        self._closing = True
        while self._events:
            _close_fds(self._events.popleft()[1])
        if not self._held:
            self._disconnect()

    def _disconnect(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def fileno(self) -> int:
        """The connection's socket."""
        return self._live().fileno()

    def _live(self) -> socket.socket:
        if self._sock is None or self._closing:
            raise ClosedResourceError(
                f"the connection to the devalloc service at {self.path} is closed"
            )
        return self._sock

    def _receive(self) -> tuple[dict[str, Any], list[int]]:
        sock = self._live()
        try:
            received = recv_message(sock, MAX_FDS)
        except (TimeoutError, BlockingIOError):  # SO_RCVTIMEO ran out (EAGAIN)
            raise ServiceError(
                f"the devalloc service at {self.path} did not answer in time"
            ) from None
        except OSError as exc:
            raise self._gone(exc) from exc
        if received is None:
            raise self._gone(None)
        try:
            return self._replies.decode(received.data), received.fds
        except ProtocolError:
            received.close_fds()
            raise

    def _gone(self, exc: OSError | None) -> ServiceError:
        self._held.clear()
        self.close()
        why = f": {exc.strerror or exc}" if exc is not None else ""
        return ServiceError(
            f"the devalloc service at {self.path} closed the connection{why} (it stopped,"
            " restarted, or refused this client); connect again"
        )

    def _request(self, op: str, **fields: Any) -> tuple[dict[str, Any], list[int]]:
        with self._lock:
            request_id = next(self._ids)
            try:
                send_message(self._live(), {"op": op, "id": request_id, **fields})
            except OSError as exc:
                raise self._gone(exc) from exc
            return self._reply_to(request_id)

    def _call(self, op: str, **fields: Any) -> dict[str, Any]:
        """:meth:`_request` for a reply that carries no fds: any the service sent are closed."""
        reply, fds = self._request(op, **fields)
        _close_fds(fds)
        return reply

    def _request_encoded(self, encoded: bytes) -> tuple[dict[str, Any], list[int]]:
        """:meth:`_request` for a request encoded before (:meth:`_allocate_encoded`): its id
        spliced in front of the fields."""
        with self._lock:
            request_id = next(self._ids)
            data = b"%s%d%s" % (ALLOCATE_HEAD, request_id, encoded)
            if len(data) > MAX_MESSAGE:
                raise ProtocolError(
                    f"an allocate message of {len(data)} bytes is larger than the protocol's"
                    f" {MAX_MESSAGE}-byte maximum"
                )
            try:
                self._live().sendmsg([data])
            except OSError as exc:
                raise self._gone(exc) from exc
            return self._reply_to(request_id)

    def _reply_to(self, request_id: int) -> tuple[dict[str, Any], list[int]]:
        with self._lock:
            while True:
                message, fds = self._receive()
                if "event" in message:
                    self._keep_event(message, fds)
                    continue
                answer = message.get("id")
                if answer is not None and (type(answer) is not int or answer > request_id):
                    _close_fds(fds)
                    raise ProtocolError(
                        f"the service answered request {request_id} with id {answer!r:.40}"
                    )
                if answer is not None and answer != request_id:
                    _close_fds(fds)  # a stale reply
                    continue
                if message.get("ok") is not True:
                    _close_fds(fds)
                    raise error_from_reply(message.get("error"))
                return message, fds

    def _release_hook(self, buffer_id: int) -> Callable[[int], None]:
        return functools.partial(self._release_closed, buffer_id)

    def _release_closed(self, buffer_id: int, size: int) -> None:
        self._release(buffer_id)

    def _release(self, buffer_id: int) -> None:
        """Tell the service a buffer is closed (a close hook: never raises)."""
        self._held.discard(buffer_id)
        sock = self._sock
        if sock is None:
            return
        # what encode() makes of the one-buffer release; at every buffer close, so no
        # contextlib.suppress object: a failed send means the service is gone, and with it
        # this client's books
        try:  # noqa: SIM105
            sock.sendmsg([b"%s%d%s" % (RELEASE_HEAD, buffer_id, RELEASE_TAIL)])
        except OSError:
            pass
        if self._closing and not self._held:
            self._disconnect()

    # --- requests ------------------------------------------------------------------------------

    def hello(self) -> dict[str, Any]:
        """The service's name and version, and who it takes this client to be."""
        return self._call("hello")

    def status(self) -> dict[str, Any]:
        """The service's books, policy and heaps (``devalloc service status --json``)."""
        status: dict[str, Any] = _field(self._call("status"), "status", dict, "status")
        return status

    def allocate(
        self,
        width: int,
        height: int,
        *,
        usages: Sequence[UsageSpec],
        formats: Sequence[str | int] | None = None,
        count: int = 1,
        cpu_access: CpuAccess = "none",
        prefer_uncached: bool = False,
        verify: bool = False,
        frames: int = 1,
        allow_cpu_only: bool = False,
        name: str | None = None,
    ) -> Allocation:
        """Buffers from the service: the arguments and result of
        :meth:`devalloc.allocator.Allocator.allocate` (the service negotiates, picks the heap
        within this client's policy, allocates, and sends the fds).

        Raises:
            NegotiationError, NoPlanError, UsageError: as ``Allocator.allocate``.
            QuotaError, PolicyError: the service's policy refused (``rule`` names the rule).
            ServiceError: no service, or it went away.
        """
        # A request asked for again (the same plain arguments, the same usage objects) is
        # sent as encoded the first time: no usages to turn into JSON, no JSON to make.
        key = _request_key(
            width,
            height,
            usages,
            formats,
            count,
            cpu_access,
            prefer_uncached,
            verify,
            frames,
            allow_cpu_only,
            name,
        )
        cached = self._encoded.get(key) if key is not None else None
        if cached is not None and all(a is b for a, b in zip(cached[0], usages, strict=True)):
            with self._lock:  # replies define plan slots in order: read them in that order
                reply, fds = self._request_encoded(cached[1])
                return self._allocation(reply.get("allocation"), fds)
        fields: dict[str, Any] = {
            "width": width,
            "height": height,
            "usages": _wire_usages(usages),
            "count": count,
            "cpu_access": cpu_access,
            "prefer_uncached": prefer_uncached,
            "verify": verify,
            "frames": frames,
            "allow_cpu_only": allow_cpu_only,
        }
        if formats is not None:
            fields["formats"] = _formats(formats)
        if name is not None:
            fields["name"] = name
        _check_types(fields)
        if key is not None:
            if len(self._encoded) >= _ENCODED_CACHE:
                self._encoded.clear()
            # encode()'s bytes after '{"v":1,"op":"allocate","id":N'
            body = encode({"op": "allocate", "id": 0, **fields})
            assert body.startswith(ALLOCATE_HEAD + b"0,")
            self._encoded[key] = (tuple(usages), body[len(ALLOCATE_HEAD) + 1 :])
        with self._lock:
            reply, fds = self._request("allocate", **fields)
            return self._allocation(reply.get("allocation"), fds)

    def create_collection(
        self,
        width: int,
        height: int,
        *,
        formats: Sequence[str | int] | None = None,
        participants: int = 1,
        extra: int = 0,
        prefer_uncached: bool = False,
        allow_cpu_only: bool = False,
    ) -> str:
        """Create a shared collection for ``participants`` processes; returns its unguessable
        token (give it to the others by any means)."""
        fields: dict[str, Any] = {
            "width": width,
            "height": height,
            "participants": participants,
            "extra": extra,
            "prefer_uncached": prefer_uncached,
            "allow_cpu_only": allow_cpu_only,
        }
        if formats is not None:
            fields["formats"] = _formats(formats)
        _check_types(fields)
        token: str = _field(self._call("create", **fields), "token", str, "create")
        return token

    def join(
        self,
        token: str,
        *,
        usages: Sequence[UsageSpec],
        cpu_access: CpuAccess = "none",
        count: int = 1,
        optional: bool = False,
    ) -> None:
        """Join the collection ``token`` with this process's usages, CPU access and the number
        of buffers it holds at once.

        Raises:
            NegotiationError: these usages conflict with another participant's (the message
                names the participants and the constraint).
            CollectionError: a bad token, or the collection is no longer open.
        """
        fields = {
            "token": token,
            "usages": _wire_usages(usages),
            "cpu_access": cpu_access,
            "count": count,
            "optional": optional,
        }
        _check_types(fields)
        self._call("join", **fields)

    def commit(self, token: str, *, timeout: float | None = None) -> Allocation:
        """Commit to the collection ``token`` and wait until every participant has committed:
        the shared buffers (the same dma-bufs in every participant), or the reason it failed.

        Raises:
            NegotiationError: the participants' constraints conflict (named).
            CollectionError: a participant left before the allocation, or a bad token.
            QuotaError: a participant's quota refused the collection (named).
        """
        if not isinstance(token, str):
            raise UsageError(f"a collection token is text, not {token!r:.40}")
        with self._lock:
            try:
                reply = self._call("commit", token=token)
            except CollectionError as exc:
                failure = self._failure(token)
                if failure is not None:  # it failed before this commit arrived: say why
                    raise failure from exc
                raise
            collection = reply.get("collection")
            sock = self._live()
            previous = self._timeout
            _set_timeout(sock, timeout, send=False)
            self._timeout = timeout
            try:
                while True:
                    message, fds = self._next_event()
                    if message.get("collection") != collection:
                        _close_fds(fds)
                        continue
                    if message.get("state") == "allocated":
                        return self._allocation(message.get("allocation"), fds)
                    _close_fds(fds)
                    raise error_from_reply(message.get("error"))
            finally:
                self._timeout = previous
                if self._sock is not None:
                    _set_timeout(self._sock, previous, send=False)

    def _keep_event(self, message: dict[str, Any], fds: list[int]) -> None:
        """A notice goes to :attr:`notices`; an allocation or a failure waits for commit()."""
        if message.get("state") in ("conflict", "left"):
            _close_fds(fds)
            self.notices.append(str(message.get("message", message.get("state"))))
        else:
            self._events.append((message, fds))

    def _next_event(self) -> tuple[dict[str, Any], list[int]]:
        while not self._events:
            message, fds = self._receive()
            if "event" in message:
                self._keep_event(message, fds)
            else:
                _close_fds(fds)
        return self._events.popleft()

    def _failure(self, token: str) -> DevallocError | None:
        """The failure the service already reported for collection ``token``, if any."""
        for message, fds in list(self._events):
            if message.get("token") == token and message.get("state") == "failed":
                self._events.remove((message, fds))
                _close_fds(fds)
                return error_from_reply(message.get("error"))
        return None

    # --- replies -> Allocation -----------------------------------------------------------------

    def _plan(self, description: dict[str, Any]) -> Plan:
        """The Plan of an allocation: its JSON (checked by ``Plan.from_json``), kept in
        ``plan_slot`` when one is named, or the plan kept in that slot before."""
        slot = description.get("plan_slot")
        if slot is not None and (
            isinstance(slot, bool) or not isinstance(slot, int) or not 0 <= slot < PLAN_SLOTS
        ):
            raise ProtocolError(f"the service named plan slot {slot!r:.40}")
        data = description.get("plan")
        if data is None:
            plan = self._plans.get(slot) if slot is not None else None
            if plan is None:
                raise ProtocolError(f"the service named plan slot {slot!r:.40}, which is empty")
            return plan
        if not isinstance(data, dict):
            raise ProtocolError("the service's allocation holds no plan")
        plan = Plan.from_json(data)
        if slot is not None:
            self._plans[slot] = plan
        return plan

    def _allocation(self, description: object, fds: list[int]) -> Allocation:
        try:
            if not isinstance(description, dict):
                raise ProtocolError("the service's reply holds no allocation")
            entries = description.get("buffers")
            if not isinstance(entries, list) or len(entries) != len(fds):
                raise ProtocolError(
                    f"the service described {len(entries) if isinstance(entries, list) else 0}"
                    f" buffers but sent {len(fds)} fds"
                )
            plan = self._plan(description)
            heap = description["heap"]
            known = self._heap
            if known is None or known[0] != heap:  # else the same heap as last time
                props = HeapProperties(**heap)
                known = self._heap = (heap, props, HeapId(self, props.name))
            props = known[1]
        except (KeyError, TypeError, ValueError) as exc:
            _close_fds(fds)
            raise ProtocolError(f"the service sent a malformed allocation: {exc}") from None
        except BaseException:
            _close_fds(fds)
            raise
        images: list[list[Buffer]] = []
        made: list[Buffer] = []
        try:
            for index, entry in enumerate(entries):
                fd, fds[index] = fds[index], -1
                buf = self._received.buffer(fd, entry, props)
                made.append(buf)
                if plan.layout.planes:
                    buf.attach_layout(plan.layout, buffer=int(entry["buffer"]))
                buffer_id = int(entry["id"])
                buf.add_close_hook(self._release_hook(buffer_id))
                self._held.add(buffer_id)
                image = int(entry["image"])
                while len(images) <= image:
                    images.append([])
                images[image].append(buf)
        except BaseException as exc:
            for buf in made:
                buf.close()
            _close_fds([fd for fd in fds if fd >= 0])
            if isinstance(exc, KeyError | TypeError | ValueError) and not isinstance(
                exc, DevallocError
            ):
                raise ProtocolError(f"the service sent a malformed buffer list: {exc}") from None
            raise
        try:
            raw = description.get("verdicts")
            verdicts = tuple(Verdict.from_json(v) for v in raw) if raw else ()
        except UsageError as exc:
            for buf in made:
                buf.close()
            raise ProtocolError(f"the service sent a malformed verdict: {exc}") from None
        unverified, notes = description.get("unverified", ()), description.get("notes", ())
        texts = self._texts
        if texts[0] is not unverified or texts[1] is not notes:  # else the last allocation's
            texts = self._texts = (
                unverified,
                notes,
                tuple(str(u) for u in unverified),
                tuple(str(n) for n in notes),
            )
        return Allocation(
            plan,
            known[2],
            props,
            tuple(tuple(image) for image in images),
            verdicts,
            texts[2],
            (),
            texts[3],
        )


#: Encoded allocate requests a client keeps (emptied when full).
_ENCODED_CACHE = 64


def _request_key(
    width: object,
    height: object,
    usages: object,
    formats: object,
    count: object,
    cpu_access: object,
    prefer_uncached: object,
    verify: object,
    frames: object,
    allow_cpu_only: object,
    name: object,
) -> tuple[Any, ...] | None:
    """The key of an allocate request whose encoding can be kept, or None: plain arguments of
    exactly their types (an int, not a bool, where an int is asked for), no formats, and usages
    that are :class:`Constraints` or ``(device, usage)`` tuples (immutable; a text usage may
    name a file, read at every request). The usages are keyed by identity (the cache keeps
    them, so an id is not reused while cached), which spares hashing their constraints."""
    if not (
        type(width) is int
        and type(height) is int
        and type(count) is int
        and type(frames) is int
        and type(prefer_uncached) is bool
        and type(verify) is bool
        and type(allow_cpu_only) is bool
        and type(cpu_access) is str
        and formats is None
        and (name is None or type(name) is str)
        and type(usages) in (list, tuple)
    ):
        return None
    ids = []
    for spec in usages:  # type: ignore[attr-defined]
        kind = type(spec)
        if kind is not Constraints and not (
            kind is tuple and len(spec) == 2 and type(spec[0]) is str and type(spec[1]) is str
        ):
            return None
        ids.append(id(spec))
    return (
        width,
        height,
        tuple(ids),
        count,
        cpu_access,
        prefer_uncached,
        verify,
        frames,
        allow_cpu_only,
        name,
    )


def _set_timeout(sock: socket.socket, timeout: float | None, *, send: bool = True) -> None:
    """Make ``sock`` blocking with the kernel's receive (and send) timeout ``timeout`` seconds
    (None: none); a timed-out call fails with EAGAIN."""
    sock.settimeout(None)
    seconds = 0.0 if timeout is None else max(timeout, 1e-6)
    whole = int(seconds)
    value = struct.pack("@ll", whole, int((seconds - whole) * 1e6))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, value)
    if send:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, value)


class _ReceivedBuffers:
    """Makes the Buffers of received fds, each checked for what the service says it is.

    Attributes:
        dev: the device of the kernel's dma-buf file system, once a dma-buf was checked.
        exporters: heap name -> the exporter its dma-bufs name (learned from fdinfo).
    """

    def __init__(self) -> None:
        self.dev: int | None = None
        self.exporters: dict[str, str] = {}

    def buffer(self, fd: int, entry: dict[str, Any], props: HeapProperties) -> Buffer:
        """A Buffer owning received ``fd``: a dma-buf is checked as one (a memfd stays CPU-only).

        The first dma-buf of a heap is checked as ``Buffer.from_fd`` checks one: fdinfo must
        name an exporter. That also teaches the device of the kernel's dma-buf file system,
        which every dma-buf shares and no other file has; a later buffer of the same heap is
        checked by one ``fstat`` against it, its size read from the same call.
        """
        try:
            if entry.get("dmabuf") is not True:
                size: int | None = int(entry["size"])
                source = "memfd (devalloc service)"
            else:
                exporter = self.exporters.get(props.name)
                if exporter is not None:
                    st = os.fstat(fd)
                    if st.st_dev == self.dev and st.st_size > 0 and not props.protected:
                        # a fresh fd of a checked kind: the heaps' constructor, as in-process
                        return Buffer._adopt(fd, exporter, "buffer from " + exporter, st.st_size)
                # As Buffer.from_fd checks (fdinfo names an exporter), on the fd this client
                # owns already: no duplicate to make and close.
                fields = read_fdinfo(fd)
                exporter = fields.get("exp_name")
                if exporter is None:
                    raise ProtocolError(
                        "the service sent a buffer that is not a dma-buf (its fdinfo names no"
                        " exporter)"
                    )
                size = int(fields["size"]) if "size" in fields else None
                dev = os.fstat(fd).st_dev
                if self.dev != dev:
                    self.exporters.clear()
                    self.dev = dev
                self.exporters[props.name] = source = exporter
        except BaseException:
            os.close(fd)
            raise
        if entry.get("dmabuf") is not True:
            return Buffer(fd, exporter=source, dmabuf=False, size=size)
        return Buffer(fd, exporter=source, size=size, protected=bool(props.protected))


def _field(reply: dict[str, Any], key: str, kind: type, op: str) -> Any:
    """``reply[key]`` when it is a ``kind``; a ProtocolError otherwise."""
    value = reply.get(key)
    if not isinstance(value, kind):
        raise ProtocolError(f"the service's {op} reply holds no {key}")
    return value


def _close_fds(fds: list[int]) -> None:
    for fd in fds:
        if fd >= 0:
            with contextlib.suppress(OSError):
                os.close(fd)


def _formats(formats: Sequence[str | int]) -> list[str]:
    """Candidate formats as names on the wire (a fourcc number becomes its four characters)."""
    if isinstance(formats, str | bytes) or not isinstance(formats, Sequence):
        raise UsageError(f"formats is a list of format names or fourccs, not {formats!r:.80}")
    names: list[str] = []
    for f in formats:
        if isinstance(f, int) and not isinstance(f, bool):
            names.append(fourcc_to_str(f))
        elif isinstance(f, str):
            names.append(f)
        else:
            raise UsageError(f"a format is a name or a fourcc number, not {f!r:.80}")
    return names


def _check_types(fields: dict[str, Any]) -> None:
    """Refuse obviously wrong argument types here, with the Allocator's wording (the service
    checks everything again)."""
    for key in ("width", "height", "count", "frames", "participants", "extra"):
        value = fields.get(key)
        if key in fields and (isinstance(value, bool) or not isinstance(value, int)):
            raise UsageError(f"{key} must be an integer, not {value!r:.80}")
    for key in ("verify", "allow_cpu_only", "prefer_uncached", "optional"):
        if key in fields and not isinstance(fields[key], bool):
            raise UsageError(f"{key} is True or False, not {fields[key]!r:.80}")
