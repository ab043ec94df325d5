"""The demo's world: a real ZooKeeper, a FaultProxy in front of it, a fleet of registering
clients, caches watching the fleet, and an observer that reads the truth straight from
the server. Everything the verdicts measure is measured here.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ..._aio.client import AsyncClient
from ..._aio.retry import Backoff
from ..._tasks import TaskOwner
from ...discovery import (
    Added,
    CacheChange,
    Removed,
    Resynced,
    ServiceCache,
    ServiceDiscovery,
    ServiceInstance,
    ServiceRegistry,
    Updated,
)
from ...errors import ZooKeeperError
from ...sync import Client
from ...testing import FaultProxy, ZooKeeperServer
from ...types import ClientState, ClientStateChange
from .report import Report

__all__ = ("DemoConfig", "Fleet", "Status", "NAME", "BASE_PATH", "unsigned")

NAME = "web"
BASE_PATH = "/services"
_MASK = (1 << 64) - 1


def unsigned(session_id: int) -> int:
    """A session id as an unsigned 64-bit number (servers may print them signed)."""
    return session_id & _MASK


@dataclass(frozen=True, slots=True)
class DemoConfig:
    """Sizes and timings of one demo run (``quick`` for the test suite)."""

    quick: bool
    instances: int
    clients: int
    caches: int
    session_timeout: float
    tick_time: float
    short_drop: float
    long_drop: float
    flap: float
    recover_limit: float
    batch_fraction: float = 0.25
    batch_gap: float = 0.02
    backoff_max: float = 2.0
    #: list every invariant after each incident (`zkwarden -v demo`)
    verbose: bool = False

    @classmethod
    def make(
        cls, *, quick: bool, instances: int | None = None, clients: int | None = None,
        caches: int | None = None,
    ) -> DemoConfig:
        """The standard configuration, or the quick one, with optional sizes."""
        if quick:
            return cls(quick=True, instances=instances or 10, clients=clients or 2,
                       caches=caches or 2, session_timeout=4.0, tick_time=0.2,
                       short_drop=1.5, long_drop=5.5, flap=3.0, recover_limit=15.0)
        return cls(quick=False, instances=instances or 50, clients=clients or 5,
                   caches=caches or 5, session_timeout=6.0, tick_time=0.2,
                   short_drop=3.0, long_drop=8.0, flap=15.0, recover_limit=20.0)


class ClientLog:
    """Every state change of one client, with its monotonic time (a client listener)."""

    def __init__(self) -> None:
        self.changes: list[ClientStateChange] = []
        self.times: list[float] = []

    def __call__(self, change: ClientStateChange) -> None:
        self.changes.append(change)
        self.times.append(time.monotonic())

    def since(self, mark: int) -> list[ClientStateChange]:
        """The changes after position ``mark``."""
        return self.changes[mark:]

    def first_time(self, mark: int, state: ClientState) -> float | None:
        """When the client first reached ``state`` after ``mark`` (None: it did not)."""
        for change, when in zip(self.changes[mark:], self.times[mark:], strict=True):
            if change.state is state:
                return when
        return None


@dataclass
class Member:
    """One client of the fleet, registering or watching."""

    label: str
    client: AsyncClient
    log: ClientLog
    registry: ServiceRegistry | None = None
    instances: list[ServiceInstance] = field(default_factory=list)
    cache: ServiceCache | None = None
    changes: list[CacheChange] = field(default_factory=list)
    consumer: asyncio.Task[None] | None = None


@dataclass(frozen=True, slots=True)
class Status:
    """The fleet at one moment, as the progress line shows it."""

    connected: int
    suspended: int
    lost: int
    clients: int
    views_equal: int
    caches: int
    truth_ok: bool
    truth_count: int

    @property
    def recovered(self) -> bool:
        """Every client connected, every view equal to the truth, the truth as registered."""
        return (self.connected == self.clients and self.views_equal == self.caches
                and self.truth_ok)

    def text(self) -> str:
        """The status as the progress line shows it."""
        trouble = []
        if self.suspended:
            trouble.append(f"{self.suspended} suspended")
        if self.lost:
            trouble.append(f"{self.lost} lost")
        extra = f" ({', '.join(trouble)})" if trouble else ""
        return (f"clients connected {self.connected}/{self.clients}{extra}  "
                f"views=truth {self.views_equal}/{self.caches}  "
                f"registry {self.truth_count}")


class Fleet:
    """Builds, measures and tears down the demo's world."""

    def __init__(self, config: DemoConfig, report: Report) -> None:
        self.config = config
        self.report = report
        self.server = ZooKeeperServer(
            tick_time=config.tick_time, max_session_timeout=max(10.0, config.session_timeout),
        )
        self.proxy: FaultProxy | None = None
        self.observer: AsyncClient | None = None
        self._truth_reader: ServiceDiscovery | None = None
        self.registrars: list[Member] = []
        self.watchers: list[Member] = []
        #: session ids of clients outside the fleet that are legitimately alive
        self.extra_live: set[int] = set()
        #: instance ids registered outside the registries (the close() worker)
        self.extra_ids: set[str] = set()
        #: blocking clients outside the fleet, closed by :meth:`stop` if still open
        self.extra_clients: list[Client] = []
        self._generation = 0
        # Owns the consumers of the caches' change streams: stop() ends them even when
        # close_fleet() never ran (an interrupted demo), and a consumer that dies of
        # anything but a ZooKeeper error is logged.
        self._tasks = TaskOwner("demo fleet", logging.getLogger("zkwarden.demo"))

    # --- set-up --------------------------------------------------------------------------

    @property
    def members(self) -> list[Member]:
        """Every fleet client: registrars, then caches."""
        return [*self.registrars, *self.watchers]

    @property
    def proxied(self) -> str:
        """The proxy's connect string, which every fleet client uses."""
        assert self.proxy is not None
        return self.proxy.connect_string

    def make_client(self) -> AsyncClient:
        """A client of the fleet: through the proxy, short session, calm backoff."""
        return AsyncClient(
            self.proxied, session_timeout=self.config.session_timeout,
            backoff=Backoff(initial=0.1, maximum=self.config.backoff_max),
        )

    async def start(self) -> None:
        """Start the server, the proxy, the observer, the registrars and the caches.

        Raises:
            ZooKeeperNotFoundError: Java or ZooKeeper is not installed.
            ServerStartError: the server did not start.
        """
        await asyncio.to_thread(self.server.start)
        self.proxy = FaultProxy(self.server.connect_string).start()
        self.observer = AsyncClient(self.server.connect_string, session_timeout=10.0)
        await self.observer.start()
        self._truth_reader = ServiceDiscovery(self.observer, BASE_PATH)
        cfg = self.config
        for index in range(cfg.clients):
            member = Member(f"registrar-{index + 1}", self.make_client(), ClientLog())
            self.registrars.append(member)
        for index in range(cfg.caches):
            member = Member(f"cache-{index + 1}", self.make_client(), ClientLog())
            self.watchers.append(member)
        for member in self.members:
            member.client.add_listener(member.log)
        await asyncio.gather(*(m.client.start() for m in self.members))
        for member in self.registrars:
            member.registry = ServiceRegistry(member.client, BASE_PATH)
        for n in range(cfg.instances):
            owner = self.registrars[n % cfg.clients]
            owner.instances.append(self.new_instance(n))
        await asyncio.gather(*(
            m.registry.register(i) for m in self.registrars if m.registry is not None
            for i in m.instances
        ))
        for member in self.watchers:
            member.cache = await ServiceDiscovery(member.client, BASE_PATH).cache(NAME)
            member.consumer = self._tasks.spawn(self._consume(member), name=member.label)

    def new_instance(self, n: int, generation: int = 0) -> ServiceInstance:
        """Instance ``n`` of the fleet (``generation`` > 0 after a restart)."""
        return ServiceInstance(
            NAME, id=f"web-{n:03d}-g{generation}", address=f"10.0.{n // 250}.{n % 250 + 1}",
            port=8080, payload={"generation": generation}, zone=f"zone-{n % 3}",
        )

    @staticmethod
    async def _consume(member: Member) -> None:
        assert member.cache is not None
        try:
            async for change in member.cache.changes():
                member.changes.append(change)
        except ZooKeeperError:
            return

    # --- measuring -----------------------------------------------------------------------

    def clients(self) -> list[AsyncClient]:
        """The fleet's clients (not the observer)."""
        return [m.client for m in self.members]

    def attempts(self) -> int:
        """Connection attempts of all fleet clients so far."""
        return sum(c.connect_attempts for c in self.clients())

    def expected_ids(self) -> set[str]:
        """The instance ids that should be registered now."""
        ids = {i.id for m in self.registrars if m.registry is not None
               for i in m.registry.registrations()}
        return ids | self.extra_ids

    async def truth(self) -> dict[str, ServiceInstance]:
        """The registered instances, read straight from the server (not through the proxy)."""
        assert self._truth_reader is not None
        return {i.id: i for i in await self._truth_reader.instances(NAME)}

    def view(self, member: Member) -> dict[str, ServiceInstance]:
        """A cache's current view, by instance id."""
        assert member.cache is not None
        return {i.id: i for i in member.cache.instances()}

    async def status(self) -> Status:
        """The fleet now: client states, views against the truth."""
        truth = await self.truth()
        states = [c.state for c in self.clients()]
        return Status(
            connected=sum(s in (ClientState.CONNECTED, ClientState.READ_ONLY) for s in states),
            suspended=states.count(ClientState.SUSPENDED),
            lost=states.count(ClientState.LOST),
            clients=len(states),
            views_equal=sum(self.view(w) == truth for w in self.watchers),
            caches=len(self.watchers),
            truth_ok=set(truth) == self.expected_ids(),
            truth_count=len(truth),
        )

    async def observe(
        self,
        phase: str,
        started: float,
        *,
        seconds: float | None = None,
        until: Callable[[Status], bool] | None = None,
        attempts_since: int | None = None,
    ) -> tuple[Status, bool]:
        """Show live progress for ``seconds``, or until ``until(status)`` holds (at most
        ``seconds``); reconnect attempts are counted from ``attempts_since`` (default: now).
        Returns the last status and whether ``until`` held."""
        deadline = None if seconds is None else time.monotonic() + seconds
        base = self.attempts() if attempts_since is None else attempts_since
        while True:
            status = await self.status()
            if until is not None and until(status):
                return status, True
            attempts = self.attempts() - base
            elapsed = time.monotonic() - started
            text = f"{elapsed:5.1f}s  {phase:<12} {status.text()}  attempts +{attempts}"
            key = f"{phase} {status.text()}"
            self.report.progress.update(text, key=key)
            if deadline is None:
                await asyncio.sleep(0.25)
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return status, False
            await asyncio.sleep(min(0.25, remaining))

    async def leaks(self, settle: float = 2.0) -> tuple[int, int, list[str]]:
        """(nodes, sessions) that outlived their owner, waiting up to ``settle`` seconds for
        them to go; and a description of each."""
        deadline = time.monotonic() + settle
        while True:
            nodes, sessions, details = await self._leaks_now()
            if (not nodes and not sessions) or time.monotonic() >= deadline:
                return nodes, sessions, details
            await asyncio.sleep(0.2)

    async def _leaks_now(self) -> tuple[int, int, list[str]]:
        live = {unsigned(c.session_id) for c in self.clients() if c.session_id}
        if self.observer is not None and self.observer.session_id:
            live.add(unsigned(self.observer.session_id))
        live |= {unsigned(s) for s in self.extra_live}
        server_sessions = {unsigned(s) for s in await asyncio.to_thread(self.server.sessions)}
        ephemerals = await asyncio.to_thread(self.server.ephemerals)
        details: list[str] = []
        stray_sessions = server_sessions - live
        details += [f"session 0x{s:x} has no client" for s in sorted(stray_sessions)]
        orphan_paths = {p for owner, paths in ephemerals.items()
                        if unsigned(owner) not in live for p in paths}
        truth = await self.truth()
        stray_ids = set(truth) - self.expected_ids()
        orphan_paths |= {f"{BASE_PATH}/{NAME}/{i}" for i in stray_ids}
        details += [f"node {p} has no owner" for p in sorted(orphan_paths)]
        return len(orphan_paths), len(stray_sessions), details

    def marks(self) -> tuple[list[int], list[int]]:
        """Positions in every client log and cache change list (to read what came after)."""
        return ([len(m.log.changes) for m in self.members],
                [len(m.changes) for m in self.watchers])

    def seen_since(
        self, marks: tuple[list[int], list[int]]
    ) -> tuple[list[list[ClientStateChange]], list[list[CacheChange]]]:
        """State changes per client and cache changes per cache since ``marks``."""
        states = [m.log.since(k) for m, k in zip(self.members, marks[0], strict=True)]
        changes = [m.changes[k:] for m, k in zip(self.watchers, marks[1], strict=True)]
        return states, changes

    # --- tear-down -----------------------------------------------------------------------

    async def close_fleet(self) -> None:
        """Unregister everything and close every fleet client (the observer stays)."""
        for member in self.registrars:
            if member.registry is not None:
                await member.registry.close()
        for member in self.watchers:
            if member.cache is not None:
                await member.cache.close()
            if member.consumer is not None:
                member.consumer.cancel()
        await asyncio.gather(*(m.client.close() for m in self.members))
        await asyncio.gather(*(m.consumer for m in self.watchers if m.consumer is not None),
                             return_exceptions=True)

    async def leftovers(self) -> tuple[int, int]:
        """(instance nodes, sessions other than the observer's) left on the server."""
        assert self.observer is not None
        try:
            nodes = len(await self.observer.get_children(f"{BASE_PATH}/{NAME}"))
        except ZooKeeperError:
            nodes = 0
        own = unsigned(self.observer.session_id or 0)
        sessions = {unsigned(s) for s in await asyncio.to_thread(self.server.sessions)}
        return nodes, len(sessions - {own})

    async def stop(self) -> None:
        """Close whatever is still open and stop the proxy and the server. Never raises."""
        for member in self.members:
            if not member.client.closed:
                await member.client.close()
        # With their clients closed, these end at once (nothing left to delete).
        for member in self.registrars:
            if member.registry is not None:
                await member.registry.close()
        for member in self.watchers:
            if member.cache is not None:
                await member.cache.close()
        await self._tasks.aclose()
        for extra in self.extra_clients:
            if not extra.closed:
                await asyncio.to_thread(extra.close, 2.0)
        if self.observer is not None:
            await self.observer.close()
        if self.proxy is not None:
            self.proxy.close()
        await asyncio.to_thread(self.server.stop)


def count_changes(changes: list[list[CacheChange]]) -> dict[str, int]:
    """Totals over all caches: added, removed, updated, resynced."""
    totals = {"added": 0, "removed": 0, "updated": 0, "resynced": 0}
    for per_cache in changes:
        for change in per_cache:
            if isinstance(change, Added):
                totals["added"] += 1
            elif isinstance(change, Removed):
                totals["removed"] += 1
            elif isinstance(change, Updated):
                totals["updated"] += 1
            elif isinstance(change, Resynced):
                totals["resynced"] += 1
    return totals
