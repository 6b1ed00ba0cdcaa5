"""``devalloc service status``: the running service's books, per client and per collection.

Example:
    $ devalloc service status
    $ devalloc service status --socket /tmp/devalloc.sock --json
"""

from __future__ import annotations

import argparse
from typing import Any

from ..service.client import connect
from ._common import EXIT_OK, SubParsers, add_json_flag, print_json
from .ps import human_size

__all__ = ["register"]


def register(sub: SubParsers) -> None:
    """Add ``devalloc service``."""
    parser = sub.add_parser(
        "service",
        help="ask the devalloc service (devalloc serve) about its clients and books",
        description="Talk to a running devalloc service (without a command: status).",
    )
    parser.set_defaults(func=_status, socket=None, json=False)  # `devalloc service`: status
    commands = parser.add_subparsers(dest="service_command", metavar="COMMAND")
    status = commands.add_parser(
        "status",
        help="per client and per collection: buffers and bytes by memory class",
        description="The service's books: every client (process name, pid, uid) with the "
        "buffers and bytes it holds by memory class, every shared collection, the totals and "
        "the policy's global cap.",
    )
    status.add_argument("--socket", metavar="PATH", help="the service's socket")
    add_json_flag(status)
    status.set_defaults(func=_status)


def _status(args: argparse.Namespace) -> int:
    with connect(args.socket) as client:
        status = client.status()
    if args.json:
        print_json(status)
    else:
        _print_status(status)
    return EXIT_OK


def _classes(by_class: dict[str, Any]) -> str:
    return ", ".join(f"{k} {human_size(int(v))}" for k, v in sorted(by_class.items())) or "-"


def _print_status(status: dict[str, Any]) -> None:
    books = status.get("books", {})
    policy = status.get("policy", {})
    cap = policy.get("global", {}).get("max_bytes", 0)
    print(
        f"devalloc service (pid {status.get('pid')}, version {status.get('version')}):"
        f" {status.get('connections')} connected clients, {books.get('buffers', 0)} buffers,"
        f" {human_size(int(books.get('bytes', 0)))} of {human_size(int(cap))}"
        f" (policy: {policy.get('source')})"
    )
    print(f"  by memory class: {_classes(books.get('bytes_by_class', {}))}")
    clients = books.get("clients", [])
    print("clients:" if clients else "clients: none")
    for c in clients:
        state = "" if c.get("connected") else " (disconnected, process alive)"
        print(
            f"  {c.get('comm')} pid {c.get('pid')} uid {c.get('uid')}: {c.get('buffers')}"
            f" buffers, {human_size(int(c.get('bytes', 0)))}"
            f" ({_classes(c.get('bytes_by_class', {}))}){state}"
        )
    collections = books.get("collections", {})
    pending = status.get("open_collections", [])
    if collections or pending:
        print("collections:")
    for cid, entry in sorted(collections.items()):
        print(
            f"  {cid}: {entry.get('buffers')} buffers, {human_size(int(entry.get('bytes', 0)))}"
            f" ({_classes(entry.get('bytes_by_class', {}))})"
        )
    for entry in pending:
        print(
            f"  {entry.get('id')}: open, {entry.get('participants')} of {entry.get('expected')}"
            " participants joined"
        )
