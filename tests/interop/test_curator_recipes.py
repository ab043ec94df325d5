"""Curator 5.4's recipes and zkwarden's sharing the same paths on one real ZooKeeper.

Each Curator participant is its own JVM (``RecipeTool.java`` through ``recipes_peer.py``);
each zkwarden participant has its own AsyncClient session. Exclusion is proven, not assumed:
a holder (of either language) creates a guard node after it acquires and deletes it before
it releases, so a NodeExists on the guard means two holders at once (an "overlap"). For
shared holds (read locks, semaphores) each holder creates its own child in a guard
directory and lists it: a writer seeing anyone else, a reader seeing a writer, or more than
N holders, is an overlap; of any set of holders that coexist, the last to create its child
sees all the others. Both languages time their holds on CLOCK_MONOTONIC (Java's nanoTime,
Python's time.monotonic), so the holds also go on one timeline and are checked for
intersecting intervals, and each test prints its row of the interop matrix (``pytest -s``;
the whole matrix is printed again at the end of the module). For the counters, the
"acquisitions" column counts operations and "overlaps" lost or doubled updates.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest

from zkwarden import AsyncClient
from zkwarden.errors import NodeExistsError
from zkwarden.testing import ZooKeeperServer

from .recipes_peer import Event, RecipePeer, RecipeTool, build_recipe_tool

SESSION = 10.0  # seconds, both languages: the most the interop server grants (JVMs beside
# a parallel run stall a 2-core machine for seconds; a 4 s read timeout was seen to trip)
BOUND = 90.0  # no single wait in these tests may take longer
T = TypeVar("T")


@pytest.fixture(scope="session")
def recipe_tool() -> RecipeTool:
    """RecipeTool.java compiled (once, cached on disk) and ready to run.

    Raises:
        CuratorNotFoundError: Java, javac or the Curator recipes jar is missing.
    """
    return build_recipe_tool()


# --- the interop matrix ------------------------------------------------------------------


@dataclass
class Hold:
    """One hold of a lock, lease or leadership, as its holder timed it."""

    lang: str  # "java" or "python"
    who: str
    start: float  # after the guard was created
    end: float  # before the guard is deleted
    mode: str = "x"  # "x" exclusive, "read", "write", "lease"
    token: int | None = None  # the lock node's czxid, when known
    guard_ok: bool = True  # False: the guard proved a second holder


@dataclass
class Row:
    recipe: str
    java: int
    python: int
    acquisitions: int
    overlaps: int
    note: str = ""


MATRIX: list[Row] = []


def _header() -> str:
    return f"{'recipe':<40} {'java':>4} {'python':>6} {'acquisitions':>12} {'overlaps':>8}  note"


def _line(row: Row) -> str:
    return (
        f"{row.recipe:<40} {row.java:>4} {row.python:>6} {row.acquisitions:>12} "
        f"{row.overlaps:>8}  {row.note}"
    )


def record(row: Row) -> str:
    """Add a row to the matrix, print it, and return its one-line summary (for asserts)."""
    MATRIX.append(row)
    print(f"\ninterop matrix\n{_header()}\n{_line(row)}")
    return _line(row)


@pytest.fixture(scope="module", autouse=True)
def _print_matrix() -> Iterator[None]:
    yield
    if MATRIX:
        print("\n\ninterop matrix (Curator 5.4 <-> zkwarden)\n" + _header())
        for row in MATRIX:
            print(_line(row))


def java_holds(peer: RecipePeer, mode: str = "x") -> list[Hold]:
    """The holds a Java peer reported: each ``acquired`` up to its ``releasing``."""
    starts: dict[int, Event] = {}
    holds: list[Hold] = []
    overlapped = {e["round"] for e in peer.named("overlap")}
    for event in peer.named("acquired", "releasing"):
        if event["event"] == "acquired":
            starts[event["round"]] = event
            continue
        begin = starts.pop(event["round"])
        holds.append(
            Hold(
                "java",
                str(begin["id"]),
                float(begin["t"]),
                float(event["t"]),
                mode=str(begin.get("mode", mode)),
                token=begin.get("czxid"),
                guard_ok=begin["round"] not in overlapped,
            )
        )
    return holds


def intersecting(holds: list[Hold], conflicts: object = None) -> int:
    """Pairs of holds whose intervals intersect and conflict (by default: any pair; for
    read-write holds, any pair with a writer)."""
    ordered = sorted(holds, key=lambda h: h.start)
    count = 0
    for i, first in enumerate(ordered):
        for second in ordered[i + 1 :]:
            if second.start >= first.end:
                break
            if conflicts == "rw" and first.mode == "read" and second.mode == "read":
                continue
            count += 1
    return count


def max_concurrent(holds: list[Hold]) -> int:
    """The most holds at once on the common timeline."""
    edges = sorted([(h.start, 1) for h in holds] + [(h.end, -1) for h in holds])
    best = current = 0
    for _, step in edges:
        current += step
        best = max(best, current)
    return best


def handoffs(holds: list[Hold]) -> int:
    """How often the hold passed from one language to the other."""
    ordered = sorted(holds, key=lambda h: h.start)
    return sum(1 for a, b in itertools.pairwise(ordered) if a.lang != b.lang)


def served(holds: list[Hold]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for hold in holds:
        counts[hold.who] = counts.get(hold.who, 0) + 1
    return counts


async def guard_enter(zk: AsyncClient, guard: str, ident: str) -> bool:
    """Create the guard node; False if it already exists (someone else holds)."""
    try:
        await zk.create(guard, ident.encode(), ephemeral=True)
    except NodeExistsError:
        return False
    return True


async def in_thread(fn: Callable[..., T], *args: object) -> T:
    """Run a blocking peer call without blocking the event loop, bounded."""
    return await asyncio.wait_for(asyncio.to_thread(fn, *args), BOUND)


@dataclass
class Clients:
    """Several zkwarden sessions, closed together."""

    connect: str
    opened: list[AsyncClient] = field(default_factory=list)

    async def open(self, n: int) -> list[AsyncClient]:
        new = [AsyncClient(self.connect, session_timeout=SESSION) for _ in range(n)]
        self.opened.extend(new)
        await asyncio.wait_for(asyncio.gather(*(c.start() for c in new)), BOUND)
        return new

    async def close(self) -> None:
        await asyncio.wait_for(asyncio.gather(*(c.close() for c in self.opened)), BOUND)


def close_all(peers: list[RecipePeer]) -> None:
    for peer in peers:
        peer.close()


# --- the harness itself, on Curator alone ------------------------------------------------


async def test_harness_two_curator_mutexes_never_overlap_and_a_held_guard_is_caught(
    recipe_tool: RecipeTool, zk_server: ZooKeeperServer, zk_path: str
) -> None:
    """Two Curator InterProcessMutex JVMs alternate with zero overlaps; and the guard
    does catch a second holder: with the guard already held by someone else, a Curator
    holder reports an overlap (so a zero in the mixed tests means something)."""
    connect = zk_server.connect_string
    lock, guard = f"{zk_path}/lock", f"{zk_path}/guard"
    peers = recipe_tool.start_many(
        "mutex", connect, lock, ["j1", "j2"], rounds=40, hold_ms=2, guard=guard, wait_go=True
    )
    try:
        for peer in peers:
            peer.go()
        done = [await in_thread(peer.until_done) for peer in peers]
    finally:
        close_all(peers)
    holds = [h for peer in peers for h in java_holds(peer)]
    overlaps = sum(int(d["overlaps"]) for d in done) + intersecting(holds)
    summary = record(Row("harness: mutex (Curator only)", 2, 0, len(holds), overlaps))
    assert len(holds) == 80 and overlaps == 0, summary
    assert handoffs(holds) == 0  # one language only
    assert served(holds) == {"j1": 40, "j2": 40}, summary

    # Negative control: somebody (here the test) holds the guard; Curator's holder sees it.
    async with AsyncClient(connect, session_timeout=SESSION) as zk:
        assert await guard_enter(zk, guard, "intruder")
        with recipe_tool.start(
            "mutex", connect, lock, id="j3", rounds=1, hold_ms=0, guard=guard
        ) as peer:
            done3 = await in_thread(peer.until_done)
        assert done3["overlaps"] == 1, peer.events
        [overlap] = peer.named("overlap")
        assert overlap["holder"] == "intruder"


async def as_awaitable(value: bool) -> bool:
    return value


async def _equals(got: Awaitable[object], expected: object) -> bool:
    return await got == expected


async def until(check: Callable[[], Awaitable[bool]], what: str, timeout: float = BOUND) -> None:
    """Poll ``check()`` until it is true; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, f"{what}: not within {timeout}s"
        await asyncio.sleep(0.01)


