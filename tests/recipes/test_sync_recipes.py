"""The blocking twins (zkwarden.recipes.sync) against a real ZooKeeper: threads contend for
a Lock (a guard node only the holder creates proves exclusivity), read-write lock and
semaphore limits, latch leadership with ``term.lost`` on a real session expiry, an election
whose ``lead`` runs on the calling thread, barriers and counters."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest

from zkwarden import Client
from zkwarden.errors import (
    ClientClosedError,
    LeaseLostError,
    LockReentryError,
    NodeExistsError,
    RequestTimeoutError,
)
from zkwarden.recipes.sync import (
    AtomicCounter,
    Barrier,
    DoubleBarrier,
    LeaderElection,
    LeaderLatch,
    LeadershipTerm,
    Lock,
    ReadWriteLock,
    Semaphore,
    SharedCount,
)
from zkwarden.testing import ZooKeeperServer, expire_session

Factory = Callable[..., Client]


@pytest.fixture
def client(recipe_server: ZooKeeperServer) -> Iterator[Factory]:
    if not recipe_server.running:
        recipe_server.start()
    made: list[Client] = []

    def make(session_timeout: float = 4.0) -> Client:
        zk = Client(recipe_server.connect_string, session_timeout=session_timeout)
        made.append(zk)
        zk.start(timeout=10.0)
        return zk

    yield make
    for zk in made:
        zk.close()


@pytest.fixture
def base(request: pytest.FixtureRequest) -> str:
    return f"/sync-recipes/{request.node.name.replace('[', '-').replace(']', '')}"


def _join(threads: list[threading.Thread], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    assert not any(t.is_alive() for t in threads), "a thread is stuck"


# --- Lock ---------------------------------------------------------------------------------


def test_threads_contending_for_a_lock_never_overlap(client: Factory, base: str) -> None:
    """3 clients x 2 threads (the two threads of a client share one Lock object), 8
    acquisitions each: the guard node (created after acquiring, deleted before releasing)
    never meets a NodeExists; fencing tokens grow with every new holder; the queue is
    empty at the end."""
    clients = [client() for _ in range(3)]
    locks = [Lock(zk, f"{base}/lock", identifier=f"c{i}") for i, zk in enumerate(clients)]
    observer = client()
    guard = f"{base}/guard"
    observer.ensure_path(base)
    conflicts: list[str] = []
    tokens: list[int] = []
    record = threading.Lock()
    rounds = 8

    def worker(i: int, lock: Lock, zk: Client) -> None:
        for _ in range(rounds):
            with lock as lease:
                try:
                    zk.create(guard, b"", ephemeral=True)
                except NodeExistsError:
                    conflicts.append(f"worker {i}")
                    continue
                with record:
                    tokens.append(lease.fencing_token)
                assert lease.held and not lease.lost.is_set()
                time.sleep(0.002)
                zk.delete(guard)

    threads = [threading.Thread(target=worker, args=(i, locks[i % 3], clients[i % 3]))
               for i in range(6)]
    for t in threads:
        t.start()
    _join(threads)
    assert conflicts == []
    assert len(tokens) == 6 * rounds
    assert tokens == sorted(tokens) and len(set(tokens)) == len(tokens)
    assert observer.get_children(f"{base}/lock") == []
    assert not any(lock.is_acquired for lock in locks)


def test_lock_timeout_reentry_contenders_and_guarded_write(client: Factory, base: str) -> None:
    a, b = client(), client()
    lock_a = Lock(a, f"{base}/lock", identifier="a")
    lock_b = Lock(b, f"{base}/lock", identifier="b")
    assert lock_a.acquire(timeout=5.0)
    with pytest.raises(LockReentryError):
        lock_a.acquire()
    began = time.monotonic()
    assert lock_b.acquire(timeout=0.3) is False
    assert time.monotonic() - began < 3.0
    assert lock_b.contenders() == ["a"]  # the timed-out waiter left nothing behind
    lease = lock_a.lease
    assert lease is not None
    a.create(f"{base}/data", b"0")
    lock_a.guarded_transaction().set(f"{base}/data", b"1").commit()
    assert a.get(f"{base}/data")[0] == b"1"
    lock_a.release()
    assert lease.released.is_set() and lease.released.wait(0.1)
    with pytest.raises(LeaseLostError):
        lease.transaction()
    assert lock_b.acquire(timeout=5.0)
    assert lock_b.lease is not None and lock_b.lease.fencing_token > lease.fencing_token
    lock_b.release()
    assert a.get_children(f"{base}/lock") == []


def test_a_holder_whose_session_expires_is_told(client: Factory, base: str) -> None:
    zk = client(session_timeout=2.0)
    lock = Lock(zk, f"{base}/lock")
    with lock as lease:
        expire_session(zk)
        assert lease.lost.wait(10.0), "the lease was not reported lost"
        assert "session" in (lease.lost_reason or "")
    assert lock.acquire(timeout=10.0)  # queues again on the new session
    lock.release()


def test_read_write_lock_and_semaphore_limits(client: Factory, base: str) -> None:
    zk = client()
    rw = ReadWriteLock(zk, f"{base}/rw", identifier="rw")
    readers_in = threading.Barrier(2, timeout=10.0)

    def reader() -> None:
        with rw.read:
            readers_in.wait()  # both readers hold at once, or this times out

    threads = [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    _join(threads, 15.0)

    with rw.write:
        assert rw.read.acquire(timeout=5.0)  # downgrade: granted at once to the writer
        with pytest.raises(LockReentryError):
            rw.write.acquire()
        other = ReadWriteLock(client(), f"{base}/rw")
        assert other.write.acquire(timeout=0.3) is False
        rw.read.release()
    with rw.read, pytest.raises(LockReentryError):
        rw.write.acquire()  # an upgrade would wait for itself
    assert zk.get_children(f"{base}/rw") == []

    sem_clients = [client() for _ in range(2)]
    sems = [Semaphore(c, f"{base}/sem", max_leases=2) for c in sem_clients]
    inside = 0
    peak = 0
    count = threading.Lock()

    def worker(sem: Semaphore) -> None:
        nonlocal inside, peak
        for _ in range(4):
            with sem:
                with count:
                    inside += 1
                    peak = max(peak, inside)
                time.sleep(0.01)
                with count:
                    inside -= 1

    threads = [threading.Thread(target=worker, args=(sems[i % 2],)) for i in range(4)]
    for t in threads:
        t.start()
    _join(threads)
    assert peak == 2
    assert zk.get_children(f"{base}/sem/leases") == []


# --- leadership ---------------------------------------------------------------------------


def test_latch_leadership_moves_and_loss_is_signalled(client: Factory, base: str) -> None:
    za, zb = client(session_timeout=2.0), client()
    a = LeaderLatch(za, f"{base}/latch", identifier="a")
    b = LeaderLatch(zb, f"{base}/latch", identifier="b")
    a.start()
    assert a.wait_leader(10.0)
    b.start()
    assert b.participants() == ["a", "b"]
    assert b.wait_leader(0.2) is False and a.is_leader and not b.is_leader

    with pytest.raises(LeaseLostError):
        with a.leadership(timeout=5.0) as term:
            assert isinstance(term, LeadershipTerm) and not term.lost.is_set()
            expire_session(za)  # the session goes: the term must end
            assert term.lost.wait(10.0)
    # the expiry reaches the client as a dropped connection first: SUSPENDED ends the term
    assert term.lost_reason in ("connection suspended", "session lost", "new session")
    assert b.wait_leader(10.0)
    assert b.leader() == "b"
    # b's term began after a's body had been told (the guard of the latch tests, by clock)
    with b.leadership(timeout=1.0) as b_term:
        assert b_term.fencing_token > term.fencing_token
    assert b.is_leader  # a body ending by itself does not give leadership up
    b.close()
    assert a.wait_leader(10.0)  # a re-queued on its new session and now leads
    a.close()
    assert za.get_children(f"{base}/latch") == []


def test_latch_close_waits_for_a_running_body(client: Factory, base: str) -> None:
    zk = client()
    latch = LeaderLatch(zk, f"{base}/latch", identifier="solo")
    latch.start()
    events: list[str] = []
    entered = threading.Event()

    def body() -> None:
        with pytest.raises(LeaseLostError), latch.leadership(timeout=5.0) as term:
            entered.set()
            term.lost.wait(10.0)
            time.sleep(0.2)  # still cleaning up: the node must still be there
            events.append(f"body done, nodes={len(zk.get_children(f'{base}/latch'))}")

    t = threading.Thread(target=body)
    t.start()
    assert entered.wait(10.0)
    latch.close()
    events.append("close returned")
    _join([t])
    assert events == ["body done, nodes=1", "close returned"]
    assert zk.get_children(f"{base}/latch") == []


def test_election_runs_lead_on_the_calling_thread(client: Factory, base: str) -> None:
    za, zb = client(), client()
    a = LeaderElection(za, f"{base}/election", identifier="a")
    b = LeaderElection(zb, f"{base}/election", identifier="b")
    log: list[tuple[str, int]] = []
    holder: list[str] = []
    overlaps: list[str] = []
    done = threading.Event()

    def make_lead(me: str, election: LeaderElection) -> Callable[[LeadershipTerm], None]:
        def lead(term: LeadershipTerm) -> None:
            assert threading.current_thread().name == me  # the calling thread
            if holder:
                overlaps.append(f"{me} while {holder[0]}")
            holder.append(me)
            log.append((me, term.fencing_token))
            term.lost.wait(0.05)
            holder.remove(me)
            if len(log) >= 6:
                done.set()
                a.stop()
                b.stop()

        return lead

    threads = [threading.Thread(target=e.run, args=(make_lead(n, e),), name=n)
               for n, e in (("a", a), ("b", b))]
    for t in threads:
        t.start()
    assert done.wait(30.0)
    _join(threads)
    assert overlaps == []
    tokens = [tok for _, tok in log]
    assert tokens == sorted(tokens)
    assert {who for who, _ in log} == {"a", "b"}  # turns pass between the two
    assert za.get_children(f"{base}/election") == []


def test_election_lead_raising_and_lost_term(client: Factory, base: str) -> None:
    zk = client(session_timeout=2.0)
    election = LeaderElection(zk, f"{base}/election", identifier="x", requeue=False)

    def failing(term: LeadershipTerm) -> None:
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        election.run(failing)
    assert zk.get_children(f"{base}/election") == []  # deleted before the error came out

    seen: list[str | None] = []

    def until_lost(term: LeadershipTerm) -> None:
        expire_session(zk)
        assert term.lost.wait(10.0)
        seen.append(term.lost_reason)

    with pytest.raises(LeaseLostError):
        election.run(until_lost)
    assert seen and seen[0] is not None


# --- barriers and counters ----------------------------------------------------------------


def test_barriers(client: Factory, base: str) -> None:
    zk = client()
    barrier = Barrier(zk, f"{base}/barrier")
    barrier.set_barrier()
    assert barrier.wait_on_barrier(0.2) is False
    threading.Timer(0.2, barrier.remove_barrier).start()
    assert barrier.wait_on_barrier(10.0) is True

    members = [DoubleBarrier(client(), f"{base}/double", members=3) for _ in range(3)]
    results: list[bool] = []

    def member(d: DoubleBarrier) -> None:
        results.append(d.enter(10.0))
        results.append(d.leave(10.0))
        d.close()

    threads = [threading.Thread(target=member, args=(d,)) for d in members]
    for t in threads:
        t.start()
    _join(threads)
    assert results == [True] * 6
    assert zk.get_children(f"{base}/double") == []


def test_counters(client: Factory, base: str) -> None:
    za, zb = client(), client()
    a = SharedCount(za, f"{base}/count", default=7)
    b = SharedCount(zb, f"{base}/count", default=0)
    with a, b:
        assert b.count == 7 and b.get() == 7
        assert a.try_set(8, a.version) is True
        assert b.try_set(9, 0) is False  # version 0 is gone
        deadline = time.monotonic() + 5.0
        while b.count != 8 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert b.count == 8  # followed by its watch
        b.set(-3)
        assert a.get_versioned().value == -3

    counters = [AtomicCounter(client(), f"{base}/atomic") for _ in range(3)]

    def add(counter: AtomicCounter) -> None:
        for _ in range(20):
            assert counter.increment().succeeded

    threads = [threading.Thread(target=add, args=(counters[i % 3],)) for i in range(6)]
    for t in threads:
        t.start()
    _join(threads)
    assert counters[0].get().post_value == 120
    assert counters[1].compare_and_set(120, 5).succeeded
    assert counters[2].get().pre_value == 5
    for counter in counters:
        counter.close()
    assert za.get(f"{base}/atomic")[0] == (5).to_bytes(8, "big")


def test_only_zkwarden_errors_and_bounded_calls(client: Factory, base: str) -> None:
    zk = client()
    lock = Lock(zk, f"{base}/lock")
    holder = Lock(client(), f"{base}/lock")
    assert holder.acquire(timeout=5.0)
    # A zero bound does not wait: the call raises RequestTimeoutError, or returns a result
    # only if the loop thread had already finished it (seen on a loaded machine).
    t0 = time.monotonic()
    try:
        nodes = lock.participant_nodes(timeout=0.0)
    except RequestTimeoutError:
        pass
    else:
        assert len(nodes) == 1
    assert time.monotonic() - t0 < 1.0
    with pytest.raises(RequestTimeoutError):  # a bounded wait cancels the async acquire
        zk.run_coroutine(lock._aio.acquire(), timeout=0.3)
    # The blocking call returns at its bound; the cancelled acquire deletes its node on the
    # loop moments later (Portal does not wait for a cancelled task): nothing stays.
    deadline = time.monotonic() + 5.0
    while len(holder.participant_nodes()) != 1 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(holder.participant_nodes()) == 1
    zk.close()
    with pytest.raises(ClientClosedError):
        lock.acquire(timeout=1.0)
    with pytest.raises(ClientClosedError):
        Lock(zk, f"{base}/other")
    holder.release()
