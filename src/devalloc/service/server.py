"""The devalloc service: one selector loop that no client can block.

Example:
    >>> from devalloc.service.server import Service, listen
    >>> with Service(listen("/run/devalloc/socket")) as service:      # doctest: +SKIP
    ...     service.serve_forever()

Design: one thread, one epoll loop over the listening socket, every client socket
(non-blocking), every client's pidfd and a wake-up socket for signals; one packet per ready
client per turn (fairness). A packet is read whole or not at all (``SOCK_SEQPACKET``), checked
against :data:`~devalloc.service.protocol.REQUESTS` (a repeated request is recognised by its
bytes: :class:`~devalloc.service.protocol.RequestDecoder`), and acted on; a reply that cannot
be sent at once waits in that client's queue (at most :data:`MAX_QUEUED` packets: a client that
does not read its replies is disconnected), so a slow or hostile client never holds the loop. A
malformed packet gets an error reply (and its fds are closed); :data:`MAX_ERRORS` of them
disconnect the client.

Identity is SO_PEERCRED's pid, uid and gid, read at connect time, with a pidfd of the process
that connected (SO_PEERPIDFD; pidfd_open of the pid on kernels before 6.5). The
service keeps no buffer: it closes its own fds of an allocation as soon as the reply carrying
them has been sent (or the client is gone). The books keep a client's holdings until it releases
them, or until the process is gone: a connection closed by a living process keeps its holdings
(the process may still hold the fds) until its pidfd says the process exited, or a new connection
of the same process takes them over.

Signals: SIGTERM/SIGINT stop the loop (clients see the connection close), SIGHUP re-reads the
policy file (a bad file keeps the old policy and is logged). With systemd, the listening socket
may come from socket activation (``LISTEN_FDS``, fd 3) and ``READY=1`` is sent to
``NOTIFY_SOCKET`` once the loop is about to run.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import errno
import functools
import json
import logging
import os
import platform
import select
import selectors
import signal
import socket
import stat
import struct
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Self, TypeVar

from .. import __version__
from ..allocator import (
    ALONE_NOTE,
    Allocation,
    Allocator,
    UsageSpec,
    application_alone,
    heap_request,
)
from ..constraints import Constraints
from ..errors import DevallocError, UsageError
from ..heaps.properties import HeapProperties
from ..negotiate import NegotiationError, Plan
from ..profiles import profile_names
from .books import Books, memory_class
from .collections import Collection
from .policy import Identity, Policy, Usage
from .protocol import (
    MAX_FDS,
    PLAN_SLOTS,
    REQUESTS,
    CollectionError,
    ProtocolError,
    Received,
    RequestDecoder,
    ServiceError,
    encode,
    encode_ok,
    error_reply,
    json_text,
    recv_message,
    send_packet,
)

__all__ = [
    "DEFAULT_SOCKET",
    "MAX_CLIENTS",
    "MAX_PER_UID",
    "MAX_QUEUED",
    "Service",
    "listen",
    "listen_fds",
    "notify",
]

#: Where ``devalloc serve`` listens, and clients connect, by default.
DEFAULT_SOCKET = "/run/devalloc/socket"
#: Connections served at once; more are closed at accept.
MAX_CLIENTS = 1024
#: Connections of one uid at once (one user cannot take every slot).
MAX_PER_UID = 256
#: Packets waiting for one client before it counts as not reading and is disconnected.
MAX_QUEUED = 256
#: Buffer fds waiting for one client (sent buffers the service still holds) before it counts as
#: not reading and is disconnected.
MAX_QUEUED_FDS = 4 * MAX_FDS
#: Malformed packets one connection may send before it is disconnected.
MAX_ERRORS = 64
#: Entries of each of the service's caches (parsed usages, quota pre-checks, plan JSON).
CACHE_SIZE = 256
_UCRED = struct.Struct("3i")

log = logging.getLogger("devalloc.service")
_T = TypeVar("_T")


# --- systemd -------------------------------------------------------------------------------------


def notify(state: str, environ: dict[str, str] | None = None) -> bool:
    """Send ``state`` (``"READY=1"``...) to systemd's ``NOTIFY_SOCKET``; False when not run by
    systemd (no variable). An ``@`` name is in the abstract namespace."""
    env = os.environ if environ is None else environ
    path = env.get("NOTIFY_SOCKET")
    if not path:
        return False
    address = "\0" + path[1:] if path.startswith("@") else path
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        try:
            sock.connect(address)
            sock.sendall(state.encode())
        except OSError as exc:
            log.warning("cannot notify systemd at %s: %s", path, exc)
            return False
    return True


def listen_fds() -> socket.socket | None:
    """The listening socket systemd passed (``LISTEN_PID`` is this process, ``LISTEN_FDS`` >= 1:
    fd 3), or None. The variables are removed so children do not inherit them.

    Raises:
        UsageError: the passed fd is not a listening AF_UNIX SOCK_SEQPACKET socket.
    """
    pid, count = os.environ.get("LISTEN_PID"), os.environ.get("LISTEN_FDS")
    if pid != str(os.getpid()) or not count:
        return None
    for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        os.environ.pop(name, None)
    if not count.isdigit() or int(count) < 1:
        raise UsageError(f"LISTEN_FDS={count!r}: socket activation passed no socket")
    os.set_inheritable(3, False)
    try:
        mode = os.fstat(3).st_mode
    except OSError as exc:
        raise UsageError(f"socket activation: fd 3 is not open ({exc.strerror})") from None
    if not stat.S_ISSOCK(mode):
        raise UsageError("socket activation: fd 3 is not a socket")
    sock = socket.socket(fileno=3)
    if sock.family != socket.AF_UNIX or sock.type != socket.SOCK_SEQPACKET:
        sock.detach()
        raise UsageError(
            "socket activation: fd 3 must be an AF_UNIX SOCK_SEQPACKET socket"
            " (ListenSequentialPacket= in the .socket unit)"
        )
    return sock


def listen(path: str, *, mode: int = 0o666) -> socket.socket:
    """A listening ``SOCK_SEQPACKET`` socket at ``path`` (its directory made 0755 if missing; a
    stale socket file replaced; ``mode`` applied: the policy, not the file mode, decides who gets
    what).

    Raises:
        UsageError: another service answers at ``path``, or ``path`` is not a socket.
    """
    if not isinstance(path, str) or not path or "\0" in path or len(os.fsencode(path)) > 107:
        raise UsageError(f"socket path {path!r:.120} is not a usable path (at most 107 bytes)")
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, mode=0o755, exist_ok=True)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        st = None
    if st is not None:
        if not stat.S_ISSOCK(st.st_mode):
            raise UsageError(f"{path} exists and is not a socket; give another --socket")
        with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC) as probe:
            try:
                probe.connect(path)
            except OSError:
                os.unlink(path)  # stale: nobody listens
            else:
                raise UsageError(f"a service already listens at {path}")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
    try:
        sock.bind(path)
    except BaseException:
        sock.close()
        raise
    try:
        os.chmod(path, mode)
        sock.listen(128)
    except BaseException:  # the file is ours: leave nothing behind
        sock.close()
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise
    return sock


# --- connections ---------------------------------------------------------------------------------


@dataclass
class _Outgoing:
    data: bytes
    fds: list[int]
    done: Callable[[], None] | None = None


@dataclass
class _Connection:
    key: int
    sock: socket.socket | None
    ident: Identity
    pidfd: int
    queue: collections.deque[_Outgoing] = field(default_factory=collections.deque)
    errors: int = 0
    writing: bool = False
    plan_slots: dict[int, int] = field(default_factory=dict)  # plan id -> the client's slot
    next_slot: int = 0


#: getsockopt's SO_PEERPIDFD (Linux 6.5): a pidfd of the peer's process as of connect(). Python
#: names it from 3.13; before, its number is 77 where the architecture takes its socket options
#: from asm-generic (alpha, mips, parisc and sparc number their own: there it is not guessed).
SO_PEERPIDFD: int | None = getattr(
    socket,
    "SO_PEERPIDFD",
    77
    if platform.machine()
    in ("x86_64", "i686", "aarch64", "armv7l", "riscv64", "ppc64le", "s390x", "loongarch64")
    else None,
)


def _peer(sock: socket.socket) -> tuple[Identity, int]:
    """The identity of the process at the other end of ``sock`` and a pidfd of it (the caller
    owns it).

    The pidfd comes from SO_PEERPIDFD where the kernel has it (6.5 on): the process that
    connected, even if it exited and its pid was taken by another since. Its command name and
    groups are read from /proc/PID after that, and count only if the pidfd's process is still
    alive once they are read (while it lives, its pid is its own): so a pid reused between
    connect and accept can never lend a client another process's identity. On older kernels
    the pidfd is opened by pid (pidfd_open), which leaves that window open: a process that
    connects and exits before the service accepts it, its pid taken by another at once.

    Raises:
        OSError: the peer is gone.
    """
    pidfd = -1
    if SO_PEERPIDFD is not None:
        try:
            pidfd = sock.getsockopt(socket.SOL_SOCKET, SO_PEERPIDFD)
        except OSError as exc:
            if exc.errno not in (errno.ENOPROTOOPT, errno.EINVAL, errno.EOPNOTSUPP):
                raise
    try:
        if pidfd >= 0:
            os.set_inheritable(pidfd, False)
        ident = _identity(sock)
        if pidfd < 0:
            pidfd = os.pidfd_open(ident.pid)
        elif _dead(pidfd):
            raise ProcessLookupError(errno.ESRCH, f"client pid {ident.pid} exited")
    except BaseException:
        if pidfd >= 0:
            os.close(pidfd)
        raise
    return ident, pidfd


def _identity(sock: socket.socket) -> Identity:
    pid, uid, gid = _UCRED.unpack(
        sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
    )
    comm = "?"
    groups: tuple[int, ...] = ()
    with (
        contextlib.suppress(OSError, UnicodeDecodeError),
        open(f"/proc/{pid}/comm", encoding="utf-8") as f,
    ):
        comm = f.read().strip() or "?"
    with (
        contextlib.suppress(OSError, ValueError, UnicodeDecodeError),
        open(f"/proc/{pid}/status", encoding="utf-8") as f,
    ):
        for line in f:
            if line.startswith("Groups:"):
                groups = tuple(int(g) for g in line.split()[1:])
    return Identity(pid, uid, gid, groups, comm)


@functools.lru_cache(maxsize=1024)
def buffer_name(ident: Identity, count: int) -> str:
    """The dma-buf name prefix of a client's buffers, ``devalloc:<comm>:<pid>:`` (the allocator
    appends the image index, and ``.N`` for a plane buffer): at most 31 bytes in all."""
    room = 31 - len(str(max(count - 1, 0))) - 2
    comm = ident.comm
    name = f"devalloc:{comm}:{ident.pid}:"
    while len(name.encode()) > room and comm:
        comm = comm[:-1]
        name = f"devalloc:{comm}:{ident.pid}:"
    return name if len(name.encode()) <= room else f"dva:{ident.pid}:"


class Service:
    """The devalloc service over ``listener`` (see the module doc).

    Args:
        listener: a listening AF_UNIX SOCK_SEQPACKET socket (the service owns it).
        allocator: the allocator to serve from (default: ``Allocator()``, heaps and devices
            discovered; the service owns one it made).
        policy: the policy (default: the built-in one).
        policy_path: the file SIGHUP re-reads.
        socket_path: a socket file to remove at exit (one :func:`listen` made).
        own_allocator: close ``allocator`` with the service (default: only one it made).
    """

    def __init__(
        self,
        listener: socket.socket,
        *,
        allocator: Allocator | None = None,
        policy: Policy | None = None,
        policy_path: str | None = None,
        socket_path: str | None = None,
        own_allocator: bool | None = None,
    ) -> None:
        # What is made here is closed again if a later step fails (the listener too: the
        # service owns it from the start).
        made = contextlib.ExitStack()
        made.callback(listener.close)
        try:
            self._listener = listener
            self._own_allocator = allocator is None if own_allocator is None else own_allocator
            self.allocator = allocator if allocator is not None else Allocator()
            if self._own_allocator:
                made.callback(self.allocator.close)
            self.policy = policy if policy is not None else Policy()
            self.policy_path = policy_path
            self.socket_path = socket_path
            self.books = Books()
            # live device names and paths, and bundled profiles: what a text usage may name
            self._names = set(profile_names())
            for device in self.allocator.discovery.devices():
                self._names.add(device.name)
                path = getattr(device, "path", None)
                if isinstance(path, str):
                    self._names.add(path)
            self._decoder = RequestDecoder(CACHE_SIZE)
            self._wire: bytes | None = None  # the cache key of the request being handled, if any
            #: allocate requests by their wire key: their usages and needs (see _op_allocate)
            self._by_wire: _Cache[tuple[list[UsageSpec], _Need]] = _Cache()
            self._usage_cache: _Cache[tuple[UsageSpec, ...]] = _Cache()
            self._handlers: dict[str, Callable[[_Connection, dict[str, Any]], Service._Result]] = {
                op: getattr(self, "_op_" + op) for op in REQUESTS
            }
            self._needs_cache: _Cache[_Need] = _Cache()
            self._plans: _Cache[tuple[int, dict[str, Any]]] = _Cache()  # Plan -> (id, JSON)
            self._plan_ids = iter(range(1, 1 << 62))
            self.collections: dict[str, Collection] = {}
            self._conns: dict[int, _Connection] = {}
            self._lingering: dict[int, _Connection] = {}  # pid -> closed connection, process alive
            self._keys = iter(range(1, 1 << 62))
            self._sel = _Epoll()
            made.callback(self._sel.close)
            self._wake_r, self._wake_w = socket.socketpair()
            made.callback(self._wake_r.close)
            made.callback(self._wake_w.close)
            self._wake_r.setblocking(False)
            self._wake_w.setblocking(False)
            self._stopping = False
            self._reload = False
            self.started = time.time()
            listener.setblocking(False)
            self._sel.register(listener, selectors.EVENT_READ, ("listen", 0))
            self._sel.register(self._wake_r, selectors.EVENT_READ, ("wake", 0))
        except BaseException:
            made.close()
            raise
        made.pop_all()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- the loop --------------------------------------------------------------------------------

    def install_signals(self) -> None:
        """SIGTERM/SIGINT stop, SIGHUP reloads the policy (main thread only)."""
        signal.set_wakeup_fd(self._wake_w.fileno(), warn_on_full_buffer=False)
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        signal.signal(signal.SIGHUP, self._on_hup)

    def _on_stop(self, signum: int, frame: object) -> None:
        self._stopping = True

    def _on_hup(self, signum: int, frame: object) -> None:
        self._reload = True

    def stop(self) -> None:
        """Ask the loop to return (from any thread)."""
        self._stopping = True
        with contextlib.suppress(OSError):
            self._wake_w.send(b"\0")

    def serve_forever(self, *, ready: Callable[[], None] | None = None) -> None:
        """Serve until :meth:`stop` or SIGTERM; ``ready`` is called once before the first wait."""
        if ready is not None:
            ready()
        while not self._stopping:
            for (kind, number), mask in self._sel.select():
                try:
                    self._dispatch(kind, number, mask)
                except Exception:  # a bug must not take every client down
                    log.exception("internal error handling %s %s", kind, number)
                    conn = self._conns.get(number)
                    if kind in ("client", "pidfd") and conn is not None:
                        self._drop(conn, "internal error")
            if self._reload:
                self._reload = False
                self.reload_policy()

    def _dispatch(self, kind: str, number: int, mask: int) -> None:
        if kind == "listen":
            self._accept()
        elif kind == "wake":
            with contextlib.suppress(OSError):
                while self._wake_r.recv(512):
                    pass
        elif kind == "pidfd":
            self._died(number)
        elif kind == "client":
            conn = self._conns.get(number)
            if conn is None:
                return
            if mask & selectors.EVENT_WRITE:
                self._flush(conn)
            if mask & selectors.EVENT_READ and conn.sock is not None:
                self._readable(conn)

    def reload_policy(self) -> None:
        """Re-read the policy file (SIGHUP); a bad one keeps the old policy."""
        if self.policy_path is None:
            return
        try:
            self.policy = Policy.load(self.policy_path)
        except DevallocError as exc:
            log.error("policy not reloaded, keeping the old one: %s", exc)
        else:
            log.info("policy reloaded from %s", self.policy_path)

    def close(self) -> None:
        """Disconnect every client and close every fd the service holds (idempotent)."""
        for conn in list(self._conns.values()) + list(self._lingering.values()):
            self._forget(conn)
        self._conns.clear()
        self._lingering.clear()
        if self._listener.fileno() >= 0:
            with contextlib.suppress(KeyError, ValueError):
                self._sel.unregister(self._listener)
            self._listener.close()
            if self.socket_path is not None:
                with contextlib.suppress(OSError):
                    os.unlink(self.socket_path)
        self._sel.close()
        self._wake_r.close()
        self._wake_w.close()
        if self._own_allocator:
            self.allocator.close()

    # --- connections -----------------------------------------------------------------------------

    def _accept(self) -> None:
        for _ in range(64):
            try:
                sock, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # EMFILE and friends: keep serving the others
                log.warning("accept failed: %s", exc)
                return
            if len(self._conns) >= MAX_CLIENTS:
                sock.close()
                continue
            try:
                ident, pidfd = _peer(sock)
            except OSError:
                sock.close()  # gone already
                continue
            mine = sum(1 for c in self._conns.values() if c.ident.uid == ident.uid and c.sock)
            if mine >= MAX_PER_UID:
                log.warning(
                    "refused %s: %d connections of uid %d", ident.describe(), MAX_PER_UID, ident.uid
                )
                os.close(pidfd)
                sock.close()
                continue
            sock.setblocking(False)
            conn = _Connection(next(self._keys), sock, ident, pidfd)
            self._conns[conn.key] = conn
            self.books.add_client(conn.key, ident)
            old = self._lingering.pop(ident.pid, None)
            if old is not None:  # the same living process reconnects: it takes its books over
                self.books.take_over(old.key, conn.key)
                self._forget(old)
            self._sel.register(sock, selectors.EVENT_READ, ("client", conn.key))
            self._sel.register(pidfd, selectors.EVENT_READ, ("pidfd", conn.key))

    def _readable(self, conn: _Connection) -> None:
        """Read and handle one packet: the selector is level-triggered, so a client with more
        waiting is served again on the next turn of the loop, after the others (fairness), and
        the usual case, one request per wake-up, costs no second receive that finds nothing."""
        sock = conn.sock
        if sock is None:
            return
        try:
            received = recv_message(sock, max_fds=0)
        except (BlockingIOError, InterruptedError):
            return
        except ProtocolError as exc:
            self._protocol_error(conn, None, exc)
            return
        except OSError as exc:
            self._disconnected(conn, f"receive failed: {exc}")
            return
        if received is None:
            self._disconnected(conn, "closed the connection")
            return
        self._handle(conn, received)

    def _protocol_error(self, conn: _Connection, request_id: object, exc: ServiceError) -> None:
        conn.errors += 1
        if conn.errors > MAX_ERRORS:
            self._disconnected(conn, f"{MAX_ERRORS} malformed messages")
            return
        self._reply(conn, error_reply(request_id, exc))

    def _handle(self, conn: _Connection, received: Received) -> None:
        try:
            request, self._wire = self._decoder.decode(received.data)
        except ProtocolError as exc:
            self._protocol_error(conn, _peek_id(received.data), exc)
            return
        finally:
            received.close_fds()
        books = self.books.clients.get(conn.key)
        if books is not None:
            books.requests += 1
        request_id = request.get("id")
        if request_id is None and request["op"] == "release" and request["collection"] is None:
            self.books.release(conn.key, request["buffers"] or ())  # no reply; unknown ids ignored
            return
        handler = self._handlers[request["op"]]
        try:
            reply, fds, done = handler(conn, request)
        except DevallocError as exc:
            if request_id is not None or request["op"] != "release":
                self._reply(conn, error_reply(request_id, exc))
            return
        except Exception as exc:  # a bug: this request fails, the client and the others do not
            log.exception("internal error serving %s for %s", request["op"], conn.ident.describe())
            failure = ServiceError(f"internal error serving {request['op']}: {exc!r:.200}")
            self._reply(conn, error_reply(request_id, failure))
            return
        if request_id is None and not fds:
            return
        if isinstance(reply, bytes):  # the reply's fields as JSON text already
            try:
                data = encode_ok(request_id, reply)
            except ProtocolError as exc:
                if done is not None:
                    done()
                self._reply(conn, error_reply(request_id, exc))
                return
            self._send(conn, data, fds, done)
            return
        self._reply(conn, {"id": request_id, "ok": True, **reply}, fds, done)

    def _reply(
        self,
        conn: _Connection,
        message: dict[str, Any],
        fds: Sequence[int] = (),
        done: Callable[[], None] | None = None,
    ) -> None:
        """Send (or queue) one message; ``done`` runs once it is sent or dropped."""
        try:
            data = encode(message)
        except ProtocolError as exc:
            if done is not None:
                done()
            data, fds, done = encode(error_reply(message.get("id"), exc)), (), None
        self._send(conn, data, fds, done)

    def _send(
        self,
        conn: _Connection,
        data: bytes,
        fds: Sequence[int] = (),
        done: Callable[[], None] | None = None,
    ) -> None:
        """Send (or queue) one encoded packet; ``done`` runs once it is sent or dropped."""
        sock = conn.sock
        if sock is not None and not conn.queue:  # nothing waits before it: straight out
            try:
                send_packet(sock, data, fds)
            except (BlockingIOError, InterruptedError):
                pass  # the socket is full: queued below
            except OSError as exc:
                if done is not None:
                    done()
                self._disconnected(conn, f"send failed: {exc.strerror}")
                return
            else:
                if done is not None:
                    done()
                return
        out = _Outgoing(data, list(fds), done)
        if conn.sock is None:
            _finish(out)
            return
        waiting_fds = sum(len(o.fds) for o in conn.queue) + len(out.fds)
        if len(conn.queue) >= MAX_QUEUED or waiting_fds > MAX_QUEUED_FDS:
            _finish(out)
            self._disconnected(conn, f"does not read its replies ({len(conn.queue)} waiting)")
            return
        conn.queue.append(out)
        self._flush(conn)

    def _flush(self, conn: _Connection) -> None:
        sock = conn.sock
        while conn.queue and sock is not None:
            out = conn.queue[0]
            try:
                send_packet(sock, out.data, out.fds)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                self._disconnected(conn, f"send failed: {exc.strerror}")
                return
            conn.queue.popleft()
            _finish(out)
        want = selectors.EVENT_READ | (selectors.EVENT_WRITE if conn.queue else 0)
        if sock is not None and conn.writing != bool(conn.queue):
            conn.writing = bool(conn.queue)
            self._sel.modify(sock, want, ("client", conn.key))

    def _disconnected(self, conn: _Connection, why: str) -> None:
        """The connection is over; the books stay while the process lives (see module doc)."""
        log.info("client %s: %s", conn.ident.describe(), why)
        self._close_socket(conn)
        self._leave_collections(conn, why)
        books = self.books.clients.get(conn.key)
        if books is None or not books.holdings or _dead(conn.pidfd):
            self._drop(conn, why)
            return
        books.connected = False
        old = self._lingering.pop(conn.ident.pid, None)
        if old is not None and old is not conn:
            self._drop(old, "replaced")
        self._lingering[conn.ident.pid] = conn

    def _died(self, key: int) -> None:
        conn = self._conns.get(key)
        if conn is not None:
            self._drop(conn, "the process exited")

    def _drop(self, conn: _Connection, why: str) -> None:
        """Forget a client entirely: its holdings and quota are released."""
        self._close_socket(conn)
        self._leave_collections(conn, why)
        self._forget(conn)

    def _forget(self, conn: _Connection) -> None:
        self._close_socket(conn)
        self.books.drop_client(conn.key)
        self._conns.pop(conn.key, None)
        if self._lingering.get(conn.ident.pid) is conn:
            del self._lingering[conn.ident.pid]
        if conn.pidfd >= 0:
            with contextlib.suppress(KeyError, ValueError):
                self._sel.unregister(conn.pidfd)
            os.close(conn.pidfd)
            conn.pidfd = -1

    def _close_socket(self, conn: _Connection) -> None:
        sock, conn.sock = conn.sock, None
        while conn.queue:
            _finish(conn.queue.popleft())
        if sock is not None:
            with contextlib.suppress(KeyError, ValueError):
                self._sel.unregister(sock)
            sock.close()

    # --- requests ------------------------------------------------------------------------------

    #: A handler's reply fields (a dict, or its members as JSON text), its fds, and what to run
    #: once they are sent.
    _Result = tuple[dict[str, Any] | bytes, list[int], Callable[[], None] | None]

    def _op_hello(self, conn: _Connection, request: dict[str, Any]) -> _Result:
        return (
            {"service": "devalloc", "version": __version__, "client": conn.ident.to_json()},
            [],
            None,
        )

    def _op_status(self, conn: _Connection, request: dict[str, Any]) -> _Result:
        books = self.books.to_json()
        clients = books["clients"]
        if conn.ident.uid != 0:  # other users' processes are not an unprivileged client's business
            clients = [c for c in clients if c["uid"] == conn.ident.uid]
            books["clients"] = clients
        if len(clients) > 100:
            books["clients"] = clients[:100]
            books["clients_omitted"] = len(clients) - 100
        props = [p.to_json() for _, p in self.allocator.registry.heaps()]
        status = {
            "pid": os.getpid(),
            "version": __version__,
            "uptime": time.time() - self.started,
            "connections": sum(1 for c in self._conns.values() if c.sock is not None),
            "books": books,
            "policy": self.policy.to_json(),
            "heaps": [
                {"name": p["name"], "kind": p["kind"], "accessible": p["accessible"]} for p in props
            ],
            "open_collections": [
                {
                    "id": c.id,
                    "state": c.state,
                    "participants": len(c.participants),
                    "expected": c.expected,
                }
                for c in self.collections.values()
            ],
        }
        return {"status": status}, [], None

    def _usages(self, raw: list[Any], key: str | None = None) -> list[UsageSpec]:
        """Wire usages -> the allocator's: Constraints from JSON, or the name of a live device or
        bundled profile. The service never opens a path a client names. (Cached by the wire
        form, ``key`` when the caller made it: the same usages are parsed once.)"""
        if key is None:
            key = _usage_key(raw)
        cached = self._usage_cache.get(key)
        if cached is not None:
            return list(cached)
        out: list[UsageSpec] = []
        for usage in raw:
            if isinstance(usage, dict):
                out.append(Constraints.from_json(usage["constraints"]))
                continue
            name = usage.rpartition(":")[0] if ":" in usage else usage
            if usage not in self._names and name not in self._names:
                raise UsageError(
                    f"usage {usage!r:.80}: not a live device or bundled profile of the service;"
                    " the service does not read files for clients: send the device file's"
                    " constraints (devalloc.connect() does this for a device file)"
                )
            out.append(usage)
        self._usage_cache.put(key, tuple(out))
        return out

    def _needs(self, request: dict[str, Any], usages: list[UsageSpec], usage_key: str) -> _Need:
        """What a request asks for: its negotiated plan, the buffer sizes of one image and their
        memory class (cached by the request's wire form, ``usage_key`` being its usages').

        Negotiation is a pure function of the constraints and the image request, so an
        allocation asked for again reuses its plan instead of negotiating from scratch; the heap
        is still selected (and the fallback tried) at every allocation, the quota checked
        before allocating, and the books take the sizes and heap of what was allocated. A
        ``verify`` request empties the cache (verification may teach the allocator a
        constraint, which changes later plans)."""
        key = (
            usage_key,
            request["width"],
            request["height"],
            None if request["formats"] is None else tuple(request["formats"]),
            request["cpu_access"],
            request["prefer_uncached"],
        )
        cached = self._needs_cache.get(key)
        if cached is not None:
            return cached
        alone = not usages  # the application alone: its formats are its constraints
        plan = self.allocator.plan(
            request["width"],
            request["height"],
            usages=[application_alone(request["formats"])] if alone else usages,
            formats=None if alone else request["formats"],
            cpu_access=request["cpu_access"],
            prefer_uncached=request["prefer_uncached"],
        )
        notes: list[str] = []
        if alone:  # as Allocator.allocate: no device takes part
            plan = dataclasses.replace(plan, devices=())
            notes.append(ALONE_NOTE)
            unverified: tuple[str, ...] = ()
        else:
            constraints = [c for spec in usages for c, _ in self.allocator.resolve(spec)]
            unverified = tuple(c.label for c in constraints)
        skipped = plan.find("skipped")
        if skipped is not None and skipped.note not in notes:
            notes.append(skipped.note)
        wanted = heap_request(plan)
        memory = "protected" if wanted.protected else "contiguous" if wanted.contiguous else ""
        need = _Need(
            plan,
            tuple(plan.layout.buffer_sizes or ((plan.layout.size or 0),)),
            memory or "scattered",
            alone,
            unverified,
            tuple(notes),
        )
        self._needs_cache.put(key, need)
        return need

    def _allocate_planned(
        self, need: _Need, count: int, allow_cpu_only: bool, name: str
    ) -> Allocation:
        """``Allocator.allocate`` without verification, from the plan negotiated before
        (:meth:`~devalloc.allocator.Allocator.allocate_plan`), with the negotiation's notes."""
        return self.allocator.allocate_plan(
            need.plan,
            count=count,
            allow_cpu_only=allow_cpu_only or need.alone,
            name=name,
            unverified=need.unverified,
            notes=need.notes,
        )

    def _charge_check(
        self,
        keys: Sequence[int],
        sizes: Sequence[int],
        memory: str,
        new_collection: bool = False,
    ) -> None:
        """Refuse (QuotaError/PolicyError naming the rule) unless every client in ``keys`` may
        take ``sizes`` more bytes of ``memory`` class. Quotas hold for a uid: what all its
        connections hold together (more connections do not mean more quota)."""
        total_bytes, total_buffers = self.books.totals()
        extra, count = sum(sizes), len(sizes)
        contiguous = memory == "contiguous"
        protected, cpu_only = memory == "protected", memory == "cpu-only"
        for key in keys:
            ident = self._conns[key].ident
            nbytes, nbuffers, ncollections, ncontiguous = self.books.tally_of_uid(ident.uid)
            after = (
                nbytes + extra,
                nbuffers + count,
                ncollections + (1 if new_collection else 0),
                ncontiguous + (extra if contiguous else 0),
            )
            if self.policy.allows(
                ident,
                *after,
                contiguous=contiguous,
                protected=protected,
                cpu_only=cpu_only,
                service_bytes=total_bytes + extra,
                service_buffers=total_buffers + count,
            ):
                continue  # the usual case; check() words a refusal
            self.policy.check(
                ident,
                Usage(*after),
                contiguous=contiguous,
                protected=protected,
                cpu_only=cpu_only,
                service_bytes=total_bytes + extra,
                service_buffers=total_buffers + count,
            )

    def _op_allocate(self, conn: _Connection, request: dict[str, Any]) -> _Result:
        # A request whose wire form was seen before (the decoder's key) has its usages and needs
        # kept: the plan is reused as _needs says; heap, quota, books and reply are all new.
        wire = self._wire
        kept = self._by_wire.get(wire) if wire is not None else None
        if kept is not None:
            usages, need = kept
        else:
            usage_key = _usage_key(request["usages"])
            usages = self._usages(request["usages"], usage_key)
            need = self._needs(request, usages, usage_key)
            if wire is not None and not request["verify"]:
                self._by_wire.put(wire, (usages, need))
        count = request["count"]
        sizes = list(need.image) * count
        if len(sizes) > MAX_FDS:
            raise UsageError(
                f"{count} images of {len(need.image)} buffers are {len(sizes)} fds, more than"
                f" one reply carries ({MAX_FDS}); allocate fewer at a time"
            )
        self._charge_check([conn.key], sizes, need.memory)
        name = buffer_name(conn.ident, count)
        if request["verify"]:
            self._needs_cache.clear()  # what verification learns changes later plans
            self._by_wire.clear()
            result = self.allocator.allocate(
                request["width"],
                request["height"],
                usages=usages,
                formats=request["formats"],
                count=count,
                cpu_access=request["cpu_access"],
                prefer_uncached=request["prefer_uncached"],
                verify=True,
                frames=request["frames"],
                allow_cpu_only=request["allow_cpu_only"],
                name=name,
            )
        else:
            result = self._allocate_planned(need, count, request["allow_cpu_only"], name)
        try:
            memory = memory_class(result.heap_properties)
            buffers = [b for image in result.images for b in image]
            got = [b.size for b in buffers]
            if got != sizes or memory != need.memory:  # else the check above said it all
                self._charge_check([conn.key], got, memory)
            ids = self.books.hand_out(conn.key, [(size, memory) for size in got])
            if result.plan is need.plan:
                if need.entry is None:
                    need.entry = self._plan_entry(need.plan)
                plan = self._plan_for(conn, need.entry)
            else:
                plan = self._plan_for(conn, self._plan_entry(result.plan))
            description = _describe_text(result, ids, request["name"], plan, need)
        except BaseException:
            result.close()
            raise
        return description, [b.fileno() for b in buffers], result.close

    def _plan_entry(self, plan: Plan) -> tuple[int, dict[str, Any]]:
        """A plan's service-wide id and JSON (made once per distinct plan)."""
        entry = self._plans.get(plan)
        if entry is None:
            entry = (next(self._plan_ids), plan.to_json())
            self._plans.put(plan, entry)
        return entry

    def _plan_for(self, conn: _Connection, entry: tuple[int, dict[str, Any]]) -> dict[str, Any]:
        """``{"plan_slot": k}`` when this client holds the plan in its slot k already, else
        the plan's JSON and the slot to keep it in (round robin over :data:`PLAN_SLOTS`): a
        client allocating the same thing again gets a few bytes, not the whole plan."""
        plan_id, data = entry
        slot = conn.plan_slots.get(plan_id)
        if slot is not None:
            return {"plan_slot": slot}
        slot = conn.next_slot
        conn.next_slot = (slot + 1) % PLAN_SLOTS
        for old, taken in list(conn.plan_slots.items()):
            if taken == slot:
                del conn.plan_slots[old]
        conn.plan_slots[plan_id] = slot
        return {"plan": data, "plan_slot": slot}

    def _op_release(self, conn: _Connection, request: dict[str, Any]) -> _Result:
        released = self.books.release(conn.key, request["buffers"] or [])
        token = request["collection"]
        if token is not None:
            coll = self.collections.get(token)
            if coll is not None:
                released += self.books.release_collection(conn.key, coll.id)
                self._leave(coll, conn, "released the collection")
        return {"released": released}, [], None

    # --- collections ---------------------------------------------------------------------------

    def _collection(self, token: str) -> Collection:
        coll = self.collections.get(token)
        if coll is None:
            raise CollectionError("no collection has this token (a wrong token, or it is over)")
        return coll

    def _op_create(self, conn: _Connection, request: dict[str, Any]) -> _Result:
        mine = sum(1 for c in self.collections.values() if c.creator == conn.key)
        if mine >= 64:
            raise CollectionError("this connection has created 64 open collections already")
        coll = Collection.new(
            creator=conn.key,
            width=request["width"],
            height=request["height"],
            formats=request["formats"],
            expected=request["participants"],
            extra=request["extra"],
            prefer_uncached=request["prefer_uncached"],
            allow_cpu_only=request["allow_cpu_only"],
        )
        self.collections[coll.token] = coll
        return {"token": coll.token, "collection": coll.id}, [], None

    def _op_join(self, conn: _Connection, request: dict[str, Any]) -> _Result:
        coll = self._collection(request["token"])
        constraints = [
            c for spec in self._usages(request["usages"]) for c, _ in self.allocator.resolve(spec)
        ]
        self._charge_check([conn.key], [], "scattered", new_collection=True)
        try:
            coll.join(
                conn.key,
                conn.ident,
                constraints,
                request["cpu_access"],
                request["count"],
                optional=request["optional"],
            )
        except DevallocError as exc:
            self._event(coll, {"state": "conflict", "message": str(exc)}, skip=conn.key)
            raise
        return {"collection": coll.id, "participants": len(coll.participants)}, [], None

    def _op_commit(self, conn: _Connection, request: dict[str, Any]) -> _Result:
        coll = self._collection(request["token"])
        part = coll.participants.get(conn.key)
        if part is None:
            raise CollectionError(f"commit before join: this connection is not in {coll.id}")
        part.committed = True
        if coll.ready:
            self._allocate_collection(coll)
        return {"collection": coll.id, "state": coll.state}, [], None

    def _event(
        self,
        coll: Collection,
        body: dict[str, Any],
        *,
        skip: int | None = None,
        fds: Sequence[int] = (),
        done: Callable[[], None] | None = None,
    ) -> None:
        targets = [k for k in coll.participants if k != skip and k in self._conns]
        message = {"event": "collection", "token": coll.token, "collection": coll.id, **body}
        if not targets:
            if done is not None:
                done()
            return
        remaining = [len(targets)]

        def one_done() -> None:
            remaining[0] -= 1
            if remaining[0] == 0 and done is not None:
                done()

        for key in targets:
            self._reply(self._conns[key], message, fds, one_done if fds or done else None)

    def _fail(self, coll: Collection, exc: DevallocError) -> None:
        coll.state = "failed"
        self.collections.pop(coll.token, None)
        self._event(coll, {"state": "failed", "error": error_reply(None, exc)["error"]})

    def _allocate_collection(self, coll: Collection) -> None:
        keys = list(coll.participants)
        try:
            plan = coll.negotiate()
        except NegotiationError as exc:
            self._fail(
                coll,
                NegotiationError(
                    f"collection {coll.id}: " + coll.explain(exc.conflicts), exc.conflicts
                ),
            )
            return
        except DevallocError as exc:
            self._fail(coll, exc)
            return
        count = coll.total_count
        sizes = list(plan.layout.buffer_sizes or ((plan.layout.size or 0),)) * count
        creator = self._conns.get(coll.creator)
        ident = creator.ident if creator is not None else coll.participants[keys[0]].ident
        try:
            if len(sizes) > MAX_FDS:
                raise UsageError(
                    f"collection {coll.id}: {count} images are {len(sizes)} fds, more than one"
                    f" message carries ({MAX_FDS})"
                )
            result = self.allocator.allocate(
                coll.width,
                coll.height,
                usages=coll.constraints(),
                formats=coll.formats,
                count=count,
                cpu_access=coll.cpu_access,
                prefer_uncached=coll.prefer_uncached,
                allow_cpu_only=coll.allow_cpu_only,
                name=buffer_name(ident, count),
            )
        except DevallocError as exc:
            self._fail(coll, exc)
            return
        buffers = [b for image in result.images for b in image]
        memory = memory_class(result.heap_properties)
        try:
            for key in keys:
                try:
                    self._charge_check([key], [b.size for b in buffers], memory)
                except DevallocError as exc:
                    who = coll.participants[key].describe()
                    raise type(exc)(f"collection {coll.id}: {who}: {exc}", *_rule(exc)) from None
        except DevallocError as exc:
            result.close()
            self._fail(coll, exc)
            return
        ids: list[int] | None = None
        for key in keys:
            ids = self.books.hand_out(
                key, [(b.size, memory) for b in buffers], collection=coll.id, ids=ids
            )
        assert ids is not None
        coll.state = "allocated"
        self.collections.pop(coll.token, None)
        description = _describe(result, ids, None, {"plan": self._plan_entry(result.plan)[1]})
        self._event(
            coll,
            {"state": "allocated", "allocation": description},
            fds=[b.fileno() for b in buffers],
            done=result.close,
        )

    def _leave_collections(self, conn: _Connection, why: str) -> None:
        for coll in list(self.collections.values()):
            if conn.key in coll.participants:
                self._leave(coll, conn, why)
            elif coll.creator == conn.key and not coll.participants:
                del self.collections[coll.token]

    def _leave(self, coll: Collection, conn: _Connection, why: str) -> None:
        part = coll.participants.get(conn.key)
        if part is None or coll.state != "open":
            return
        del coll.participants[conn.key]
        if part.optional:
            coll.expected = max(coll.expected - 1, 1)
            self._event(coll, {"state": "left", "message": f"{part.describe()} left ({why})"})
            if coll.participants and coll.ready:
                self._allocate_collection(coll)
            return
        self._fail(
            coll,
            CollectionError(
                f"collection {coll.id} failed: {part.describe()} left before the allocation"
                f" ({why}) and did not join as optional"
            ),
        )


