"""ServiceRegistry: registration as a reconcile loop (DESIGN rule 5).

The registry owns each registration. A task per registration drives the node towards
what the registry wants, and the client's state changes re-run it:

* absent → create it (parents as container nodes where the server has them);
* present and owned by our session → adopt it (set the data if it differs), never
  delete-and-recreate, so watchers see no flap on a plain reconnect;
* present, ephemeral, owned by a session this registry had before → replace it in one
  multi (delete at its version + create);
* present, ephemeral, owned by another live session → DuplicateInstanceError;
* after a session expiry → create it again on the new session.

``unregister``/``close`` cancel an in-flight create and then delete the node if it is
ours; the delete is ordered after the create on the same session, so a create that lands
after the cancel is deleted too. Deletes are retried until they succeed or the session
ends (an ephemeral node ends with its session anyway).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from .. import paths as _paths
from .._aio.client import AsyncClient
from .._tasks import TaskOwner
from ..errors import (
    BadVersionError,
    ClientClosedError,
    ConnectionLossError,
    DuplicateInstanceError,
    NodeExistsError,
    NoNodeError,
    SessionExpiredError,
    TransactionError,
    UnimplementedError,
    ZooKeeperError,
)
from ..types import ACL, ClientState, ClientStateChange
from .formats import RegistryFormat, get_format
from .instance import ServiceInstance

__all__ = ("ServiceRegistry",)

log = logging.getLogger("zkwarden.discovery")

_RETRY_PAUSE = 0.05


@dataclass(eq=False)
class _Registration:
    instance: ServiceInstance
    path: str  # requested path (for sequential nodes: the prefix)
    data: bytes
    ephemeral: bool
    sequential: bool
    node_path: str | None = None  # the node as created
    owner: int | None = None  # session that owns node_path
    task: asyncio.Task[None] | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)
    error: BaseException | None = None
    removed: bool = False


class ServiceRegistry:
    """Registers service instances and keeps them registered.

    ``format`` is ``"curator"`` (default), ``"rpcx"``, ``"dubbo"`` or a RegistryFormat;
    ``base_path`` defaults to the format's own (``/services`` for curator). ``acl`` is
    given to every node the registry creates (instance nodes and missing parents; default:
    the server's open ACL), e.g. ``[ACL.sasl("svc@REALM"), *READ_ACL_UNSAFE]``.

    Raises (constructor):
        ConfigurationError: unknown format.
        InvalidPathError: bad base path.
    """

    def __init__(
        self,
        client: AsyncClient,
        base_path: str | None = None,
        format: str | RegistryFormat = "curator",
        *,
        use_containers: bool = True,
        acl: Sequence[ACL] | None = None,
    ) -> None:
        self._client = client
        self._acl = list(acl) if acl is not None else None
        self._format = get_format(format)
        self._base = _paths.validate(base_path or self._format.default_base_path)
        self._use_containers = use_containers
        self._registrations: dict[tuple[str, str], _Registration] = {}
        self._sessions: set[int] = set()
        self._closed = False
        self._lock = asyncio.Lock()
        # Owns every reconcile task: close() ends them all, and a task that dies of an
        # unexpected exception is logged at once rather than lost.
        self._tasks = TaskOwner(f"registry {self._base}", log)
        client.add_listener(self._on_state)
        if client.session_id:
            self._sessions.add(client.session_id)

    @property
    def format(self) -> RegistryFormat:
        return self._format

    @property
    def base_path(self) -> str:
        return self._base

    def registrations(self) -> list[ServiceInstance]:
        """The instances this registry currently owns."""
        return [r.instance for r in self._registrations.values() if not r.removed]

    def node_path(self, instance: ServiceInstance) -> str | None:
        """Where ``instance``'s node is (None until it was first created)."""
        reg = self._registrations.get(instance.key)
        return reg.node_path if reg is not None else None

    # --- public API ------------------------------------------------------------------

    async def register(self, instance: ServiceInstance, *, wait: bool = True) -> None:
        """Register ``instance`` and keep it registered until unregister/close.

        With ``wait`` (default) return once the node exists.

        Raises:
            DuplicateInstanceError: another live session owns this instance's node.
            NoAuthError: the ACLs forbid creating it.
            ClientClosedError: the registry or client is closed.
            ConfigurationError: the instance cannot be expressed in this format.
        """
        self._check_open()
        key = instance.key
        existing = self._registrations.get(key)
        if existing is not None and not existing.removed:
            await self.update(instance)
            return
        reg = _Registration(
            instance=instance,
            path=self._format.instance_path(self._base, instance),
            data=self._format.encode(instance),
            ephemeral=self._format.ephemeral(instance),
            sequential=self._format.sequential(instance),
        )
        self._registrations[key] = reg
        self._start(reg)
        if wait:
            await self._wait(reg)

    async def update(self, instance: ServiceInstance) -> None:
        """Change a registered instance's data in place (no delete, no flap).

        Raises:
            NoNodeError: ``instance`` is not registered here.
            ClientClosedError: the registry or client is closed.
        """
        self._check_open()
        reg = self._registrations.get(instance.key)
        if reg is None or reg.removed:
            raise NoNodeError(f"{instance.name}/{instance.id} is not registered", path=None)
        reg.instance = instance
        reg.data = self._format.encode(instance)
        if reg.node_path is not None and reg.owner == self._client.session_id:
            try:
                await self._client.set(reg.node_path, reg.data)
                return
            except (NoNodeError, ConnectionLossError, SessionExpiredError):
                pass  # the reconcile loop takes it from here
        self._start(reg)
        await self._wait(reg)

    async def unregister(self, instance: ServiceInstance) -> None:
        """Stop owning ``instance`` and delete its node (an in-flight create included).

        Raises:
            ClientClosedError: the client is closed (its ephemeral nodes are gone then).
        """
        reg = self._registrations.pop(instance.key, None)
        if reg is None:
            return
        await self._remove(reg)

    async def close(self) -> None:
        """Unregister everything; the registry cannot be used afterwards. Never raises."""
        if self._closed:
            return
        self._closed = True
        self._client.remove_listener(self._on_state)
        regs = list(self._registrations.values())
        self._registrations.clear()
        try:
            results = await asyncio.gather(
                *(self._remove(r) for r in regs), return_exceptions=True
            )
        finally:
            # Also when close() itself is cancelled (a bounded shutdown): no reconcile
            # task may outlive the registry.
            await self._tasks.aclose()
        for r in results:
            if isinstance(r, BaseException) and not isinstance(r, ClientClosedError):
                log.warning("unregister during close failed: %r", r)

    async def __aenter__(self) -> ServiceRegistry:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- reconcile --------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise ClientClosedError("registry is closed")
        if self._client.closed:
            raise ClientClosedError("client is closed")

    def _start(self, reg: _Registration) -> None:
        if reg.task is not None and not reg.task.done():
            return
        reg.done.clear()
        reg.error = None
        reg.task = self._tasks.spawn(self._reconcile(reg), name=f"register {reg.path}")

    async def _wait(self, reg: _Registration) -> None:
        await reg.done.wait()
        if reg.error is not None:
            raise reg.error

    def _on_state(self, change: ClientStateChange) -> None:
        if self._closed:
            return
        if change.session_id:
            self._sessions.add(change.session_id)
        if change.state is ClientState.CONNECTED or change.state is ClientState.READ_ONLY:
            for reg in self._registrations.values():
                if change.new_session or reg.owner != change.session_id:
                    reg.owner = None
                if not reg.removed:
                    self._start(reg)

    async def _reconcile(self, reg: _Registration) -> None:
        try:
            while not reg.removed:
                try:
                    await self._reconcile_once(reg)
                    break
                except (ConnectionLossError, SessionExpiredError):
                    # The outcome is unknown; once connected again the next pass finds
                    # the node (ours: adopted) or not (created).
                    await asyncio.sleep(_RETRY_PAUSE)
                    await self._client.wait_connected()
        except DuplicateInstanceError as exc:
            reg.error = exc
        except ClientClosedError as exc:
            reg.error = exc
        except ZooKeeperError as exc:
            log.warning("registering %s failed: %s", reg.path, exc)
            reg.error = exc
        except Exception as exc:
            # A bug, not a ZooKeeper outcome: register() must not report success, and
            # only zkwarden errors leave a public call. Re-raised so the task owner logs
            # it with its traceback.
            reg.error = ZooKeeperError(f"registering {reg.path} failed unexpectedly: {exc!r}")
            raise
        finally:
            reg.done.set()

    async def _reconcile_once(self, reg: _Registration) -> None:
        client = self._client
        session = client.session_id
        if reg.node_path is not None and reg.owner is not None and reg.owner == session:
            # Same session: the node should still be ours; check, fix data, done.
            try:
                data, stat = await client.get(reg.node_path)
            except NoNodeError:
                reg.node_path = reg.owner = None
            else:
                if not reg.ephemeral or stat.ephemeral_owner == session:
                    if data != reg.data:
                        await client.set(reg.node_path, reg.data, version=stat.version)
                    return
                reg.node_path = reg.owner = None
        if reg.sequential:
            # Sequential nodes get a new name per create: find one of ours first.
            found = await self._find_sequential(reg)
            if found:
                return
        for _ in range(20):
            try:
                created = await client.create(
                    reg.path, reg.data, ephemeral=reg.ephemeral, sequence=reg.sequential,
                    acl=self._acl,
                )
                reg.node_path, reg.owner = created, session
                if reg.removed:
                    await self._delete_ours(reg)
                log.info("registered %s", created)
                return
            except NoNodeError:
                await self._ensure_parents(reg.path)
            except NodeExistsError:
                if await self._adopt(reg, session):
                    return
        raise ConnectionLossError(f"could not settle {reg.path} after repeated races")

    async def _find_sequential(self, reg: _Registration) -> bool:
        client = self._client
        parent, prefix = _paths.split(reg.path)
        try:
            children = await client.get_children(parent)
        except NoNodeError:
            return False
        for child in children:
            if not child.startswith(prefix):
                continue
            path = _paths.join(parent, child)
            try:
                data, stat = await client.get(path)
            except NoNodeError:
                continue
            if stat.ephemeral_owner == client.session_id and data == reg.data:
                reg.node_path, reg.owner = path, client.session_id
                return True
        return False

    async def _adopt(self, reg: _Registration, session: int | None) -> bool:
        """The node exists: adopt it, replace it, or refuse. False: gone, create again."""
        client = self._client
        try:
            data, stat = await client.get(reg.path)
        except NoNodeError:
            return False
        owner = stat.ephemeral_owner
        if not reg.ephemeral or owner == session:
            if data != reg.data:
                try:
                    await client.set(reg.path, reg.data, version=stat.version)
                except (BadVersionError, NoNodeError):
                    return False
            reg.node_path, reg.owner = reg.path, session
            return True
        if owner in self._sessions:
            # Left by a session of ours that is gone or going: replace it atomically.
            try:
                async with client.transaction() as t:
                    t.delete(reg.path, version=stat.version)
                    t.create(reg.path, reg.data, ephemeral=True, acl=self._acl)
            except TransactionError:
                return False
            reg.node_path, reg.owner = reg.path, session
            log.info("replaced %s left by our previous session 0x%x", reg.path, owner)
            return True
        raise DuplicateInstanceError(
            f"{reg.path} is registered by another live session (0x{owner:x})"
        )

    async def _ensure_parents(self, path: str) -> None:
        client = self._client
        parent = _paths.parent(path)
        missing: list[str] = []
        while parent != "/" and await client.exists(parent) is None:
            missing.append(parent)
            parent = _paths.parent(parent)
        for node in reversed(missing):
            try:
                if self._use_containers:
                    await client.create(node, container=True, acl=self._acl)
                else:
                    await client.create(node, acl=self._acl)
            except NodeExistsError:
                pass
            except UnimplementedError:
                self._use_containers = False  # servers older than 3.5.3
                await client.create(node, acl=self._acl)
            except NoNodeError:
                # A container parent was removed by the server between our create calls
                # (it had become empty): go round again.
                await self._ensure_parents(node)
                try:
                    await client.create(node, container=self._use_containers,
                                        acl=self._acl)
                except NodeExistsError:
                    pass

    # --- removal ----------------------------------------------------------------------

    async def _remove(self, reg: _Registration) -> None:
        reg.removed = True
        task = reg.task
        if task is not None and not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        await self._delete_ours(reg)

    async def _delete_ours(self, reg: _Registration) -> None:
        """Delete the node if our session owns it; retried until done or the session ends."""
        client = self._client
        candidates: Sequence[str]
        if reg.node_path is not None:
            candidates = [reg.node_path]
        elif reg.sequential:
            candidates = []
        else:
            candidates = [reg.path]
        while not client.closed:
            session = client.session_id
            try:
                if reg.sequential and reg.node_path is None:
                    if await self._find_sequential(reg):
                        candidates = [reg.node_path or reg.path]
                for path in candidates:
                    # This read is ordered after any create we sent on this session, so a
                    # create that lands after a cancel is seen (and deleted) here.
                    try:
                        data, stat = await client.get(path)
                    except NoNodeError:
                        continue
                    ours = (
                        stat.ephemeral_owner == session
                        if reg.ephemeral
                        else data == reg.data
                    )
                    if ours:
                        try:
                            await client.delete(path, version=stat.version)
                        except (NoNodeError, BadVersionError):
                            continue
                reg.node_path = reg.owner = None
                return
            except SessionExpiredError:
                if reg.ephemeral:
                    return  # its session is gone, so is the node
                await self._client.wait_connected()
            except ConnectionLossError:
                if reg.ephemeral and client.session_id != session:
                    return
                await asyncio.sleep(_RETRY_PAUSE)
                try:
                    await self._client.wait_connected()
                except ClientClosedError:
                    return
            except ClientClosedError:
                return
