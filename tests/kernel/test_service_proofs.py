"""Issue 13's proofs that ran only on the host, on a real kernel: the service (``devalloc serve``,
root) hands system-heap (and CMA, full kernel) buffers to clients of unprivileged uids while the
heap nodes stay root-only (0600). Quotas refuse the next buffer naming the rule and spare other
clients; a client killed in the middle of a request leaves nothing behind (books, bufinfo, the
service's fds); thousands of malformed packets, dma-buf fds sent *to* the service among them,
neither stop it nor leak; 100 concurrent clients allocate without an error.

Example (in the test VM, which runs as root):
    $ tests/vm/run.sh --kernel stock -- -m kernel tests/kernel/test_service_proofs.py
    $ tests/vm/run.sh --kernel full -- -m kernel tests/kernel/test_service_proofs.py
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import random
import signal
import socket
import statistics
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from devalloc.accounting import read_bufinfo
from devalloc.allocator import Allocation
from devalloc.constraints import Constraints, MemoryRules
from devalloc.formats import fourcc_code
from devalloc.heaps.dmaheap import DmaHeap
from devalloc.service import QuotaError, ServiceClient, connect
from devalloc.service.protocol import MAX_FDS, VERSION, send_message

from .._service_helpers import NOBODY, Child, Served, run, service, start, wait_for
from ..conftest import capability, require
from ..test_service_fuzz import _alive, _garbage, send_garbage
from .test_service import DEBUGFS, SYSTEM_HEAP, YUYV, _named_for, root_only

pytestmark = pytest.mark.kernel

#: A second unprivileged uid (nogroup's number; no passwd entry is needed to run as it).
OTHER = NOBODY - 1
#: A small YUYV buffer: 128 KiB.
SMALL = (256, 256)
#: A contiguous XR24 usage: 256 KiB at 256x256, from the CMA heap.
CONTIGUOUS = Constraints(
    "npu", "input", ((fourcc_code("XR24"), 0),), memory=MemoryRules(contiguous=True)
)


@pytest.fixture
def root_only_heap() -> Iterator[None]:
    """The system heap node root-only (as tests/kernel/test_service.py's fixture), and the
    kernel's bufinfo readable (the proofs count dma-bufs there)."""
    require(os.path.exists(SYSTEM_HEAP), f"{SYSTEM_HEAP} is absent (no dma-heap support here)")
    require(os.getuid() == 0, "the service test runs the service as root")
    require(
        os.access(os.path.join(DEBUGFS, "dma_buf", "bufinfo"), os.R_OK),
        "debugfs dma_buf/bufinfo is not readable",
    )
    with root_only(SYSTEM_HEAP):
        yield


def _objects() -> int:
    """The kernel's dma-buf count (bufinfo's totals line)."""
    return read_bufinfo(DEBUGFS).total_objects


def _at_baselines(served: Served, fds: int, objects: int, what: str = "") -> None:
    """Wait for the service's fd count and the kernel's dma-buf count to come back to
    ``fds`` and ``objects`` (``what``: added to a failure)."""
    wait_for(lambda: served.fds() <= fds, f"the service's fds{what}", show=served.fd_list)
    assert served.fds() == fds, served.fd_list()
    wait_for(lambda: _objects() <= objects, f"bufinfo to return to the baseline{what}")


def _client(observer: ServiceClient, pid: int) -> dict[str, Any]:
    """The books' entry of the client process ``pid`` (zeros once it is gone)."""
    entries = [c for c in observer.status()["books"]["clients"] if c["pid"] == pid]
    return {
        "bytes": sum(int(c["bytes"]) for c in entries),
        "buffers": sum(int(c["buffers"]) for c in entries),
    }


def _refusal(call: Callable[[], Allocation]) -> dict[str, str] | None:
    """None if ``call`` allocates (what it got is closed); the QuotaError/PolicyError's class,
    rule and message if the service refuses."""
    try:
        call().close()
    except QuotaError as exc:  # PolicyError is a QuotaError
        return {"type": type(exc).__name__, "rule": exc.rule, "message": str(exc)}
    return None


def _exps(allocation: Allocation) -> list[str | None]:
    """The exporter (heap) of each buffer, as the kernel names it."""
    return [b.info().exp_name for b in allocation.buffers]


def _tell(end: socket.socket, what: bytes) -> None:
    end.sendall(what)


def _hear(end: socket.socket, what: bytes, timeout: float = 120.0) -> None:
    """Receive ``what`` on a SOCK_SEQPACKET end (EOF: the other side failed or exited)."""
    end.settimeout(timeout)
    got = end.recv(64)
    assert got == what, f"expected {what!r} from the other side, got {got!r}"


# --- quotas -------------------------------------------------------------------------------------

#: Each quota of the default client and the policy line that sets it: three SMALL buffers fit,
#: a fourth does not.
QUOTAS = {"max_buffers": "max_buffers = 3", "max_bytes": 'max_bytes = "448K"'}


@pytest.mark.parametrize("key", sorted(QUOTAS))
def test_quota_refuses_the_next_buffer_naming_the_rule_and_spares_other_clients(
    root_only_heap: None, key: str
) -> None:
    """An unprivileged client (nobody) holds three system-heap buffers, its quota under the
    policy's [default]; a fourth is a QuotaError whose rule and message name the setting, and the
    refused request leaves no dma-buf in the kernel. Meanwhile a client of another unprivileged
    uid holds its own three and keeps allocating, and root allocates. Once nobody has closed its
    buffers, it allocates three again."""
    policy = f"[default]\n{QUOTAS[key]}\n"
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with ours, theirs, service(policy) as served, connect(served.path, timeout=60) as observer:

        def limited() -> object:
            ours.close()  # so that this process's failure is EOF at ``theirs``
            with connect(served.path, timeout=60) as c:
                held = [c.allocate(*SMALL, usages=[YUYV]) for _ in range(3)]
                refused = _refusal(lambda: c.allocate(*SMALL, usages=[YUYV]))
                _tell(theirs, b"full")
                _hear(theirs, b"go")
                sizes = [a.buffers[0].size for a in held]
                exps = [e for a in held for e in _exps(a)]
                for allocation in held:
                    allocation.close()
                with c.allocate(*SMALL, usages=[YUYV], count=3) as again:
                    exps += _exps(again)
            return {"refused": refused, "sizes": sizes, "exps": exps}

        def other() -> object:
            with (
                connect(served.path, timeout=60) as c,
                c.allocate(*SMALL, usages=[YUYV], count=2) as held,
            ):
                exps = _exps(held)
                for _ in range(5):  # its third buffer, again and again
                    with c.allocate(*SMALL, usages=[YUYV]) as one:
                        exps += _exps(one)
            return {"uid": os.getuid(), "exps": exps}

        child = start(limited)
        theirs.close()  # the child keeps its own copy
        try:
            _hear(ours, b"full")
            assert len(_named_for(child.pid)) == 3, "the refused request left a dma-buf"
            assert _client(observer, child.pid)["buffers"] == 3
            others = run(other, uid=OTHER)
            with observer.allocate(*SMALL, usages=[YUYV]) as mine:
                root_exps = _exps(mine)
            assert _client(observer, child.pid)["buffers"] == 3  # nobody's books unchanged
            _tell(ours, b"go")
        except BaseException as exc:
            ours.close()  # a client still waiting for the go-ahead gets EOF and reports
            exc.add_note(f"the limited client's side: {child.result(timeout=120)}")
            raise
        result = child.result(timeout=120)
    assert "ok" in result, result
    got = result["ok"]
    assert isinstance(got, dict)
    refused = got["refused"]
    assert refused is not None, f"a fourth buffer was not refused under {QUOTAS[key]}"
    assert refused["type"] == "QuotaError", refused
    value = 3 if key == "max_buffers" else 448 << 10
    assert refused["rule"].startswith("[default]"), refused
    assert refused["rule"].endswith(f"policy.toml: {key} = {value}"), refused
    assert key in refused["message"], refused
    assert "release buffers or raise" in refused["message"], refused
    assert f"uid {NOBODY}" in refused["message"], refused
    if key == "max_bytes":  # the sizes make the fourth buffer, and only it, pass the quota
        assert 3 * got["sizes"][0] <= 448 << 10 < 4 * got["sizes"][0], got["sizes"]
    assert got["exps"] == ["system"] * 6, got
    assert "ok" in others, others
    assert others["ok"] == {"uid": OTHER, "exps": ["system"] * 7}, others
    assert root_exps == ["system"]


@pytest.mark.needs("cma_heap")
def test_contiguous_policy_on_the_cma_heap(root_only_heap: None) -> None:
    """Full kernel, CMA node root-only too: the default client may hold one 256 KiB contiguous
    buffer (max_contiguous_bytes); a second is a QuotaError naming that setting while it still
    gets system-heap buffers, and after closing the first it gets contiguous memory again. A uid
    whose rule says ``contiguous = false`` gets a PolicyError naming the rule, and system-heap
    buffers."""
    node = capability("cma_heap").nodes[0]
    policy = (
        '[default]\nmax_contiguous_bytes = "384K"\n\n'
        f'[[rule]]\nname = "no-cma"\nuid = {OTHER}\ncontiguous = false\n'
    )

    def limited() -> object:
        with connect(served.path, timeout=60) as c:
            with c.allocate(*SMALL, usages=[CONTIGUOUS]) as first:
                exps = _exps(first)
                refused = _refusal(lambda: c.allocate(*SMALL, usages=[CONTIGUOUS]))
                with c.allocate(*SMALL, usages=[YUYV]) as plain:
                    exps += _exps(plain)
            with c.allocate(*SMALL, usages=[CONTIGUOUS]) as again:
                exps += _exps(again)
                contiguous = again.heap_properties.contiguous
        return {"refused": refused, "exps": exps, "contiguous": contiguous}

    def forbidden() -> object:
        with connect(served.path, timeout=60) as c:
            refused = _refusal(lambda: c.allocate(*SMALL, usages=[CONTIGUOUS]))
            with c.allocate(*SMALL, usages=[YUYV]) as plain:
                return {"refused": refused, "exps": _exps(plain)}

    with root_only(node), service(policy) as served:
        limits = run(limited)
        forbids = run(forbidden, uid=OTHER)
    cma = os.path.basename(node)
    assert "ok" in limits, limits
    got = limits["ok"]
    assert isinstance(got, dict)
    assert got["exps"] == [cma, "system", cma], got
    assert got["contiguous"] is True
    refused = got["refused"]
    assert refused is not None, "a second contiguous buffer was not refused"
    assert refused["type"] == "QuotaError", refused
    assert refused["rule"].endswith(f"max_contiguous_bytes = {384 << 10}"), refused
    assert "max_contiguous_bytes" in refused["message"], refused
    assert "ok" in forbids, forbids
    got = forbids["ok"]
    assert isinstance(got, dict)
    assert got["exps"] == ["system"], got
    refused = got["refused"]
    assert refused is not None, "a uid without contiguous memory got some"
    assert refused["type"] == "PolicyError", refused
    assert "rule 'no-cma'" in refused["rule"], refused
    assert refused["rule"].endswith("contiguous = false"), refused
    assert "may not use contiguous memory" in refused["message"], refused
    assert f"uid {OTHER}" in refused["message"], refused


# --- SIGKILL in the middle of a request ---------------------------------------------------------


#: The request a killed client sends: 24 buffers of 4 MiB (the service allocates them one by one,
#: long enough under TCG for the client to die before the reply is sent: the service's send fails).
LARGE = {
    "op": "allocate",
    "id": 1000,
    "width": 1920,
    "height": 1080,
    "usages": [{"constraints": YUYV.to_json()}],
    "count": 24,
}
#: Each round: whether the client holds two buffers first, and when it dies after sending
#: LARGE (seconds; None: this process kills it once the kernel holds one of LARGE's buffers).
ROUNDS = ((False, 0.0), (True, 0.0), (False, 0.005), (True, 0.02), (False, None), (True, None))


def _killed_mid_request(path: str, hold: bool, delay: float | None) -> object:
    """Connect, optionally take two buffers, send LARGE and die by SIGKILL ``delay`` seconds
    later (or wait for this test's SIGKILL), the reply unread."""
    c = connect(path)
    kept = c.allocate(320, 240, usages=[YUYV], count=2) if hold else None
    send_message(c._live(), LARGE)
    if delay is None:
        time.sleep(120)
    time.sleep(delay or 0.0)
    os.kill(os.getpid(), signal.SIGKILL)
    return kept  # never reached


def test_sigkill_in_the_middle_of_a_system_heap_request(root_only_heap: None) -> None:
    """Unprivileged clients (some holding two buffers) send a 100 MB system-heap request and are
    SIGKILLed at once, a few milliseconds later, or as soon as the kernel holds the first buffer
    the service allocates for the request: each time their books drop to zero and the kernel
    frees every buffer named after them; at the end bufinfo and the service's fds are at their
    baselines and it still serves."""
    with service() as served, connect(served.path, timeout=60) as observer:
        observer.hello()  # the service has accepted this connection: part of the baseline
        baseline_fds = served.fds()
        baseline = _objects()
        for i, (hold, delay) in enumerate(ROUNDS):
            child = start(functools.partial(_killed_mid_request, served.path, hold, delay))
            pid = child.pid
            status = f"round {i} (holding: {hold}, delay {delay} s, pid {pid})"
            try:
                if delay is None:  # kill it once the kernel holds one of LARGE's buffers
                    first = baseline + (2 if hold else 0) + 1
                    wait_for(lambda: _objects() >= first, f"{status}: a buffer")  # noqa: B023
            finally:  # reaped whatever happened
                if delay is None:
                    child.kill()
                else:
                    os.waitpid(pid, 0)
                    os.close(child.fd)
            wait_for(lambda: _client(observer, pid)["bytes"] == 0, f"{status}: books")  # noqa: B023
            wait_for(lambda: not _named_for(pid), f"{status}: its dma-bufs freed")  # noqa: B023
            wait_for(lambda: _objects() <= baseline, f"{status}: bufinfo at the baseline")
        assert observer.status()["books"]["buffers"] == 0
        _at_baselines(served, baseline_fds, baseline)
        assert served.proc.poll() is None
        with observer.allocate(*SMALL, usages=[YUYV]) as still:  # still serving
            assert _exps(still) == ["system"]


# --- garbage ------------------------------------------------------------------------------------

#: Packets each of the two unprivileged fuzzers sends (at most, and within this many seconds).
PACKETS = 4000
SECONDS = 30.0
#: The least the two must have sent together for the proof to count.
AT_LEAST = 4000
#: The name of the system-heap buffers this process makes and the fuzzers send to the service.
SENT = "sent-to-the-service"


def _fuzz(path: str, seed: int, dmabufs: list[int]) -> object:
    """tests/test_service_fuzz.py's garbage (random bytes, wrong types, half messages, huge
    sizes, unexpected and too many fds, deep nesting), with dma-buf fds among the fds it carries:
    ``dmabufs`` (system heap, from this test's root process) and two buffers the fuzzer got from
    the service itself; plus well-formed requests carrying dma-bufs, and SCM_RIGHTS past both
    the protocol's and the kernel's fd limits."""

    def packet(rng: random.Random) -> tuple[bytes, int]:
        return _dmabuf_packet(rng) if rng.randrange(4) == 0 else _garbage(rng)

    r, w = os.pipe()
    try:
        with (
            connect(path, timeout=60) as own,
            own.allocate(*SMALL, usages=[YUYV], count=2) as got,
        ):
            pool = [r, w, *dmabufs, *(b.fileno() for b in got.buffers)]
            return send_garbage(path, random.Random(seed), packet, pool, PACKETS, SECONDS)
    finally:
        os.close(r)
        os.close(w)


def _dmabuf_packet(rng: random.Random) -> tuple[bytes, int]:
    """A packet meant to carry dma-buf fds: a well-formed request, a release, an allocate, or
    just bytes, with 1 fd, the protocol's maximum, one more, or the kernel's maximum (253)."""
    nfds = rng.choice((1, 2, MAX_FDS, MAX_FDS + 1, 253))
    op = rng.choice(("hello", "status", "release", "allocate", "raw"))
    if op == "raw":
        return rng.randbytes(rng.randrange(1, 64)), nfds
    body: dict[str, object] = {"v": VERSION, "op": op, "id": rng.randrange(1, 1000)}
    if op == "release":
        body["buffers"] = [rng.randrange(100)]
    if op == "allocate":
        body.update(width=64, height=64, usages=[{"constraints": YUYV.to_json()}])
    return json.dumps(body).encode(), nfds


def test_garbage_with_dmabufs_does_not_hurt_the_service(root_only_heap: None) -> None:
    """Two unprivileged clients send thousands of malformed packets, many carrying system-heap
    dma-buf fds (this process's, and their own from the service): the service stays up, answers
    another client's system-heap requests meanwhile, its fds return to their baseline, and the
    kernel frees every dma-buf sent to it once the senders are gone (bufinfo)."""
    with service() as served, connect(served.path, timeout=60) as good:
        good.hello()
        baseline_fds = served.fds()
        baseline = _objects()
        with DmaHeap(SYSTEM_HEAP) as heap, contextlib.ExitStack() as stack:
            bufs = [stack.enter_context(heap.allocate(4096 << i)) for i in range(4)]
            for i, buf in enumerate(bufs):
                buf.set_name(f"{SENT}:{i}")
            fds = [b.fileno() for b in bufs]
            fuzzers = [start(functools.partial(_fuzz, served.path, s, fds)) for s in (1, 2)]
        # Only the fuzzers hold them now, and whatever the service kept.
        answered = 0
        try:
            while any(_alive(f.pid) for f in fuzzers):
                with good.allocate(*SMALL, usages=[YUYV]) as r:
                    assert _exps(r) == ["system"]
                answered += 1
                time.sleep(0.05)
        finally:  # the fuzzers stop by themselves (PACKETS, SECONDS): reaped whatever happened
            results = [f.result(timeout=SECONDS + 60) for f in fuzzers]
        assert all("ok" in r for r in results), results
        sent = sum(r["ok"]["sent"] for r in results)  # type: ignore[index]
        print(f"{sent} malformed packets from 2 unprivileged clients; {answered} answers")
        assert sent >= AT_LEAST, results
        assert served.proc.poll() is None
        assert answered >= 1
        assert good.status()["books"]["buffers"] == 0
        wait_for(
            lambda: not any((e.name or "").startswith(SENT) for e in read_bufinfo(DEBUGFS).entries),
            "the kernel to free the dma-bufs sent to the service",
        )
        _at_baselines(served, baseline_fds, baseline)
        with good.allocate(*SMALL, usages=[YUYV]) as r:  # still serving
            assert _exps(r) == ["system"]


# --- many clients at once -----------------------------------------------------------------------

#: Concurrent unprivileged client processes, and system-heap allocations each.
CLIENTS = 100
EACH = 50


def _allocations(path: str, go: tuple[int, int]) -> object:
    """Connect, wait for the go-ahead (all clients at once), then allocate and close EACH
    system-heap buffers: each one's latency and exporter."""
    os.close(go[1])  # so that the test's failure is EOF here
    latencies = []
    exps = []
    with connect(path, timeout=300) as c:
        c.hello()
        assert os.read(go[0], 1) == b"g", "the test gave no go-ahead"
        for _ in range(EACH):
            asked = time.perf_counter()
            with c.allocate(64, 64, usages=[YUYV]) as r:
                latencies.append(time.perf_counter() - asked)
                exps += _exps(r)
    return {"latencies": latencies, "exps": exps}


def test_many_concurrent_unprivileged_clients(root_only_heap: None) -> None:
    """CLIENTS unprivileged processes connect, then allocate EACH system-heap buffers at once:
    no error, every buffer from the system heap, the books, the service's fds and bufinfo back
    at their baselines. The latency of an allocation as a client sees it (median, p99) is
    printed, and in every later assertion's message."""
    with service() as served, connect(served.path, timeout=60) as observer:
        observer.hello()
        baseline_fds = served.fds()
        baseline = _objects()
        go = os.pipe()
        clients: list[Child] = []
        try:
            clients = [
                start(functools.partial(_allocations, served.path, go)) for _ in range(CLIENTS)
            ]
            wait_for(
                lambda: observer.status()["connections"] >= CLIENTS + 1,
                "every client to connect",
                timeout=300,
            )
            began = time.monotonic()
            os.write(go[1], b"g" * CLIENTS)
        finally:
            os.close(go[0])
            os.close(go[1])  # a client still waiting gets EOF
            results = [c.result(timeout=300) for c in clients]
        wall = time.monotonic() - began
        failed = [r for r in results if "ok" not in r]
        assert not failed, f"{len(failed)} of {CLIENTS} clients failed: {failed[:3]}"
        latencies = [t for r in results for t in r["ok"]["latencies"]]  # type: ignore[index]
        exps = [e for r in results for e in r["ok"]["exps"]]  # type: ignore[index]
        assert len(latencies) == CLIENTS * EACH
        assert exps == ["system"] * (CLIENTS * EACH), sorted(set(map(str, exps)))
        median = statistics.median(latencies) * 1e3
        p99 = statistics.quantiles(latencies, n=100)[98] * 1e3
        report = (
            f"{CLIENTS} clients x {EACH} system-heap allocations: median {median:.1f} ms,"
            f" p99 {p99:.1f} ms, {len(latencies) / wall:.0f} allocations/s over {wall:.1f} s"
        )
        print(report)
        assert observer.status()["books"]["buffers"] == 0, report
        _at_baselines(served, baseline_fds, baseline, f" ({report})")
