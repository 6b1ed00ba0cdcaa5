"""``devalloc service status``: the running service's books, per client and per collection.

Example:
    $ devalloc service status
    $ devalloc service status --socket /tmp/devalloc.sock --json
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from ..service.client import connect
from ..service.protocol import ProtocolError
from ._common import EXIT_OK, SubParsers, add_json_flag, one_line, print_json
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
        status = checked_status(client.status(), client.path)
    if args.json:
        print_json(status)
    else:
        _print_status(status)
    return EXIT_OK


# --- the status reply's shape ------------------------------------------------------------------


@dataclass(frozen=True)
class _ListOf:
    item: _Kind


@dataclass(frozen=True)
class _MapOf:
    """A JSON object of any text keys, every value of ``value``."""

    value: _Kind


@dataclass(frozen=True)
class _Optional:
    kind: _Kind


#: "count": an integer 0..2**63-1 (not a bool); "text": a string; "flag": a bool; a Mapping: a
#: JSON object with (at least) those keys.
_Kind = Literal["count", "text", "flag"] | _ListOf | _MapOf | _Optional | Mapping[str, "_Kind"]

_COUNT_MAX: Final = (1 << 63) - 1
_BY_CLASS: Final = _MapOf("count")
#: What this command reads of the ``status`` reply (docs/protocol.md), declared once: a reply
#: that does not fit is a ProtocolError naming the field. Other keys are allowed (a newer service
#: may add some) and are left as they are.
STATUS_SHAPE: Final[Mapping[str, _Kind]] = {
    "pid": "count",
    "version": "text",
    "connections": "count",
    "books": {
        "bytes": "count",
        "buffers": "count",
        "bytes_by_class": _BY_CLASS,
        "clients": _ListOf(
            {
                "comm": "text",
                "pid": "count",
                "uid": "count",
                "buffers": "count",
                "bytes": "count",
                "bytes_by_class": _BY_CLASS,
                "connected": "flag",
            }
        ),
        "clients_omitted": _Optional("count"),
        "collections": _MapOf({"buffers": "count", "bytes": "count", "bytes_by_class": _BY_CLASS}),
    },
    "policy": {"source": "text", "global": {"max_bytes": "count"}},
    "open_collections": _ListOf({"id": "text", "participants": "count", "expected": "count"}),
}
_EXPECTED: Final = {
    "count": "an integer from 0 to 2**63-1",
    "text": "a string",
    "flag": "true or false",
}


def checked_status(status: object, source: str) -> dict[str, Any]:
    """``status`` (the reply of the service at ``source``) when it has :data:`STATUS_SHAPE`.

    Raises:
        ProtocolError: naming the first field that is missing or of the wrong type.
    """
    problem = _misfit(status, STATUS_SHAPE, "status")
    if problem is not None:
        raise ProtocolError(
            f"the devalloc service at {source} sent a malformed status reply: {problem}"
            " (is it another version of devalloc?)"
        )
    assert isinstance(status, dict)
    return status


def _misfit(value: object, kind: _Kind, where: str) -> str | None:
    """What is wrong with ``value`` as a ``kind`` at ``where`` (None: nothing)."""
    if isinstance(kind, _Optional):
        return _misfit(value, kind.kind, where)
    if isinstance(kind, str):
        fits = (
            isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= _COUNT_MAX
            if kind == "count"
            else isinstance(value, str if kind == "text" else bool)
        )
        return None if fits else f"{where} is {_shown(value)}, not {_EXPECTED[kind]}"
    if isinstance(kind, _ListOf):
        if not isinstance(value, list):
            return f"{where} is {_shown(value)}, not a list"
        items = ((item, kind.item, f"{where}[{i}]") for i, item in enumerate(value))
    else:
        if not isinstance(value, dict):
            return f"{where} is {_shown(value)}, not an object"
        if isinstance(kind, _MapOf):
            items = ((v, kind.value, f"{where}[{k!r}]") for k, v in value.items())
        else:
            for key, member in kind.items():
                if key not in value and not isinstance(member, _Optional):
                    return f"{where} has no {key!r}"
            items = ((value[k], member, f"{where}.{k}") for k, member in kind.items() if k in value)
    return next((p for p in (_misfit(*item) for item in items) if p is not None), None)


def _shown(value: object) -> str:
    text = json.dumps(value)
    text = text if len(text) <= 40 else f"{text[:40]}..."
    return f"{_JSON_TYPE.get(type(value), type(value).__name__)} {text}"


_JSON_TYPE: Final[dict[type, str]] = {
    dict: "an object",
    list: "a list",
    str: "a string",
    bool: "a bool",
    int: "an integer",
    float: "a number",
    type(None): "null",
}


# --- the human report --------------------------------------------------------------------------


def _classes(by_class: dict[str, int]) -> str:
    return ", ".join(f"{one_line(k)} {human_size(v)}" for k, v in sorted(by_class.items())) or "-"


def _print_status(status: dict[str, Any]) -> None:
    """The report of a :func:`checked_status` (every text the service or a client chose is
    escaped: a client names itself, and its name must not reach the terminal raw)."""
    books, policy = status["books"], status["policy"]
    print(
        f"devalloc service (pid {status['pid']}, version {one_line(status['version'])}):"
        f" {status['connections']} connected clients, {books['buffers']} buffers,"
        f" {human_size(books['bytes'])} of {human_size(policy['global']['max_bytes'])}"
        f" (policy: {one_line(policy['source'])})"
    )
    print(f"  by memory class: {_classes(books['bytes_by_class'])}")
    clients = books["clients"]
    print("clients:" if clients else "clients: none")
    for c in clients:
        state = "" if c["connected"] else " (disconnected, process alive)"
        print(
            f"  {one_line(c['comm'])} pid {c['pid']} uid {c['uid']}: {c['buffers']}"
            f" buffers, {human_size(c['bytes'])} ({_classes(c['bytes_by_class'])}){state}"
        )
    if books.get("clients_omitted"):
        print(f"  ... and {books['clients_omitted']} more clients")
    collections, pending = books["collections"], status["open_collections"]
    if collections or pending:
        print("collections:")
    for cid, entry in sorted(collections.items()):
        print(
            f"  {one_line(cid)}: {entry['buffers']} buffers, {human_size(entry['bytes'])}"
            f" ({_classes(entry['bytes_by_class'])})"
        )
    for entry in pending:
        print(
            f"  {one_line(entry['id'])}: open, {entry['participants']} of {entry['expected']}"
            " participants joined"
        )
