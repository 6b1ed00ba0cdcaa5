"""Shared buffer collections: participants' constraints -> one negotiation -> one allocation.

Example:
    >>> from devalloc.constraints import load_constraints
    >>> c = Collection.new(creator=1, width=64, height=64, formats=None, expected=1)
    >>> ident = Identity(pid=7, uid=1000, gid=1000, groups=(), comm="cam")
    >>> c.join(2, ident, load_constraints("uvc-webcam"), "none", 2, optional=False)
    >>> c.participants[2].committed = True
    >>> c.ready, c.total_count
    (True, 2)

A collection is created with the image it holds (size, candidate formats) and the number of
participants it waits for; the creator hands its unguessable token to the other processes by any
means. Each participant joins with its own usages, CPU access and the number of buffers it holds
at once (the collection allocates the sum plus ``extra``), then commits. When every participant
has committed the service negotiates all their constraints together and allocates once
(:mod:`devalloc.service.server`). Explanations name participants by process name, pid and uid;
a usage another participant already named (the same ``device:usage``) is relabelled
``device@PID:usage`` for the joiner so the negotiation sees two parties.
"""

from __future__ import annotations

import dataclasses
import itertools
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..constraints import Constraints, CpuAccess
from ..negotiate import NegotiationError, Plan, negotiate
from ..negotiate.records import Conflict
from .policy import Identity
from .protocol import CollectionError

__all__ = ["Collection", "Participant", "combine_cpu_access"]

_numbers = itertools.count(1)


def combine_cpu_access(accesses: Sequence[CpuAccess]) -> CpuAccess:
    """The CPU access every participant together needs (``r`` and ``w`` make ``rw``)."""
    read = any(a in ("r", "rw") for a in accesses)
    write = any(a in ("w", "rw") for a in accesses)
    if read and write:
        return "rw"
    return "r" if read else "w" if write else "none"


@dataclass
class Participant:
    """One process taking part in a collection."""

    key: int
    ident: Identity
    constraints: list[Constraints]
    cpu_access: CpuAccess
    count: int
    optional: bool
    committed: bool = False

    def describe(self) -> str:
        """``participant 'cam' (pid 7, uid 1000)``."""
        return f"participant {self.ident.describe()}"


@dataclass
class Collection:
    """A shared collection (see the module doc)."""

    id: str
    token: str
    creator: int
    width: int
    height: int
    formats: list[str] | None
    expected: int
    extra: int = 0
    prefer_uncached: bool = False
    allow_cpu_only: bool = False
    participants: dict[int, Participant] = field(default_factory=dict)
    state: str = "open"

    @classmethod
    def new(
        cls,
        *,
        creator: int,
        width: int,
        height: int,
        formats: list[str] | None,
        expected: int,
        extra: int = 0,
        prefer_uncached: bool = False,
        allow_cpu_only: bool = False,
    ) -> Collection:
        """A new open collection with a fresh unguessable token (``secrets.token_urlsafe``)."""
        return cls(
            f"c{next(_numbers)}",
            secrets.token_urlsafe(32),
            creator,
            width,
            height,
            formats,
            expected,
            extra,
            prefer_uncached,
            allow_cpu_only,
        )

    @property
    def cpu_access(self) -> CpuAccess:
        """Every participant's CPU access combined."""
        return combine_cpu_access([p.cpu_access for p in self.participants.values()])

    @property
    def total_count(self) -> int:
        """Buffers to allocate: every participant's count plus the slack."""
        return max(sum(p.count for p in self.participants.values()) + self.extra, 1)

    @property
    def ready(self) -> bool:
        """Every expected participant has joined and every one has committed."""
        joined = list(self.participants.values())
        return len(joined) >= self.expected and all(p.committed for p in joined)

    def constraints(self) -> list[Constraints]:
        """Every participant's constraints, in join order."""
        return [c for p in self.participants.values() for c in p.constraints]

    def join(
        self,
        key: int,
        ident: Identity,
        constraints: list[Constraints],
        cpu_access: CpuAccess,
        count: int,
        *,
        optional: bool,
    ) -> None:
        """Add a participant after checking that its constraints agree with everyone's so far.

        Raises:
            CollectionError: not open, already joined, or full.
            NegotiationError: the joiner's constraints conflict with the others' (the message
                names the joining process, the other participants involved and the constraint).
        """
        if self.state != "open":
            raise CollectionError(f"collection {self.id} is {self.state}: it takes no new joins")
        if key in self.participants:
            raise CollectionError(f"this connection already joined collection {self.id}")
        taken = {c.label for p in self.participants.values() for c in p.constraints}
        constraints = [
            dataclasses.replace(c, device=f"{c.device}@{ident.pid}") if c.label in taken else c
            for c in constraints
        ]
        joiner = Participant(key, ident, constraints, cpu_access, count, optional)
        trial = [*self.participants.values(), joiner]
        try:
            self.negotiate(trial)
        except NegotiationError as exc:
            raise NegotiationError(
                f"collection {self.id}: the join of {joiner.describe()} conflicts: "
                + self.explain(exc.conflicts, trial),
                exc.conflicts,
                exc.copy_path,
                exc.copy_note,
            ) from None
        self.participants[key] = joiner

    def negotiate(self, participants: Sequence[Participant] | None = None) -> Plan:
        """One negotiation over every participant's constraints (raises NegotiationError)."""
        parts = list(self.participants.values()) if participants is None else list(participants)
        return negotiate(
            [c for p in parts for c in p.constraints],
            self.width,
            self.height,
            self.formats,
            cpu_access=combine_cpu_access([p.cpu_access for p in parts]),
            prefer_uncached=self.prefer_uncached,
            known_layout=True,
        )

    def owners(self, label: str, participants: Sequence[Participant] | None = None) -> list[str]:
        """The participants a conflict's party label belongs to (``application``: those that
        asked for CPU access)."""
        parts = list(self.participants.values()) if participants is None else participants
        if label == "application":
            return [p.describe() for p in parts if p.cpu_access != "none"] or ["the collection"]
        return [p.describe() for p in parts if any(c.label == label for c in p.constraints)]

    def explain(
        self, conflicts: Sequence[Conflict], participants: Sequence[Participant] | None = None
    ) -> str:
        """Each conflict with the participants behind each party: ``format: ... [isp:main:
        participant 'cam' (pid 7, uid 1000) wants NV12; ...]``."""
        lines = []
        for conflict in conflicts:
            parties = []
            for label, value in zip(conflict.devices, conflict.values, strict=True):
                who = ", ".join(self.owners(label, participants)) or "unknown participant"
                parties.append(f"{label} of {who} wants {value}")
            lines.append(f"{conflict.message} [" + "; ".join(parties) + "]")
        return "; ".join(lines) or "no plan"
