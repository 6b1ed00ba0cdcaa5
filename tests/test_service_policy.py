"""The service's policy, books and collections logic, without a server."""

from __future__ import annotations

import grp
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devalloc.constraints import Constraints
from devalloc.errors import UsageError
from devalloc.formats import fourcc_code
from devalloc.negotiate import NegotiationError
from devalloc.service.books import Books, Holding
from devalloc.service.collections import Collection, combine_cpu_access
from devalloc.service.policy import Identity, Policy, Usage
from devalloc.service.protocol import CollectionError, PolicyError, QuotaError
from devalloc.service.server import buffer_name

ALICE = Identity(pid=10, uid=1000, gid=1000, groups=(44,), comm="app")
BOB = Identity(pid=11, uid=1001, gid=1001, groups=(), comm="other")
ROOT = Identity(pid=12, uid=0, gid=0, groups=(), comm="root-app")

POLICY = """
[global]
max_bytes = "1M"
max_buffers = 100

[default]
max_bytes = "64K"
max_buffers = 4
contiguous = false

[[rule]]
name = "video"
gid = 44
protected = true
contiguous = true
max_contiguous_bytes = "16K"

[[rule]]
name = "alice"
uid = 1000
max_buffers = 10
"""


def _check(
    policy: Policy,
    ident: Identity,
    usage: Usage,
    *,
    contiguous: bool = False,
    protected: bool = False,
    service_bytes: int | None = None,
) -> None:
    policy.check(
        ident,
        usage,
        contiguous=contiguous,
        protected=protected,
        cpu_only=False,
        service_bytes=usage.bytes if service_bytes is None else service_bytes,
        service_buffers=usage.buffers,
    )


def test_rules_apply_in_order_and_name_themselves() -> None:
    policy = Policy.from_text(POLICY, "policy.toml")
    lim = policy.limits_for(ALICE)
    assert lim.max_buffers.value == 10
    assert "rule 'alice'" in lim.max_buffers.rule
    assert lim.protected.value is True
    assert "rule 'video'" in lim.protected.rule
    assert lim.max_bytes.value == 64 << 10
    assert "[default] of policy.toml" in lim.max_bytes.rule
    assert policy.limits_for(BOB).max_buffers.value == 4


def test_refusals_name_the_rule() -> None:
    policy = Policy.from_text(POLICY, "policy.toml")
    with pytest.raises(
        QuotaError, match=r"above its quota of 4 set by \[default\] of policy.toml"
    ) as q:
        _check(policy, BOB, Usage(buffers=5))
    assert q.value.rule.endswith("max_buffers = 4")
    with pytest.raises(PolicyError, match="may not use contiguous memory") as p:
        _check(policy, BOB, Usage(buffers=1), contiguous=True)
    assert "contiguous = false" in p.value.rule
    _check(policy, ALICE, Usage(buffers=1, contiguous_bytes=16 << 10), contiguous=True)
    with pytest.raises(QuotaError, match="max_contiguous_bytes") as c:
        _check(policy, ALICE, Usage(buffers=1, contiguous_bytes=32 << 10), contiguous=True)
    assert c.value.rule == "rule 'video' (policy.toml rule 1): max_contiguous_bytes = 16384"
    with pytest.raises(PolicyError, match="protected memory"):
        _check(policy, BOB, Usage(buffers=1), protected=True)
    with pytest.raises(QuotaError, match="global cap") as g:
        _check(policy, ALICE, Usage(buffers=1, bytes=1), service_bytes=(1 << 20) + 1)
    assert "global max_bytes" in g.value.rule


def test_builtin_defaults() -> None:
    policy = Policy()
    assert policy.limits_for(ROOT).protected.value is True
    assert policy.limits_for(BOB).protected.value is False
    assert policy.limits_for(BOB).max_buffers.value == 1024
    assert "built-in" in policy.limits_for(BOB).max_bytes.rule


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("[nope]\n", "unknown section"),
        ("[default]\nmax_bytes = -1\n", "non-negative"),
        ('[default]\nmax_bytes = "lots"\n', "not a size"),
        ("[default]\nprotected = 1\n", "true or false"),
        ("[default]\nbogus = 1\n", "unknown key"),
        ("[[rule]]\nmax_bytes = 1\n", "names whom it applies to"),
        ("[[rule]]\nuid = true\n", "uid is a non-negative integer"),
        ('[[rule]]\nuser = "no-such-user-here"\n', "no user"),
        ('[[rule]]\nuid = 1\nuser = "root"\n', "not beside uid"),
        ("[global]\nmax_collections = 1\n", "unknown key"),
        ("rule = 5\n", "list of tables"),
        ("[default\n", "TOML"),
    ],
)
def test_bad_policies_are_usage_errors(text: str, match: str) -> None:
    with pytest.raises(UsageError, match=match):
        Policy.from_text(text, "p.toml")


def test_group_names_resolve() -> None:
    name = grp.getgrgid(0).gr_name
    policy = Policy.from_text(f'[[rule]]\ngroup = "{name}"\nmax_buffers = 3\n', "p")
    assert policy.limits_for(ROOT).max_buffers.value == 3