# --- zkwarden participants -----------------------------------------------------------------


class Guard:
    """The exclusion proof of one zkwarden holder (see the module docstring).

    ``node`` alone: an exclusive guard node. ``directory``: a shared guard, each holder
    adding ``<mode>-<who>-<n>`` and judging the children it then sees (``limit`` holders
    at most; a writer alone; a reader with no writer).
    """

    def __init__(self, node: str | None = None, directory: str | None = None, limit: int = 1):
        self.node, self.directory, self.limit = node, directory, limit
        self.failures: list[str] = []

    async def enter(self, zk: AsyncClient, who: str, mode: str, n: int) -> str | None:
        """Take the guard; returns what to delete on exit (None: someone else has it)."""
        if self.node is not None:
            if await guard_enter(zk, self.node, who):
                return self.node
            self.failures.append(f"{who}#{n}: guard held by another")
            return None
        assert self.directory is not None
        mine = f"{self.directory}/{mode}-{who}-{n}"
        await zk.create(mine, who.encode(), ephemeral=True, makepath=True)
        seen: list[str] = await zk.get_children(self.directory)
        writers = [c for c in seen if c.startswith("write-")]
        if (
            (mode == "write" and len(seen) > 1)
            or (mode == "read" and writers)
            or len(seen) > self.limit
        ):
            self.failures.append(f"{who}#{n} ({mode}) saw {sorted(seen)}")
        return mine


async def py_rounds(
    zk: AsyncClient,
    hold_one: Callable[[], AbstractAsyncContextManager[Any]],
    who: str,
    rounds: int,
    hold: float,
    guard: Guard,
    start: asyncio.Event,
    mode: str = "x",
) -> list[Hold]:
    """``rounds`` times: ``async with hold_one() as lease`` (a lock lease, a leadership
    term), take the guard, hold, give the guard back."""
    holds: list[Hold] = []
    await start.wait()
    for n in range(1, rounds + 1):
        async with hold_one() as lease:
            taken = await guard.enter(zk, who, mode, n)
            began = time.monotonic()
            await asyncio.sleep(hold)
            ended = time.monotonic()
            if taken is not None:
                await zk.delete(taken)
        holds.append(
            Hold("python", who, began, ended, mode=mode,
                 token=getattr(lease, "fencing_token", None), guard_ok=taken is not None)
        )
    return holds


