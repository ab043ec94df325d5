"""LeaderLatch: Curator's LeaderLatch layout, with leadership that cancels the leader's work.

Every participant keeps one node ``<path>/_c_<uuid>-latch-<seq10>`` (EPHEMERAL_SEQUENTIAL,
protected, data = the UTF-8 identifier; parents are containers); the first in Curator's
order leads. Java's ``LeaderLatch.getParticipants()`` on the same path lists our ids, and
ours lists theirs.

Connection states (Curator 5.4 with its default ``StandardConnectionStateErrorPolicy``):

* SUSPENDED: leadership is lost at once (``lose_on_suspend=True``, the default, as Curator's
  ``setLeadership(false)`` on SUSPENDED). The node is kept: when the same session comes
  back and our node is still first and still ours, a new term starts (same token). With
  ``lose_on_suspend=False`` (Curator's ``SessionConnectionStateErrorPolicy``) the term
  survives a SUSPENDED connection and ends only at LOST, which zkwarden presumes one session
  timeout after the last server frame (Curator's simulated expiry comes later).
* LOST: leadership is lost; the node died with the session. On the new session the latch
  creates a new node and queues again at the tail.
* Leadership needs a CONNECTED client: a READ_ONLY server (no quorum) ends the term too.

Timing (documented in the issue's note; measured by tests/recipes/test_latch.py): a
leader whose network drops stops at SUSPENDED, about 2/3 of the session timeout after the
last server contact, while the server can expire its session (and let the next leader in)
only after a whole session timeout: the two never overlap by default.

Example::

    latch = LeaderLatch(zk, "/service/leader", identifier="worker-1")
    await latch.start()
    while True:
        try:
            async with latch.leadership() as term:
                await serve_as_leader(term.fencing_token)
        except LeaseLostError:
            continue  # the body was cancelled; wait for the next term
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from types import TracebackType

from .. import paths as _paths
from .._aio.client import AsyncClient
from .._tasks import TaskOwner
from ..errors import (
    ClientClosedError,
    LeaseLostError,
    RecipeError,
    RequestTimeoutError,
    ZooKeeperError,
)
from ..types import ACL
from ._curator import LATCH_MARKER
from ._leadership import Contender, LeadershipTerm, finish_cleanups, read_participants

__all__ = ("LeaderLatch", "LeadershipTerm")

log = logging.getLogger("zkwarden.recipes")


class LeaderLatch:
    """A participant in a Curator-compatible leader latch on ``path``.

    ``identifier`` is written as the node's data (UTF-8; Curator's default id is ``""``).
    Use ``await latch.start()`` / ``await latch.close()`` or ``async with latch:``.
    ``acl`` is the ACL of our node and of the parents we create (default: the client's).

    Raises (constructor):
        InvalidPathError: ``path`` is not a valid absolute path.
    """

    def __init__(
        self,
        zk: AsyncClient,
        path: str,
        identifier: str = "",
        *,
        lose_on_suspend: bool = True,
        acl: Sequence[ACL] | None = None,
    ) -> None:
        self._zk = zk
        self.path = _paths.validate(path)
        self.identifier = identifier
        self.lose_on_suspend = lose_on_suspend
        self.acl = tuple(acl) if acl is not None else None
        self._tasks = TaskOwner(f"latch {path}", log)
        self._contender: Contender | None = None
        self._runner: asyncio.Task[None] | None = None
        self._failure: ZooKeeperError | None = None
        self._closed = False
        self._changed = asyncio.Event()
        self._scopes: set[_Leadership] = set()

    # --- state -----------------------------------------------------------------------

    @property
    def is_leader(self) -> bool:
        """True while we lead (a current, unlost term)."""
        return self._contender is not None and self._contender.leading

    @property
    def term(self) -> LeadershipTerm | None:
        """The current term while we lead, else None."""
        c = self._contender
        return c.term if c is not None and c.leading else None

    @property
    def node_path(self) -> str | None:
        """Our node, while we have one (Curator's ``getOurPath``)."""
        c = self._contender
        return c.node.path if c is not None and c.node is not None else None

    def _notify(self) -> None:
        event, self._changed = self._changed, asyncio.Event()
        event.set()

    def _check_usable(self) -> None:
        if self._failure is not None:
            raise self._failure
        if self._closed:
            raise RecipeError(f"the latch {self.path} is closed")
        if self._contender is None:
            raise RecipeError(f"the latch {self.path} is not started")

    # --- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        """Join the queue; returns once our node is in it (then :meth:`participants`
        lists us). The latch keeps running in the background until :meth:`close`.

        Raises:
            RecipeError: started twice, or closed.
            ClientClosedError: the client closed before we could queue.
            NoAuthError, InvalidACLError: the path cannot be used.
        """
        if self._closed or self._contender is not None:
            raise RecipeError(f"the latch {self.path} was already started")
        contender = Contender(self._zk, self.path, LATCH_MARKER, self.identifier, self._tasks,
                              lose_on_suspend=self.lose_on_suspend, acl=self.acl)
        self._contender = contender
        runner = self._tasks.spawn(self._run(contender), name="queue")
        self._runner = runner
        queued = asyncio.ensure_future(contender.queued.wait())
        try:
            await asyncio.wait({queued, runner}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            queued.cancel()
        if not contender.queued.is_set():
            self._check_usable()
            raise ClientClosedError("the client closed before the latch could queue")

    async def _run(self, contender: Contender) -> None:
        try:
            while True:
                term = await contender.wait_first()
                term.on_lost(self._notify)
                log.debug("latch %s: leader (%r)", self.path, term)
                self._notify()
                await contender.hold(term)
                log.debug("latch %s: leadership lost: %s", self.path, term.lost_reason)
        except ClientClosedError:
            pass
        except ZooKeeperError as exc:
            log.error("latch %s stopped: %r", self.path, exc)
            self._failure = exc
        finally:
            contender.lose("latch stopped")
            self._notify()

    async def close(self, timeout: float = 10.0) -> None:
        """Leave the election: the current term (if any) is lost and its
        :meth:`leadership` bodies are cancelled and awaited (up to ``timeout``) BEFORE our
        node is deleted, so a successor never starts while they still run. The delete is
        retried until confirmed (or ``timeout``; then it goes on in the background until
        the session ends). Idempotent; never raises but CancelledError.
        """
        if self._closed:
            return
        self._closed = True
        contender, runner = self._contender, self._runner
        if contender is None or runner is None:
            await self._tasks.aclose()
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        contender.lose("latch closed")
        runner.cancel()
        await asyncio.wait({runner}, timeout=timeout)
        current = asyncio.current_task()
        exits = [asyncio.ensure_future(s.exited.wait()) for s in self._scopes
                 if s.task is not current]
        if exits:
            _, pending = await asyncio.wait(exits, timeout=max(0.0, deadline - loop.time()))
            for fut in pending:
                fut.cancel()
            if pending:
                log.warning("latch %s: %d leadership bodies still running after %.1fs; "
                            "leaving anyway", self.path, len(pending), timeout)
        await contender.leave(timeout=max(0.1, deadline - loop.time()))
        contender.close()
        await finish_cleanups(self._tasks, max(0.1, deadline - loop.time()))
        self._notify()

    async def __aenter__(self) -> LeaderLatch:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # --- waiting for leadership ------------------------------------------------------

    async def _wait_term(self, timeout: float | None) -> LeadershipTerm:
        try:
            async with asyncio.timeout(timeout):
                while True:
                    changed = self._changed
                    self._check_usable()
                    term = self.term
                    if term is not None:
                        return term
                    await changed.wait()
        except TimeoutError:
            raise RequestTimeoutError(
                f"not the leader of {self.path} within {timeout}s"
            ) from None

    async def wait_leader(self, timeout: float | None = None) -> bool:
        """Wait until we lead; False if ``timeout`` passed first (we stay queued).

        Raises:
            RecipeError: the latch is not started, or closed.
            NoAuthError and other errors that stopped the latch.
        """
        try:
            await self._wait_term(timeout)
        except RequestTimeoutError:
            return False
        return True

    def leadership(self, timeout: float | None = None) -> _Leadership:
        """``async with latch.leadership() as term:``: wait until we lead, then run the
        body while we do. The moment the term is lost the body is cancelled, and
        LeaseLostError is raised out of the ``async with`` (instead of the
        CancelledError). A body that ends by itself does not give leadership up.

        Raises (from ``async with``):
            LeaseLostError: leadership was lost while the body ran.
            RequestTimeoutError: not the leader within ``timeout``.
            RecipeError: the latch is not started, or closed.
        """
        return _Leadership(self, timeout)

    # --- observing -------------------------------------------------------------------

    async def participants(self) -> list[str]:
        """Every participant's identifier in queue order, the leader first (Curator's
        ``getParticipants``; works without :meth:`start`).

        Raises:
            ConnectionLossError, SessionExpiredError, ClientClosedError, NoAuthError.
        """
        return await read_participants(self._zk, self.path, LATCH_MARKER)

    async def leader(self) -> str | None:
        """The leader's identifier, or None when nobody is queued.

        Raises:
            ConnectionLossError, SessionExpiredError, ClientClosedError, NoAuthError.
        """
        ids = await self.participants()
        return ids[0] if ids else None

    def __repr__(self) -> str:
        state = "leader" if self.is_leader else ("closed" if self._closed else "follower")
        return f"<LeaderLatch {self.path} id={self.identifier!r} {state}>"


class _Leadership:
    """The ``async with`` of :meth:`LeaderLatch.leadership` (cancels the entering task's
    body when the term is lost, as ``asyncio.timeout`` cancels on expiry)."""

    def __init__(self, latch: LeaderLatch, timeout: float | None) -> None:
        self._latch = latch
        self._timeout = timeout
        self.task: asyncio.Task[object] | None = None
        self.term: LeadershipTerm | None = None
        self.exited = asyncio.Event()
        self._cancelled = False
        self._unregister: object = None

    async def __aenter__(self) -> LeadershipTerm:
        if self.task is not None:
            raise RecipeError("a leadership() context cannot be entered twice")
        term = await self._latch._wait_term(self._timeout)
        task = asyncio.current_task()
        if task is None:  # pragma: no cover - an async with always runs in a task
            raise RecipeError("leadership() needs a task")
        self.task, self.term = task, term
        self._latch._scopes.add(self)
        self._unregister = term.on_lost(self._cancel)
        return term

    def _cancel(self) -> None:
        # close() called from inside the body must not cancel the caller of close().
        if self.task is None or self.task is asyncio.current_task() or self.exited.is_set():
            return
        self._cancelled = True
        self.task.cancel()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.exited.set()
        self._latch._scopes.discard(self)
        if callable(self._unregister):
            self._unregister()
        if not self._cancelled or self.task is None:
            return
        reason = self.term.lost_reason if self.term is not None else None
        others = self.task.uncancel()
        if exc_type is None or (issubclass(exc_type, asyncio.CancelledError) and others == 0):
            raise LeaseLostError(
                f"leadership of {self._latch.path} lost: {reason}"
            ) from exc
