"""The simulation harness: one run = a fresh virtual-time loop, model server, network and
real AsyncClient, a workload driving it, and the DESIGN invariants checked as it goes.

A run returns its violations (first one first) instead of raising, so the sweep and the
schedule search can count, shrink and print reproductions.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from zkwarden import AsyncClient, ClientState, EventType, errors
from zkwarden._aio.retry import Backoff
from zkwarden.testing.sim import (
    Fault,
    FaultKind,
    FaultPlan,
    ModelServer,
    SimDeadlockError,
    SimNetwork,
    run_virtual,
    seeded_randomness,
)
from zkwarden.types import ClientStateChange, WatchEvent

HOST = "127.0.0.1:1"  # never dialled: the sim network answers (port 1 refuses if it leaks)
SESSION_TIMEOUT = 3.0
#: every call ends (result or zkwarden error) within this much virtual time
BOUND = 4 * SESSION_TIMEOUT
#: longest a whole run may take in virtual time
RUN_LIMIT = 400.0
OUTAGE = 1.1 * SESSION_TIMEOUT  # long enough for a presumed expiry

#: the fault each kind stands for in the sweep and in schedules
FAULTS: dict[FaultKind, Fault] = {
    FaultKind.DELAY: Fault(FaultKind.DELAY, 1.5),
    FaultKind.HOLD: Fault(FaultKind.HOLD, 5.0),
    FaultKind.RESET: Fault(FaultKind.RESET),
    FaultKind.REFUSE: Fault(FaultKind.REFUSE, OUTAGE),
    FaultKind.TRUNCATE: Fault(FaultKind.TRUNCATE),
    FaultKind.CORRUPT: Fault(FaultKind.CORRUPT),
    FaultKind.DROP: Fault(FaultKind.DROP, OUTAGE),
    FaultKind.ACCEPT_CLOSE: Fault(FaultKind.ACCEPT_CLOSE),
}


@dataclass
class Outcome:
    violations: list[tuple[str, str]]  # (category, message)
    frames: int
    connect_frames: set[int]
    trace: list[str]
    fired: list[str]
    skip: tuple[int, int]  # frame indexes the sweep leaves alone (a bulk burst)

    @property
    def ok(self) -> bool:
        return not self.violations

    def first(self) -> str:
        return f"[{self.violations[0][0]}] {self.violations[0][1]}" if self.violations else ""


@dataclass
class _Call:
    label: str
    started: float
    task: asyncio.Task[Any]
    reported: bool = False


@dataclass
class StreamWatch:
    """A consumer task reading one watch stream and checking what it yields."""

    sim: Sim
    path: str
    kind: str  # data / exists / children / persistent
    stream: Any
    lost_at_creation: int
    events: list[WatchEvent] = field(default_factory=list)
    error: BaseException | None = None
    closed_by_us: bool = False
    ended: bool = False
    task: asyncio.Task[None] | None = None

    async def consume(self) -> None:
        sim = self.sim
        while True:
            try:
                event = await anext(self.stream)
            except StopAsyncIteration:
                if self.error is None and not self.closed_by_us:
                    sim.violate("stream-silent-end", f"{self.kind} stream on {self.path} "
                                "ended with StopAsyncIteration and no error")
                self.ended = True
                return
            except errors.ZooKeeperError as exc:
                self._on_error(exc)
                await self._after_error(exc)
                return
            except asyncio.CancelledError:
                raise
            except BaseException as exc:  # the invariant: only zkwarden errors escape
                sim.violate("foreign-exception", f"{self.kind} stream on {self.path} raised "
                            f"{type(exc).__name__}: {exc}")
                self.ended = True
                return
            self._check(event)
            self.events.append(event)

    def _on_error(self, exc: errors.ZooKeeperError) -> None:
        sim = self.sim
        self.error = exc
        sim.log(f"stream {self.kind}:{self.path} error {type(exc).__name__}")
        if isinstance(exc, errors.SessionExpiredError) and sim.lost_count <= self.lost_at_creation:
            sim.violate("stream-ended-without-loss",
                        f"{self.kind} stream on {self.path} created after LOST ended with "
                        "SessionExpiredError although no session it belonged to was lost")

    async def _after_error(self, exc: BaseException) -> None:
        # Whatever the error, the next read must end promptly: raise, stop, or yield.
        sim = self.sim
        try:
            async with asyncio.timeout(BOUND):
                event = await anext(self.stream)
        except TimeoutError:
            sim.violate("stream-hang-after-error", f"{self.kind} stream on {self.path}: the "
                        f"read after {type(exc).__name__} did not end within {BOUND}s")
            self.ended = True
            return
        except (StopAsyncIteration, errors.ZooKeeperError):
            self.ended = True
            return
        except asyncio.CancelledError:
            raise
        except BaseException as exc2:
            sim.violate("foreign-exception", f"{self.kind} stream on {self.path} raised "
                        f"{type(exc2).__name__}: {exc2}")
            self.ended = True
            return
        self._check(event)
        self.events.append(event)
        self.error = None
        await self.consume()

    def _check(self, ev: WatchEvent) -> None:
        sim, server = self.sim, self.sim.server
        if self.kind == "persistent":
            if ev.type is not EventType.NONE and (int(ev.type), ev.path) not in server.events:
                sim.violate("phantom-event", f"persistent stream on {self.path} yielded "
                            f"{ev.type.name} {ev.path} that the server never fired")
            return
        stat = ev.stat
        known = server.versions.get(self.path, set())
        if stat is not None:
            if self.kind == "data" and (stat.czxid, stat.mzxid, ev.data) not in known:
                sim.violate("phantom-event", f"data stream on {self.path} yielded data "
                            f"{ev.data!r} (mzxid {stat.mzxid}) the node never had")
            elif not any(v[0] == stat.czxid and v[1] == stat.mzxid for v in known) and \
                    self.kind == "exists":
                sim.violate("phantom-event", f"exists stream on {self.path} yielded a Stat "
                            f"(czxid {stat.czxid}, mzxid {stat.mzxid}) the node never had")
        prev = self.events[-1].stat if self.events else None
        had_prev = bool(self.events)
        if ev.type is EventType.NODE_CREATED and had_prev and prev is not None and \
                stat is not None and stat.czxid == prev.czxid:
            sim.violate("phantom-event", f"{self.kind} stream on {self.path} yielded "
                        f"NodeCreated but the node (czxid {stat.czxid}) was not re-created")
        if ev.type is EventType.NODE_DATA_CHANGED and prev is not None and stat is not None \
                and stat.czxid == prev.czxid and stat.mzxid <= prev.mzxid:
            sim.violate("phantom-event", f"{self.kind} stream on {self.path} yielded "
                        f"NodeDataChanged with no change (mzxid {stat.mzxid})")

    def check_final(self) -> None:
        if self.ended or self.error is not None or self.kind == "persistent":
            return
        if not self.events:
            self.sim.violate("stream-missed-final", f"{self.kind} stream on {self.path} "
                             "yielded nothing while connected")
            return
        last = self.events[-1]
        node = self.sim.server.nodes.get(self.path)
        what = None
        if self.kind in ("data", "exists"):
            if (node is None) != (last.stat is None):
                what = f"exists={node is not None} but the stream says {last.stat is not None}"
            elif node is not None and last.stat is not None and last.stat.mzxid != node.mzxid:
                what = f"mzxid {node.mzxid} but the stream's last is {last.stat.mzxid}"
        elif self.kind == "children":
            have = sorted(last.children or ()) if node is not None else []
            want = sorted(node.children) if node is not None else []
            if have != want:
                what = f"children {want} but the stream's last is {have}"
        if what:
            self.sim.violate("stream-missed-final", f"{self.kind} stream on {self.path}: "
                             f"the node has {what}")


class Sim:
    """One run's world and checks. Workloads call its helpers."""

    def __init__(self, loop: asyncio.AbstractEventLoop, plan: FaultPlan, seed: int) -> None:
        self.loop = loop
        self.seed = seed
        self.rng = random.Random(seed)
        self.server = ModelServer(loop, rng=random.Random(seed))
        self.net = SimNetwork(loop, self.server, plan)
        self.violations: list[tuple[str, str]] = []
        self.trace: list[str] = []
        self.calls: list[_Call] = []
        self.streams: list[StreamWatch] = []
        self.zk: AsyncClient | None = None
        # state-report bookkeeping
        self.last_state = ClientState.CONNECTING
        self.changes: list[ClientStateChange] = []
        self.seen_sessions: set[int] = set()
        self.lost_sessions: set[int | None] = set()
        self.lost_count = 0
        self.connected_sid: int | None = None
        self.closed_reported = False
        self.connect_frames: set[int] = set()
        self.sweep_skip = (0, 0)
        self.net.observers.append(self._observe)

    def _observe(self, index: int, where: str, frame: bytes) -> None:
        if where.startswith("connect") or where.startswith("close-session"):
            self.connect_frames.add(index)

    # --- recording ---------------------------------------------------------------------

    def log(self, text: str) -> None:
        self.trace.append(f"t={self.loop.time():8.3f} #{self.net.index:<4} {text}")

    def violate(self, category: str, message: str) -> None:
        self.log(f"VIOLATION [{category}] {message}")
        self.violations.append((category, message))

    # --- the client --------------------------------------------------------------------

    def client(self, **kwargs: Any) -> AsyncClient:
        kwargs.setdefault("session_timeout", SESSION_TIMEOUT)
        kwargs.setdefault("backoff", Backoff(initial=0.1, maximum=1.0))
        zk = AsyncClient(HOST, **kwargs)
        zk.add_listener(self._on_change)
        self.zk = zk
        return zk

    def _on_change(self, change: ClientStateChange) -> None:
        sid = change.session_id
        self.changes.append(change)
        self.log(f"state {change.previous.value}->{change.state.value} sid={sid and hex(sid)}"
                 f"{' new' if change.new_session else ''}")
        if self.closed_reported:
            self.violate("state-after-closed", f"{change.state.value} reported after CLOSED")
        if change.previous is not self.last_state:
            self.violate("state-sequence", f"{change.previous.value}->{change.state.value} "
                         f"reported, but the last state reported was {self.last_state.value}")
        self.last_state = change.state
        state = change.state
        if state in (ClientState.CONNECTED, ClientState.READ_ONLY):
            if sid is None or sid not in self.server.sessions:
                self.violate("connected-without-session", f"CONNECTED with session "
                             f"{sid and hex(sid)} that the server does not have")
            if sid is not None and sid not in self.seen_sessions:
                if not change.new_session:
                    self.violate("new-session-flag", f"first CONNECTED of session {hex(sid)} "
                                 "has new_session=False")
                self.seen_sessions.add(sid)
            elif change.new_session:
                self.violate("new-session-flag", f"new_session=True again for {sid and hex(sid)}")
            prev = self.connected_sid
            if prev is not None and prev != sid and prev not in self.lost_sessions:
                self.violate("silent-session-change", f"CONNECTED moved from session "
                             f"{hex(prev)} to {sid and hex(sid)} without LOST")
            self.connected_sid = sid
        elif state is ClientState.SUSPENDED:
            if sid != self.connected_sid:
                self.violate("state-sequence", f"SUSPENDED for session {sid and hex(sid)} "
                             f"while the last CONNECTED was {self.connected_sid and hex(self.connected_sid)}")
        elif state is ClientState.LOST:
            if sid in self.lost_sessions and sid is not None:
                self.violate("lost-twice", f"LOST reported twice for session {hex(sid)}")
            self.lost_sessions.add(sid)
            self.lost_count += 1
        elif state is ClientState.CLOSED:
            self.closed_reported = True

    # --- calls and streams ---------------------------------------------------------------

    def call(self, label: str, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run a client call as a task; its outcome is checked when it ends."""
        task = self.loop.create_task(coro)
        record = _Call(label, self.loop.time(), task)
        self.calls.append(record)
        task.add_done_callback(lambda t: self._call_done(record))
        return task

    def _call_done(self, call: _Call) -> None:
        took = self.loop.time() - call.started
        if call.task.cancelled():
            self.log(f"{call.label} cancelled after {took:.3f}s")
            return
        exc = call.task.exception()
        if exc is None:
            self.log(f"{call.label} ok in {took:.3f}s")
        elif isinstance(exc, errors.ZooKeeperError):
            self.log(f"{call.label} {type(exc).__name__} in {took:.3f}s")
        else:
            self.violate("foreign-exception", f"{call.label} raised {type(exc).__name__}: {exc}")
        if took > BOUND + 0.01 and not call.reported:
            call.reported = True
            self.violate("call-hang", f"{call.label} took {took:.2f}s (bound {BOUND}s)")

    async def op(self, label: str, coro: Coroutine[Any, Any, Any]) -> Any:
        """A call awaited (bounded); returns its result, or None when it failed."""
        task = self.call(label, coro)
        await asyncio.wait([task], timeout=BOUND + 0.5)
        self.check()
        if task.done() and not task.cancelled() and task.exception() is None:
            return task.result()
        return None

    def watch(self, path: str, kind: str = "data") -> StreamWatch | None:
        assert self.zk is not None
        try:
            stream = (self.zk.add_watch(path, recursive=True) if kind == "persistent"
                      else self.zk.watch(path, kind))  # type: ignore[arg-type]
        except errors.ZooKeeperError as exc:
            self.log(f"watch {kind}:{path} refused: {type(exc).__name__}")
            return None
        sw = StreamWatch(self, path, kind, stream, self.lost_count)
        sw.task = self.loop.create_task(sw.consume())
        self.streams.append(sw)
        self.log(f"watch {kind}:{path} (state {self.last_state.value})")
        return sw

    async def close_stream(self, sw: StreamWatch) -> None:
        sw.closed_by_us = True
        if sw.task is not None:
            sw.task.cancel()
        await self.op(f"aclose {sw.kind}:{sw.path}", sw.stream.aclose())
        sw.ended = True

    def check(self) -> None:
        now = self.loop.time()
        for call in self.calls:
            if not call.task.done() and not call.reported and now - call.started > BOUND:
                call.reported = True
                self.violate("call-hang", f"{call.label} did not end within {BOUND}s")

    async def sleep(self, seconds: float) -> None:
        end = self.loop.time() + seconds
        while self.loop.time() < end:
            await asyncio.sleep(min(1.0, end - self.loop.time()))
            self.check()

    async def until(self, pred: Callable[[], bool], limit: float = BOUND) -> bool:
        end = self.loop.time() + limit
        while not pred():
            if self.loop.time() >= end:
                return False
            await asyncio.sleep(0.05)
        return True

    async def settle(self) -> None:
        """Wait for quiet (connected, nothing in flight, no fault pending) and check that
        every live one-shot stream shows the server's current state."""
        zk = self.zk
        assert zk is not None
        if self.net.plan:
            return  # faults still planned: not a quiet point
        ok = await self.until(lambda: zk.state is ClientState.CONNECTED
                              and not self.net.in_outage() and self.net.idle(), 3 * BOUND)
        if not ok:
            if zk.state not in (ClientState.CLOSED,):
                self.log(f"not connected at settle (state {zk.state.value})")
            return
        await self.sleep(1.0)
        if zk.state is ClientState.CONNECTED and not self.net.fired_since(self._settle_mark()):
            for sw in self.streams:
                sw.check_final()

    def _settle_mark(self) -> float:
        return self.loop.time() - 1.0

    async def close(self, cancel_after: float | None = None) -> None:
        zk = self.zk
        assert zk is not None
        outage = self.net.in_outage()
        start = self.loop.time()
        if cancel_after is not None:
            try:
                await asyncio.wait_for(zk.close(), cancel_after)
                self.log("close finished before its cancellation")
            except TimeoutError:
                self.log(f"close cancelled after {cancel_after}s")
                await self.sleep(SESSION_TIMEOUT)
                if zk.state is not ClientState.CLOSED:
                    self.violate("close-cancelled", f"close() cancelled: state still "
                                 f"{zk.state.value} {SESSION_TIMEOUT}s later")
        try:
            async with asyncio.timeout(BOUND):
                await zk.close()
        except TimeoutError:
            self.violate("close-hang", f"close() did not return within {BOUND}s")
        except BaseException as exc:
            self.violate("close-raised", f"close() raised {type(exc).__name__}: {exc}")
        self.log(f"closed in {self.loop.time() - start:.3f}s")
        if zk.state is not ClientState.CLOSED:
            self.violate("close-state", f"state {zk.state.value} after close()")
        if not self.closed_reported:
            self.violate("close-state", "CLOSED never reported to listeners")
        await self.sleep(0.5)
        for call in self.calls:
            if not call.task.done() and not call.reported:
                call.reported = True
                self.violate("call-hang", f"{call.label} still pending after close()")
        for sw in self.streams:
            if sw.task is not None and not sw.task.done() and not sw.closed_by_us:
                self.violate("stream-not-ended", f"{sw.kind} stream on {sw.path} still "
                             "waiting after close()")
        outage = outage or self.net.in_outage() or self.net.fired_since(start)
        # Only sessions the client was told of: one whose ConnectResponse never arrived
        # cannot be closed by anybody but the server's expiry.
        known = {c.session_id for c in self.changes} | self.seen_sessions
        # A session a server said was gone (LOST, confirmed) is not the client's to close:
        # when a corrupted ConnectRequest made the server say so wrongly, nobody can know.
        known -= {c.session_id for c in self.changes
                  if c.state is ClientState.LOST and c.confirmed}
        left = [hex(s) for s in self.server.sessions if s in known]
        if left and not outage:
            self.violate("close-left-session", f"close() left session(s) {left} in the server")


Workload = Callable[[Sim], Awaitable[None]]


def run(workload: Workload, plan: FaultPlan | None = None, seed: int = 0) -> Outcome:
    """Run ``workload`` once on a fresh virtual loop; never raises for the client's sake."""
    plan = plan if plan is not None else FaultPlan()
    box: dict[str, Sim] = {}

    async def main() -> None:
        sim = Sim(asyncio.get_running_loop(), plan, seed)
        box["sim"] = sim
        try:
            async with asyncio.timeout(RUN_LIMIT):
                with sim.net.installed():
                    await workload(sim)
                    sim.check()
        except TimeoutError:
            sim.violate("run-hang", f"the workload did not finish within {RUN_LIMIT}s")
        finally:
            sim.server.stop()

    # The client's warnings (and asyncio's) are the expected noise of thousands of faults.
    loggers = [logging.getLogger(n) for n in ("zkwarden", "asyncio")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL)
    try:
        with seeded_randomness(seed):
            run_virtual(main())
    except SimDeadlockError as exc:
        box["sim"].violate("deadlock", str(exc))
    except BaseException as exc:  # a harness or client bug: report it as a violation
        if "sim" not in box:
            raise
        box["sim"].violate("harness-error", f"{type(exc).__name__}: {exc}")
    finally:
        for lg, lv in zip(loggers, levels, strict=True):
            lg.setLevel(lv)
    sim = box["sim"]
    fired = [f"#{i} t={t:.3f} {where}: {f}" for i, t, where, f in sim.net.fired]
    return Outcome(sim.violations, sim.net.index, sim.connect_frames, sim.trace, fired,
                   sim.sweep_skip)


def describe(outcome: Outcome, header: str, limit: int = 60) -> str:
    lines = [header, f"first violation: {outcome.first()}"]
    lines += [f"  also: [{c}] {m}" for c, m in outcome.violations[1:4]]
    lines += ["faults fired:"] + [f"  {f}" for f in outcome.fired]
    lines += ["trace (last lines):"] + [f"  {t}" for t in outcome.trace[-limit:]]
    return "\n".join(lines)
