"""The node operations every recipe shares: container parents, Curator's protected create,
and deletes that are retried until they are confirmed.

Protected create (Curator's ``withProtection()``): the node's name carries a fresh uuid, so
a create whose reply was lost (ConnectionLoss) is found again by that prefix instead of
being created twice or left behind as an orphan that blocks everyone (kazoo #732,
CURATOR-45). A node found after the session changed belongs to the dead session and is
deleted (CURATOR-498). A create abandoned half-way (cancelled, timed out, failed) leaves a
background find-and-delete behind, owned by the recipe's :class:`TaskOwner`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from .. import paths as _paths
from .._aio.client import AsyncClient
from .._tasks import TaskOwner
from ..errors import (
    ClientClosedError,
    ConnectionLossError,
    NodeExistsError,
    NoNodeError,
    SessionExpiredError,
    ZooKeeperError,
)
from ..types import ACL, Stat
from ._curator import new_protected_id, protected_name

__all__ = ("OwnNode", "ensure_containers", "protected_create", "delete_until_gone",
           "find_and_delete")

log = logging.getLogger("zkwarden.recipes")

#: how long one wait for a connection lasts inside a retry loop (the loops themselves end
#: on the caller's timeout or cancellation, or when the session or client ends)
_RETRY_PAUSE = 0.05


@dataclass(frozen=True, slots=True)
class OwnNode:
    """A node this client created: where, its Stat (czxid = fencing token), its session."""

    path: str
    stat: Stat
    session_id: int

    @property
    def name(self) -> str:
        return _paths.basename(self.path)


async def ensure_containers(zk: AsyncClient, path: str, acl: Sequence[ACL] | None = None) -> None:
    """Create ``path`` and its missing ancestors as container nodes (as Curator's
    ``creatingParentContainersIfNeeded``); nodes that exist are left as they are.

    Raises:
        NoAuthError, InvalidPathError, ConnectionLossError, SessionExpiredError,
        ClientClosedError.
    """
    if path == "/" or await zk.exists(path) is not None:
        return
    current = ""
    for part in path.strip("/").split("/"):
        current = f"{current}/{part}"
        try:
            await zk.create(current, b"", container=True, acl=acl)
        except NodeExistsError:
            pass


async def _wait_for_connection(zk: AsyncClient) -> None:
    try:
        await zk.wait_connected(timeout=zk.negotiated_timeout or 10.0)
    except ConnectionLossError:  # RequestTimeoutError: still disconnected; go round again
        await asyncio.sleep(_RETRY_PAUSE)


async def _find(zk: AsyncClient, parent: str, prefix: str) -> list[str]:
    try:
        children: list[str] = await zk.get_children(parent)
    except NoNodeError:
        return []
    return [_paths.join(parent, c) for c in children if c.startswith(prefix)]


async def protected_create(
    zk: AsyncClient,
    parent: str,
    name: str,
    data: bytes,
    cleanup: TaskOwner,
    *,
    sequence: bool = True,
    ephemeral: bool = True,
    acl: Sequence[ACL] | None = None,
) -> OwnNode:
    """Create ``parent/_c_<uuid>-<name>[seq]`` (parents as containers), surviving lost
    replies; on any exit but success, a find-and-delete is left to ``cleanup``.

    Raises:
        NoAuthError, InvalidACLError, InvalidPathError, ClientClosedError (and whatever
        ends the caller: CancelledError, a timeout): nothing is left behind.
    """
    protected_id = new_protected_id()
    prefix = protected_name(protected_id, "")
    target = _paths.join(parent, protected_name(protected_id, name))
    first_session = zk.session_id
    retry = False
    try:
        while True:
            if retry:
                # The create may have reached the server although its reply did not reach
                # us: find it by its uuid before creating another.
                for found in await _find(zk, parent, prefix):
                    stat = await zk.exists(found)
                    ours = not ephemeral or (
                        stat is not None and stat.ephemeral_owner == (zk.session_id or 0)
                        and zk.session_id == first_session
                    )
                    if stat is not None and ours:
                        return OwnNode(found, stat, zk.session_id or 0)
                    if stat is not None:  # left by a session that is gone
                        await _delete_quietly(zk, found)
            retry = True
            first_session = first_session or zk.session_id
            try:
                created, stat = await zk.create(
                    target, data, ephemeral=ephemeral, sequence=sequence, acl=acl,
                    include_stat=True,
                )
                return OwnNode(created, stat, stat.ephemeral_owner or (zk.session_id or 0))
            except NoNodeError:
                await ensure_containers(zk, parent, acl)
            except ConnectionLossError:
                await _wait_for_connection(zk)
            except SessionExpiredError:
                first_session = None  # the next session's create starts afresh
    except BaseException:
        if not cleanup.closed:
            cleanup.spawn(find_and_delete(zk, parent, prefix), name=f"find-and-delete {prefix}")
        raise


async def _delete_quietly(zk: AsyncClient, path: str) -> None:
    try:
        await zk.delete(path)
    except NoNodeError:
        pass


async def find_and_delete(zk: AsyncClient, parent: str, prefix: str) -> None:
    """Delete every child of ``parent`` named with ``prefix``, retrying until it is
    confirmed gone, the client closes, or the session (its ephemerals) ends."""
    session = zk.session_id
    while True:
        try:
            for path in await _find(zk, parent, prefix):
                await _delete_quietly(zk, path)
            return
        except ConnectionLossError:
            if session is not None and zk.session_id not in (None, session):
                return
            await _wait_for_connection(zk)
        except (SessionExpiredError, ClientClosedError):
            return
        except ZooKeeperError as exc:
            log.warning("cannot remove the node(s) %s%s*: %s", parent, prefix, exc)
            return


async def delete_until_gone(zk: AsyncClient, node: OwnNode) -> None:
    """Delete ``node``, retried until the server confirms it (or says it is gone, or its
    session ended, which removes an ephemeral node anyway).

    Raises:
        NoAuthError and other errors that retrying cannot fix.
    """
    while True:
        if zk.closed or (zk.session_id is not None and zk.session_id != node.session_id):
            return
        try:
            await _delete_quietly(zk, node.path)
            return
        except ConnectionLossError:
            await _wait_for_connection(zk)
        except (SessionExpiredError, ClientClosedError):
            return
