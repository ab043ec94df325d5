"""What a holder gets: a :class:`Lease` on one node, watched for as long as it is held.

A lease follows DESIGN section 4 for holders: SUSPENDED makes the hold *uncertain* (nothing
is deleted; the node may well still be ours), LOST or a node found gone makes it *lost*, and
a reconnect within the same session re-checks that the node exists and is owned by our
session before the hold is trusted again. A holder's own node is watched (getData), which
also serves Curator's cooperative revocation: ``setData(node, b"__REVOKE__")`` by anyone
sets :attr:`Lease.revoked` and calls the recipe's ``on_revoke`` callback.

Fencing: :attr:`Lease.fencing_token` is the node's czxid (from the create2 reply), which
grows strictly from one holder to the next, whatever the sequence numbers do when a
container parent is reaped and re-created. A resource that stores the highest token it
has seen and refuses writes with a lower one cannot be written by a holder that has been
replaced. For state kept in ZooKeeper itself, :meth:`Lease.transaction` runs a transaction
whose first operation is ``check(node_path, -1)``: it applies only while the lock node
exists, atomically.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from .._aio.client import AsyncClient
from .._tasks import TaskOwner
from ..errors import (
    ClientClosedError,
    ConnectionLossError,
    LeaseLostError,
    SessionExpiredError,
    TransactionError,
    ZooKeeperError,
)
from ..types import ACL, ClientState, ClientStateChange
from ._curator import REVOKE
from ._nodes import OwnNode
from ._session import SessionEvents

__all__ = ("Lease", "GuardedTransaction")

log = logging.getLogger("zkwarden.recipes")


class Lease:
    """One hold of a lock or semaphore: its node, its fencing token and its state.

    Attributes:
        node_path: the lock node (``.../_c_<uuid>-lock-0000000007``).
        fencing_token: the node's czxid, strictly increasing across holders.
        session_id: the session that owns the node.
        lost: set when the hold is gone for sure (LOST, the node vanished or is not
            owned by our session, the client closed). Never cleared.
        uncertain: set while the connection is SUSPENDED (the hold may or may not still
            be valid); cleared once a reconnect proved the node is still ours.
        revoked: set when someone asked the holder to give the lock up (Curator's
            ``__REVOKE__``); the holder decides whether to release.
        released: set once the release is confirmed (the node is gone).
    """

    def __init__(
        self,
        zk: AsyncClient,
        node: OwnNode,
        release: Callable[[Lease], Awaitable[None]],
        on_revoke: Callable[[Lease], object] | None = None,
    ) -> None:
        self._zk = zk
        self.node = node
        self.node_path = node.path
        self.fencing_token = node.stat.czxid
        self.session_id = node.session_id
        self.lost = asyncio.Event()
        self.uncertain = asyncio.Event()
        self.revoked = asyncio.Event()
        self.released = asyncio.Event()
        self.lost_reason: str | None = None
        self._release = release
        self._on_revoke = on_revoke
        self._tasks = TaskOwner(f"lease {node.path}", log)
        self._events: SessionEvents | None = None

    def __repr__(self) -> str:
        state = ("released" if self.released.is_set() else "lost" if self.lost.is_set()
                 else "uncertain" if self.uncertain.is_set() else "held")
        return f"<Lease {self.node_path} token={self.fencing_token:#x} {state}>"

    @property
    def held(self) -> bool:
        """True while the hold is believed valid (not lost, not released, not uncertain)."""
        return not (self.lost.is_set() or self.released.is_set() or self.uncertain.is_set())

    async def release(self) -> None:
        """Give the hold up: the node is deleted, retried until the server confirms it (or
        the session that owned it has ended). Idempotent.

        Raises:
            NoAuthError and other errors a retry cannot fix; CancelledError (the delete
            then goes on in the background, and ``released`` is set once it is done).
        """
        await self._release(self)

    def transaction(self) -> GuardedTransaction:
        """A transaction that applies only while this lease's node exists (fencing).

        Raises:
            LeaseLostError: already lost or released.
        """
        if self.lost.is_set() or self.released.is_set():
            raise LeaseLostError(f"the lease on {self.node_path} is {self._gone_word()}")
        return GuardedTransaction(self)

    #: ``async with lease.guarded() as t: t.set(...)``: the same as :meth:`transaction`.
    guarded = transaction

    def _gone_word(self) -> str:
        return "released" if self.released.is_set() else f"lost ({self.lost_reason})"

    # --- monitoring ---------------------------------------------------------------------

    def _start(self) -> None:
        """Begin watching the node and the session (called by the recipe once held)."""
        events = self._events = SessionEvents(self._zk)
        events.on_change(self._on_state)
        self._tasks.spawn(self._watch_node(), name="watch own node")

    async def _stop(self) -> None:
        if self._events is not None:
            self._events.close()
        await self._tasks.aclose()

    def _lose(self, reason: str) -> None:
        if self.lost.is_set() or self.released.is_set():
            return
        self.lost_reason = reason
        self.uncertain.clear()
        self.lost.set()
        log.warning("lease on %s lost: %s", self.node_path, reason)

    def _on_state(self, change: ClientStateChange) -> None:
        if change.state is ClientState.SUSPENDED:
            self.uncertain.set()
        elif change.state in (ClientState.LOST, ClientState.CLOSED):
            self._lose(f"session {change.state.value}")
        elif change.state in (ClientState.CONNECTED, ClientState.READ_ONLY):
            if change.new_session or change.session_id != self.session_id:
                self._lose("a new session replaced the one that owned the node")
            elif self.uncertain.is_set() and not self._tasks.closed:
                self._tasks.spawn(self._verify(), name="verify after reconnect")

    async def _verify(self) -> None:
        """After a reconnect in the same session: the node must exist and be ours."""
        while not self.lost.is_set():
            try:
                stat = await self._zk.exists(self.node_path)
            except ConnectionLossError:
                return  # the next reconnect checks again
            except (SessionExpiredError, ClientClosedError) as exc:
                self._lose(type(exc).__name__)
                return
            if stat is None or stat.ephemeral_owner != self.session_id:
                self._lose("the node is gone or not owned by our session")
            elif self._zk.state is ClientState.CONNECTED:
                self.uncertain.clear()
            return

    async def _watch_node(self) -> None:
        stream = self._zk.watch(self.node_path, "data")
        try:
            async for event in stream:
                if event.stat is None or event.stat.ephemeral_owner != self.session_id:
                    self._lose("the node is gone or not owned by our session")
                    return
                if event.data == REVOKE and not self.revoked.is_set():
                    self.revoked.set()
                    if self._on_revoke is not None:
                        try:
                            self._on_revoke(self)
                        except Exception:
                            log.exception("on_revoke callback for %s failed", self.node_path)
        except (SessionExpiredError, ClientClosedError) as exc:
            self._lose(type(exc).__name__)
        except ZooKeeperError as exc:  # NoAuth and the like: the node can no longer be watched
            log.warning("cannot watch %s: %s", self.node_path, exc)
        finally:
            await stream.aclose()


class GuardedTransaction:
    """A transaction whose first operation is ``check(lock node, -1)``.

    Build it as a :class:`zkwarden.Transaction` (create / set / delete / check return the
    transaction). ``commit()`` returns the results of the caller's operations only.
    """

    def __init__(self, lease: Lease) -> None:
        self._lease = lease
        self._txn = lease._zk.transaction().check(lease.node_path, -1)

    def create(self, path: str, data: bytes = b"", *, ephemeral: bool = False,
               sequence: bool = False, container: bool = False, ttl: float | None = None,
               acl: list[ACL] | None = None) -> GuardedTransaction:
        """Add a create (see ``Transaction.create``)."""
        self._txn.create(path, data, ephemeral=ephemeral, sequence=sequence,
                         container=container, ttl=ttl, acl=acl)
        return self

    def set(self, path: str, data: bytes, version: int = -1) -> GuardedTransaction:
        """Add a setData."""
        self._txn.set(path, data, version)
        return self

    def delete(self, path: str, version: int = -1) -> GuardedTransaction:
        """Add a delete."""
        self._txn.delete(path, version)
        return self

    def check(self, path: str, version: int) -> GuardedTransaction:
        """Add a version check."""
        self._txn.check(path, version)
        return self

    async def commit(self) -> list[Any]:
        """Commit atomically; the results of the added operations (the guard's is left out).

        Raises:
            LeaseLostError: the lock node is gone (nothing was applied; the lease is
                marked lost).
            TransactionError: another operation failed (nothing was applied).
            ConnectionLossError, SessionExpiredError, ClientClosedError.
        """
        try:
            results = await self._txn.commit()
        except TransactionError as exc:
            if exc.failed_index == 0:
                self._lease._lose("the lock node is gone (guarded transaction)")
                raise LeaseLostError(
                    f"the lock node {self._lease.node_path} is gone: nothing applied"
                ) from exc
            raise
        return results[1:]

    async def __aenter__(self) -> GuardedTransaction:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, *rest: object) -> None:
        if exc_type is None and not self._txn.committed:
            await self.commit()
