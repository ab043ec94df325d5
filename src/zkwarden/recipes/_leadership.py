"""The leadership queue shared by :class:`LeaderLatch` and :class:`LeaderElection`.

A :class:`Contender` is one place in a Curator-style queue: an EPHEMERAL_SEQUENTIAL
protected node ``<path>/_c_<uuid>-<marker><seq10>`` (``latch-`` for a LeaderLatch,
``lock-`` for a LeaderSelector, whose mutex layout it is), ordered by Curator's comparator.
The first node leads; every other one watches only its immediate predecessor (a getData
watch; a predecessor already gone means "look again"), so a change wakes one contender.

Leadership is a :class:`LeadershipTerm`. It ends (``term.lost`` is set, callbacks run at
once, on the event loop, from the state listener itself) when:

* the session is LOST or the client closes (the server has deleted, or will delete, our
  node: a new term needs a new node on the new session);
* the connection is SUSPENDED, unless ``lose_on_suspend=False``. This is Curator 5.4's
  default: LeaderLatch ``setLeadership(false)`` on SUSPENDED because the default
  ``StandardConnectionStateErrorPolicy`` counts SUSPENDED as an error state, and
  ``LeaderSelectorListenerAdapter`` cancels the leader on it for the same reason. The node
  is NOT deleted then (we may still be first when the connection comes back);
* a READ_ONLY server is all we reach (it has no quorum: someone else may lead);
* our own node is deleted or found owned by another session (Curator does not notice
  this, CURATOR-171; the leader watches its own node);
* the recipe stops.

Before a term starts, the node is checked to exist and be owned by the current session
(Curator 5.7's CURATOR-696 fix), and the client must be CONNECTED at that very moment.

Note for the lead (merging with ``lock.py``): the queue walk here (create, sort, watch the
predecessor, re-check on any change) is the same as InterProcessMutex's with one lease;
only :meth:`Contender.wait_first` and :meth:`Contender.hold` would move.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from .. import paths as _paths
from .._aio.client import AsyncClient
from .._tasks import TaskOwner
from ..errors import (
    ClientClosedError,
    ConnectionLossError,
    NoNodeError,
    SessionExpiredError,
    ZooKeeperError,
)
from ..types import ACL, ClientState, ClientStateChange, Stat
from ._curator import sorted_children
from ._nodes import OwnNode, delete_until_gone, protected_create
from ._session import SessionEvents

__all__ = ("LeadershipTerm", "Contender", "read_participants", "wait_done", "finish_cleanups")

log = logging.getLogger("zkwarden.recipes")

#: a wait on a watch or a state change is re-checked after this long anyway (belt and
#: braces: a missed wake-up costs one re-read, never a stuck queue)
_RECHECK = 30.0
#: how long a wait for the connection sleeps between looks at the client's state
_STATE_POLL = 1.0


class LeadershipTerm:
    """One uninterrupted period of leadership.

    Attributes:
        identifier: the participant id written in the node (UTF-8).
        node_path: the participant's node (``<path>/_c_<uuid>-latch-0000000007``).
        fencing_token: the node's czxid: strictly increasing from one leader's node to the
            next (a zxid never repeats, even when the container parent is reaped and the
            sequence numbers restart). A resource that remembers the highest token it saw
            and refuses lower ones cannot be written by a replaced leader.
        session_id: the session that owns the node.
        started_at: ``time.monotonic()`` when the term began.
        lost: set once the term is over (never cleared; a later term is a new object).
        lost_reason: why it ended (None while it lasts).
    """

    def __init__(self, node: OwnNode, identifier: str, stat: Stat) -> None:
        self.identifier = identifier
        self.node_path = node.path
        self.fencing_token = stat.czxid
        self.session_id = node.session_id
        self.started_at = time.monotonic()
        self.lost = asyncio.Event()
        self.lost_reason: str | None = None
        self._callbacks: list[Callable[[], object]] = []

    @property
    def is_lost(self) -> bool:
        """True once the term is over."""
        return self.lost.is_set()

    def on_lost(self, fn: Callable[[], object]) -> Callable[[], None]:
        """Call ``fn()`` when the term ends (at once if it has); returns an unregister."""
        if self.lost.is_set():
            fn()
            return lambda: None
        self._callbacks.append(fn)

        def unregister() -> None:
            with contextlib.suppress(ValueError):
                self._callbacks.remove(fn)

        return unregister

    def lose(self, reason: str) -> None:
        """End the term (idempotent); callbacks run synchronously, in order."""
        if self.lost.is_set():
            return
        self.lost_reason = reason
        self.lost.set()
        callbacks, self._callbacks = self._callbacks, []
        for fn in callbacks:
            try:
                fn()
            except Exception:  # a callback must not keep the others from running
                log.exception("leadership-lost callback %r failed", fn)

    def __repr__(self) -> str:
        state = f"lost: {self.lost_reason}" if self.is_lost else "leading"
        return f"<LeadershipTerm {self.node_path} token={self.fencing_token} {state}>"


async def wait_done(tasks: set[asyncio.Future[Any]]) -> None:
    """Wait until every one of ``tasks`` is done, even if the caller is cancelled meanwhile
    (the cancellation is re-raised afterwards): cleanup that must finish before a node is
    deleted cannot be skipped."""
    cancelled = False
    pending = {t for t in tasks if not t.done()}
    while pending:
        try:
            _, pending = await asyncio.wait(pending)
        except asyncio.CancelledError:
            cancelled = True
    for task in tasks:  # mark exceptions retrieved; the owner reads the ones it wants
        if task.done() and not task.cancelled():
            task.exception()
    if cancelled:
        raise asyncio.CancelledError


async def finish_cleanups(tasks: TaskOwner, timeout: float) -> None:
    """Let the cleanups ``tasks`` still runs (deletes, find-and-deletes of abandoned
    creates) finish, up to ``timeout``, then close it: closing at once would cancel them
    and leave nodes behind. The wait goes on even if the caller is cancelled."""
    pending = {t for t in tasks.tasks() if t is not asyncio.current_task()}
    if pending:
        cancelled = False
        try:
            await asyncio.wait(pending, timeout=timeout)
        except asyncio.CancelledError:
            cancelled = True
        if cancelled:
            await tasks.aclose(timeout=1.0)
            raise asyncio.CancelledError
    await tasks.aclose(timeout=1.0)


async def read_participants(zk: AsyncClient, path: str, marker: str) -> list[str]:
    """The ids (node data, UTF-8) of every child of ``path`` in Curator's order: the
    leader first. As Curator's ``getParticipants``, every child counts (strays sort by
    their whole name); a node deleted while we read is left out.

    Raises:
        ConnectionLossError, SessionExpiredError, ClientClosedError, NoAuthError.
    """
    try:
        children: list[str] = await zk.get_children(path)
    except NoNodeError:
        return []
    ordered = sorted_children(children, marker)
    results = await zk.get_many([_paths.join(path, c) for c in ordered])
    out: list[str] = []
    for result in results:
        if isinstance(result, NoNodeError):
            continue
        if isinstance(result, ZooKeeperError):
            raise result
        out.append(result[0].decode("utf-8", errors="replace"))
    return out


class Contender:
    """One place in a leadership queue (see the module docstring).

    ``tasks`` owns the background cleanups (find-and-delete of an abandoned create, the
    delete of a node left behind by a stopped contender).
    """

    def __init__(
        self,
        zk: AsyncClient,
        path: str,
        marker: str,
        identifier: str,
        tasks: TaskOwner,
        *,
        lose_on_suspend: bool = True,
        acl: Sequence[ACL] | None = None,
    ) -> None:
        self._zk = zk
        self.path = path
        self.marker = marker
        self.acl = tuple(acl) if acl is not None else None
        self.identifier = identifier
        self._data = identifier.encode("utf-8")
        self._tasks = tasks
        self.lose_on_suspend = lose_on_suspend
        self.node: OwnNode | None = None
        self.term: LeadershipTerm | None = None
        #: set whenever a node of ours is in the queue (for start() to wait on)
        self.queued = asyncio.Event()
        self._events = SessionEvents(zk)
        self._events.on_change(self._on_state)

    # --- loss detection --------------------------------------------------------------

    def _on_state(self, change: ClientStateChange) -> None:
        if change.state is ClientState.LOST and self.node is not None:
            self._forget(self.node)  # it dies with its session: queue anew on the next
        term = self.term
        if term is None or term.is_lost:
            return
        state = change.state
        if state is ClientState.LOST:
            term.lose("session lost")
        elif state is ClientState.CLOSED:
            term.lose("client closed")
        elif state is ClientState.SUSPENDED and self.lose_on_suspend:
            term.lose("connection suspended")
        elif state is ClientState.READ_ONLY:
            term.lose("connected to a read-only server")
        elif state is ClientState.CONNECTED and change.session_id != term.session_id:
            term.lose("new session")

    def lose(self, reason: str) -> None:
        """End the current term, if any."""
        if self.term is not None:
            self.term.lose(reason)

    @property
    def leading(self) -> bool:
        return self.term is not None and not self.term.is_lost

    # --- waiting ---------------------------------------------------------------------

    async def _until_connected(self) -> None:
        zk = self._zk
        while zk.state is not ClientState.CONNECTED:
            if zk.closed:
                raise ClientClosedError("the client is closed")
            changed = self._events.changed()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_STATE_POLL):
                    await changed.wait()

    async def _first_of(self, *aws: Any, timeout: float | None = _RECHECK) -> set[asyncio.Future[Any]]:
        """Run the awaitables until the first ends (or ``timeout``); the others are
        cancelled and awaited. Returns the finished ones."""
        futures = {asyncio.ensure_future(a) for a in aws}
        try:
            done, _ = await asyncio.wait(futures, timeout=timeout,
                                         return_when=asyncio.FIRST_COMPLETED)
        finally:
            for fut in futures:
                fut.cancel()
            await wait_done(futures)
        return done

    async def _predecessor_gone(self, predecessor: str) -> None:
        """Return once ``predecessor`` changed or is gone, the connection state changed,
        or a while passed: the caller then looks at the queue again.

        Raises:
            NoAuthError and errors that looking again cannot fix.
        """
        changed = self._events.changed()
        stream = self._zk.watch(predecessor, "data")

        async def watch() -> None:
            first = await stream.__anext__()
            if first.exists:
                await stream.__anext__()

        try:
            for fut in await self._first_of(watch(), changed.wait()):
                exc = None if fut.cancelled() else fut.exception()
                if exc is not None and not isinstance(
                    exc, (ConnectionLossError, SessionExpiredError, ClientClosedError,
                          StopAsyncIteration)
                ):
                    raise exc
        finally:
            await stream.aclose()

    async def wait_first(self) -> LeadershipTerm:
        """Queue (creating our node when there is none on this session) and return once
        our node is first, checked, and the client CONNECTED: a new, current term.

        Raises:
            ClientClosedError: the client closed.
            NoAuthError, InvalidACLError: the path cannot be used.
            CancelledError: cancelled (a node being created is cleaned up; a node already
                queued stays, for the owner to :meth:`leave`).
        """
        while True:
            await self._until_connected()
            try:
                term = await self._check_once()
            except (ConnectionLossError, SessionExpiredError):
                continue  # wait for the connection (or the new session) and look again
            if term is not None:
                return term

    async def _check_once(self) -> LeadershipTerm | None:
        zk = self._zk
        node = self.node
        if node is None or node.session_id != zk.session_id:
            # None yet, or the old one died with its session (then the server removed it;
            # deleting it is a no-op that protected_create's cleanup covers anyway).
            self.node = None
            self.queued.clear()
            node = await protected_create(zk, self.path, self.marker, self._data, self._tasks,
                                          acl=self.acl)
            self.node = node
            self.queued.set()
        try:
            children: list[str] = await zk.get_children(self.path)
        except NoNodeError:  # the parent (and so our node) is gone: queue again (CURATOR-724)
            self._forget(node)
            return None
        ordered = sorted_children(children, self.marker)
        if node.name not in ordered:  # deleted under us: queue again
            self._forget(node)
            return None
        index = ordered.index(node.name)
        if index > 0:
            await self._predecessor_gone(_paths.join(self.path, ordered[index - 1]))
            return None
        stat = await zk.exists(node.path)
        if stat is None or stat.ephemeral_owner != node.session_id:
            self._forget(node)  # CURATOR-696: not ours (any more)
            return None
        if zk.state is not ClientState.CONNECTED or zk.session_id != node.session_id:
            return None  # the connection changed while we read: look again
        term = LeadershipTerm(node, self.identifier, stat)
        self.term = term  # set in the same step as the check: no state change in between
        return term

    def _forget(self, node: OwnNode) -> None:
        if self.node is node:
            self.node = None
            self.queued.clear()

    async def hold(self, term: LeadershipTerm) -> None:
        """Return once ``term`` is lost, watching our own node meanwhile (deleted or owned
        by another session ends the term; so does the end of its watch)."""
        stream = self._zk.watch(term.node_path, "data")

        async def watch_own() -> str:
            async for event in stream:
                if not event.exists:
                    return "our node was deleted"
                if event.stat is not None and event.stat.ephemeral_owner != term.session_id:
                    return "our node is owned by another session"
            return "the watch on our node ended"

        try:
            done = await self._first_of(watch_own(), term.lost.wait(), timeout=None)
        finally:
            await stream.aclose()
        for fut in done:
            if fut.cancelled() or term.is_lost:
                continue
            exc = fut.exception()
            if isinstance(exc, SessionExpiredError):
                term.lose("session lost")
            elif isinstance(exc, ClientClosedError):
                term.lose("client closed")
            elif exc is not None:
                term.lose(f"the watch on our node failed: {exc!r}")
            else:
                term.lose(str(fut.result()))
        self.lose("stopped")  # the hold ended however it did: the term is over

    # --- leaving ---------------------------------------------------------------------

    async def leave(self, timeout: float | None = None) -> bool:
        """Delete our node (retried until the server confirms it, the session ends, or
        ``timeout``); the delete goes on in the background if the caller is cancelled.
        Returns True when the node is known to be gone.
        """
        node = self.node
        if node is None:
            return True
        self.node = None
        self.queued.clear()
        if self._tasks.closed:
            return False
        task = self._tasks.spawn(delete_until_gone(self._zk, node), name=f"delete {node.path}")
        # asyncio.wait never cancels what it waits for: a cancelled caller leaves the
        # delete running (owned by ``tasks``)
        done, _ = await asyncio.wait({task}, timeout=timeout)
        if not done:
            log.warning("the node %s is not confirmed deleted after %.1fs; still trying",
                        node.path, timeout or 0.0)
            return False
        return not task.cancelled() and task.exception() is None

    def close(self) -> None:
        """Stop following the client's state (the term, if any, is lost)."""
        self.lose("stopped")
        self._events.close()
