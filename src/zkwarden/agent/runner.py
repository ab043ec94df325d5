"""The agent: one ZooKeeper session, the local services, the views, the HTTP API.

:class:`Agent` is usable in-process (tests, embedding); :func:`~zkwarden.agent.run_agent`
(in :mod:`zkwarden.agent.daemon`) runs one as the daemon:
it loads the config, runs an agent, and maps signals to actions:

* SIGTERM / SIGINT: stop checks, unregister every instance (explicit deletes, so watchers
  see them go at once, not after a session timeout), stop the API, close the session;
  the whole shutdown is bounded by ``[agent] shutdown_timeout``; exit code 0.
* SIGHUP: reload the file and apply the difference. Unchanged registrations are not
  touched; changed ones are updated in place; added/removed services are registered /
  unregistered; watched services follow. A bad file is logged and ignored (the agent
  keeps running on the old config). ``[zookeeper]``, ``listen`` and ``snapshot_dir``
  need a restart: a change there is logged and otherwise ignored.

The agent starts whether or not ZooKeeper is reachable: the client keeps connecting in
the background, views are served from the snapshot (stale) until the session is up, and
registrations happen as soon as it is.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import ssl
import time
from collections.abc import Callable, Coroutine
from typing import Any

import aiohttp

from .. import __version__
from .._aio.client import AsyncClient
from .._tasks import TaskOwner
from ..discovery import ServiceDiscovery, ServiceRegistry
from ..errors import ConfigurationError, ZooKeeperError
from ..tls import tls_context
from ..types import ClientState, ClientStateChange
from .config import AgentConfig, ServiceConfig, TLSConfig, load_config
from .http import ApiServer
from .logs import EventLog, configure_logging, logger
from .metrics import REGISTRATION_STATES, AgentMetrics
from .service import LocalService
from .views import Views

__all__ = ("Agent",)

_CONNECTED = (ClientState.CONNECTED, ClientState.READ_ONLY)
# How long an existence check of a service may take, and the longest pause between
# sweeps of the on-demand views.
_EXISTS_TIMEOUT = 2.0
_SWEEP_EVERY = 30.0


def _ssl_context(tls: TLSConfig | None) -> ssl.SSLContext | None:
    """The ``[zookeeper.tls]`` table as a context, through :func:`zkwarden.tls.tls_context`
    (hostname checked unless the table turns it off; the client warns once then)."""
    if tls is None:
        return None
    return tls_context(cafile=tls.ca_file, certfile=tls.cert_file, keyfile=tls.key_file,
                       check_hostname=tls.check_hostname)


class Agent:
    """The sidecar, in-process: ``await agent.start()`` … ``await agent.stop()``.

    Raises (constructor):
        ConfigurationError: never for a config from :func:`load_config`.
    """

    def __init__(
        self,
        config: AgentConfig,
        *,
        config_path: str | None = None,
        manage_logging: bool = False,
    ) -> None:
        self.config = config
        self.config_path = config_path
        self.metrics = AgentMetrics()
        self.metrics.info.labels(version=__version__).set(1)
        self.events = EventLog()
        self.started_at = time.time()
        self.services: dict[tuple[str, str], LocalService] = {}
        self._manage_logging = manage_logging
        self._client: AsyncClient | None = None
        self._registry: ServiceRegistry | None = None
        self._discovery: ServiceDiscovery | None = None
        self._views: Views | None = None
        self._http: aiohttp.ClientSession | None = None
        self._api = ApiServer(self)
        # Two owners, because stop() ends them at different times: background work
        # (reloads, reconfigures, view changes) first; removals only after every
        # registration was deleted, so their explicit deletes are not cut short.
        self._tasks = TaskOwner("agent", logger)
        self._removals = TaskOwner("agent removal", logger)
        self._removing: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._reload_lock = asyncio.Lock()
        self._stop_requested = asyncio.Event()
        self._stopped = asyncio.Event()
        self._stopping = False
        self._ever_connected = False
        self._started = False
        self._last_session: int | None = None
        #: seconds the last :meth:`stop` took
        self.shutdown_seconds: float | None = None

    # --- accessors (for the HTTP API and tests) --------------------------------------

    @property
    def client(self) -> AsyncClient:
        assert self._client is not None, "agent not started"
        return self._client

    @property
    def registry(self) -> ServiceRegistry:
        assert self._registry is not None, "agent not started"
        return self._registry

    @property
    def discovery(self) -> ServiceDiscovery:
        assert self._discovery is not None, "agent not started"
        return self._discovery

    @property
    def views(self) -> Views:
        assert self._views is not None, "agent not started"
        return self._views

    @property
    def address(self) -> tuple[str, int]:
        """``(host, port)`` the HTTP API listens on (the real port when 0 was asked)."""
        return self._api.address

    @property
    def base_url(self) -> str:
        host, port = self.address
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{port}"

    @property
    def connected(self) -> bool:
        return self._client is not None and self._client.connected

    @property
    def stopping(self) -> bool:
        return self._stopping

    @property
    def connecting_first_time(self) -> bool:
        """True while the very first session is still being set up (a few seconds at most)."""
        client = self._client
        return (
            client is not None
            and not self._ever_connected
            and time.time() - self.started_at < self.config.zookeeper.session_timeout
        )

    # --- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        """Bind the HTTP API, start the session (in the background), checks and views.

        Raises:
            OSError: the listen address cannot be bound (nothing else was started then).
            ConfigurationError: the ZooKeeper TLS files or the SASL password cannot be
                loaded.
        """
        cfg = self.config
        zk = cfg.zookeeper
        try:
            tls = _ssl_context(zk.tls)
        except ConfigurationError as exc:
            raise ConfigurationError(f"{cfg.source}: zookeeper.tls: {exc}") from None
        try:
            # The SASL password file is read here, once (the client keeps the secret).
            self._client = AsyncClient(
                zk.hosts,
                session_timeout=zk.session_timeout,
                connect_timeout=zk.connect_timeout,
                auth=list(zk.auth),
                tls=tls,
                sasl=zk.sasl,
                metrics=self.metrics.client,
            )
        except ConfigurationError as exc:
            raise ConfigurationError(f"{cfg.source}: zookeeper: {exc}") from None
        self.metrics.set_client_state(self._client.state)
        self._registry = ServiceRegistry(self._client, zk.base_path, zk.format,
                                         acl=list(zk.acl) if zk.acl is not None else None)
        self._discovery = ServiceDiscovery(
            self._client, zk.base_path, zk.format, snapshot_dir=cfg.agent.snapshot_dir
        )
        self._views = Views(
            self._discovery,
            max_on_demand=cfg.agent.max_on_demand,
            idle_timeout=cfg.agent.on_demand_idle,
            snapshot_dir=cfg.agent.snapshot_dir,
            on_close=self.metrics.forget_view,
        )
        await self._api.start(cfg.agent.listen_host, cfg.agent.listen_port)
        self._http = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=32, force_close=True)
        )
        self._client.add_listener(self._on_state)
        await self._client.start(wait=False)
        for svc_cfg in cfg.services:
            self._add_service(svc_cfg)
        for name in cfg.agent.watch:
            await self._views.open(name, pinned=True)
        self._tasks.spawn(self._sweep_views(), name="view sweeper")
        self._started = True
        host, port = self.address
        self.events.info(
            "agent_started",
            f"agent {__version__} listening on {self.base_url}; {len(cfg.services)} "
            f"service(s), watching {len(cfg.agent.watch)}",
            listen=f"{host}:{port}", zookeeper=zk.hosts, pid=os.getpid(),
        )

    def request_stop(self, reason: str = "requested") -> None:
        """Ask :meth:`run` / :func:`run_agent` to stop (signal handlers call this)."""
        if self._stop_requested.is_set():
            self.events.info("stop_pending", f"{reason}: already stopping")
            return
        self.events.info("stop_requested", f"{reason}: stopping", reason=reason)
        self._stop_requested.set()

    def request_reload(self) -> None:
        """Reload the config file in the background (the SIGHUP handler)."""
        if self._stopping or not self._started:
            self.events.warning("reload_ignored", "not reloading: the agent is not running")
            return
        self._tasks.spawn(self.reload(), name="reload")

    async def wait_stop_requested(self) -> None:
        await self._stop_requested.wait()

    async def stop(self) -> None:
        """Unregister everything, stop the API, close the session. Bounded; never raises.

        Takes at most about ``[agent] shutdown_timeout`` seconds (plus the client's own
        bounded close when ZooKeeper is unreachable).
        """
        if self._stopping:
            await self._stopped.wait()
            return
        self._stopping = True
        self._stop_requested.set()
        started = time.monotonic()
        budget = self.config.agent.shutdown_timeout

        def left() -> float:
            return max(0.1, budget - (time.monotonic() - started))

        await self._tasks.aclose()
        services = list(self.services.values())
        await asyncio.gather(*(s.stop(unregister=False) for s in services), return_exceptions=True)
        if self._registry is not None:
            await self._unregister_all(left)
        await self._removals.aclose()
        if self._views is not None:
            await self._views.close()
        await self._api.stop()
        if self._client is not None:
            self._client.remove_listener(self._on_state)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(left() + 5.0):
                    await self._client.close()
        if self._http is not None:
            await self._http.close()
        self.shutdown_seconds = time.monotonic() - started
        self.events.info(
            "agent_stopped",
            f"agent stopped in {self.shutdown_seconds * 1000:.0f} ms",
            seconds=round(self.shutdown_seconds, 3),
        )
        self._stopped.set()

    async def _unregister_all(self, left: Callable[[], float]) -> None:
        """Delete every node we own, within the shutdown budget.

        Without a session the deletes can only wait for one: once the connection has been
        down for a second, give up; closing the client ends the session (and its
        ephemeral nodes) anyway, or the server expires it.
        """
        assert self._registry is not None
        task = asyncio.get_running_loop().create_task(self._registry.close())
        try:
            await self._await_unregister(task, left)
        finally:
            # Also when stop() itself is cancelled: the registry's close (and the
            # deletes it is doing) must not outlive the agent's stop.
            if not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

    async def _await_unregister(
        self, task: asyncio.Task[None], left: Callable[[], float]
    ) -> None:
        down_since: float | None = None
        while not task.done():
            await asyncio.wait([task], timeout=min(0.1, left()))
            now = time.monotonic()
            if self.connected:
                down_since = None
            elif down_since is None:
                down_since = now
            if task.done():
                break
            if left() <= 0.1 or (down_since is not None and now - down_since >= 1.0):
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
                self.events.warning(
                    "unregister_incomplete",
                    "could not delete every registration (ZooKeeper unreachable); closing "
                    "the session instead",
                )
                return

    async def __aenter__(self) -> Agent:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # --- services ----------------------------------------------------------------------

    def _add_service(self, config: ServiceConfig) -> None:
        assert self._registry is not None and self._http is not None
        svc = LocalService(config, self._registry, self._http, self.metrics, self.events)
        self.services[config.key] = svc
        pending = self._removing.get(config.key)
        if pending is None:
            svc.start()
            return

        async def start_after_removal() -> None:
            # The same (name, id) was just removed: its delete must land first.
            await asyncio.gather(pending, return_exceptions=True)
            if not self._stopping and self.services.get(config.key) is svc:
                svc.start()

        self._tasks.spawn(start_after_removal(), name=f"start {config.name}/{config.id}")

    def _remove_service(self, key: tuple[str, str]) -> None:
        svc = self.services.pop(key)

        async def remove() -> None:
            try:
                await svc.stop(unregister=True)
            except ZooKeeperError as exc:
                self.events.warning(
                    "deregister_failed", f"removing {key[0]}/{key[1]} failed: {exc}",
                    service=key[0], id=key[1],
                )
            finally:
                self.metrics.forget_service(*key)
                if self._removing.get(key) is task:
                    del self._removing[key]

        task = self._removals.spawn(remove(), name=f"remove {key[0]}/{key[1]}")
        self._removing[key] = task

    # --- reload ------------------------------------------------------------------------

    async def reload(self, config: AgentConfig | None = None) -> bool:
        """Apply ``config`` (default: re-read the config file); False if it was rejected.

        Never raises: a bad file is logged and the running config stays.
        """
        async with self._reload_lock:
            if self._stopping:
                return False
            if config is None:
                if self.config_path is None:
                    return False
                try:
                    config = load_config(self.config_path)
                except ConfigurationError as exc:
                    self.metrics.reloads.labels(result="rejected").inc()
                    self.events.error(
                        "reload_rejected", f"config not reloaded: {exc}", error=str(exc)
                    )
                    return False
            self._apply(config)
            self.metrics.reloads.labels(result="applied").inc()
            return True

    def _apply(self, new: AgentConfig) -> None:
        old = self.config
        if new.zookeeper != old.zookeeper:
            self.events.warning(
                "reload_needs_restart",
                "changes to [zookeeper] take effect after a restart; keeping the running values",
            )
        kept_agent = dataclasses.replace(
            new.agent,
            listen_host=old.agent.listen_host,
            listen_port=old.agent.listen_port,
            snapshot_dir=old.agent.snapshot_dir,
        )
        if kept_agent != new.agent:
            self.events.warning(
                "reload_needs_restart",
                "changes to [agent] listen and snapshot_dir take effect after a restart",
            )
        if self._manage_logging and new.log != old.log:
            configure_logging(new.log.level, new.log.format)
        wanted = {s.key: s for s in new.services}
        removed = [k for k in self.services if k not in wanted]
        added = [s for k, s in wanted.items() if k not in self.services]
        changed = [
            s for k, s in wanted.items() if k in self.services and self.services[k].config != s
        ]
        # A change that moves the node (layouts that name nodes by address) is a removal
        # plus an addition; anything else is updated in place.
        moved = [s for s in changed if self._node_moves(self.services[s.key], s)]
        changed = [s for s in changed if s not in moved]
        removed += [s.key for s in moved]
        added += moved
        for key in removed:
            self._remove_service(key)
        for svc_cfg in added:
            self._add_service(svc_cfg)
        for svc_cfg in changed:
            self._spawn(
                self.services[svc_cfg.key].reconfigure(svc_cfg),
                f"reconfigure {svc_cfg.name}/{svc_cfg.id}",
            )
        watch_added = [n for n in kept_agent.watch if n not in old.agent.watch]
        watch_removed = [n for n in old.agent.watch if n not in kept_agent.watch]
        for name in watch_added:
            self._spawn(self.views.open(name, pinned=True), f"watch {name}")
        for name in watch_removed:
            self._spawn(self.views.close_view(name), f"unwatch {name}")
        self.views.max_on_demand = kept_agent.max_on_demand
        self.views.idle_timeout = kept_agent.on_demand_idle
        self.config = dataclasses.replace(new, zookeeper=old.zookeeper, agent=kept_agent)
        self.events.info(
            "config_reloaded",
            f"config reloaded: {len(added)} service(s) added, {len(removed)} removed, "
            f"{len(changed)} changed, "
            f"{len(wanted) - len(added) - len(changed)} unchanged; watch "
            f"+{len(watch_added)} -{len(watch_removed)}",
            added=[f"{s.name}/{s.id}" for s in added],
            removed=[f"{k[0]}/{k[1]}" for k in removed],
            changed=[f"{s.name}/{s.id}" for s in changed],
        )

    def _node_moves(self, svc: LocalService, new: ServiceConfig) -> bool:
        registry = self.registry
        old_inst = svc.instance
        new_inst = new.instance(old_inst.registration_time)
        return registry.format.instance_path(
            registry.base_path, old_inst
        ) != registry.format.instance_path(registry.base_path, new_inst)

    def _spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> None:
        self._tasks.spawn(coro, name=name)

    # --- on-demand views ----------------------------------------------------------------

    async def service_exists(self, name: str) -> bool | None:
        """Whether service ``name`` is registered: None when that cannot be told now
        (no session, or no answer within a couple of seconds). Never raises."""
        if not self.connected:
            return None
        discovery = self.discovery
        try:
            path = discovery.format.service_path(discovery.base_path, name)
        except ZooKeeperError:  # a name this layout cannot express is no service
            return False
        try:
            async with asyncio.timeout(_EXISTS_TIMEOUT):
                return await self.client.exists(path) is not None
        except (TimeoutError, ZooKeeperError):
            return None

    async def _sweep_views(self) -> None:
        """Close idle on-demand views and those of services deleted since (owned task)."""
        while True:
            views = self.views
            await asyncio.sleep(min(views.idle_timeout / 4, _SWEEP_EVERY))
            closed = await views.sweep(self.service_exists)
            if closed:
                self.events.info(
                    "views_evicted",
                    f"closed {len(closed)} on-demand view(s) (idle, or service gone)",
                    services=closed[:10],
                )

    # --- ZooKeeper state ---------------------------------------------------------------

    def _on_state(self, change: ClientStateChange) -> None:
        self.metrics.set_client_state(change.state)
        if change.state in _CONNECTED:
            if change.session_id != self._last_session:
                self.metrics.session_changes.inc()
                if self._last_session is not None:
                    self.events.warning(
                        "session_changed",
                        f"new ZooKeeper session 0x{change.session_id or 0:x} (the previous one "
                        "expired); registrations are being restored",
                        session=f"0x{change.session_id or 0:x}",
                    )
                self._last_session = change.session_id
            if self._ever_connected:
                self.metrics.reconnects.inc()
            self._ever_connected = True
            self.events.reset("zookeeper")
            self.events.info(
                "zookeeper_connected",
                f"ZooKeeper session 0x{change.session_id or 0:x} connected"
                f"{' (new session)' if change.new_session else ''}",
                session=f"0x{change.session_id or 0:x}", state=change.state.value,
            )
        elif change.state in (ClientState.SUSPENDED, ClientState.LOST):
            if change.previous in _CONNECTED:
                self.metrics.disconnects.inc()
            self.events.limited(
                "zookeeper", logging.WARNING, "zookeeper_unreachable",
                f"ZooKeeper {change.state.value.lower()}; serving the last known views (stale)",
                state=change.state.value,
            )
        if self._views is not None:
            self._views.refresh_all(reconnected=change.state in _CONNECTED)

    # --- reporting -----------------------------------------------------------------------

    def update_gauges(self) -> None:
        """Set the state gauges (called before each scrape)."""
        m = self.metrics
        connected = self.connected
        m.set_client_state(self._client.state if self._client else ClientState.CONNECTING)
        counts = dict.fromkeys(REGISTRATION_STATES, 0)
        for svc in self.services.values():
            counts[svc.registration_state(connected)] += 1
        for state, n in counts.items():
            m.registrations.labels(state=state).set(n)
        now = time.time()
        if self._views is not None:
            for view in self._views.all():
                m.cache_instances.labels(service=view.name).set(len(view.instances()))
                m.cache_stale.labels(service=view.name).set(1 if view.stale else 0)
                age = view.age(now)
                m.cache_age.labels(service=view.name).set(age if age is not None else -1)

    def health(self) -> dict[str, Any]:
        """The body of ``GET /v1/health``."""
        client = self._client
        connected = self.connected
        checks = [svc.describe(connected) for svc in self.services.values()]
        healthy = connected and all(
            c["status"] == "passing" and c["registration"] == "registered" for c in checks
        )
        session = client.session_id if client is not None else None
        return {
            "status": "stopping" if self._stopping else ("ok" if healthy else "degraded"),
            "agent": {
                "version": __version__,
                "pid": os.getpid(),
                "started_at": self.started_at,
                "uptime": round(time.time() - self.started_at, 3),
                "config": self.config_path,
            },
            "zookeeper": {
                "state": client.state.value if client is not None else "CONNECTING",
                "connected": connected,
                "session_id": f"0x{session:x}" if session else None,
                "session_timeout": client.negotiated_timeout if client is not None else None,
                "hosts": self.config.zookeeper.hosts,
            },
            "checks": checks,
        }