@dataclass
class _Need:
    """What one allocate request asks for (see ``Service._needs``): the negotiated plan, one
    image's buffer sizes and memory class, whether no device takes part, the labels left
    unverified and the negotiation's notes; ``entry`` is the plan's (id, JSON) once sent."""

    plan: Plan
    image: tuple[int, ...]
    memory: str
    alone: bool
    unverified: tuple[str, ...]
    notes: tuple[str, ...]
    entry: tuple[int, dict[str, Any]] | None = None
    #: the last allocation's heap properties, notes and name, and their JSON text
    common: tuple[HeapProperties, tuple[str, ...], str | None, bytes] | None = None


class _Epoll:
    """The loop's selector: :class:`selectors.EpollSelector`'s interface and event masks (the
    same ``register``/``modify``/``unregister`` with ``EVENT_READ``/``EVENT_WRITE``), minus its
    per-call bookkeeping; :meth:`select` waits and yields ``(data, events)`` pairs."""

    def __init__(self) -> None:
        self._epoll = select.epoll()
        self._keys: dict[int, tuple[tuple[str, int], int]] = {}  # fd -> (data, events)

    @staticmethod
    def _fd(fileobj: socket.socket | int) -> int:
        return fileobj if isinstance(fileobj, int) else fileobj.fileno()

    @staticmethod
    def _mask(events: int) -> int:
        return (select.EPOLLIN if events & selectors.EVENT_READ else 0) | (
            select.EPOLLOUT if events & selectors.EVENT_WRITE else 0
        )

    def register(self, fileobj: socket.socket | int, events: int, data: tuple[str, int]) -> None:
        fd = self._fd(fileobj)
        if fd in self._keys:
            raise KeyError(f"fd {fd} is registered already")
        self._epoll.register(fd, self._mask(events))
        self._keys[fd] = (data, events)

    def modify(self, fileobj: socket.socket | int, events: int, data: tuple[str, int]) -> None:
        fd = self._fd(fileobj)
        if fd not in self._keys:
            raise KeyError(f"fd {fd} is not registered")
        self._epoll.modify(fd, self._mask(events))
        self._keys[fd] = (data, events)

    def unregister(self, fileobj: socket.socket | int) -> None:
        fd = self._fd(fileobj)
        del self._keys[fd]  # KeyError when not registered, as selectors says
        with contextlib.suppress(OSError):  # closed already: the kernel dropped it
            self._epoll.unregister(fd)

    def select(self) -> list[tuple[tuple[str, int], int]]:
        """Wait for events (no timeout): ``(data, events)`` of every ready fd, the events as
        selectors reports them (an error or hang-up reads as both)."""
        try:
            ready = self._epoll.poll(-1, max(len(self._keys), 1))
        except InterruptedError:
            return []
        out = []
        keys = self._keys
        for fd, event in ready:
            key = keys.get(fd)
            if key is not None:
                events = (selectors.EVENT_WRITE if event & ~select.EPOLLIN else 0) | (
                    selectors.EVENT_READ if event & ~select.EPOLLOUT else 0
                )
                out.append((key[0], events & key[1]))
        return out

    def close(self) -> None:
        self._keys.clear()
        self._epoll.close()


