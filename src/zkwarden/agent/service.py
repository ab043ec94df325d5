"""One configured local service: its health check loop and its registration.

Two tasks per service. The *check loop* runs the check every ``interval`` (measured from
the start of the previous run, so a slow check does not stretch the schedule) and feeds
:class:`HealthState`. The *registrar* makes the registry follow the health status: it
registers the instance once the check is passing and unregisters it once it is failing.
It always acts on the latest wanted state, so a flip that happens while ZooKeeper is
unreachable does not queue stale work, and a registration that is still waiting for
ZooKeeper is simply cancelled by the registry when the check fails meanwhile.

The registry does the ZooKeeper part (DESIGN rule 5): it re-creates the node after a
session expiry, never flaps it on a plain reconnect, and deletes a create that lands
after an unregister. A node owned by another live session (the same id registered by
someone else, or by a previous agent whose session has not expired yet) is a *conflict*:
the registrar retries with a capped backoff until the other owner goes away.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable
from typing import Any, Literal

import aiohttp

from .._tasks import TaskOwner
from ..discovery import ServiceInstance, ServiceRegistry
from ..errors import ClientClosedError, DuplicateInstanceError, NoNodeError, ZooKeeperError
from .checks import Check, CheckResult, HealthState, Status, make_check
from .config import ServiceConfig
from .logs import EventLog, logger
from .metrics import AgentMetrics

__all__ = ("LocalService", "RegistrationState")

RegistrationState = Literal["registered", "pending", "deregistered", "conflict"]

_CONFLICT_RETRY_MIN = 0.5
_CONFLICT_RETRY_MAX = 10.0


class LocalService:
    """Health check and registration of one ``[[service]]`` entry."""

    def __init__(
        self,
        config: ServiceConfig,
        registry: ServiceRegistry,
        http: aiohttp.ClientSession,
        metrics: AgentMetrics,
        events: EventLog,
    ) -> None:
        self.config = config
        self._registry = registry
        self._http = http
        self._metrics = metrics
        self._events = events
        self.instance: ServiceInstance = config.instance()
        self.health = HealthState(config.check.rise, config.check.fall)
        self._check: Check = make_check(config.check, http)
        self._want = False
        self._wake = asyncio.Event()
        self._in_registry = False  # the registry holds a registration of ours
        self._confirmed: ServiceInstance | None = None  # the instance known to be written
        self._conflict = False
        self._check_task: asyncio.Task[None] | None = None
        self._registrar_task: asyncio.Task[None] | None = None
        # Owns both loops: stop() ends them, and one that dies is logged, not lost.
        self._tasks = TaskOwner(f"service {config.name}/{config.id}", logger)
        self._stopped = False
        self._labels = {"service": config.name, "id": config.id}
        metrics.check_passing.labels(**self._labels).set(-1)

    # --- public ---------------------------------------------------------------------

    @property
    def key(self) -> tuple[str, str]:
        return self.config.key

    @property
    def status(self) -> Status:
        return self.health.status

    def registration_state(self, connected: bool) -> RegistrationState:
        """Where the registration stands (``connected``: the ZooKeeper session is up)."""
        if not self._want:
            return "deregistered"
        if self._conflict:
            return "conflict"
        if self._confirmed is not None and self._confirmed == self.instance and connected:
            return "registered"
        return "pending"

    def start(self) -> None:
        """Start the check loop and the registrar."""
        self._registrar_task = self._tasks.spawn(self._registrar(), name="registrar")
        if self.config.check.type == "none":
            self.health.status = "passing"
            self._metrics.check_passing.labels(**self._labels).set(1)
            self._set_want(True)
        else:
            self._check_task = self._tasks.spawn(self._check_loop(), name="check")

    async def reconfigure(self, config: ServiceConfig) -> None:
        """Apply a changed entry with the same (name, id) without deregistering.

        A changed check restarts the check loop with the status carried over; changed
        instance fields are written in place (the registry's update: no flap).
        """
        old = self.config
        self.config = config
        if config.check != old.check:
            await self._stop_check()
            status = self.health.status
            self.health = HealthState(config.check.rise, config.check.fall, status)
            self._check = make_check(config.check, self._http)
            if config.check.type == "none":
                self.health.status = "passing"
                self._set_want(True)
            elif not self._stopped:
                self._check_task = self._tasks.spawn(self._check_loop(), name="check")
            self._events.info(
                "check_reconfigured", f"check of {self._label} changed; status kept ({status})",
                service=config.name, id=config.id, status=status,
            )
        if not config.same_registration(old):
            self.instance = config.instance(self.instance.registration_time)
            self._events.info(
                "service_updated", f"{self._label} changed; updating its registration in place",
                service=config.name, id=config.id,
            )
            self._wake.set()

    async def stop(self, *, unregister: bool = True) -> None:
        """Stop checking; with ``unregister``, delete the registration (bounded by caller).

        Raises:
            ZooKeeperError: only ClientClosedError-free errors of the registry's unregister.
        """
        self._stopped = True
        await self._stop_check()
        await self._tasks.aclose()
        if unregister and self._in_registry:
            try:
                await self._registry.unregister(self.instance)
            except ClientClosedError:
                pass
            self._in_registry = False
            self._confirmed = None
            self._metrics.registration_changes.labels(
                service=self.config.name, action="deregister"
            ).inc()
            self._events.info(
                "deregistered", f"{self._label} deregistered (service removed or agent stopping)",
                service=self.config.name, id=self.config.id,
            )
        self._want = False
        await self._check.close()

    def describe(self, connected: bool) -> dict[str, Any]:
        """The service and its check, for ``/v1/health``."""
        h = self.health
        return {
            "service": self.config.name,
            "id": self.config.id,
            "check": self.config.check.type,
            "status": h.status,
            "registration": self.registration_state(connected),
            "output": h.last.output if h.last is not None else "",
            "last_checked": h.last_checked,
            "last_duration": round(h.last.duration, 6) if h.last is not None else None,
            "consecutive_successes": h.successes,
            "consecutive_failures": h.failures,
            "status_since": h.changed_at,
        }

    # --- internals ------------------------------------------------------------------

    @property
    def _label(self) -> str:
        return f"{self.config.name}/{self.config.id}"

    async def _stop_check(self) -> None:
        task, self._check_task = self._check_task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    def _set_want(self, want: bool) -> None:
        if want != self._want:
            self._want = want
            self._wake.set()

    async def _check_loop(self) -> None:
        loop = asyncio.get_running_loop()
        interval = self.config.check.interval
        while True:
            started = loop.time()
            result = await self._check.run()
            self._on_result(result.ok, result.output, result.duration)
            await asyncio.sleep(max(0.0, started + interval - loop.time()))

    def _on_result(self, ok: bool, output: str, duration: float) -> None:
        labels = self._labels
        self._metrics.check_results.labels(**labels, result="pass" if ok else "fail").inc()
        self._metrics.check_duration.labels(**labels).observe(duration)
        changed = self.health.record(CheckResult(ok, output, duration))
        status = self.health.status
        self._metrics.check_passing.labels(**labels).set(
            {"passing": 1, "failing": 0, "unknown": -1}[status]
        )
        fields = {"service": self.config.name, "id": self.config.id, "output": output}
        if changed:
            level = logging.INFO if status == "passing" else logging.WARNING
            self._events.emit(
                level, f"check_{status}",
                f"check of {self._label} is {status} "
                f"({self.health.rise if ok else self.health.fall} in a row)",
                **fields,
            )
            self._events.reset(f"check:{self._label}")
            self._set_want(status == "passing")
        elif not ok:
            self._events.limited(
                f"check:{self._label}", logging.INFO, "check_failed",
                f"check of {self._label} failed", **fields,
            )

    async def _until_woken(self, work: Awaitable[None]) -> bool:
        """Run ``work`` until done (True) or until the wanted state changes (False)."""
        task: asyncio.Future[Any] = asyncio.ensure_future(work)
        waker: asyncio.Future[Any] = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait([task, waker], return_when=asyncio.FIRST_COMPLETED)
        finally:
            # Both are ours: neither may outlive this call, even when it is cancelled.
            waker.cancel()
            task.cancel()
            await asyncio.gather(task, waker, return_exceptions=True)
        if task.done() and not task.cancelled():
            task.result()
            return True
        return False

    async def _registrar(self) -> None:
        backoff = _CONFLICT_RETRY_MIN
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                if self._want:
                    await self._ensure_registered()
                    backoff = _CONFLICT_RETRY_MIN
                elif self._in_registry:
                    await self._ensure_unregistered()
            except DuplicateInstanceError as exc:
                self._conflict = True
                self._in_registry = False
                self._events.limited(
                    f"conflict:{self._label}", logging.WARNING, "registration_conflict",
                    f"{self._label} is registered by another live session; retrying in "
                    f"{backoff:.1f}s",
                    service=self.config.name, id=self.config.id, error=str(exc),
                )
                try:
                    await self._registry.unregister(self.instance)  # forget it; not ours
                except ZooKeeperError:
                    pass
                # Retry after the pause, or at once if the wanted state changed meanwhile.
                await self._until_woken(asyncio.sleep(backoff))
                self._wake.set()
                backoff = min(backoff * 2, _CONFLICT_RETRY_MAX)
            except ClientClosedError:
                return
            except Exception as exc:
                # A ZooKeeper error, or a bug (then with its traceback): either way the
                # registrar must keep following the health status, not die silently.
                if not isinstance(exc, ZooKeeperError):
                    logger.error("registrar of %s failed", self._label, exc_info=exc)
                self._events.limited(
                    f"register:{self._label}", logging.WARNING, "registration_failed",
                    f"registering {self._label} failed: {exc}; retrying",
                    service=self.config.name, id=self.config.id, error=str(exc),
                )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, _CONFLICT_RETRY_MAX)
                self._wake.set()

    async def _ensure_registered(self) -> None:
        instance = self.instance
        if self._in_registry and self._confirmed == instance:
            return
        started = time.monotonic()
        if self._in_registry and self._confirmed is not None:
            work = self._update(instance)
        else:
            work = self._registry.register(instance)
        self._in_registry = True
        if not await self._until_woken(work):
            self._wake.set()  # the wanted state changed before ZooKeeper confirmed
            return
        first = self._confirmed is None
        self._confirmed = instance
        self._conflict = False
        if first:
            self._metrics.registration_changes.labels(
                service=instance.name, action="register"
            ).inc()
        self._events.reset(f"conflict:{self._label}")
        self._events.info(
            "registered" if first else "registration_updated",
            f"{self._label} {'registered' if first else 'updated'} "
            f"in {(time.monotonic() - started) * 1000:.0f} ms",
            service=instance.name, id=instance.id,
        )

    async def _update(self, instance: ServiceInstance) -> None:
        try:
            await self._registry.update(instance)
        except NoNodeError:
            await self._registry.register(instance)

    async def _ensure_unregistered(self) -> None:
        started = time.monotonic()
        await self._registry.unregister(self.instance)
        self._in_registry = False
        was_confirmed = self._confirmed is not None
        self._confirmed = None
        if was_confirmed:
            self._metrics.registration_changes.labels(
                service=self.config.name, action="deregister"
            ).inc()
        self._events.warning(
            "deregistered",
            f"{self._label} deregistered after {self.health.fall} failed checks "
            f"in {(time.monotonic() - started) * 1000:.0f} ms",
            service=self.config.name, id=self.config.id,
        )
        if self._want:
            self._wake.set()
