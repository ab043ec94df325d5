"""LeaderElection: Curator's LeaderSelector layout, with a leader that is cancelled on loss.

A LeaderSelector is an InterProcessMutex on the election path, so each attempt creates
``<path>/_c_<uuid>-lock-<seq10>`` (EPHEMERAL_SEQUENTIAL, protected, data = the UTF-8
identifier; parents are containers); the first in Curator's order leads. Java
LeaderSelectors and zkwarden elections on one path take turns, and
``LeaderSelector.getParticipants()`` lists our ids.

``await election.run(lead)`` calls ``await lead(term)`` each time we are elected. The call
is cancelled the moment leadership is lost (LOST; SUSPENDED unless
``lose_on_suspend=False``, as ``LeaderSelectorListenerAdapter`` does with Curator's default
error policy; our node deleted; a READ_ONLY server). When ``lead`` ends, however it ends,
it is awaited to the end FIRST and only then is our node deleted (retried until
confirmed), so the next leader never starts while it still runs; then we queue again at the
tail with a new node.

``requeue=True`` (the default) is Curator's ``autoRequeue()``: the issue's contract is "then
we queue again (unless stopped)", which is what a long-running service wants from an
election (kazoo's ``Election.run`` and Curator without autoRequeue lead once).
``requeue=False`` leads once: ``run`` returns when ``lead`` returns and raises
LeaseLostError if leadership was lost first.

Unlike Curator (whose adapter interrupts waiting participants too, so they give their
place up on every SUSPENDED), a participant still waiting keeps its place through a
SUSPENDED connection: nothing is deleted, and the queue is read again on reconnect.

Note for the lead: the queue is :class:`~zkwarden.recipes._leadership.Contender`, which
duplicates the single-lease wait loop of ``lock.py`` (see that module's docstring).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

from .. import paths as _paths
from .._aio.client import AsyncClient
from .._tasks import TaskOwner
from ..errors import LeaseLostError, RecipeError
from ..types import ACL
from ._curator import LOCK_MARKER
from ._leadership import (
    Contender,
    LeadershipTerm,
    finish_cleanups,
    read_participants,
    wait_done,
)

__all__ = ("LeaderElection", "LeadershipTerm")

log = logging.getLogger("zkwarden.recipes")

Lead = Callable[[LeadershipTerm], Awaitable[object]]


class LeaderElection:
    """A participant in a Curator LeaderSelector-compatible election on ``path``.

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
        requeue: bool = True,
        lose_on_suspend: bool = True,
        acl: Sequence[ACL] | None = None,
    ) -> None:
        self._zk = zk
        self.path = _paths.validate(path)
        self.identifier = identifier
        self.requeue = requeue
        self.lose_on_suspend = lose_on_suspend
        self.acl = tuple(acl) if acl is not None else None
        self._runner: asyncio.Task[None] | None = None
        self._contender: Contender | None = None
        self._stopping = False
        #: how many times ``lead`` was called (for tests and metrics)
        self.terms = 0

    @property
    def is_leader(self) -> bool:
        """True while a term of ours lasts."""
        return self._contender is not None and self._contender.leading

    @property
    def term(self) -> LeadershipTerm | None:
        """The current term while we lead, else None."""
        c = self._contender
        return c.term if c is not None and c.leading else None

    @property
    def node_path(self) -> str | None:
        """Our node while we are queued or leading."""
        c = self._contender
        return c.node.path if c is not None and c.node is not None else None

    async def run(self, lead: Lead) -> None:
        """Take part until stopped: ``await lead(term)`` each time we are elected.

        Returns when :meth:`stop` / :meth:`close` is called (or, with ``requeue=False``,
        when ``lead`` returns). Cancelling ``run`` cancels ``lead``, waits for it, and
        deletes our node before the CancelledError propagates.

        Raises:
            RecipeError: ``run`` is already running on this object.
            LeaseLostError: with ``requeue=False``, leadership was lost during ``lead``.
            Exception: whatever ``lead`` raised (not because leadership was lost); our
                node is deleted first.
            ClientClosedError: the client closed.
            NoAuthError, InvalidACLError: the path cannot be used.
        """
        if self._runner is not None:
            raise RecipeError(f"the election {self.path} is already running")
        self._stopping = False
        runner = asyncio.ensure_future(self._loop(lead))
        self._runner = runner
        try:
            await runner  # cancelling run() cancels the runner and waits for its cleanup
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if self._stopping and (task is None or task.cancelling() == 0):
                return  # stop(): a normal end
            raise
        finally:
            self._runner = None

    async def _loop(self, lead: Lead) -> None:
        tasks = TaskOwner(f"election {self.path}", log)
        contender = Contender(self._zk, self.path, LOCK_MARKER, self.identifier, tasks,
                              lose_on_suspend=self.lose_on_suspend, acl=self.acl)
        self._contender = contender
        try:
            while True:
                term = await contender.wait_first()
                log.debug("election %s: elected (%r)", self.path, term)
                lost = await self._lead(contender, term, lead)
                await contender.leave()  # only once lead has ended
                if not self.requeue:
                    if lost:
                        raise LeaseLostError(
                            f"leadership of {self.path} lost: {term.lost_reason}"
                        )
                    return
        finally:
            contender.lose("election stopped")
            try:
                await contender.leave()
            finally:
                contender.close()
                await finish_cleanups(tasks, self._cleanup_timeout())

    async def _lead(self, contender: Contender, term: LeadershipTerm, lead: Lead) -> bool:
        """Run one term; True if leadership was lost (rather than ``lead`` returning)."""
        self.terms += 1
        lead_task = asyncio.ensure_future(lead(term))
        unregister = term.on_lost(lead_task.cancel)  # the moment it is lost, on the loop
        hold = asyncio.ensure_future(contender.hold(term))
        try:
            await asyncio.wait({lead_task, hold}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            unregister()
            was_lost = term.is_lost
            lead_task.cancel()
            term.lose("leadership released")  # ends hold()
            await wait_done({lead_task, hold})  # lead has stopped before anyone else starts
        if lead_task.cancelled():
            return True
        exc = lead_task.exception()
        if exc is not None:
            if was_lost:
                log.warning("election %s: lead raised %r after leadership was lost",
                            self.path, exc)
                return True
            raise exc
        return was_lost

    def _cleanup_timeout(self) -> float:
        # an abandoned create's find-and-delete needs the connection back at worst; past a
        # session timeout the session (and its ephemeral node) is gone anyway
        return 2.0 * (self._zk.negotiated_timeout or 10.0)

    def stop(self) -> None:
        """Stop taking part: a running ``lead`` is cancelled, our node is deleted, and
        :meth:`run` returns. Idempotent; a no-op when not running."""
        runner = self._runner
        if runner is None or runner.done():
            return
        self._stopping = True
        runner.cancel()

    async def close(self, timeout: float = 10.0) -> None:
        """:meth:`stop`, then wait (up to ``timeout``) until :meth:`run` has cleaned up.
        Never raises but CancelledError."""
        runner = self._runner
        self.stop()
        if runner is not None and not runner.done():
            await asyncio.wait({runner}, timeout=timeout)

    async def participants(self) -> list[str]:
        """Every participant's identifier in queue order, the leader first (Curator's
        ``LeaderSelector.getParticipants``).

        Raises:
            ConnectionLossError, SessionExpiredError, ClientClosedError, NoAuthError.
        """
        return await read_participants(self._zk, self.path, LOCK_MARKER)

    async def leader(self) -> str | None:
        """The leader's identifier, or None when nobody is queued.

        Raises:
            ConnectionLossError, SessionExpiredError, ClientClosedError, NoAuthError.
        """
        ids = await self.participants()
        return ids[0] if ids else None

    def __repr__(self) -> str:
        state = "leader" if self.is_leader else ("running" if self._runner else "idle")
        return f"<LeaderElection {self.path} id={self.identifier!r} {state}>"
