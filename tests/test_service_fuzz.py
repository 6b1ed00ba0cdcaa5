"""Garbage at the service: thousands of malformed packets from another process; the service
stays up, keeps answering a well-behaved client, and its fds return to the baseline."""

from __future__ import annotations

import array
import functools
import json
import os
import random
import socket
import time
from collections.abc import Callable, Sequence

from devalloc.constraints import Constraints
from devalloc.formats import fourcc_code
from devalloc.service import connect
from devalloc.service.protocol import MAX_MESSAGE, REQUESTS, VERSION

from ._service_helpers import service, start, wait_for

YUYV = Constraints("cam", "out", ((fourcc_code("YUYV"), 0),))
#: Packets the fuzzer sends (and at most this long, in seconds).
PACKETS = 5000
SECONDS = 15.0

_VALUES: list[object] = [
    None, True, False, 0, -1, 1, 2**31, 2**63, 2**100, 1.5, -0.0, "", "x" * 300, "\0", [], [1],
    ["a"] * 100, {}, {"constraints": {}}, {"constraints": {"device": 1}}, [[[[[]]]]],
]  # fmt: skip


def _garbage(rng: random.Random) -> tuple[bytes, int]:
    """One malformed packet and how many fds to attach."""
    kind = rng.randrange(10)
    op = rng.choice(sorted(REQUESTS))
    base: dict[str, object] = {"v": VERSION, "op": op, "id": rng.randrange(1000)}
    if kind == 0:
        return rng.randbytes(rng.randrange(1, 2000)), 0
    if kind == 1:  # wrong types in every declared field
        for f in REQUESTS[op].fields:
            base[f.name] = rng.choice(_VALUES)
        return json.dumps(base).encode(), 0
    if kind == 2:  # half a message
        whole = json.dumps({**base, "width": 64, "height": 64, "usages": ["x"]}).encode()
        return whole[: rng.randrange(1, len(whole))], 0
    if kind == 3:  # larger than the maximum
        return b'{"v": 1, "op": "status", "pad": "' + b"x" * (MAX_MESSAGE + 1000) + b'"}', 0
    if kind == 4:  # a valid request with fds it must not carry
        return json.dumps({"v": VERSION, "op": "status", "id": 1}).encode(), rng.randrange(1, 4)
    if kind == 5:  # too many fds
        return b"{}", 200
    if kind == 6:  # deep nesting
        depth = rng.randrange(1000, 30000)
        return b'{"v": 1, "op": "status", "id": ' + b"[" * depth + b"]" * depth + b"}", 0
    if kind == 7:  # unknown fields, ops, versions
        base[rng.choice(["zz", "op", "v"])] = rng.choice(_VALUES)
        return json.dumps(base).encode(), 0
    if kind == 8:  # a huge claimed size
        huge = {"v": VERSION, "op": "allocate", "width": 65536, "height": 65536, "count": 64}
        return json.dumps({**huge, "usages": [{"constraints": {"pairs": "x"}}]}).encode(), 0
    return json.dumps(rng.choice(_VALUES)).encode(), 0


def send_garbage(
    path: str,
    rng: random.Random,
    packet: Callable[[random.Random], tuple[bytes, int]],
    fds: Sequence[int],
    packets: int,
    seconds: float,
) -> dict[str, int]:
    """Send ``packets`` packets made by ``packet`` (bytes and how many fds to attach, picked
    from ``fds``) to the service at ``path`` within ``seconds``: reconnecting now and then
    (sometimes mid-stream, replies unread), sometimes reading a reply, reconnecting when the
    service drops the connection. The caller keeps ``fds``."""
    sent = reconnects = 0
    sock: socket.socket | None = None
    deadline = time.monotonic() + seconds
    try:
        while sent < packets and time.monotonic() < deadline:
            if sock is None or rng.randrange(60) == 0:
                if sock is not None:
                    sock.close()  # sometimes mid-stream, replies unread
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
                sock.settimeout(2)
                sock.connect(path)
                reconnects += 1
            data, nfds = packet(rng)
            anc = []
            if nfds:
                attached = array.array("i", (rng.choice(fds) for _ in range(nfds)))
                anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, attached)]
            try:
                sock.sendmsg([data], anc)
                if rng.randrange(4) == 0:  # sometimes read a reply
                    sock.recv(MAX_MESSAGE + 1)
            except OSError:
                sock.close()
                sock = None  # disconnected (too many errors, or not reading): reconnect
            sent += 1
    finally:
        if sock is not None:
            sock.close()
    return {"sent": sent, "reconnects": reconnects}


def _fuzz(path: str, seed: int) -> object:
    r, w = os.pipe()
    try:
        return send_garbage(path, random.Random(seed), _garbage, [r, w], PACKETS, SECONDS)
    finally:
        os.close(r)
        os.close(w)


def test_garbage_does_not_hurt_the_service_or_other_clients() -> None:
    with service() as served, connect(served.path, timeout=20) as good:
        good.hello()
        baseline = served.fds()
        fuzzers = [start(functools.partial(_fuzz, served.path, seed), uid=None) for seed in (1, 2)]
        answered = 0
        while any(_alive(f.pid) for f in fuzzers):
            with (
                good.allocate(64, 64, usages=[YUYV], cpu_access="rw", allow_cpu_only=True) as r,
                r.buffers[0].cpu_access("w") as view,
            ):
                view[0] = 1
            answered += 1
            time.sleep(0.05)
        results = [f.result(timeout=SECONDS + 30) for f in fuzzers]
        assert all("ok" in r for r in results), results
        assert sum(r["ok"]["sent"] for r in results) >= 1000  # type: ignore[index]
        assert served.proc.poll() is None
        assert answered >= 1
        status = good.status()
        assert status["books"]["buffers"] == 0
        wait_for(
            lambda: served.fds() <= baseline,
            "the service's fds to return to the baseline",
            show=served.fd_list,
        )
        assert served.fds() == baseline


def _alive(pid: int) -> bool:
    """The child is still running (not a zombie waiting to be reaped by Child.result)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        return f.read().rpartition(")")[2].split()[0] != "Z"


def _many(path: str, allocations: int) -> object:
    with connect(path, timeout=120) as client:
        for _ in range(allocations):
            with (
                client.allocate(32, 32, usages=[YUYV], cpu_access="w", allow_cpu_only=True) as r,
                r.buffers[0].cpu_access("w") as view,
            ):
                view[0] = 1
    return allocations


def test_many_concurrent_clients() -> None:
    """100 client processes at once, 100 allocations each (issue 13): no error, books back to 0."""
    with service() as served, connect(served.path, timeout=60) as observer:
        observer.hello()
        baseline = served.fds()
        clients = [start(functools.partial(_many, served.path, 100), uid=None) for _ in range(100)]
        results = [c.result(timeout=300) for c in clients]
        assert [r.get("ok") for r in results] == [100] * 100, [r for r in results if "ok" not in r]
        assert observer.status()["books"]["buffers"] == 0
        wait_for(lambda: served.fds() <= baseline, "the service's fds to return to the baseline")