def always(lock: AbstractAsyncContextManager[Any]) -> Callable[[], AbstractAsyncContextManager[Any]]:
    """The same lock object for every round."""
    return lambda: lock


def max_gap(holds: list[Hold]) -> float:
    """The longest time nobody held, between the first hold and the last (seconds)."""
    ordered = sorted(holds, key=lambda h: h.start)
    gap, reach = 0.0, ordered[0].end if ordered else 0.0
    for hold in ordered[1:]:
        gap = max(gap, hold.start - reach)
        reach = max(reach, hold.end)
    return gap


def check_tokens(holds: list[Hold], summary: str) -> None:
    """Fencing tokens strictly increase from one holder to the next."""
    tokens = [h.token for h in sorted(holds, key=lambda h: h.start)]
    known = [t for t in tokens if t is not None]
    assert len(known) == len(tokens), f"a hold without a token: {summary}"
    assert known == sorted(known) and len(set(known)) == len(known), (
        f"fencing tokens not strictly increasing in hold order: {summary}"
    )


# --- InterProcessMutex <-> Lock --------------------------------------------------------------


async def test_mutex_curator_and_zkwarden_alternate_without_overlap(
    recipe_tool: RecipeTool, zk_server: ZooKeeperServer, zk_path: str
) -> None:
    """2 Curator InterProcessMutex JVMs and 4 zkwarden Lock sessions on one path: 280
    acquisitions, no guard ever found taken, no two holds intersecting on the common
    clock, every contender served all its rounds, the hold passing between the languages
    many times, and the fencing tokens (the lock nodes' czxids, read by Java after it
    acquired, from the create reply in Python) strictly increasing in hold order."""
    from zkwarden.recipes.lock import Lock

    connect = zk_server.connect_string
    path, guard = f"{zk_path}/lock", Guard(node=f"{zk_path}/guard")
    java_ids, py_ids = ["j1", "j2"], ["p1", "p2", "p3", "p4"]
    java_rounds, py_rounds_each, hold = 60, 40, 0.002
    clients = Clients(connect)
    zks = await clients.open(len(py_ids))
    await zks[0].ensure_path(zk_path)
    peers = recipe_tool.start_many(
        "mutex", connect, path, java_ids, rounds=java_rounds, hold_ms=2, guard=guard.node,
        wait_go=True,
    )
    try:
        start = asyncio.Event()
        workers = [
            asyncio.create_task(
                py_rounds(zk, always(Lock(zk, path, identifier=who)), who, py_rounds_each, hold,
                          guard, start)
            )
            for zk, who in zip(zks, py_ids, strict=True)
        ]
        for peer in peers:
            peer.go()
        start.set()
        async with asyncio.timeout(BOUND):
            py_holds = [h for hs in await asyncio.gather(*workers) for h in hs]
        done = [await in_thread(peer.until_done) for peer in peers]
    finally:
        close_all(peers)
        await clients.close()

    holds = py_holds + [h for peer in peers for h in java_holds(peer)]
    java_overlaps = sum(int(d["overlaps"]) for d in done)
    overlaps = java_overlaps + len(guard.failures) + intersecting(holds)
    passes = handoffs(holds)
    summary = record(
        Row("InterProcessMutex <-> Lock", len(java_ids), len(py_ids), len(holds), overlaps,
            f"{passes} java<->python handoffs")
    )
    assert overlaps == 0, f"{summary}; {guard.failures}"
    assert len(holds) == len(java_ids) * java_rounds + len(py_ids) * py_rounds_each, summary
    assert served(holds) == {
        **{j: java_rounds for j in java_ids}, **{p: py_rounds_each for p in py_ids}
    }, summary
    assert passes >= 10, f"the languages did not alternate: {summary}"
    check_tokens(holds, summary)


# --- LeaderLatch <-> LeaderLatch -------------------------------------------------------------


def _ids(participants: list[Event]) -> list[tuple[str, bool]]:
    return [(str(p["id"]), bool(p["leader"])) for p in participants]


async def test_latch_participants_agree_across_languages(
    recipe_tool: RecipeTool, zk_server: ZooKeeperServer, zk_path: str
) -> None:
    """Curator LeaderLatch and zkwarden LeaderLatch on one path: Java's getParticipants()
    lists the Python ids in queue order with exactly one leader, Python's participants()
    lists the Java ids, and leadership passes Java -> Python -> Python -> Java as each
    leader closes, with each side agreeing on who leads at every step."""
    from zkwarden.recipes.latch import LeaderLatch

    connect = zk_server.connect_string
    path = f"{zk_path}/latch"
    clients = Clients(connect)
    zk1, zk2 = await clients.open(2)
    first = recipe_tool.start("latch", connect, path, id="java-A")
    last: RecipePeer | None = None
    steps = 0
    try:
        await in_thread(first.expect_event, "isLeader")
        p1, p2 = LeaderLatch(zk1, path, identifier="py-1"), LeaderLatch(zk2, path, identifier="py-2")
        await asyncio.wait_for(p1.start(), BOUND)
        await asyncio.wait_for(p2.start(), BOUND)
        seen = await in_thread(first.request, "participants", "participants")
        assert _ids(seen["participants"]) == [("java-A", True), ("py-1", False), ("py-2", False)]
        assert seen["has_leadership"] is True
        assert await p1.participants() == ["java-A", "py-1", "py-2"]
        assert not p1.is_leader and not p2.is_leader
        steps += 1

        # The Java leader leaves: py-1 leads, and a new Java latch queues behind py-2.
        await in_thread(first.request, "close", "closed")
        assert await p1.wait_leader(BOUND)
        last = recipe_tool.start("latch", connect, path, id="java-B")
        await in_thread(last.expect_event, "started")
        seen = await in_thread(last.request, "participants", "participants")
        assert _ids(seen["participants"]) == [("py-1", True), ("py-2", False), ("java-B", False)]
        assert seen["leader"] == "py-1" and seen["has_leadership"] is False
        assert p1.is_leader and not p2.is_leader
        assert await p2.leader() == "py-1"
        steps += 1

        await asyncio.wait_for(p1.close(), BOUND)
        assert await p2.wait_leader(BOUND)
        seen = await in_thread(last.request, "participants", "participants")
        assert _ids(seen["participants"]) == [("py-2", True), ("java-B", False)]
        assert seen["has_leadership"] is False
        steps += 1

        await asyncio.wait_for(p2.close(), BOUND)
        await in_thread(last.expect_event, "isLeader")
        seen = await in_thread(last.request, "participants", "participants")
        assert _ids(seen["participants"]) == [("java-B", True)] and seen["has_leadership"]
        assert await p2.participants() == ["java-B"]
        steps += 1
        # Curator's view from outside (no participation) agrees.
        assert _ids(await in_thread(recipe_tool.participants, connect, path)) == [("java-B", True)]
    finally:
        close_all([first] + ([last] if last else []))
        await clients.close()
    record(Row("LeaderLatch participants", 2, 2, steps, 0, "getParticipants() lists py ids"))


