"""Closing a client (DESIGN rule 4): one close sequence, whoever asks and however often.

``close()`` starts one task that runs the whole sequence and every caller awaits it
shielded: a caller cancelled half-way (``asyncio.wait_for(zk.close(), 0.001)``) stops
waiting, the close does not stop. The sequence is bounded in time and always ends in
CLOSED, whatever fails on the way. A client left open is closed at interpreter exit.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import weakref

from ..errors import ClientClosedError, ZooKeeperError
from .engine import SessionEngine
from .options import forked_since
from .remote import close_session_remote
from .subscriptions import Subscriptions
from .transport import close_session_blocking

__all__ = ("Closer",)

log = logging.getLogger("zkwarden.client")

_REMOTE_CLOSE_BUDGET = 3.0

_open_closers: weakref.WeakSet[Closer] = weakref.WeakSet()


@atexit.register
def _close_leftover_sessions() -> None:
    # A client left open must not leave its ephemerals behind for a session timeout. The
    # event loop is usually gone by now, so close from a plain socket, bounded in time.
    for closer in list(_open_closers):
        closer.close_at_exit()


class Closer:
    """Owns the close sequence of one client."""

    def __init__(self, engine: SessionEngine, subscriptions: Subscriptions) -> None:
        self._engine = engine
        self._subscriptions = subscriptions
        self._task: asyncio.Task[None] | None = None

    def started(self) -> None:
        """The client started: from now on it is closed at interpreter exit if left open."""
        _open_closers.add(self)

    def begin(self, reason: ZooKeeperError | None = None) -> None:
        """Start closing without waiting (e.g. on fatal authentication failure)."""
        if self._task is None and self._engine.loop is not None:
            self._task = self._engine.loop.create_task(self._sequence(), name="zkwarden-close")

    async def close(self) -> None:
        """Run the close sequence once; every caller waits for the same one."""
        engine = self._engine
        if self._task is None:
            if engine.loop is None:  # never started: nothing to close on a server
                if not engine.machine.closing:
                    engine.machine.begin_close()
                    engine.finish_close(ClientClosedError("client closed"))
                return
            self.begin()
        task = self._task
        assert task is not None
        if task is asyncio.current_task():
            return  # close() from a listener that the close sequence itself is calling
        await asyncio.shield(task)

    async def _sequence(self) -> None:
        engine = self._engine
        machine = engine.machine
        reason = ClientClosedError("client closed")
        session_id, password = machine.session_id, machine.password
        live = machine.can_send and engine.conn is not None
        try:
            machine.begin_close()
            closed_on_server = False
            if live:
                closed_on_server = await engine.send_close_session()
            await engine.stop(reason)
            stale = engine.stale_sessions + machine.take_stale_sessions()
            engine.stale_sessions = []
            if session_id and not closed_on_server:
                # Disconnected (or unanswered) with a session that may be alive: attach
                # once more and close it, so its ephemerals do not outlive us.
                stale.append((session_id, password))
            all_closed = True
            for sid, pw in stale:
                all_closed = await self._close_remote(sid, pw) and all_closed
            engine.closed_on_server = all_closed
            await self._subscriptions.aclose()
        except Exception:
            log.exception("error while closing; the client is closed anyway")
        finally:
            self._subscriptions.closed(reason)
            engine.finish_close(reason)
            _open_closers.discard(self)

    async def _close_remote(self, session_id: int, password: bytes) -> bool:
        engine = self._engine
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(1.0, min(_REMOTE_CLOSE_BUDGET, engine.session_timeout))
        for host in engine.hosts:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            try:
                await close_session_remote(host, session_id, password,
                                           timeout=min(remaining, 1.0), tls=engine.tls)
                return True
            except ZooKeeperError as exc:
                log.info("could not close session 0x%x on %s: %s", session_id, host, exc)
        return False

    def close_at_exit(self) -> None:
        """Close the session from a blocking socket (no event loop is left at exit)."""
        engine = self._engine
        if forked_since(engine.pid) or engine.closed_on_server:
            return
        engine.closed_on_server = True
        sessions = engine.stale_sessions + engine.machine.take_stale_sessions()
        if engine.machine.session_id:
            sessions.append((engine.machine.session_id, engine.machine.password))
        for session_id, password in sessions:
            for host in engine.hosts:
                try:
                    close_session_blocking(host, session_id, password, timeout=1.0,
                                           tls=engine.tls)
                    break
                except ZooKeeperError:
                    continue
