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
from typing import Any, NamedTuple

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


class Holding(NamedTuple):
    """One buffer a client holds: its id, size, memory class and collection (if shared). (A
    named tuple: one is made per buffer handed out, and a frozen dataclass costs several times
    as much to make.)"""

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


@dataclass
class _Tally:
    """What the clients of one uid hold together: each buffer id with the number of its
    clients holding it (a buffer shared between two connections counts once), the bytes and
    contiguous bytes of those buffers, and each collection with its number of clients."""

    held: dict[int, int] = field(default_factory=dict)
    bytes: int = 0
    contiguous: int = 0
    collections: Counter[str] = field(default_factory=Counter)


class Books:
    """Every client's holdings, keyed by the server's connection key.

    The quota figures (:meth:`usage_of_uid`, :meth:`totals`) are kept as running tallies,
    updated by every change of a holding, so a request costs the same with 1 or 1000 clients;
    a client's holdings change only through the methods here."""

    def __init__(self) -> None:
        self.clients: dict[int, ClientBooks] = {}
        self._ids = itertools.count(1)
        self._held: dict[int, int] = {}  # buffer id -> clients holding it
        self._bytes = 0  # the bytes of those buffers (each counted once)
        self._uids: dict[int, _Tally] = {}

    # --- the tallies -------------------------------------------------------------------------

    def _add(self, books: ClientBooks, holding: Holding) -> None:
        if holding.id in books.holdings:
            books.holdings[holding.id] = holding
            return
        books.holdings[holding.id] = holding
        refs = self._held.get(holding.id, 0)
        self._held[holding.id] = refs + 1
        if refs == 0:
            self._bytes += holding.size
        tally = self._uids.get(books.ident.uid)
        if tally is None:
            tally = self._uids[books.ident.uid] = _Tally()
        refs = tally.held.get(holding.id, 0)
        tally.held[holding.id] = refs + 1
        if refs == 0:
            tally.bytes += holding.size
            if holding.memory == "contiguous":
                tally.contiguous += holding.size

    def _uncount(self, uid: int, holding: Holding) -> None:
        """``holding`` left the books of a client of ``uid`` (the caller removes it)."""
        refs = self._held.pop(holding.id, 1) - 1
        if refs:
            self._held[holding.id] = refs
        else:
            self._bytes -= holding.size
        tally = self._uids[uid]
        refs = tally.held.pop(holding.id, 1) - 1
        if refs:
            tally.held[holding.id] = refs
        else:
            tally.bytes -= holding.size
            if holding.memory == "contiguous":
                tally.contiguous -= holding.size

    def _join(self, books: ClientBooks, collection: str) -> None:
        if collection not in books.collections:
            books.collections.add(collection)
            self._uids.setdefault(books.ident.uid, _Tally()).collections[collection] += 1

    def _leave(self, books: ClientBooks, collection: str) -> None:
        if collection in books.collections:
            books.collections.discard(collection)
            counts = self._uids[books.ident.uid].collections
            counts[collection] -= 1
            if counts[collection] <= 0:
                del counts[collection]

    # --- clients -------------------------------------------------------------------------------

    def add_client(self, key: int, ident: Identity) -> None:
        """Open the books of a new connection."""
        self.clients[key] = ClientBooks(ident)

    def drop_client(self, key: int) -> ClientBooks | None:
        """Close a client's books: every holding is released at once (the returned books still
        list them)."""
        books = self.clients.pop(key, None)
        if books is not None:
            uid = books.ident.uid
            for holding in books.holdings.values():
                self._uncount(uid, holding)
            tally = self._uids.get(uid)
            if tally is not None:
                for collection in books.collections:
                    tally.collections[collection] -= 1
                    if tally.collections[collection] <= 0:
                        del tally.collections[collection]
                if not tally.held and not tally.collections:
                    del self._uids[uid]
        return books

    def take_over(self, old: int, new: int) -> None:
        """Client ``new`` (the same process, connected again) takes the holdings and
        collections of client ``old``, whose books close."""
        books = self.drop_client(old)
        target = self.clients[new]
        if books is not None:
            for holding in books.holdings.values():
                self._add(target, holding)
            for collection in books.collections:
                self._join(target, collection)

    def usage(self, key: int) -> Usage:
        """What client ``key`` holds now."""
        books = self.clients.get(key)
        return books.usage() if books is not None else Usage()

    def tally_of_uid(self, uid: int) -> tuple[int, int, int, int]:
        """:meth:`usage_of_uid` as plain numbers: bytes, buffers, collections, contiguous
        bytes (what a request's quota check reads, without making a Usage)."""
        tally = self._uids.get(uid)
        if tally is None:
            return 0, 0, 0, 0
        return tally.bytes, len(tally.held), len(tally.collections), tally.contiguous

    def usage_of_uid(self, uid: int) -> Usage:
        """What every client of ``uid`` holds together (a buffer shared between two of its
        connections counted once): what quotas are checked against."""
        tally = self._uids.get(uid)
        if tally is None:
            return Usage()
        return Usage(tally.bytes, len(tally.held), len(tally.collections), tally.contiguous)

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
            self._add(books, Holding(buffer_id, size, memory, collection))
        if collection is not None:
            self._join(books, collection)
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
                self._uncount(books.ident.uid, holding)
                self._forget_collection(books, holding.collection)
        return released

    def release_collection(self, key: int, collection: str) -> int:
        """Drop every holding of client ``key`` in ``collection``, and the collection."""
        books = self.clients.get(key)
        if books is None:
            return 0
        ids = [i for i, h in books.holdings.items() if h.collection == collection]
        for buffer_id in ids:
            self._uncount(books.ident.uid, books.holdings.pop(buffer_id))
        self._leave(books, collection)
        return len(ids)

    def _forget_collection(self, books: ClientBooks, collection: str | None) -> None:
        if collection is not None and not any(
            h.collection == collection for h in books.holdings.values()
        ):
            self._leave(books, collection)

    def totals(self) -> tuple[int, int]:
        """Bytes and buffers handed out to all clients (a shared buffer counted once)."""
        return self._bytes, len(self._held)

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