@asynccontextmanager
async def latch_term(zk: AsyncClient, path: str, who: str) -> Any:
    """One zkwarden LeaderLatch term: start, lead, close."""
    from zkwarden.recipes.latch import LeaderLatch

    latch = LeaderLatch(zk, path, identifier=who)
    await asyncio.wait_for(latch.start(), BOUND)
    try:
        async with latch.leadership(timeout=BOUND) as term:
            yield term
    finally:
        await latch.close()


async def test_latch_one_leader_at_a_time_across_languages(
    recipe_tool: RecipeTool, zk_server: ZooKeeperServer, zk_path: str
) -> None:
    """2 Curator and 2 zkwarden participants each join a LeaderLatch, lead (holding the
    guard), close and join again, 20 times each: never two leaders (guard and common
    clock), everyone leads every time it joined, terms pass between the languages, the
    terms' tokens (latch nodes' czxids) increase."""
    connect = zk_server.connect_string
    path, guard = f"{zk_path}/latch", Guard(node=f"{zk_path}/guard")
    java_ids, py_ids, rounds = ["j1", "j2"], ["p1", "p2"], 20
    clients = Clients(connect)
    zks = await clients.open(len(py_ids))
    await zks[0].ensure_path(zk_path)
    peers = recipe_tool.start_many(
        "latch", connect, path, java_ids, rounds=rounds, hold_ms=3, guard=guard.node, wait_go=True
    )
    try:
        start = asyncio.Event()
        workers = [
            asyncio.create_task(
                py_rounds(zk, functools.partial(latch_term, zk, path, who), who, rounds, 0.003,
                          guard, start)
            )
            for zk, who in zip(zks, py_ids, strict=True)
        ]
        for peer in peers:
            peer.go()
        start.set()
        async with asyncio.timeout(BOUND):
            py_holds = [h for hs in await asyncio.gather(*workers) for h in hs]
        done = [await in_thread(peer.until_done) for peer in peers]
    finally:
        close_all(peers)
        await clients.close()

    holds = py_holds + [h for peer in peers for h in java_holds(peer)]
    overlaps = sum(int(d["overlaps"]) for d in done) + len(guard.failures) + intersecting(holds)
    passes = handoffs(holds)
    summary = record(
        Row("LeaderLatch <-> LeaderLatch", len(java_ids), len(py_ids), len(holds), overlaps,
            f"{passes} handoffs, max leaderless gap {max_gap(holds) * 1000:.0f} ms")
    )
    assert overlaps == 0, f"{summary}; {guard.failures}"
    assert served(holds) == {w: rounds for w in java_ids + py_ids}, summary
    assert passes >= 5, f"the languages did not alternate: {summary}"
    check_tokens(holds, summary)


# --- LeaderSelector <-> LeaderElection -------------------------------------------------------


async def py_election(
    zk: AsyncClient, path: str, who: str, rounds: int, hold: float, guard: Guard,
    start: asyncio.Event,
) -> list[Hold]:
    """A zkwarden LeaderElection (auto-requeue) that leads ``rounds`` terms, holding the
    guard in each, then stops."""
    from zkwarden.recipes.election import LeaderElection, LeadershipTerm

    holds: list[Hold] = []
    election = LeaderElection(zk, path, identifier=who)

    async def lead(term: LeadershipTerm) -> None:
        n = len(holds) + 1
        taken = await guard.enter(zk, who, "x", n)
        began = time.monotonic()
        await asyncio.sleep(hold)
        ended = time.monotonic()
        if taken is not None:
            await zk.delete(taken)
        holds.append(Hold("python", who, began, ended, token=term.fencing_token,
                          guard_ok=taken is not None))
        if len(holds) >= rounds:
            election.stop()

    await start.wait()
    await asyncio.wait_for(election.run(lead), BOUND)
    return holds


