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
import logging
import resource
import sys

from ..allocator import Allocator
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
        help=f"where to listen (default {DEFAULT_SOCKET}; ignored under socket activation)",
    )
    parser.add_argument("--policy", metavar="FILE", help="policy TOML (re-read on SIGHUP)")
    parser.add_argument(
        "--no-discover",
        action="store_true",
        help="do not look for live DRM/V4L2 devices (profiles and constraints only)",
    )
    parser.set_defaults(func=_run)


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
    policy = Policy.load(args.policy) if args.policy else Policy()
    listener = listen_fds()
    path = None
    if listener is None:
        path = args.socket or DEFAULT_SOCKET
        listener = listen(path)
    try:
        allocator = Allocator(discover_devices=not args.no_discover)
    except BaseException:
        listener.close()
        raise
    with Service(
        listener,
        allocator=allocator,
        policy=policy,
        policy_path=args.policy,
        socket_path=path,
        own_allocator=True,
    ) as service:
        service.install_signals()
        logging.getLogger("devalloc.service").info(
            "serving on %s", path or "the socket systemd passed"
        )
        service.serve_forever(ready=_ready)
        notify("STOPPING=1")
    return EXIT_OK
