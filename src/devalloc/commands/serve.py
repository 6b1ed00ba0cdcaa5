"""``devalloc serve``: run the devalloc service (heap access, policy and books for clients).

Example:
    $ sudo devalloc serve                                   # /run/devalloc/socket
    $ devalloc serve --socket /tmp/devalloc.sock --policy /etc/devalloc/policy.toml

Under systemd (systemd/devalloc.socket + devalloc.service) the socket comes from socket
activation (``LISTEN_FDS``) and readiness is reported with ``sd_notify(READY=1)``. SIGTERM stops
the service, SIGHUP re-reads the policy.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import logging
import os
import resource
import socket
import sys
from collections.abc import Callable
from typing import Final

from .._toml import path_kind
from ..allocator import Allocator
from ..errors import UsageError, error_from_oserror
from ..service.policy import Policy
from ..service.server import DEFAULT_SOCKET, Service, listen, listen_fds, notify
from ._common import EXIT_OK, SubParsers

__all__ = ["register"]


def register(sub: SubParsers) -> None:
    """Add ``devalloc serve``."""
    parser = sub.add_parser(
        "serve",
        help="run the devalloc service: allocate for unprivileged clients over a Unix socket",
        description="Serve buffer allocations to other processes over an AF_UNIX "
        "SOCK_SEQPACKET socket (docs/protocol.md): the service opens the heaps, negotiates "
        "for every client and shared collection, hands out dma-buf fds, and keeps per-client "
        "books within the policy's quotas. Without dma-heaps it serves CPU-only memfd buffers "
        "to clients that allow them.",
        epilog="examples:\n  sudo devalloc serve\n  devalloc serve --socket /tmp/d.sock "
        "--policy systemd/policy.toml\n  systemctl start devalloc.socket   # socket activation",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--socket",
        metavar="PATH",
        type=_not_empty("socket"),
        help=f"where to listen (default {DEFAULT_SOCKET}; ignored under socket activation)",
    )
    parser.add_argument(
        "--policy",
        metavar="FILE",
        type=_not_empty("policy"),
        help="policy TOML (re-read on SIGHUP)",
    )
    parser.add_argument(
        "--no-discover",
        action="store_true",
        help="do not look for live DRM/V4L2 devices (profiles and constraints only)",
    )
    parser.set_defaults(func=_run)


def _not_empty(what: str) -> Callable[[str], str]:
    """An argparse type: a path that is not empty (an empty one would quietly mean the
    default)."""

    def parse(text: str) -> str:
        if not text:
            raise argparse.ArgumentTypeError(f"the {what} path is empty; give one or leave it out")
        return text

    return parse


#: Errors of binding a socket at a path that the caller fixes by giving another path (or the
#: rights): usage errors, exit status 2. Others (ENOSPC, EMFILE, ...) are the system's.
_PATH_ERRNOS: Final = frozenset(
    {
        errno.EACCES,
        errno.EPERM,
        errno.EROFS,
        errno.ENOENT,
        errno.ENOTDIR,
        errno.EISDIR,
        errno.ELOOP,
        errno.ENAMETOOLONG,
        errno.EADDRINUSE,
    }
)


def _check_directory(path: str) -> None:
    """The directory a ``--socket`` goes into exists: the service makes the default's
    (/run/devalloc) but no directory of a path the caller chose, which a typo would leave
    behind."""
    parent = os.path.dirname(os.path.abspath(path))
    kind = path_kind(parent, "socket directory")
    if kind is None:
        raise UsageError(
            f"--socket {path}: the directory {parent} does not exist; create it first or give"
            " another --socket"
        )
    if kind != "dir":
        raise UsageError(f"--socket {path}: {parent} is not a directory; give another --socket")


def _listen(path: str, chosen: bool) -> socket.socket:
    """:func:`~devalloc.service.server.listen` at ``path`` (``chosen``: given as ``--socket``),
    its failures as errors that name the path and what to do."""
    try:
        path.encode()
    except UnicodeEncodeError:  # an undecodable byte on the command line (a lone surrogate)
        raise UsageError(
            f"--socket {path!r:.120}: a socket path must be UTF-8; give another --socket"
        ) from None
    if chosen:
        _check_directory(path)
    try:
        return listen(path)
    except OSError as exc:
        fix = (
            "give another --socket"
            if chosen
            else "run as root (or the devalloc user) or give --socket PATH"
        )
        if exc.errno in _PATH_ERRNOS:
            raise UsageError(f"cannot listen at {path}: {exc.strerror or exc}; {fix}") from exc
        raise error_from_oserror(exc, f"listen at {path}", path=path) from exc


def _discard(listener: socket.socket, path: str | None) -> None:
    """Close a listener that never served, and remove the socket file :func:`_listen` made."""
    listener.close()
    if path is not None:
        with contextlib.suppress(OSError):
            os.unlink(path)


def _raise_fd_limit() -> None:
    """Every client costs the service two fds (socket, pidfd) plus buffers in flight: take the
    hard limit of open files, not the usual soft 1024."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _ready() -> None:
    notify("READY=1")


def _run(args: argparse.Namespace) -> int:
    logging.basicConfig(
        stream=sys.stderr, level=logging.INFO, format="devalloc serve: %(levelname)s %(message)s"
    )
    _raise_fd_limit()
    # Everything the caller can get wrong is checked before anything is made.
    policy = Policy.load(args.policy) if args.policy is not None else Policy()
    with contextlib.ExitStack() as starting:  # a failure until the service runs: nothing left
        listener = listen_fds()
        path = None
        if listener is None:
            path = args.socket if args.socket is not None else DEFAULT_SOCKET
            listener = _listen(path, chosen=args.socket is not None)
        starting.callback(_discard, listener, path)
        allocator = Allocator(discover_devices=not args.no_discover)
        starting.callback(allocator.close)
        service = Service(
            listener,
            allocator=allocator,
            policy=policy,
            policy_path=args.policy,
            socket_path=path,
            own_allocator=True,
        )
        starting.pop_all()
    with service:
        service.install_signals()
        logging.getLogger("devalloc.service").info(
            "serving on %s", path or "the socket systemd passed"
        )
        service.serve_forever(ready=_ready)
        notify("STOPPING=1")
    return EXIT_OK