async def test_selector_and_election_take_turns(
    recipe_tool: RecipeTool, zk_server: ZooKeeperServer, zk_path: str
) -> None:
    """Curator LeaderSelector (setId, autoRequeue) and zkwarden LeaderElection on one
    path. First the views: with a Python leader, a Java selector and a Python waiter
    queued, Curator's getParticipants() and zkwarden's participants() list the same ids in
    the same order with the Python leader first; the turn then goes Python -> Java ->
    Python. Then 2 + 2 participants lead 20 terms each: never two leaders (guard, common
    clock), everyone served, terms passing between the languages."""
    from zkwarden.recipes.election import LeaderElection, LeadershipTerm

    connect = zk_server.connect_string
    clients = Clients(connect)
    zks = await clients.open(2)

    # The views, and one turn each.
    path, guard = f"{zk_path}/views", Guard(node=f"{zk_path}/views-guard")
    await zks[0].ensure_path(zk_path)
    order: list[tuple[float, str]] = []
    release = asyncio.Event()

    async def lead_until_released(term: LeadershipTerm) -> None:
        order.append((time.monotonic(), term.identifier))
        await release.wait()

    async def lead_once(term: LeadershipTerm) -> None:
        order.append((time.monotonic(), term.identifier))

    first = LeaderElection(zks[0], path, identifier="py-1", requeue=False)
    second = LeaderElection(zks[1], path, identifier="py-2", requeue=False)
    running = [asyncio.create_task(first.run(lead_until_released))]
    selector: RecipePeer | None = None
    try:
        await until(lambda: as_awaitable(first.is_leader), "py-1 leads")
        selector = recipe_tool.start(
            "selector", connect, path, id="java-S", rounds=1, hold_ms=50, guard=guard.node
        )
        await until(
            lambda: _equals(first.participants(), ["py-1", "java-S"]), "java-S queued"
        )
        running.append(asyncio.create_task(second.run(lead_once)))
        await until(
            lambda: _equals(first.participants(), ["py-1", "java-S", "py-2"]), "py-2 queued"
        )
        java_view = _ids(await in_thread(recipe_tool.participants, connect, path, "selector"))
        assert java_view == [("py-1", True), ("java-S", False), ("py-2", False)]
        assert await second.participants() == ["py-1", "java-S", "py-2"]
        assert await second.leader() == "py-1"
        release.set()
        await in_thread(selector.until_done)
        async with asyncio.timeout(BOUND):
            await asyncio.gather(*running)
    finally:
        release.set()
        for task in running:
            task.cancel()
        if selector is not None:
            selector.close()
    order += [(float(e["t"]), str(e["id"])) for e in selector.named("acquired")]
    assert [who for _, who in sorted(order)] == ["py-1", "java-S", "py-2"], order

    # Many turns.
    path, guard = f"{zk_path}/election", Guard(node=f"{zk_path}/guard")
    java_ids, py_ids, rounds = ["j1", "j2"], ["p1", "p2"], 20
    peers = recipe_tool.start_many(
        "selector", connect, path, java_ids, rounds=rounds, hold_ms=3, guard=guard.node,
        wait_go=True,
    )
    try:
        start = asyncio.Event()
        workers = [
            asyncio.create_task(py_election(zk, path, who, rounds, 0.003, guard, start))
            for zk, who in zip(zks, py_ids, strict=True)
        ]
        for peer in peers:
            peer.go()
        start.set()
        async with asyncio.timeout(BOUND):
            py_holds = [h for hs in await asyncio.gather(*workers) for h in hs]
        done = [await in_thread(peer.until_done) for peer in peers]
    finally:
        close_all(peers)
        await clients.close()

    holds = py_holds + [h for peer in peers for h in java_holds(peer)]
    overlaps = sum(int(d["overlaps"]) for d in done) + len(guard.failures) + intersecting(holds)
    passes = handoffs(holds)
    summary = record(
        Row("LeaderSelector <-> LeaderElection", len(java_ids) + 1, len(py_ids) + 2,
            len(holds) + 3, overlaps, f"{passes} handoffs; getParticipants() lists py ids")
    )
    assert overlaps == 0, f"{summary}; {guard.failures}"
    assert served(holds) == {w: rounds for w in java_ids + py_ids}, summary
    assert passes >= 5, f"the languages did not alternate: {summary}"


# --- InterProcessReadWriteLock <-> ReadWriteLock ----------------------------------------------


def _rw_figures(holds: list[Hold], guard: Guard, done: list[Event]) -> tuple[int, int]:
    """(overlaps, the most readers at once) over both languages."""
    overlaps = sum(int(d["overlaps"]) for d in done) + len(guard.failures)
    overlaps += intersecting(holds, conflicts="rw")
    readers = max_concurrent([h for h in holds if h.mode == "read"])
    return overlaps, readers


