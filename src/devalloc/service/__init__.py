"""The devalloc service: heap access, negotiation and books for unprivileged processes.

Example:
    >>> import devalloc.service
    >>> with devalloc.service.connect("/run/devalloc/socket") as alloc:   # doctest: +SKIP
    ...     frames = alloc.allocate(640, 480, usages=["uvc-webcam"], allow_cpu_only=True)

``devalloc serve`` runs the service (:mod:`devalloc.service.server`); :func:`connect` returns a
client whose ``allocate()`` is :meth:`devalloc.allocator.Allocator.allocate`'s
(:mod:`devalloc.service.client`). The protocol is in :mod:`devalloc.service.protocol` and
docs/protocol.md.
"""

from __future__ import annotations

from .client import ServiceClient as ServiceClient
from .client import connect as connect
from .protocol import CollectionError as CollectionError
from .protocol import PolicyError as PolicyError
from .protocol import ProtocolError as ProtocolError
from .protocol import QuotaError as QuotaError
from .protocol import ServiceError as ServiceError
from .server import DEFAULT_SOCKET as DEFAULT_SOCKET

__all__ = [
    "DEFAULT_SOCKET",
    "CollectionError",
    "PolicyError",
    "ProtocolError",
    "QuotaError",
    "ServiceClient",
    "ServiceError",
    "connect",
]