def _rule(exc: DevallocError) -> tuple[str, ...]:
    rule = getattr(exc, "rule", None)
    return (rule,) if isinstance(rule, str) else ()


class _Cache(Generic[_T]):
    """A small dict cache, emptied when it reaches :data:`CACHE_SIZE` entries."""

    def __init__(self) -> None:
        self._items: dict[object, _T] = {}

    def get(self, key: object) -> _T | None:
        return self._items.get(key)

    def put(self, key: object, value: _T) -> None:
        if len(self._items) >= CACHE_SIZE:
            self._items.clear()
        self._items[key] = value

    def clear(self) -> None:
        self._items.clear()


def _usage_key(raw: list[Any]) -> str:
    """A cache key of decoded wire usages: equal keys, equal usages (the repr of JSON values
    tells str, int, float, bool and None apart; faster than json.dumps)."""
    return repr(raw)


def _describe_text(
    result: Allocation,
    ids: Sequence[int],
    name: str | None,
    plan: dict[str, Any],
    need: _Need | None = None,
) -> bytes:
    """``"allocation":{...}``, as JSON text: what :func:`_describe` says, made from parts. The
    heap, notes and name, the same for every allocation of one kind, are made into text once
    and kept on ``need`` (the request's kind); a plan the client holds is its slot."""
    if result.verdicts:
        return b'"allocation":' + json_text(_describe(result, ids, name, plan))
    props, unverified, notes = result.heap_properties, result.unverified, result.notes
    kept = need.common if need is not None else None
    if kept is not None and kept[0] is props and kept[1] == notes and kept[2] == name:
        common = kept[3]
    else:
        common = json_text(
            {
                "heap": _heap_json(props),
                "verdicts": [],
                "unverified": list(unverified),
                "notes": list(notes),
                "name": name,
            }
        )[1:-1]
        if need is not None:
            need.common = (props, notes, name, common)
    slot_only = "plan" not in plan
    head = b'"plan_slot":%d' % plan["plan_slot"] if slot_only else json_text(plan)[1:-1]
    entries = []
    index = 0
    for i, image in enumerate(result.images):
        for j, buf in enumerate(image):
            entries.append(
                b'{"id":%d,"image":%d,"buffer":%d,"size":%d,"dmabuf":%s}'
                % (ids[index], i, j, buf.size, b"true" if buf.is_dmabuf else b"false")
            )
            index += 1
    return b'"allocation":{%s,%s,"buffers":[%s]}' % (head, common, b",".join(entries))