async def test_rwlock_java_writer_python_readers_and_the_reverse(
    recipe_tool: RecipeTool, zk_server: ZooKeeperServer, zk_path: str
) -> None:
    """Curator InterProcessReadWriteLock and zkwarden ReadWriteLock on one path. Phase A:
    a Curator writer among 3 zkwarden readers; phase B: a zkwarden writer among 2 Curator
    readers. A writer never coexists with anyone (its guard child alone in the guard
    directory; no intersecting interval), readers do share (several at once), everyone is
    served all its rounds."""
    from zkwarden.recipes.rwlock import ReadWriteLock

    connect = zk_server.connect_string
    clients = Clients(connect)
    zks = await clients.open(4)
    await zks[0].ensure_path(zk_path)
    path_a, guard_a = f"{zk_path}/rw-a", Guard(directory=f"{zk_path}/guard-a", limit=99)
    path_b, guard_b = f"{zk_path}/rw-b", Guard(directory=f"{zk_path}/guard-b", limit=99)
    rounds = 15
    # All three JVMs start at once (their start-up is the slow part), each waiting for "go".
    writer, *readers = recipe_tool.start_many(
        "rwlock", connect, path_a, ["jw"], mode="write", rounds=rounds, hold_ms=5,
        guard_dir=guard_a.directory, wait_go=True,
    ) + recipe_tool.start_many(
        "rwlock", connect, path_b, ["jr1", "jr2"], mode="read", rounds=rounds, hold_ms=10,
        guard_dir=guard_b.directory, wait_go=True,
    )
    try:
        # Phase A: Java writer, Python readers.
        start = asyncio.Event()
        workers = [
            asyncio.create_task(
                py_rounds(zk, always(ReadWriteLock(zk, path_a, identifier=who).read), who,
                          rounds, 0.010, guard_a, start, mode="read")
            )
            for zk, who in zip(zks[:3], ["pr1", "pr2", "pr3"], strict=True)
        ]
        writer.go()
        start.set()
        async with asyncio.timeout(BOUND):
            holds_a = [h for hs in await asyncio.gather(*workers) for h in hs]
        done_a = [await in_thread(writer.until_done)]
        holds_a += java_holds(writer)

        # Phase B: Python writer, Java readers.
        start = asyncio.Event()
        rw = ReadWriteLock(zks[3], path_b, identifier="pw")
        worker = asyncio.create_task(
            py_rounds(zks[3], always(rw.write), "pw", rounds, 0.005, guard_b, start, mode="write")
        )
        for peer in readers:
            peer.go()
        start.set()
        async with asyncio.timeout(BOUND):
            holds_b = await worker
        done_b = [await in_thread(peer.until_done) for peer in readers]
        holds_b += [h for peer in readers for h in java_holds(peer)]
    finally:
        close_all([writer, *readers])
        await clients.close()

    overlaps_a, readers_a = _rw_figures(holds_a, guard_a, done_a)
    overlaps_b, readers_b = _rw_figures(holds_b, guard_b, done_b)
    summary_a = record(
        Row("RWLock: Java writer, Py readers", 1, 3, len(holds_a), overlaps_a,
            f"up to {readers_a} readers at once, {handoffs(holds_a)} handoffs")
    )
    summary_b = record(
        Row("RWLock: Py writer, Java readers", 2, 1, len(holds_b), overlaps_b,
            f"up to {readers_b} readers at once, {handoffs(holds_b)} handoffs")
    )
    assert overlaps_a == 0, f"{summary_a}; {guard_a.failures}"
    assert overlaps_b == 0, f"{summary_b}; {guard_b.failures}"
    assert served(holds_a) == {w: rounds for w in ["jw", "pr1", "pr2", "pr3"]}, summary_a
    assert served(holds_b) == {w: rounds for w in ["pw", "jr1", "jr2"]}, summary_b
    assert readers_a >= 2 and readers_b >= 2, f"readers never shared: {summary_a} / {summary_b}"
    # The writers did get in between readers (not only before or after all of them).
    for holds, summary in ((holds_a, summary_a), (holds_b, summary_b)):
        assert handoffs(holds) >= 2, f"the languages did not alternate: {summary}"


# --- InterProcessSemaphoreV2 <-> Semaphore ----------------------------------------------------


async def test_semaphore_never_more_than_n_holders_across_languages(
    recipe_tool: RecipeTool, zk_server: ZooKeeperServer, zk_path: str
) -> None:
    """Curator InterProcessSemaphoreV2 (2 JVMs) and zkwarden Semaphore (3 sessions) with
    max 2 leases on one path, 20 leases each: never more than 2 holders (each holder's
    guard child and the common clock), 2 at once reached, everyone served, the leases
    passing between the languages."""
    from zkwarden.recipes.semaphore import Semaphore

    connect = zk_server.connect_string
    max_leases, rounds = 2, 20
    path = f"{zk_path}/sem"
    guard = Guard(directory=f"{zk_path}/guard", limit=max_leases)
    java_ids, py_ids = ["j1", "j2"], ["p1", "p2", "p3"]
    clients = Clients(connect)
    zks = await clients.open(len(py_ids))
    await zks[0].ensure_path(zk_path)
    peers = recipe_tool.start_many(
        "semaphore", connect, path, java_ids, max=max_leases, rounds=rounds, hold_ms=5,
        guard_dir=guard.directory, wait_go=True,
    )
    try:
        start = asyncio.Event()
        workers = [
            asyncio.create_task(
                py_rounds(zk, always(Semaphore(zk, path, max_leases, identifier=who)), who,
                          rounds, 0.005, guard, start, mode="lease")
            )
            for zk, who in zip(zks, py_ids, strict=True)
        ]
        for peer in peers:
            peer.go()
        start.set()
        async with asyncio.timeout(BOUND):
            py_holds = [h for hs in await asyncio.gather(*workers) for h in hs]
        done = [await in_thread(peer.until_done) for peer in peers]
    finally:
        close_all(peers)
        await clients.close()

    holds = py_holds + [h for peer in peers for h in java_holds(peer, mode="lease")]
    most = max_concurrent(holds)
    overlaps = sum(int(d["overlaps"]) for d in done) + len(guard.failures)
    overlaps += max(0, most - max_leases)
    passes = handoffs(holds)
    summary = record(
        Row(f"SemaphoreV2 (max {max_leases}) <-> Semaphore", len(java_ids), len(py_ids),
            len(holds), overlaps, f"up to {most} holders at once, {passes} handoffs")
    )
    assert overlaps == 0, f"{summary}; {guard.failures}"
    assert most == max_leases, f"the semaphore never had {max_leases} holders: {summary}"
    assert served(holds) == {w: rounds for w in java_ids + py_ids}, summary
    assert passes >= 5, f"the languages did not alternate: {summary}"


