"""The reconnect supervisor: one task per client that keeps a connection open (rule 6).

It loops: back off, pick the next host, close any session given up as presumed expired,
open and establish a connection (:func:`zkwarden._aio.establish.establish`), wait for it to close.
Capped exponential backoff with full jitter over the shuffled host list, also when TCP
connects but the handshake or set-up fails; the cap is a third of the session timeout while
the session may still be alive (so it can be resumed in time) and the full maximum once it
is lost; the backoff resets only after a connection stayed up a read timeout. Warnings are
rate-limited. Any error is a failed attempt: only rejected credentials stop it.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Sequence

from .._ratelimit import RateLimitedLog
from ..errors import AuthFailedError, ConnectionLossError, ZooKeeperError
from ..hosts import HostPort
from ..types import ClientState
from .connection import Connection
from .engine import SessionEngine
from .establish import establish
from .remote import close_session_remote
from .retry import Backoff, backoff_delay

__all__ = ("Supervisor",)

#: after a SASL failure the next attempts wait as if this many had failed (near the cap)
_AUTH_BACKOFF_ATTEMPT = 16

log = logging.getLogger("zkwarden.client")


class Supervisor:
    """Owns the reconnect loop of one engine (the engine owns and cancels its task)."""

    def __init__(self, engine: SessionEngine, backoff: Backoff | None) -> None:
        self._engine = engine
        self.backoff = backoff or Backoff()
        self.rng = random.Random()
        self._warn = RateLimitedLog(log)
        self._host_index = 0
        #: the host the next attempt goes to, before the list (a planned move)
        self._preferred: HostPort | None = None
        #: connection attempts since the client started (for tests and metrics)
        self.connect_attempts = 0

    def per_host_timeout(self) -> float:
        return self._engine.per_host_timeout()

    def set_hosts(self, hosts: Sequence[HostPort], prefer: HostPort | None = None) -> None:
        """Replace the host list (the ensemble changed; the chroot is not part of it)
        and, with ``prefer``, the host of the next attempt. Raises nothing."""
        if hosts:
            self._engine.hosts[:] = list(hosts)
            self._host_index = 0
        self._preferred = prefer

    def prefer(self, host: HostPort | None) -> None:
        """Make ``host`` the next attempt's host (once). Raises nothing."""
        self._preferred = host

    def _next_host(self) -> HostPort:
        if self._preferred is not None:
            host, self._preferred = self._preferred, None
            return host
        hosts = self._engine.hosts
        host = hosts[self._host_index % len(hosts)]
        self._host_index += 1
        return host

    def _backoff_cap(self) -> float:
        machine = self._engine.machine
        if machine.session_id and machine.state is not ClientState.LOST:
            return min(self.backoff.maximum,
                       max(machine.session_timeout / 3, self.backoff.initial))
        return self.backoff.maximum

    async def run(self) -> None:
        engine = self._engine
        machine = engine.machine
        attempt = 0
        loop = asyncio.get_running_loop()
        while not machine.closing:
            delay = backoff_delay(attempt, self.backoff.initial, self._backoff_cap(), self.rng)
            if delay > 0:
                await asyncio.sleep(delay)
                if machine.closing:
                    return
            host = self._next_host()
            self.connect_attempts += 1
            if engine.metrics is not None:
                engine.metrics.connect_attempt()
            try:
                conn = await self.connect(host)
            except AuthFailedError as exc:
                if engine.sasl is None:
                    log.error("authentication failed on %s: %s; closing the client", host, exc)
                    engine.fail(exc)
                    return
                # SASL credentials can be fixed outside (a renewed keytab or password file):
                # report it to every caller, then keep trying at the slowest pace, never
                # spinning on credentials the server refuses.
                engine.auth_failed(exc)
                attempt = max(attempt + 1, _AUTH_BACKOFF_ATTEMPT)
                self._warn.log(logging.ERROR, "auth", "SASL authentication failed on %s: %s "
                               "(retrying with backoff)", host, exc)
                continue
            except (ZooKeeperError, OSError) as exc:
                # ProtocolError included: a garbled handshake reply; that connection is
                # dropped, the next attempt starts afresh.
                attempt += 1
                self._warn.log(logging.WARNING, "connect", "cannot connect to %s: %s "
                               "(attempt %d)", host, exc, attempt)
                continue
            except Exception:
                # A bug must not kill the supervisor: that would leave the client
                # disconnected for good with nobody saying so.
                attempt += 1
                log.exception("unexpected error while connecting to %s", host)
                engine.drop_current(ConnectionLossError("internal error"))
                continue
            if conn is None:  # the server confirmed our session expired: new session now
                attempt = 0
                continue
            up_since = loop.time()
            await asyncio.shield(conn.closed)
            if loop.time() - up_since >= machine.read_timeout:
                attempt = 0
                self._warn.reset("connect")
            else:
                attempt += 1

    async def connect(self, host: HostPort) -> Connection | None:
        """One attempt on ``host``. None when the server said the old session expired.

        Raises:
            ConnectionLossError, ProtocolError, AuthFailedError, DataTooLargeError,
            ClientClosedError.
        """
        timeout = self.per_host_timeout()
        await self._close_stale_sessions(host, timeout)
        return await establish(self._engine, host, timeout)

    async def _close_stale_sessions(self, host: HostPort, timeout: float) -> None:
        """Close sessions given up as presumed expired, so their ephemerals go now.

        Part of the connection attempt: while ``host`` cannot be reached the attempt fails
        here (one connection per attempt, as the backoff counts them) and the sessions
        wait for the next one.

        Raises:
            ConnectionLossError: ``host`` could not be reached.
        """
        engine = self._engine
        engine.stale_sessions.extend(engine.machine.take_stale_sessions())
        while engine.stale_sessions:
            session_id, password = engine.stale_sessions[0]
            try:
                await close_session_remote(host, session_id, password, timeout=timeout,
                                           tls=engine.tls)
            except ConnectionLossError:
                raise
            except ZooKeeperError as exc:
                log.info("could not close stale session 0x%x: %s", session_id, exc)
            engine.stale_sessions.pop(0)
