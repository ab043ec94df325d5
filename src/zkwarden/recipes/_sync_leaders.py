"""Blocking twins of :class:`LeaderLatch` and :class:`LeaderElection`.

A blocking leader body cannot be cancelled from outside (a thread cannot be interrupted
safely), so loss is **signalled** instead of enforced:

* every term has ``term.lost``, a real :class:`threading.Event` set on the loop thread the
  moment leadership is lost (SUSPENDED by default, LOST, our node deleted, a read-only
  server, close). The body must check it often (``term.lost.is_set()``), or sleep with
  ``term.lost.wait(seconds)`` instead of ``time.sleep``, and stop its leader-only work at
  once when it is set;
* ``with latch.leadership() as term:`` raises LeaseLostError at its exit when the term was
  lost while the body ran (the body's own exception, if any, propagates instead);
* ``election.run(lead)`` calls ``lead(term)`` on the calling thread; when leadership is
  lost, ``term.lost`` is set and the election waits for ``lead`` to return before our
  node is deleted (so a successor never starts while ``lead`` still runs, unless the
  session itself is gone, when the server already removed the node).

How long a body that does check ``term.lost`` may overlap a successor: not at all with
the defaults (``lose_on_suspend=True``): the term ends at SUSPENDED, about 2/3 of the
session timeout after the last server contact, while the server can give the lead away
only after a whole session timeout. A body that checks every ``p`` seconds keeps that
margin as long as ``p`` < 1/3 of the session timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from ..errors import ClientClosedError, LeaseLostError, RecipeError, RequestTimeoutError
from ..sync.client import Client
from ..types import ACL
from ._leadership import LeadershipTerm as AsyncTerm
from ._sync_base import SyncRecipe, build_on_loop
from .election import LeaderElection as AsyncElection
from .latch import LeaderLatch as AsyncLatch

__all__ = ("LeadershipTerm", "LeaderLatch", "LeaderElection")

#: extra time a blocking close() gives the loop beyond the async close's own bound
_CLOSE_GRACE = 2.0


class LeadershipTerm:
    """One period of leadership, for a blocking body.

    Attributes:
        identifier, node_path, fencing_token, session_id, started_at: as the async term
            (the fencing token is our node's czxid, strictly increasing across leaders).
        lost: a :class:`threading.Event`, set the moment the term ends. Check it.
    """

    def __init__(self, term: AsyncTerm) -> None:
        self._term = term
        self.identifier = term.identifier
        self.node_path = term.node_path
        self.fencing_token = term.fencing_token
        self.session_id = term.session_id
        self.started_at = term.started_at
        self.lost = threading.Event()
        #: monotonic time the loss was noticed on the loop (None while leading)
        self.lost_at: float | None = None
        self._unregister = term.on_lost(self._on_lost)  # on the loop thread

    def _on_lost(self) -> None:
        self.lost_at = time.monotonic()
        self.lost.set()

    @property
    def is_lost(self) -> bool:
        """True once the term is over."""
        return self.lost.is_set()

    @property
    def lost_reason(self) -> str | None:
        """Why the term ended (None while it lasts)."""
        return self._term.lost_reason

    def __repr__(self) -> str:
        state = f"lost: {self.lost_reason}" if self.is_lost else "leading"
        return f"<LeadershipTerm {self.node_path} token={self.fencing_token} {state}>"


async def _claim(latch: AsyncLatch, timeout: float | None) -> LeadershipTerm:
    """Wait until the latch leads and wrap the current term (atomically on the loop)."""
    loop = asyncio.get_running_loop()
    deadline = None if timeout is None else loop.time() + timeout
    while True:
        remaining = None if deadline is None else max(0.0, deadline - loop.time())
        if not await latch.wait_leader(remaining):
            raise RequestTimeoutError(f"not the leader of {latch.path} within {timeout}s")
        term = latch.term
        if term is not None:
            return LeadershipTerm(term)


class LeaderLatch(SyncRecipe):
    """Blocking twin of :class:`zkwarden.recipes.latch.LeaderLatch` (Curator LeaderLatch
    layout)::

        latch = LeaderLatch(zk, "/service/leader", identifier="worker-1")
        latch.start()
        with latch.leadership() as term:
            while not term.lost.is_set():
                do_one_step(term.fencing_token)
                term.lost.wait(0.5)

    ``acl``: as the async latch's.

    Raises (constructor):
        InvalidPathError: ``path`` is not a valid absolute path.
        ClientClosedError: the client is not started.
    """

    def __init__(self, zk: Client, path: str, identifier: str = "", *,
                 lose_on_suspend: bool = True, acl: Sequence[ACL] | None = None) -> None:
        self._zk = zk
        self._aio = build_on_loop(zk, lambda: AsyncLatch(
            zk.async_client, path, identifier, lose_on_suspend=lose_on_suspend, acl=acl))
        self.path = self._aio.path
        self.identifier = identifier
        self.lose_on_suspend = lose_on_suspend
        self._guard = threading.Lock()
        self._bodies: dict[int, LeadershipTerm] = {}  # thread id -> term of a running body
        self._bodies_done = threading.Condition(self._guard)

    # --- state -------------------------------------------------------------------------

    @property
    def is_leader(self) -> bool:
        """True while we lead."""
        return self._aio.is_leader

    @property
    def node_path(self) -> str | None:
        """Our node, while we have one."""
        return self._aio.node_path

    # --- lifecycle ---------------------------------------------------------------------

    def start(self, timeout: float | None = None) -> None:
        """Join the queue; returns once our node is in it.

        Raises:
            RequestTimeoutError: not queued within ``timeout`` (the latch keeps trying in
                the background: :meth:`close` it).
            RecipeError: started twice, or closed.
            ClientClosedError, NoAuthError, InvalidACLError.
        """
        self._run(self._aio.start(), timeout)

    def close(self, timeout: float = 10.0) -> None:
        """Leave the election. Running :meth:`leadership` bodies are told first
        (``term.lost`` is set) and waited for, up to ``timeout``, BEFORE our node is
        deleted, so a successor never starts while they still run. Idempotent; never
        raises (a body on the calling thread itself is not waited for)."""
        deadline = time.monotonic() + timeout
        me = threading.get_ident()
        with self._guard:
            for term in self._bodies.values():
                term.lost.set()  # the body stops; the node is still ours meanwhile
            while any(tid != me for tid in self._bodies):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._bodies_done.wait(remaining)
        remaining = max(0.1, deadline - time.monotonic())
        with contextlib.suppress(ClientClosedError, RequestTimeoutError):
            self._run(self._aio.close(remaining), remaining + _CLOSE_GRACE)

    def __enter__(self) -> LeaderLatch:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- leadership --------------------------------------------------------------------

    def wait_leader(self, timeout: float | None = None) -> bool:
        """Wait until we lead; False if ``timeout`` passed first (we stay queued).

        Raises:
            RecipeError: not started, or closed.
            ClientClosedError, NoAuthError and other errors that stopped the latch.
        """
        return self._run(self._aio.wait_leader(timeout))

    @contextlib.contextmanager
    def leadership(self, timeout: float | None = None) -> Iterator[LeadershipTerm]:
        """``with latch.leadership() as term:``: wait until we lead, then run the body.

        The body is NOT cancelled when leadership is lost (a thread cannot be): ``term.lost``
        (a threading.Event) is set at that moment, and the body must check it and stop.
        If the term was lost before the body ended, LeaseLostError is raised at the exit
        of the ``with`` (unless the body raised an exception of its own). A body that ends
        by itself does not give leadership up.

        Raises:
            LeaseLostError: leadership was lost while the body ran.
            RequestTimeoutError: not the leader within ``timeout``.
            RecipeError: not started, or closed.
        """
        term = self._run(_claim(self._aio, timeout))
        me = threading.get_ident()
        with self._guard:
            if me in self._bodies:
                raise RecipeError("leadership() is already entered on this thread")
            self._bodies[me] = term
        try:
            yield term
        finally:
            with self._guard:
                del self._bodies[me]
                self._bodies_done.notify_all()
        if term.lost.is_set():
            raise LeaseLostError(f"leadership of {self.path} lost: {term.lost_reason}")

    # --- observing ---------------------------------------------------------------------

    def participants(self, timeout: float | None = None) -> list[str]:
        """Every participant's identifier in queue order, the leader first.

        Raises:
            RequestTimeoutError, ConnectionLossError, SessionExpiredError,
            ClientClosedError, NoAuthError.
        """
        return self._run(self._aio.participants(), timeout)

    def leader(self, timeout: float | None = None) -> str | None:
        """The leader's identifier, or None when nobody is queued.

        Raises:
            RequestTimeoutError, ConnectionLossError, SessionExpiredError,
            ClientClosedError, NoAuthError.
        """
        return self._run(self._aio.leader(), timeout)

    def __repr__(self) -> str:
        return repr(self._aio).replace("<LeaderLatch", "<LeaderLatch (blocking)")


_END = object()


class LeaderElection(SyncRecipe):
    """Blocking twin of :class:`zkwarden.recipes.election.LeaderElection` (Curator
    LeaderSelector layout). ``election.run(lead)`` calls ``lead(term)`` **on the calling
    thread** each time we are elected; leadership loss sets ``term.lost`` (a
    threading.Event) and ``lead`` must return soon after: our node is deleted (and the
    next leader can start) only once it has. ``stop()`` (from any thread, ``lead``
    included) ends ``run``. ``acl``: as the async election's.

    Raises (constructor):
        InvalidPathError: ``path`` is not a valid absolute path.
        ClientClosedError: the client is not started.
    """

    def __init__(self, zk: Client, path: str, identifier: str = "", *, requeue: bool = True,
                 lose_on_suspend: bool = True, acl: Sequence[ACL] | None = None) -> None:
        self._zk = zk
        self._aio = build_on_loop(zk, lambda: AsyncElection(
            zk.async_client, path, identifier, requeue=requeue,
            lose_on_suspend=lose_on_suspend, acl=acl))
        self.path = self._aio.path
        self.identifier = identifier
        self.requeue = requeue
        self.lose_on_suspend = lose_on_suspend
        self._runner: asyncio.Task[None] | None = None
        self._thread: int | None = None
        self._ended = threading.Event()

    @property
    def is_leader(self) -> bool:
        """True while a term of ours lasts."""
        return self._aio.is_leader

    @property
    def terms(self) -> int:
        """How many times ``lead`` was called."""
        return self._aio.terms

    @property
    def node_path(self) -> str | None:
        """Our node while we are queued or leading."""
        return self._aio.node_path

    def run(self, lead: Callable[[LeadershipTerm], object]) -> None:
        """Take part until stopped, calling ``lead(term)`` on this thread when elected.

        Returns after :meth:`stop` / :meth:`close` (or, with ``requeue=False``, after
        ``lead`` returned once). A KeyboardInterrupt while waiting stops the election
        (our node is deleted) and propagates.

        Raises:
            RecipeError: ``run`` is already running on this object.
            LeaseLostError: with ``requeue=False``, leadership was lost during ``lead``.
            Exception: whatever ``lead`` raised (not because leadership was lost); our
                node is deleted first.
            ClientClosedError, NoAuthError, InvalidACLError.
        """
        handoff: queue.SimpleQueue[Any] = queue.SimpleQueue()

        async def adapter(term: AsyncTerm) -> None:  # on the loop: hand over, wait
            done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            handoff.put((LeadershipTerm(term), done))
            cancelled = False
            while not done.done():  # lead must have returned before the node goes
                try:
                    await asyncio.shield(done)
                except asyncio.CancelledError:
                    cancelled = True
                except Exception:
                    break
            if cancelled:
                raise asyncio.CancelledError
            done.result()

        async def begin() -> asyncio.Task[None]:
            if self._runner is not None:
                raise RecipeError(f"the election {self.path} is already running")
            task = asyncio.ensure_future(self._aio.run(adapter))
            task.add_done_callback(lambda _t: handoff.put(_END))
            self._runner = task
            return task

        self._ended.clear()
        task = self._run(begin())
        self._thread = threading.get_ident()
        try:
            while True:
                item = handoff.get()
                if item is _END:
                    break
                term, done = item
                try:
                    lead(term)
                except BaseException as exc:
                    self._run(_settle(done, exc))
                    if not isinstance(exc, Exception):
                        raise  # KeyboardInterrupt, SystemExit: stopped in finally
                else:
                    self._run(_settle(done, None))
            self._run(_outcome(task))
        except BaseException:
            self.stop()
            with contextlib.suppress(ClientClosedError, RequestTimeoutError, Exception):
                self._run(_finished(task), timeout=self._cleanup_bound())
            raise
        finally:
            self._thread = None
            self._runner = None
            self._ended.set()

    def _cleanup_bound(self) -> float:
        return 2.0 * (self._zk.negotiated_timeout or 10.0) + _CLOSE_GRACE

    def stop(self) -> None:
        """Stop taking part (from any thread, ``lead`` included): ``term.lost`` is set,
        our node is deleted once ``lead`` returned, and :meth:`run` returns. Idempotent;
        never raises."""

        async def stop() -> None:
            self._aio.stop()

        with contextlib.suppress(ClientClosedError, RequestTimeoutError):
            self._run(stop(), _CLOSE_GRACE)

    def close(self, timeout: float = 10.0) -> None:
        """:meth:`stop`, then wait (up to ``timeout``) until :meth:`run` has cleaned up
        (not when called from ``lead`` itself: that would wait for itself). Never raises."""
        self.stop()
        if self._thread is not None and self._thread != threading.get_ident():
            self._ended.wait(timeout)

    def participants(self, timeout: float | None = None) -> list[str]:
        """Every participant's identifier in queue order, the leader first.

        Raises:
            RequestTimeoutError, ConnectionLossError, SessionExpiredError,
            ClientClosedError, NoAuthError.
        """
        return self._run(self._aio.participants(), timeout)

    def leader(self, timeout: float | None = None) -> str | None:
        """The leader's identifier, or None when nobody is queued.

        Raises:
            RequestTimeoutError, ConnectionLossError, SessionExpiredError,
            ClientClosedError, NoAuthError.
        """
        return self._run(self._aio.leader(), timeout)

    def __repr__(self) -> str:
        return repr(self._aio).replace("<LeaderElection", "<LeaderElection (blocking)")


async def _settle(done: asyncio.Future[None], exc: BaseException | None) -> None:
    if done.done():
        return
    if exc is None or not isinstance(exc, Exception):
        done.set_result(None)
    else:
        done.set_exception(exc)


async def _outcome(task: asyncio.Task[None]) -> None:
    await task


async def _finished(task: asyncio.Task[None]) -> None:
    await asyncio.wait({task})