# --- SharedCount <-> SharedCount, DistributedAtomicLong <-> AtomicCounter ---------------------


async def test_shared_count_read_and_written_from_both_sides(
    recipe_tool: RecipeTool, zk_server: ZooKeeperServer, zk_path: str
) -> None:
    """Curator SharedCount and zkwarden SharedCount on one node: the node created by either
    side holds 4 big-endian bytes the other reads (the creator's seed wins); values set on
    one side reach the other (Curator's listener, zkwarden's changes()), negatives
    included; a compare-and-set with a stale version fails on both sides; and 100 + 100
    concurrent compare-and-set increments from both languages lose nothing."""
    from zkwarden.recipes.counters import SharedCount

    connect = zk_server.connect_string
    py_first, java_first = f"{zk_path}/py-first", f"{zk_path}/java-first"
    async with AsyncClient(connect, session_timeout=SESSION) as zk:
        count = SharedCount(zk, py_first, default=5)
        await asyncio.wait_for(count.start(), BOUND)
        changes = count.changes()
        raw, _ = await zk.get(py_first)
        assert raw == b"\x00\x00\x00\x05"
        java = recipe_tool.start("sharedcount", connect, py_first, seed=99)
        other = recipe_tool.start("sharedcount", connect, java_first, seed=-7)
        ops = 0
        try:
            assert java.events[-1]["value"] == 5  # zkwarden's seed, not Curator's
            raw, _ = await zk.get(java_first)
            assert raw == b"\xff\xff\xff\xf9"  # Curator's seed -7, as Curator wrote it
            mirror = SharedCount(zk, java_first, default=1000)
            await asyncio.wait_for(mirror.start(), BOUND)
            assert mirror.count == -7
            await mirror.close()
            ops += 2

            # Java sets, zkwarden sees it through its watch.
            await in_thread(java.request, "set 7", "set")
            async with asyncio.timeout(BOUND):
                async for value in changes:
                    if value == 7:
                        break
            assert await count.get() == 7
            # zkwarden sets, Curator's listener sees it.
            await count.set(-123456)
            await in_thread(java.expect_event, "changed", BOUND, lambda e: e["value"] == -123456)
            assert (await in_thread(java.request, "get", "value"))["value"] == -123456
            ops += 2

            # Compare-and-set with stale versions fails on both sides.
            snapshot = await in_thread(java.request, "snapshot", "value")
            stale = await count.get_versioned()
            assert stale.version == snapshot["version"]
            assert await count.try_set(42, stale.version)
            assert (await in_thread(java.request, "trySet 43", "trySet"))["ok"] is False

            async def java_sees_42() -> bool:
                return bool((await in_thread(java.request, "get", "value"))["value"] == 42)

            await until(java_sees_42, "Curator reads zkwarden's 42")
            assert not await count.try_set(44, stale.version)
            await in_thread(java.request, "snapshot", "value")
            assert (await in_thread(java.request, "trySet 45", "trySet"))["ok"] is True
            assert not await count.try_set(46, (await count.get_versioned()).version - 1)
            assert await count.get() == 45
            ops += 5

            # Concurrent increments by compare-and-set, 100 from each language.
            each, retries = 100, 0

            async def py_increments() -> None:
                nonlocal retries
                for _ in range(each):
                    while True:
                        current = await count.get_versioned()
                        if await count.try_set(current.value + 1, current.version):
                            break
                        retries += 1

            java.send(f"increment {each}")
            async with asyncio.timeout(BOUND):
                await py_increments()
            incremented = await in_thread(java.expect_event, "incremented")
            final = await count.get()
            ops += 2 * each
        finally:
            close_all([java, other])
            await count.close()
    lost = 45 + 2 * each - final
    summary = record(
        Row("SharedCount <-> SharedCount", 2, 1, ops, lost,
            f"final {final}; CAS retries java {incremented['retries']}, python {retries}")
    )
    assert final == 45 + 2 * each, f"lost updates: {summary}"


