"""Party: group membership in Curator's ``GroupMember`` layout.

Each member is the node ``<path>/<id>``: EPHEMERAL, holding the member's data; the parents
are CONTAINER nodes (the server removes them once empty). A Java ``GroupMember`` on the same
path and a Python ``Party`` see each other as members.

    party = Party(zk, "/groups/workers", "worker-1", b"10.0.0.7:8080")
    await party.join()
    print(await party.members())          # {"worker-1": b"10.0.0.7:8080", ...}
    async for change in party.changes():  # MemberJoined / MemberLeft
        ...
    await party.leave()

Once joined, the member is kept: if its node disappears (deleted by someone, or the session
expired and the client opened a new one) it is created again, on the current session.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any

from .. import paths as _paths
from .._aio.client import AsyncClient
from .._tasks import TaskOwner
from ..errors import (
    ClientClosedError,
    ConnectionLossError,
    InvalidArgumentError,
    NodeExistsError,
    NoNodeError,
    RequestTimeoutError,
    SessionExpiredError,
    ZooKeeperError,
)

__all__ = ("Party", "MemberJoined", "MemberLeft", "PartyChange")

log = logging.getLogger("zkwarden.groups")

#: members joined and not left (see Party.join)
_joined: set[Party] = set()


@dataclass(frozen=True, slots=True)
class MemberJoined:
    """A member is in the party (also: each member present when ``changes()`` starts)."""

    member_id: str
    data: bytes


@dataclass(frozen=True, slots=True)
class MemberLeft:
    """A member left (its node is gone)."""

    member_id: str


PartyChange = MemberJoined | MemberLeft


async def _wait_session(zk: AsyncClient) -> None:
    """Wait for a live session, however long (raises ClientClosedError when closed)."""
    while True:
        try:
            await zk.wait_connected(None)
            return
        except (ConnectionLossError, RequestTimeoutError):
            continue


class Party:
    """One member of the group at ``path`` (``identifier``: its node name; ``data``: its
    payload). Any number of Party objects may watch the same group.

    Raises (constructor):
        InvalidPathError: ``path`` is not a valid znode path.
        InvalidArgumentError: ``identifier`` is empty or holds ``/``; ``data`` not bytes.
    """

    def __init__(self, zk: AsyncClient, path: str, identifier: str, data: bytes = b"") -> None:
        _paths.validate(path)
        if not identifier or "/" in identifier or identifier in (".", ".."):
            raise InvalidArgumentError(f"a member id must be a node name, not {identifier!r}")
        if not isinstance(data, (bytes, bytearray)):
            raise InvalidArgumentError(f"data must be bytes, not {type(data).__name__}")
        self._zk = zk
        self.path = path
        self.identifier = identifier
        self.node = _paths.join(path, identifier)
        self._data = bytes(data)
        self._owner: TaskOwner | None = None

    @property
    def data(self) -> bytes:
        """This member's data."""
        return self._data

    @property
    def joined(self) -> bool:
        """True between join() and leave()."""
        return self._owner is not None and not self._owner.closed

    async def __aenter__(self) -> Party:
        await self.join()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.leave()

    async def join(self) -> None:
        """Create this member's node and keep it (idempotent).

        Raises:
            NodeExistsError: another session's member holds this id.
            NoAuthError, ConnectionLossError, SessionExpiredError, ClientClosedError.
        """
        if self.joined:
            return
        if not await self._create():
            raise NodeExistsError(f"member {self.identifier!r} of {self.path} is held by "
                                  "another session")
        self._owner = TaskOwner(f"party {self.node}", log)
        # Joined members stay referenced until they leave (or their client closes): a
        # member whose object the caller dropped must go on keeping its node, not be
        # collected with its task in the middle of a read.
        _joined.add(self)
        self._owner.spawn(self._keep(), name="keep member")

    async def leave(self) -> None:
        """Stop keeping the member and delete its node (idempotent).

        Raises:
            NoAuthError, ConnectionLossError, SessionExpiredError: the node could not be
                deleted now (it goes with the session anyway).
        """
        owner, self._owner = self._owner, None
        _joined.discard(self)
        if owner is None:
            return
        await owner.aclose()
        if self._zk.closed:
            return
        try:
            stat = await self._zk.exists(self.node)
            if stat is not None and stat.ephemeral_owner == self._zk.session_id:
                await self._zk.delete(self.node, stat.version)
        except NoNodeError:
            pass

    async def update(self, data: bytes) -> None:
        """Change this member's data (kept for re-creations too).

        Raises:
            InvalidArgumentError, NoNodeError (not joined right now), NoAuthError,
            ConnectionLossError, SessionExpiredError, ClientClosedError.
        """
        if not isinstance(data, (bytes, bytearray)):
            raise InvalidArgumentError(f"data must be bytes, not {type(data).__name__}")
        self._data = bytes(data)
        if self.joined:
            await self._zk.set(self.node, self._data)

    async def members(self) -> dict[str, bytes]:
        """Every current member and its data (one children read and one pipelined read).

        Raises:
            NoAuthError, ConnectionLossError, SessionExpiredError, ClientClosedError.
        """
        try:
            names = sorted(await self._zk.get_children(self.path))
        except NoNodeError:
            return {}
        return await self._read(names)

    async def _read(self, names: list[str]) -> dict[str, bytes]:
        results = await self._zk.get_many([_paths.join(self.path, n) for n in names])
        out: dict[str, bytes] = {}
        for name, result in zip(names, results, strict=True):
            if not isinstance(result, ZooKeeperError):  # NoNode: it left meanwhile
                out[name] = result[0]
        return out

    async def changes(self) -> AsyncGenerator[PartyChange, None]:
        """``async for change in party.changes()``: first a MemberJoined per current member,
        then every join and leave. Changes during a disconnection come after it (the watch
        is restored); after a session loss the members are read again and the difference
        is reported. Ends with ClientClosedError when the client closes; ``aclose()`` it
        (or ``break``) to stop.

        Raises:
            ClientClosedError, NoAuthError.
        """
        known: dict[str, bytes] = {}
        while True:
            stream = self._zk.watch(self.path, "children")
            try:
                async for event in stream:
                    names = set(event.children or ())
                    for name in sorted(known.keys() - names):
                        del known[name]
                        yield MemberLeft(name)
                    joined = sorted(names - known.keys())
                    while joined:
                        try:
                            found = await self._read(joined)
                        except ConnectionLossError:
                            await _wait_session(self._zk)
                            continue
                        for name in joined:
                            if name in found:  # else it left already: the next event says
                                known[name] = found[name]
                                yield MemberJoined(name, found[name])
                        joined = []
            except SessionExpiredError:
                await _wait_session(self._zk)  # the next session: read everything again
            finally:
                await stream.aclose()

    # --- keeping the node --------------------------------------------------------------

    async def _create(self) -> bool:
        """Create the member node; True when it exists and is ours.

        Raises:
            NoAuthError, ConnectionLossError, SessionExpiredError, ClientClosedError.
        """
        zk = self._zk
        for _ in range(10):  # a container parent can vanish between our creates
            try:
                await zk.create(self.node, self._data, ephemeral=True)
                return True
            except NoNodeError:
                await self._create_parents()
            except NodeExistsError:
                try:
                    data, stat = await zk.get(self.node)
                except NoNodeError:
                    continue
                if stat.ephemeral_owner != zk.session_id:
                    return False
                if data != self._data:
                    await zk.set(self.node, self._data, stat.version)
                return True
        raise ConnectionLossError(f"could not create {self.node}: its parent keeps vanishing")

    async def _create_parents(self) -> None:
        current = ""
        for part in self.path.strip("/").split("/"):
            current = f"{current}/{part}"
            try:
                await self._zk.create(current, container=True)
            except NodeExistsError:
                pass

    async def _keep(self) -> None:
        """Re-create the node whenever it is gone, on whatever session is current."""
        zk = self._zk
        while True:
            stream = zk.watch(self.node, "exists")
            try:
                async for event in stream:
                    stat: Any = event.stat
                    if stat is None:
                        # Deleted (by someone, or with an expired session): join again. Held
                        # by another session: the exists watch says when it goes.
                        await self._create()
            except (SessionExpiredError, ConnectionLossError, NoNodeError):
                pass
            except ClientClosedError:
                _joined.discard(self)
                return
            except ZooKeeperError as exc:
                log.warning("party %s: cannot keep the member node: %s", self.node, exc)
                await asyncio.sleep(1.0)
            finally:
                await stream.aclose()
            try:
                await _wait_session(zk)
            except ClientClosedError:
                _joined.discard(self)
                return