def _describe(
    result: Allocation, ids: Sequence[int], name: object, plan: dict[str, Any]
) -> dict[str, Any]:
    """An allocation on the wire; ``plan`` holds ``plan`` (its JSON), ``plan_slot`` or both."""
    buffers = []
    index = 0
    for i, image in enumerate(result.images):
        for j, buf in enumerate(image):
            buffers.append(
                {
                    "id": ids[index],
                    "image": i,
                    "buffer": j,
                    "size": buf.size,
                    "dmabuf": buf.is_dmabuf,
                }
            )
            index += 1
    return {
        **plan,
        "heap": _heap_json(result.heap_properties),
        "buffers": buffers,
        "verdicts": [v.to_json() for v in result.verdicts],
        "unverified": list(result.unverified),
        "notes": list(result.notes),
        "name": name,
    }


@functools.lru_cache(maxsize=64)
def _heap_json(props: HeapProperties) -> dict[str, Any]:
    """A heap's properties as JSON (the same few heaps serve every request)."""
    return props.to_json()


def _finish(out: _Outgoing) -> None:
    done, out.done = out.done, None
    out.fds = []
    if done is not None:
        done()


def _dead(pidfd: int) -> bool:
    """The process behind ``pidfd`` has exited (its pidfd polls readable)."""
    if pidfd < 0:
        return True
    sel = selectors.DefaultSelector()
    try:
        sel.register(pidfd, selectors.EVENT_READ)
        return bool(sel.select(0))
    finally:
        sel.close()


def _peek_id(data: bytes) -> object:
    """The ``id`` of a malformed request when it has a usable one (for the error reply)."""
    try:
        value = json.loads(data).get("id")
    except (ValueError, RecursionError, AttributeError, UnicodeDecodeError):
        return None
    return value if isinstance(value, int) and not isinstance(value, bool) else None