def test_policy_file_not_found(tmp_path: object) -> None:
    with pytest.raises(UsageError, match="no such policy file"):
        Policy.load(os.path.join(str(tmp_path), "absent.toml"))


def test_books_count_shared_buffers_once() -> None:
    books = Books()
    books.add_client(1, ALICE)
    books.add_client(2, BOB)
    ids = books.hand_out(1, [(100, "scattered"), (200, "contiguous")], collection="c1")
    assert books.hand_out(2, [(100, "scattered"), (200, "contiguous")], collection="c1", ids=ids)
    assert books.totals() == (300, 2)
    assert books.usage(1) == Usage(300, 2, 1, 200)
    data = books.to_json()
    assert data["collections"]["c1"]["bytes"] == 300
    assert data["bytes_by_class"] == {"scattered": 100, "contiguous": 200}
    assert books.release(1, [ids[0], 999]) == 1
    assert books.release_collection(2, "c1") == 2
    assert books.usage(2) == Usage()
    books.drop_client(1)
    assert books.totals() == (0, 0)


def test_buffer_names_fit_the_kernels_31_bytes() -> None:
    long = Identity(pid=4194304, uid=0, gid=0, groups=(), comm="a-very-long-comm")
    for count in (1, 10, 64):
        name = buffer_name(long, count)
        assert len(f"{name}{count - 1}.1".encode()) <= 31
        assert name.startswith("devalloc:")
        assert f":{long.pid}:" in name


YUYV = Constraints("cam", "out", ((fourcc_code("YUYV"), 0),))
XR24 = Constraints("display", "in", ((fourcc_code("XR24"), 0),))


def test_collection_join_conflict_names_the_joiner() -> None:
    coll = Collection.new(creator=0, width=64, height=64, formats=None, expected=2)
    coll.join(1, ALICE, [YUYV], "w", 2, optional=False)
    with pytest.raises(NegotiationError) as info:
        coll.join(2, BOB, [XR24], "r", 1, optional=False)
    message = str(info.value)
    assert "the join of participant 'other' (pid 11, uid 1001) conflicts" in message
    assert "display:in of participant 'other' (pid 11, uid 1001)" in message
    assert "cam:out of participant 'app' (pid 10, uid 1000)" in message
    assert 2 not in coll.participants
    coll.join(2, BOB, [YUYV], "r", 1, optional=False)  # the same usage: relabelled
    assert [c.label for c in coll.participants[2].constraints] == ["cam@11:out"]
    assert not coll.ready
    for p in coll.participants.values():
        p.committed = True
    assert coll.ready
    assert coll.total_count == 3
    assert coll.cpu_access == "rw"
    with pytest.raises(CollectionError, match="already joined"):
        coll.join(2, BOB, [YUYV], "r", 1, optional=False)


def test_tokens_are_unguessable_and_distinct() -> None:
    tokens = {
        Collection.new(creator=0, width=8, height=8, formats=None, expected=1).token
        for _ in range(100)
    }
    assert len(tokens) == 100
    assert all(len(t) >= 40 for t in tokens)


@pytest.mark.parametrize(
    ("accesses", "combined"),
    [((), "none"), (("none",), "none"), (("r", "none"), "r"), (("r", "w"), "rw"), (("rw",), "rw")],
)
def test_combine_cpu_access(accesses: tuple[str, ...], combined: str) -> None:
    assert combine_cpu_access(accesses) == combined  # type: ignore[arg-type]


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_example_policy_loads_and_is_not_taken_for_a_pipeline() -> None:
    path = os.path.join(REPO, "systemd", "policy.toml")
    policy = Policy.load(path)
    assert policy.limits_for(BOB).protected.value is False
    assert policy.limits_for(ROOT).max_buffers.value == 4096
    assert not os.path.exists(os.path.join(REPO, "examples", "policy.toml"))


def test_unit_files_match_the_service() -> None:
    from devalloc.service.server import DEFAULT_SOCKET

    with open(os.path.join(REPO, "systemd", "devalloc.socket"), encoding="utf-8") as f:
        socket_unit = f.read()
    with open(os.path.join(REPO, "systemd", "devalloc.service"), encoding="utf-8") as f:
        service_unit = f.read()
    assert f"ListenSequentialPacket={DEFAULT_SOCKET}\n" in socket_unit
    assert "Type=notify\n" in service_unit
    assert "ExecStart=/usr/bin/devalloc serve --policy /etc/devalloc/policy.toml\n" in service_unit
    assert "ExecReload=/bin/kill -HUP $MAINPID\n" in service_unit
    assert "DevicePolicy=closed\n" in service_unit
    assert "NoNewPrivileges=yes\n" in service_unit