async def test_atomic_long_read_and_written_from_both_sides(
    recipe_tool: RecipeTool, zk_server: ZooKeeperServer, zk_path: str
) -> None:
    """Curator DistributedAtomicLong and zkwarden AtomicCounter on one node: 8 big-endian
    bytes, empty data read as 0 by both, values beyond 32 bits and negative values read
    alike, compareAndSet with a stale expectation failing on both sides, and 150 + 150
    concurrent increments from both languages adding up exactly."""
    from zkwarden.recipes.counters import AtomicCounter

    connect = zk_server.connect_string
    path = f"{zk_path}/counter"
    async with AsyncClient(connect, session_timeout=SESSION) as zk:
        await zk.create(path, b"", makepath=True)  # empty data: 0 for both
        counter = AtomicCounter(zk, path)
        java = recipe_tool.start("atomiclong", connect, path)
        ops = 0
        try:
            assert (await in_thread(java.request, "get", "result"))["post"] == 0
            assert (await counter.get()).post_value == 0

            got = await in_thread(java.request, "increment", "result")
            assert got["succeeded"] and (got["pre"], got["post"]) == (0, 1)
            raw, _ = await zk.get(path)
            assert raw == (1).to_bytes(8, "big")  # Curator's 8 bytes
            assert (await counter.get()).post_value == 1

            big = await counter.add(2**40)
            assert big.succeeded and big.post_value == 2**40 + 1
            got = await in_thread(java.request, "get", "result")
            assert got["post"] == 2**40 + 1  # zkwarden's 8 bytes, as Curator reads them
            ops += 4

            # compareAndSet: stale expectations fail on both sides.
            got = await in_thread(java.request, f"cas {2**40 + 1} -5", "result")
            assert got["succeeded"]
            stale = await counter.compare_and_set(2**40 + 1, 0)
            assert not stale.succeeded and stale.pre_value == -5
            ok = await counter.compare_and_set(-5, -10)
            assert ok.succeeded
            got = await in_thread(java.request, "cas -5 0", "result")
            assert not got["succeeded"]
            assert (await in_thread(java.request, "get", "result"))["post"] == -10
            ops += 5

            # Concurrent increments: 150 from each language.
            each, failures, conflicts = 150, 0, 0

            async def py_increments() -> None:
                nonlocal failures, conflicts
                for _ in range(each):
                    while True:
                        result = await counter.increment()
                        conflicts += result.attempts - 1
                        if result.succeeded:
                            break
                        failures += 1

            java.send(f"increment {each}")
            async with asyncio.timeout(BOUND):
                await py_increments()
            await in_thread(java.expect_event, "incremented")
            final = (await counter.get()).post_value
            java_final = (await in_thread(java.request, "get", "result"))["post"]
            ops += 2 * each
        finally:
            java.close()
            await counter.close()
    lost = -10 + 2 * each - final
    summary = record(
        Row("DistributedAtomicLong <-> AtomicCounter", 1, 1, ops, lost,
            f"final {final}; python conflicts {conflicts}, gave up {failures}")
    )
    assert final == java_final == -10 + 2 * each, f"lost or doubled updates: {summary}"


# --- DistributedBarrier <-> Barrier, DistributedDoubleBarrier <-> DoubleBarrier ---------------


async def test_barriers_with_members_of_both_languages(
    recipe_tool: RecipeTool, zk_server: ZooKeeperServer, zk_path: str
) -> None:
    """A barrier set by one language holds the other's waiter until it is removed (both
    ways); a double barrier of 2 Curator and 2 zkwarden members lets nobody in before the
    last member arrives and nobody out before the last member leaves."""
    from zkwarden.recipes.barrier import Barrier, DoubleBarrier

    connect = zk_server.connect_string
    clients = Clients(connect)
    zk1, zk2 = await clients.open(2)
    java_barrier = recipe_tool.start("barrier", connect, f"{zk_path}/barrier")
    members = recipe_tool.start_many(
        "doublebarrier", connect, f"{zk_path}/double", ["j1", "j2"], members=4, wait_go=True
    )
    try:
        # zkwarden sets, Curator waits.
        barrier = Barrier(zk1, f"{zk_path}/barrier")
        await barrier.set_barrier()
        await in_thread(java_barrier.request, "wait 60000", "waiting")
        early = await in_thread(java_barrier.drain, 0.3)
        assert not early, f"Curator passed a barrier zkwarden set: {early}"
        removed_at = time.monotonic()
        await barrier.remove_barrier()
        passed = await in_thread(java_barrier.expect_event, "passed")
        assert passed["ok"] and passed["t"] >= removed_at
        # Curator sets, zkwarden waits.
        await in_thread(java_barrier.request, "set", "set")
        assert not await barrier.wait_on_barrier(timeout=0.3)
        waiter = asyncio.create_task(barrier.wait_on_barrier(timeout=BOUND))
        await asyncio.sleep(0.1)
        assert not waiter.done()
        await in_thread(java_barrier.request, "remove", "removed")
        assert await asyncio.wait_for(waiter, BOUND)

        # Double barrier, 4 members: the Java two and p1 at once, p2 last (0.5 s later) in
        # and last out.
        p1 = DoubleBarrier(zk1, f"{zk_path}/double", members=4)
        p2 = DoubleBarrier(zk2, f"{zk_path}/double", members=4)
        times: dict[str, float] = {}

        async def member(b: DoubleBarrier, who: str, delay: float) -> None:
            await asyncio.sleep(delay)
            times[f"{who} entering"] = time.monotonic()
            assert await b.enter(timeout=BOUND)
            times[f"{who} entered"] = time.monotonic()
            await asyncio.sleep(delay)
            times[f"{who} leaving"] = time.monotonic()
            assert await b.leave(timeout=BOUND)
            times[f"{who} left"] = time.monotonic()
            await b.close()

        for peer in members:
            peer.go()
        async with asyncio.timeout(BOUND):
            await asyncio.gather(member(p1, "p1", 0.0), member(p2, "p2", 0.5))
        for peer in members:
            await in_thread(peer.until_done)
    finally:
        close_all([java_barrier, *members])
        await clients.close()
    for peer in members:
        [entered], [left] = peer.named("entered"), peer.named("left")
        assert entered["ok"] and left["ok"], peer.events
        times[f"{peer.name} entered"] = float(entered["t"])
        times[f"{peer.name} left"] = float(left["t"])
    early_in = [k for k, t in times.items() if k.endswith(" entered") and t < times["p2 entering"]]
    early_out = [k for k, t in times.items() if k.endswith(" left") and t < times["p2 leaving"]]
    summary = record(
        Row("Barrier + DoubleBarrier (4 members)", 3, 3, 4 + 8, len(early_in) + len(early_out),
            "none in before the 4th arrived, none out before the 4th left")
    )
    assert not early_in, f"entered before the last member arrived: {early_in}; {summary}"
    assert not early_out, f"left before the last member left: {early_out}; {summary}"
