"""The service's books: which client holds which buffer, by memory class, per collection.

Example:
    >>> books = Books()
    >>> ident = Identity(pid=7, uid=1000, gid=1000, groups=(), comm="app")
    >>> books.add_client(1, ident)
    >>> ids = books.hand_out(1, [(4096, "scattered")])
    >>> books.usage(1).bytes, books.release(1, ids), books.usage(1).bytes
    (4096, 1, 0)

The books are the service's truth for quotas: the kernel cannot charge a client for a buffer a
central process allocated for it. A buffer shared by a collection has one id and appears in the
books of every participant; it counts once in the service's totals and in its collection's.
The service keeps no fd of a buffer once it has been sent (see docs/protocol.md): a holding is
dropped when its client releases it, disconnects, or dies.
"""

from __future__ import annotations

import itertools
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ..heaps.properties import HeapProperties
from .policy import Identity, Usage

__all__ = ["Books", "ClientBooks", "Holding", "memory_class"]


def memory_class(props: HeapProperties) -> str:
    """The class a heap's memory is booked under: ``protected``, ``contiguous``, ``cpu-only``
    (memfd) or ``scattered``."""
    if props.protected:
        return "protected"
    if props.contiguous:
        return "contiguous"
    if not props.device_importable:
        return "cpu-only"
    return "scattered"


@dataclass(frozen=True)
class Holding:
    """One buffer a client holds: its id, size, memory class and collection (if shared)."""

    id: int
    size: int
    memory: str
    collection: str | None = None


@dataclass
class ClientBooks:
    """One connected (or departed but still living) client's holdings."""

    ident: Identity
    since: float = field(default_factory=time.time)
    holdings: dict[int, Holding] = field(default_factory=dict)
    collections: set[str] = field(default_factory=set)
    requests: int = 0
    connected: bool = True

    def usage(self) -> Usage:
        """Bytes, buffers, collections and contiguous bytes held now."""
        nbytes = sum(h.size for h in self.holdings.values())
        contiguous = sum(h.size for h in self.holdings.values() if h.memory == "contiguous")
        return Usage(nbytes, len(self.holdings), len(self.collections), contiguous)

    def to_json(self) -> dict[str, Any]:
        """Identity, totals and bytes by memory class and by collection."""
        by_class: Counter[str] = Counter()
        by_collection: Counter[str] = Counter()
        for h in self.holdings.values():
            by_class[h.memory] += h.size
            if h.collection is not None:
                by_collection[h.collection] += h.size
        usage = self.usage()
        return {
            **self.ident.to_json(),
            "connected": self.connected,
            "since": self.since,
            "requests": self.requests,
            "bytes": usage.bytes,
            "buffers": usage.buffers,
            "collections": sorted(self.collections),
            "bytes_by_class": dict(by_class),
            "bytes_by_collection": dict(by_collection),
        }


class Books:
    """Every client's holdings, keyed by the server's connection key."""

    def __init__(self) -> None:
        self.clients: dict[int, ClientBooks] = {}
        self._ids = itertools.count(1)

    def add_client(self, key: int, ident: Identity) -> None:
        """Open the books of a new connection."""
        self.clients[key] = ClientBooks(ident)

    def drop_client(self, key: int) -> ClientBooks | None:
        """Close a client's books: every holding is released at once."""
        return self.clients.pop(key, None)

    def usage(self, key: int) -> Usage:
        """What client ``key`` holds now."""
        books = self.clients.get(key)
        return books.usage() if books is not None else Usage()

    def usage_of_uid(self, uid: int) -> Usage:
        """What every client of ``uid`` holds together (a buffer shared between two of its
        connections counted once): what quotas are checked against."""
        holdings: dict[int, Holding] = {}
        collections: set[str] = set()
        for books in self.clients.values():
            if books.ident.uid == uid:
                holdings.update(books.holdings)
                collections |= books.collections
        nbytes = sum(h.size for h in holdings.values())
        contiguous = sum(h.size for h in holdings.values() if h.memory == "contiguous")
        return Usage(nbytes, len(holdings), len(collections), contiguous)

    def hand_out(
        self,
        key: int,
        buffers: Iterable[tuple[int, str]],
        *,
        collection: str | None = None,
        ids: Iterable[int] | None = None,
    ) -> list[int]:
        """Book ``(size, memory class)`` buffers to client ``key``; returns their ids (new ones,
        or ``ids`` for buffers another participant of ``collection`` already holds)."""
        books = self.clients[key]
        pairs = list(buffers)
        given = list(ids) if ids is not None else [next(self._ids) for _ in pairs]
        for buffer_id, (size, memory) in zip(given, pairs, strict=True):
            books.holdings[buffer_id] = Holding(buffer_id, size, memory, collection)
        if collection is not None:
            books.collections.add(collection)
        return given

    def release(self, key: int, ids: Iterable[int]) -> int:
        """Drop the named holdings of client ``key`` (unknown ids are ignored); how many."""
        books = self.clients.get(key)
        if books is None:
            return 0
        released = 0
        for buffer_id in ids:
            holding = books.holdings.pop(buffer_id, None)
            if holding is not None:
                released += 1
                self._forget_collection(books, holding.collection)
        return released

    def release_collection(self, key: int, collection: str) -> int:
        """Drop every holding of client ``key`` in ``collection``, and the collection."""
        books = self.clients.get(key)
        if books is None:
            return 0
        ids = [i for i, h in books.holdings.items() if h.collection == collection]
        for buffer_id in ids:
            del books.holdings[buffer_id]
        books.collections.discard(collection)
        return len(ids)

    @staticmethod
    def _forget_collection(books: ClientBooks, collection: str | None) -> None:
        if collection is not None and not any(
            h.collection == collection for h in books.holdings.values()
        ):
            books.collections.discard(collection)

    def totals(self) -> tuple[int, int]:
        """Bytes and buffers handed out to all clients (a shared buffer counted once)."""
        unique: dict[int, int] = {}
        for books in self.clients.values():
            for h in books.holdings.values():
                unique[h.id] = h.size
        return sum(unique.values()), len(unique)

    def to_json(self) -> dict[str, Any]:
        """Totals, bytes by memory class, per client and per collection."""
        unique: dict[int, Holding] = {}
        for books in self.clients.values():
            for h in books.holdings.values():
                unique[h.id] = h
        by_class: Counter[str] = Counter()
        collections: dict[str, dict[str, Any]] = {}
        for h in unique.values():
            by_class[h.memory] += h.size
            if h.collection is not None:
                entry = collections.setdefault(
                    h.collection, {"bytes": 0, "buffers": 0, "bytes_by_class": Counter()}
                )
                entry["bytes"] += h.size
                entry["buffers"] += 1
                entry["bytes_by_class"][h.memory] += h.size
        for entry in collections.values():
            entry["bytes_by_class"] = dict(entry["bytes_by_class"])
        return {
            "bytes": sum(h.size for h in unique.values()),
            "buffers": len(unique),
            "bytes_by_class": dict(by_class),
            "clients": [books.to_json() for books in self.clients.values()],
            "collections": collections,
        }
