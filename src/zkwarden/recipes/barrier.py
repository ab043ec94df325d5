"""Barriers with Curator 5.x's node layouts: :class:`Barrier` (DistributedBarrier) and
:class:`DoubleBarrier` (DistributedDoubleBarrier).

Layouts (``recipes_anchors.md`` section 2.6/2.7): a barrier is the node ``<path>`` itself,
PERSISTENT, Curator's default data (the local IP address); parents are containers. A double
barrier's members are ``<path>/<uuid36>`` EPHEMERAL (no ``_c_`` prefix), and the N-th member
to arrive creates ``<path>/ready`` PERSISTENT; ``<path>`` is a container.

Where this differs from Curator, and why (each a documented Curator bug or hazard):

* enter waits in a loop that re-reads its condition after every wake-up (GH-1290: Curator
  5.x returns from a timed enter after a spurious wake-up with fewer members); it returns
  once ``ready`` exists or the count is reached (Curator's fixed loop re-counts only, and a
  fast member that already left makes it wait forever).
* a member whose session is lost while it waits in :meth:`DoubleBarrier.enter` enters again
  on the new session (its ephemeral node died with the old one); Curator throws
  ConnectionLoss out of enter and the member is simply gone.
* an enter that times out or is cancelled removes the member's node (Curator leaves it
  behind: it keeps counting for the others although its owner was told "not entered",
  CURATOR-318); a leave that times out or is cancelled removes it too (Curator's lowest
  member keeps its node on a timed-out leave, so the others can never finish leaving).
* leave after the session was lost waits for the others to leave (Curator returns at once).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import uuid
from collections.abc import Awaitable, Callable, Sequence
from contextlib import aclosing
from typing import TypeVar

from .. import paths as _paths
from .._aio.client import AsyncClient
from .._tasks import TaskOwner
from ..errors import (
    ConnectionLossError,
    InvalidArgumentError,
    NodeExistsError,
    NoNodeError,
    RecipeError,
    SessionExpiredError,
    ZooKeeperError,
)
from ..types import ACL, WatchEvent
from ._nodes import OwnNode, _wait_for_connection, ensure_containers, find_and_delete

__all__ = ("Barrier", "DoubleBarrier", "curator_default_data")

T = TypeVar("T")

log = logging.getLogger("zkwarden.recipes")

READY_NODE = "ready"
#: pause before watching again after a session ended (keeps a failing loop off the CPU)
_PAUSE = 0.05
#: how long a timed-out enter may spend checking whether it got in at the last moment
_LAST_LOOK = 1.0

_default_data: bytes | None = None


async def curator_default_data() -> bytes:
    """Curator's default node data: ``InetAddress.getLocalHost().getHostAddress()``, the
    local host name's IPv4 address as ASCII (e.g. ``b"10.0.0.5"``); informational only.
    Resolved once, without blocking the event loop; ``b"127.0.0.1"`` if it cannot be."""
    global _default_data
    if _default_data is None:
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                socket.gethostname(), None, family=socket.AF_INET, type=socket.SOCK_STREAM)
            address = str(infos[0][4][0]) if infos else "127.0.0.1"
        except OSError:
            address = "127.0.0.1"
        _default_data = address.encode("ascii")
    return _default_data


async def _retrying(zk: AsyncClient, call: Callable[[], Awaitable[T]]) -> T:
    """``call()`` again after a connection loss or a session change (reads and operations
    whose repetition is harmless only); ClientClosedError and every other error escape."""
    while True:
        try:
            return await call()
        except ConnectionLossError:
            await _wait_for_connection(zk)
        except SessionExpiredError:
            await asyncio.sleep(_PAUSE)


class Barrier:
    """Curator's DistributedBarrier: while ``<path>`` exists, :meth:`wait_on_barrier` waits.

    ``data`` is the node's content (default: Curator's, the local IP address). ``acl`` is
    the ACL of the barrier node and of the parents it creates (default: the client's).

    Raises:
        InvalidPathError: ``path`` is not a valid absolute path.
    """

    def __init__(self, zk: AsyncClient, path: str, *, data: bytes | None = None,
                 acl: Sequence[ACL] | None = None) -> None:
        self._zk = zk
        self.path = _paths.validate(path)
        self._data = data
        self.acl = tuple(acl) if acl is not None else None

    async def set_barrier(self) -> None:
        """Create the barrier node (PERSISTENT, parents as containers); an existing one is
        kept, so this is idempotent and safe to retry.

        Raises:
            NoAuthError, InvalidPathError, ClientClosedError.
        """
        data = self._data if self._data is not None else await curator_default_data()

        async def create() -> None:
            try:
                await self._zk.create(self.path, data, acl=self.acl)
            except NodeExistsError:
                pass
            except NoNodeError:
                await ensure_containers(self._zk, _paths.parent(self.path), self.acl)
                await create()

        await _retrying(self._zk, create)

    async def remove_barrier(self) -> None:
        """Delete the barrier node, which releases every waiter; a missing node is fine.

        Raises:
            NotEmptyError (someone put children under it), NoAuthError, ClientClosedError.
        """
        async def delete() -> None:
            try:
                await self._zk.delete(self.path)
            except NoNodeError:
                pass

        await _retrying(self._zk, delete)

    async def wait_on_barrier(self, timeout: float | None = None) -> bool:
        """Wait while the barrier node exists: True once it is gone (at once if it never
        existed), False when ``timeout`` seconds passed first.

        The node's existence is read by the request that sets the watch, so a delete
        between the read and the watch cannot be missed; connection losses are waited out
        (the watch is restored on reconnect) and a new session watches again.

        Raises:
            NoAuthError, ClientClosedError.
        """
        deadline = asyncio.timeout(timeout)
        try:
            async with deadline:
                while True:
                    try:
                        async with aclosing(self._zk.watch(self.path, "exists")) as stream:
                            async for event in stream:
                                if event.stat is None:
                                    return True
                    except SessionExpiredError:
                        pass  # the watch died with the session: watch again on the next one
                    await asyncio.sleep(_PAUSE)
        except TimeoutError:
            if not deadline.expired():
                raise
            return False


class DoubleBarrier:
    """Curator's DistributedDoubleBarrier: :meth:`enter` returns once ``members`` members
    are in, :meth:`leave` once all of them have left.

    ``members`` is a threshold, not a limit (as in Curator: more may enter). ``data`` is
    the content of the member and ``ready`` nodes (default: Curator's, the local IP).
    ``acl`` is the ACL of those nodes and of the parents it creates (default: the client's).
    Call :meth:`close` when done with the object: it waits (briefly) for the removal of a
    node left by a cancelled or timed-out call.

    Raises:
        InvalidArgumentError: ``members`` below 1.
        InvalidPathError: ``path`` is not a valid absolute path.
    """

    def __init__(
        self, zk: AsyncClient, path: str, members: int = 3, *, data: bytes | None = None,
        acl: Sequence[ACL] | None = None,
    ) -> None:
        if isinstance(members, bool) or not isinstance(members, int) or members < 1:
            raise InvalidArgumentError(f"members must be a positive int, got {members!r}")
        self._zk = zk
        self.path = _paths.validate(path)
        self.members = members
        self._data = data
        self.acl = tuple(acl) if acl is not None else None
        #: Curator draws one uuid per barrier object; its node is <path>/<uuid>
        self.node_name = str(uuid.uuid4())
        self.node_path = _paths.join(path, self.node_name)
        self.ready_path = _paths.join(path, READY_NODE)
        self._node: OwnNode | None = None
        self._busy = asyncio.Lock()
        self._cleanup = TaskOwner(f"double barrier {path}")

    @property
    def entered(self) -> bool:
        """True between a successful :meth:`enter` and the next :meth:`leave`."""
        return self._node is not None

    # --- enter -----------------------------------------------------------------------

    async def enter(self, timeout: float | None = None) -> bool:
        """Join the barrier and wait until ``members`` members have joined: True, or
        False when ``timeout`` seconds passed first (then our node is removed again,
        unless ``ready`` appeared meanwhile, in which case we are in: True).

        Raises:
            RecipeError: this object already entered (leave first), or was closed.
            NoAuthError, InvalidPathError, ClientClosedError.
        """
        async with self._busy:
            if self._cleanup.closed:
                raise RecipeError(f"double barrier {self.path} is closed")
            if self._node is not None:
                raise RecipeError(f"{self.node_path}: already entered; leave() first")
            deadline = asyncio.timeout(timeout)
            try:
                async with deadline:
                    await self._enter()
                    return True
            except TimeoutError:
                if not deadline.expired():
                    raise
                if await self._got_in_after_all():
                    return True
                self._discard()
                return False
            except BaseException:
                self._discard()
                raise

    async def _enter(self) -> None:
        data = self._data if self._data is not None else await curator_default_data()
        while True:
            try:
                async with aclosing(self._zk.watch(self.ready_path, "exists")) as stream:
                    # Curator's order: look at ``ready`` (setting the watch), then join.
                    first = await anext(stream)
                    node = await self._join(data)
                    if first.stat is not None:
                        return
                    while self._zk.session_id == node.session_id:
                        children = await _retrying(self._zk, self._children)
                        if len(children) >= self.members:
                            await self._create_ready(data)
                            return
                        event: WatchEvent = await anext(stream)
                        if event.stat is not None:
                            return
                    # our node died with its session: join again on the new one
            except SessionExpiredError:
                pass
            self._node = None
            await asyncio.sleep(_PAUSE)

    async def _join(self, data: bytes) -> OwnNode:
        """Create our EPHEMERAL member node; after a lost reply, a NodeExists of our own
        session is our node (the name is ours alone)."""
        zk = self._zk
        while True:
            try:
                created, stat = await zk.create(
                    self.node_path, data, ephemeral=True, include_stat=True, acl=self.acl)
                self._node = OwnNode(created, stat, stat.ephemeral_owner)
                return self._node
            except NoNodeError:
                await _retrying(zk, lambda: ensure_containers(zk, self.path, self.acl))
            except ConnectionLossError:
                await _wait_for_connection(zk)
            except NodeExistsError:
                stat = await _retrying(zk, lambda: zk.exists(self.node_path))
                if stat is not None and stat.ephemeral_owner == zk.session_id:
                    self._node = OwnNode(self.node_path, stat, stat.ephemeral_owner)
                    return self._node
                if stat is not None:  # left by a session that is gone
                    await _retrying(zk, self._delete_stale)

    async def _delete_stale(self) -> None:
        try:
            await self._zk.delete(self.node_path)
        except NoNodeError:
            pass

    async def _children(self) -> list[str]:
        try:
            children: list[str] = await self._zk.get_children(self.path)
        except NoNodeError:
            return []
        return children

    async def _create_ready(self, data: bytes) -> None:
        async def create() -> None:
            try:
                await self._zk.create(self.ready_path, data, acl=self.acl)
            except NodeExistsError:
                pass

        await _retrying(self._zk, create)

    async def _got_in_after_all(self) -> bool:
        """After a timeout: the N-th member may have counted us just as time ran out."""
        node = self._node
        if node is None or self._zk.session_id != node.session_id:
            return False
        try:
            async with asyncio.timeout(_LAST_LOOK):
                return await self._zk.exists(self.ready_path) is not None
        except (TimeoutError, ConnectionLossError, SessionExpiredError):
            return False

    def _discard(self) -> None:
        """Remove our node in the background, retried until confirmed (also when the
        create is still in flight: requests of one session are applied in order)."""
        self._node = None
        if not self._cleanup.closed:
            self._cleanup.spawn(
                find_and_delete(self._zk, self.path, self.node_name),
                name=f"remove {self.node_path}",
            )

    # --- leave -----------------------------------------------------------------------

    async def leave(self, timeout: float | None = None) -> bool:
        """Leave the barrier and wait until every member has left: True, or False when
        ``timeout`` seconds passed first (our node is removed all the same). The last
        one out deletes ``ready``, as Curator's does (every leaver tries; NoNode is fine).

        Raises:
            RecipeError: not entered, or our node vanished while our session lived.
            NoAuthError, ClientClosedError.
        """
        async with self._busy:
            node = self._node
            if node is None:
                raise RecipeError(f"{self.node_path}: leave() without enter()")
            deadline = asyncio.timeout(timeout)
            try:
                async with deadline:
                    await self._leave(node)
            except TimeoutError:
                if not deadline.expired():
                    raise
                self._discard()
                if not self._cleanup.closed:
                    self._cleanup.spawn(self._delete_ready_quietly(),
                                        name=f"delete {self.ready_path}")
                return False
            except BaseException:
                self._discard()
                raise
            self._node = None
            await self._delete_ready()
            return True

    async def _leave(self, node: OwnNode) -> None:
        zk = self._zk
        ours = node.name
        should_exist = True
        while True:
            children = sorted(c for c in await _retrying(zk, self._children) if c != READY_NODE)
            if not children:
                return
            if should_exist and zk.session_id != node.session_id:
                should_exist = False  # gone with its session; we still wait for the others
            index = children.index(ours) if ours in children else -1
            if index < 0 and should_exist:
                raise RecipeError(f"our node {node.path} is missing")
            if len(children) == 1:
                if should_exist and children[0] != ours:
                    raise RecipeError(f"the last node {children[0]} is not ours ({ours})")
                if should_exist:
                    await self._delete_own(node)
                return
            lowest = index == 0
            # The lowest waits for the highest and deletes itself last; everyone else
            # deletes itself and waits for the lowest (the ZooKeeper recipe, as Curator).
            target = children[-1] if lowest else children[0]
            try:
                async with aclosing(zk.watch(_paths.join(self.path, target), "exists")) as s:
                    first = await anext(s)
                    if not lowest and should_exist:
                        await self._delete_own(node)
                        should_exist = False
                    if first.stat is not None:
                        await anext(s)
            except SessionExpiredError:
                await asyncio.sleep(_PAUSE)

    async def _delete_own(self, node: OwnNode) -> None:
        async def delete() -> None:
            if self._zk.session_id != node.session_id:
                return  # ephemeral: gone with its session
            try:
                await self._zk.delete(node.path)
            except NoNodeError:
                pass

        await _retrying(self._zk, delete)

    async def _delete_ready(self) -> None:
        async def delete() -> None:
            try:
                await self._zk.delete(self.ready_path)
            except NoNodeError:
                pass

        await _retrying(self._zk, delete)

    async def _delete_ready_quietly(self) -> None:
        try:
            await self._delete_ready()
        except ZooKeeperError as exc:  # closed client, no auth: nothing more to do
            log.debug("%s not deleted: %r", self.ready_path, exc)

    async def close(self, timeout: float = 5.0) -> None:
        """Let a pending removal of our node finish (at most ``timeout`` seconds), then
        end it; the object cannot enter again. Idempotent; never raises (except
        CancelledError)."""
        pending = self._cleanup.tasks()
        if pending:
            await asyncio.wait(pending, timeout=timeout)
        await self._cleanup.aclose()