def _counted_by_hand(books: Books, uid: int) -> tuple[Usage, tuple[int, int]]:
    """The quota figures recomputed from every client's holdings (what the tallies keep)."""
    mine: dict[int, Holding] = {}
    collections: set[str] = set()
    every: dict[int, int] = {}
    for client in books.clients.values():
        for h in client.holdings.values():
            every[h.id] = h.size
        if client.ident.uid == uid:
            mine.update(client.holdings)
            collections |= client.collections
    usage = Usage(
        sum(h.size for h in mine.values()),
        len(mine),
        len(collections),
        sum(h.size for h in mine.values() if h.memory == "contiguous"),
    )
    return usage, (sum(every.values()), len(every))


_STEP = st.tuples(
    st.sampled_from(["hand_out", "share", "release", "release_collection", "drop", "take_over"]),
    st.integers(0, 3),  # a client
    st.integers(0, 3),  # another client / a size / a collection
)


@settings(max_examples=200, deadline=None)
@given(st.lists(_STEP, max_size=40))
def test_the_books_tallies_equal_a_recount(steps: list[tuple[str, int, int]]) -> None:
    """usage_of_uid, tally_of_uid and totals (running tallies) always equal a recount of every
    holding, whatever order buffers are handed out, shared, released, dropped and taken over
    in; two uids, clients 0 and 1 of uid 1000, 2 and 3 of uid 1001."""
    books = Books()
    live: set[int] = set()
    next_key = 100

    def open_client(slot: int) -> None:
        books.add_client(slot, Identity(slot, 1000 + slot // 2, 1000, (), f"c{slot}"))
        live.add(slot)

    for slot in range(4):
        open_client(slot)
    for op, a, b in steps:
        if a not in live:
            open_client(a)
        if op == "hand_out":
            memory = "contiguous" if b % 2 else "scattered"
            books.hand_out(a, [(4096 * (b + 1), memory)])
        elif op == "share" and b in live and b != a:
            ids = books.hand_out(a, [(8192, "scattered")], collection=f"k{b}")
            books.hand_out(b, [(8192, "scattered")], collection=f"k{b}", ids=ids)
        elif op == "release":
            books.release(a, list(books.clients[a].holdings)[: b + 1])
        elif op == "release_collection":
            books.release_collection(a, f"k{b}")
        elif op == "drop":
            books.drop_client(a)
            live.discard(a)
        elif op == "take_over" and b in live and b != a:
            books.add_client(next_key, books.clients[a].ident)
            books.take_over(a, next_key)
            live.discard(a)
            books.clients[a] = books.clients.pop(next_key)  # keep the slot's key
            live.add(a)
        for uid in (1000, 1001):
            usage, totals = _counted_by_hand(books, uid)
            assert books.usage_of_uid(uid) == usage
            assert books.tally_of_uid(uid) == (
                usage.bytes,
                usage.buffers,
                usage.collections,
                usage.contiguous_bytes,
            )
            assert books.totals() == totals


@given(
    st.sampled_from([ALICE, BOB, ROOT]),
    st.integers(0, 2 << 20),
    st.integers(0, 120),
    st.integers(0, 3),
    st.integers(0, 64 << 10),
    st.booleans(),
    st.booleans(),
    st.booleans(),
    st.integers(0, 2 << 20),
    st.integers(0, 120),
)
@settings(max_examples=500)
def test_check_refuses_exactly_what_a_limit_forbids(
    ident: Identity,
    nbytes: int,
    nbuffers: int,
    ncollections: int,
    contiguous_bytes: int,
    contiguous: bool,
    protected: bool,
    cpu_only: bool,
    service_bytes: int,
    service_buffers: int,
) -> None:
    """Policy.check passes a request only when every limit that applies to its client allows
    it (the limits read back from limits_for, compared here one by one), and the refusal names
    a rule; asked twice, it answers the same (its per-identity memory changes nothing)."""
    policy = Policy.from_text(POLICY, "test")
    lim = policy.limits_for(ident)
    usage = Usage(nbytes, nbuffers, ncollections, contiguous_bytes)
    forbidden = (
        (contiguous and not lim.contiguous.value)
        or (protected and not lim.protected.value)
        or (cpu_only and not lim.cpu_only.value)
        or nbytes > int(lim.max_bytes.value)
        or nbuffers > int(lim.max_buffers.value)
        or ncollections > int(lim.max_collections.value)
        or contiguous_bytes > int(lim.max_contiguous_bytes.value)
        or service_bytes > int(policy.global_max_bytes.value)
        or service_buffers > int(policy.global_max_buffers.value)
    )
    for _ in range(2):
        refusal = None
        try:
            policy.check(
                ident,
                usage,
                contiguous=contiguous,
                protected=protected,
                cpu_only=cpu_only,
                service_bytes=service_bytes,
                service_buffers=service_buffers,
            )
        except QuotaError as exc:  # PolicyError is a QuotaError
            refusal = exc
        assert (refusal is not None) == forbidden
        assert refusal is None or refusal.rule
        assert policy.allows(
            ident,
            nbytes,
            nbuffers,
            ncollections,
            contiguous_bytes,
            contiguous=contiguous,
            protected=protected,
            cpu_only=cpu_only,
            service_bytes=service_bytes,
            service_buffers=service_buffers,
        ) == (not forbidden)
