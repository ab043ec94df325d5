"""Dynamic ensembles: the configuration, reconfig, and the tracker that follows it.

ZooKeeper (3.5+) keeps its membership in ``/zookeeper/config``: one
``server.N=host:quorumPort:electionPort[:role];clientHost:clientPort`` line per member
and ``version=<hex zxid>``. :func:`parse_config` turns that text into an
:class:`EnsembleConfig`; :func:`get_config` and :func:`reconfig` read and change it.

:class:`EnsembleTracker` keeps a client's host list equal to the membership: it watches
``/zookeeper/config`` and, when the membership changes, replaces the supervisor's host
list (the chroot is kept: it is not part of the list) and decides whether to move, with
the probabilities of ZooKeeper's ``StaticHostProvider.updateServerList``
(ZOOKEEPER-1355), so that connections even out over the new membership without all
moving at once:

- more servers (old list of n, new list of m > n): a client on a server that stays moves
  to one of the new servers with probability 1 - n/m; a client on a server that left
  moves to one of the new servers;
- as many or fewer: a client on a server that stays stays; a client on a server that
  left moves to one of the servers it already knew with probability
  ``p_old = k (n - m) / (m (n - k))`` (k: servers in both lists), else to a new one.

A move drops the connection (after a small random delay, so a fleet told at once does
not reconnect at once) and the supervisor opens the next one on the chosen host: the
session is resumed, watches restored; requests in flight fail with ConnectionLossError.

``/zookeeper/config`` is outside the chroot, as in the Java client: :func:`server_path`
and :func:`client_path` are the chroot mapping of every watched path (the subscriptions
and the engine use them), so a chrooted client watches the real config node and the
tracker needs no polling.

A connect string that names no member (a load balancer, a DNS alias) is left alone:
replacing it with the members' addresses could bypass what the operator put in front.
The tracker logs that once and stops.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Protocol

from .. import paths as _paths
from ..errors import (
    ClientClosedError,
    ConnectionLossError,
    InvalidArgumentError,
    SessionExpiredError,
    ZooKeeperError,
)
from ..hosts import HostPort
from ..protocol.reconfig import CONFIG_PATH, ReconfigRequest
from ..types import ClientState, ClientStateChange, Stat, WatchEvent

if TYPE_CHECKING:
    from .engine import SessionEngine
    from .supervisor import Supervisor


class ConfigStream(Protocol):
    """The watch stream the tracker reads (a WatchStream)."""

    def __aiter__(self) -> ConfigStream: ...

    async def __anext__(self) -> WatchEvent: ...

    async def aclose(self) -> None: ...


class TrackedClient(Protocol):
    """What the tracker uses of its client (AsyncClient has it; no import: the client
    imports this module)."""

    @property
    def closed(self) -> bool: ...

    @property
    def current_host(self) -> HostPort | None: ...

    async def wait_connected(self, timeout: float | None = None) -> None: ...

    def watch(self, path: str, kind: Literal["data", "exists", "children"] = "data"
              ) -> ConfigStream: ...

    def add_listener(self, fn: Callable[[ClientStateChange], object]) -> None: ...

__all__ = (
    "CONFIG_PATH",
    "EnsembleConfig",
    "EnsembleTracker",
    "Member",
    "choose_move",
    "client_path",
    "get_config",
    "parse_config",
    "watch_config",
    "reconfig",
    "server_path",
)

log = logging.getLogger("zkwarden.ensemble")

_ANY_ADDRESS = ("0.0.0.0", "::", "")


server_path = _paths.watch_server_path
client_path = _paths.watch_client_path


@dataclass(frozen=True, slots=True)
class Member:
    """One server of the configuration (a ``server.N`` line)."""

    id: int
    host: str
    quorum_port: int
    election_port: int
    #: "participant" (votes) or "observer"
    role: str = "participant"
    client_host: str | None = None
    client_port: int | None = None

    @property
    def client_address(self) -> HostPort | None:
        """Where clients connect (None: the line has no client address). A wildcard
        client host (0.0.0.0, ::) is replaced by the quorum host."""
        if self.client_port is None:
            return None
        host = self.client_host
        if host is None or host in _ANY_ADDRESS:
            host = self.host
        return HostPort(host, self.client_port)

    @property
    def server_line(self) -> str:
        """The member as ``server.N=...``, as ``reconfig(joining=...)`` takes it."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        line = f"server.{self.id}={host}:{self.quorum_port}:{self.election_port}:{self.role}"
        if self.client_port is not None:
            chost = self.client_host or "0.0.0.0"
            chost = f"[{chost}]" if ":" in chost else chost
            line += f";{chost}:{self.client_port}"
        return line


@dataclass(frozen=True, slots=True)
class EnsembleConfig:
    """A parsed ``/zookeeper/config``: the members and the config version (a zxid)."""

    members: tuple[Member, ...]
    #: the config version, the zxid of the reconfig that made it (``from_config`` takes it)
    version: int
    raw: str = field(default="", repr=False)
    stat: Stat | None = field(default=None, repr=False, compare=False)

    @property
    def participants(self) -> tuple[Member, ...]:
        """The voting members."""
        return tuple(m for m in self.members if m.role != "observer")

    @property
    def observers(self) -> tuple[Member, ...]:
        """The observers (serve clients, forward writes, do not vote)."""
        return tuple(m for m in self.members if m.role == "observer")

    @property
    def client_addresses(self) -> list[HostPort]:
        """Where clients can connect: every member with a client address, by id."""
        return [a for m in self.members if (a := m.client_address) is not None]

    def member(self, server_id: int) -> Member | None:
        """The member with this id, if any."""
        return next((m for m in self.members if m.id == server_id), None)

    def member_at(self, address: HostPort) -> Member | None:
        """The member whose client address is ``address``, if any."""
        return next((m for m in self.members if m.client_address == address), None)


def _split_host_port(text: str) -> tuple[str, list[str]]:
    """``host:rest`` or ``[v6]:rest`` -> (host, rest split on colons)."""
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        return host, [p for p in rest.split(":") if p != ""]
    first, *others = text.split(":")
    return first, others


def parse_member(key: str, value: str) -> Member:
    """One ``server.N=...`` line.

    Raises:
        InvalidArgumentError: not a server line ZooKeeper would accept.
    """
    try:
        server_id = int(key.partition(".")[2])
        quorum, _, client = value.strip().partition(";")
        host, parts = _split_host_port(quorum.strip())
        if len(parts) < 2:
            raise ValueError("needs host:quorumPort:electionPort")
        role = parts[2].strip().lower() if len(parts) > 2 else "participant"
        if role not in ("participant", "observer"):
            raise ValueError(f"unknown role {role!r}")
        client_host: str | None = None
        client_port: int | None = None
        client = client.strip()
        if client:
            if ":" in client:
                chost, cparts = _split_host_port(client)
                client_host, client_port = chost, int(cparts[-1])
            else:
                client_port = int(client)
        return Member(server_id, host, int(parts[0]), int(parts[1]), role,
                      client_host, client_port)
    except (ValueError, IndexError) as exc:
        raise InvalidArgumentError(f"bad server line {key}={value!r}: {exc}") from None


def parse_config(data: bytes | str, stat: Stat | None = None) -> EnsembleConfig:
    """Parse the text of ``/zookeeper/config`` (empty on a standalone server: no members).

    Raises:
        InvalidArgumentError: a malformed server or version line.
    """
    text = data.decode("utf-8") if isinstance(data, bytes) else data
    members: list[Member] = []
    version = 0
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        key = key.strip()
        if key.startswith("server."):
            members.append(parse_member(key, value))
        elif key == "version":
            try:
                version = int(value.strip(), 16)
            except ValueError:
                raise InvalidArgumentError(f"bad config version {value!r}") from None
    members.sort(key=lambda m: m.id)
    return EnsembleConfig(tuple(members), version, text, stat)


# --- requests -------------------------------------------------------------------------------


async def get_config(engine: SessionEngine) -> EnsembleConfig:
    """Read ``/zookeeper/config`` (the chroot does not apply to it).

    Raises:
        ConnectionLossError, SessionExpiredError, ClientClosedError, NoAuthError.
    """
    from ..protocol.ops import GetData

    data, stat = await engine.call(GetData(CONFIG_PATH), CONFIG_PATH)
    return parse_config(data, stat)


#: callbacks of get_config(watch=...) being followed (the loop holds tasks only weakly)
_FOLLOWERS: set[asyncio.Task[None]] = set()


async def watch_config(client: TrackedClient,
                       callback: Callable[[EnsembleConfig], object]) -> EnsembleConfig:
    """Read ``/zookeeper/config`` with a watch armed by the same request; return it and
    call ``callback(config)`` on the loop for every later configuration, in order
    (changes made in a burst may be coalesced: the last one is always delivered). The
    following survives reconnects and new sessions; it stops when the client closes or
    ``callback`` returns False. An exception in ``callback`` is logged.

    Raises:
        InvalidArgumentError (a malformed config), NoAuthError, ConnectionLossError,
        SessionExpiredError, ClientClosedError.
    """
    stream = client.watch(CONFIG_PATH, "data")
    try:
        first = await anext(stream)
        config = parse_config(first.data or b"", first.stat)
    except BaseException:
        await _close(stream)
        raise
    task = asyncio.get_running_loop().create_task(
        _follow(client, stream, config.version, callback), name="zkwarden-config-watch")
    _FOLLOWERS.add(task)
    task.add_done_callback(_FOLLOWERS.discard)
    return config


async def _close(stream: AsyncIterator[WatchEvent]) -> None:
    aclose = getattr(stream, "aclose", None)
    if aclose is not None:
        await aclose()


async def _follow(client: TrackedClient, stream: AsyncIterator[WatchEvent], version: int,
                  callback: Callable[[EnsembleConfig], object]) -> None:
    try:
        while True:
            try:
                async for event in stream:
                    if event.data is None:
                        continue
                    config = parse_config(event.data, event.stat)
                    if config.version == version:
                        continue  # the first read of a new session: nothing changed
                    version = config.version
                    try:
                        if callback(config) is False:
                            return
                    except Exception:
                        log.exception("config watch callback %r raised", callback)
            except SessionExpiredError:
                # The watch went with the session; the next session's first read re-arms
                # it and reports what changed meanwhile.
                await _close(stream)
                stream = client.watch(CONFIG_PATH, "data")
                continue
            except ClientClosedError:
                return
            except InvalidArgumentError as exc:
                log.warning("config watch: %s", exc)
                continue
            return
    finally:
        await _close(stream)


def _join(items: Sequence[str | int] | None, name: str) -> str | None:
    if items is None:
        return None
    if isinstance(items, (str, bytes)):
        raise InvalidArgumentError(f"{name} must be a list, not a string")
    text = ",".join(str(i).strip() for i in items)
    return text or None


async def reconfig(
    engine: SessionEngine,
    joining: Sequence[str] | None,
    leaving: Sequence[int | str] | None,
    new_members: Sequence[str] | None,
    from_config: int,
) -> EnsembleConfig:
    """Send one reconfig request; return the configuration the server committed.

    Raises:
        InvalidArgumentError: nothing to change, or both incremental and new_members.
        (and what the server answers; see :meth:`AsyncClient.reconfig`)
    """
    join = _join(joining, "joining")
    leave = _join(leaving, "leaving")
    members = _join(new_members, "new_members")
    if members is not None and (join is not None or leave is not None):
        raise InvalidArgumentError("give joining/leaving (incremental) or new_members, not both")
    if members is None and join is None and leave is None:
        raise InvalidArgumentError("reconfig needs joining, leaving or new_members")
    request = ReconfigRequest(join, leave, members, from_config)
    data, stat = await engine.call(request, CONFIG_PATH)
    return parse_config(data, stat)


# --- the rebalancing decision ---------------------------------------------------------------


def choose_move(
    old: Sequence[HostPort],
    new: Sequence[HostPort],
    current: HostPort | None,
    rng: random.Random,
) -> HostPort | None:
    """Where a client connected to ``current`` should move when its host list goes from
    ``old`` to ``new`` (None: stay). The probabilities of the module docstring; pure but
    for ``rng``. Raises nothing.
    """
    if not new or current is None:
        return None
    old_set = set(old)
    survivors = [h for h in new if h in old_set]
    newcomers = [h for h in new if h not in old_set]
    staying = current in set(new)
    n, m, k = len(old_set), len(new), len(survivors)
    if m > n:
        if staying:
            if newcomers and rng.random() <= 1 - n / m:
                return rng.choice(newcomers)
            return None
        return rng.choice(newcomers or list(new))
    if staying:
        return None
    # A server left: pick among the servers already known with p_old, which is what
    # keeps each remaining server's share equal (derivation in ZOOKEEPER-1355).
    p_old = (k * (n - m)) / (m * (n - k)) if n > k else 1.0
    if survivors and (not newcomers or rng.random() <= p_old):
        return rng.choice(survivors)
    return rng.choice(newcomers or list(new))


# --- the tracker ------------------------------------------------------------------------------


class EnsembleTracker:
    """Follows ``/zookeeper/config`` for one client (see the module docstring).

    Started by the client once its supervisor runs; ends with the client (its watch
    stream ends with ClientClosedError).
    """

    def __init__(self, client: TrackedClient, engine: SessionEngine, supervisor: Supervisor
                 ) -> None:
        self._client = client
        self._engine = engine
        self._supervisor = supervisor
        self._task: asyncio.Task[None] | None = None
        self._move: asyncio.Task[None] | None = None
        self.version: int | None = None
        self._addresses: list[HostPort] = []
        #: False once the connect string turned out to name no member
        self.active = True
        #: moves decided (for tests and metrics)
        self.moves = 0

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name="zkwarden-ensemble-tracker")
            self._client.add_listener(self._on_state)

    def _on_state(self, change: ClientStateChange) -> None:
        # A reconnect that raced with a change (an attempt already under way to a server
        # that just left) lands on a non-member; the config watch does not fire again
        # for a version already applied, so check here.
        if change.state not in (ClientState.CONNECTED, ClientState.READ_ONLY):
            return
        if not self.active or not self._addresses or self._move is not None:
            return
        current = self._client.current_host
        if current is not None and current not in self._addresses:
            target = self._supervisor.rng.choice(self._addresses)
            self._schedule_move(current, target)

    def stop(self) -> None:
        for task in (self._task, self._move):
            if task is not None and task is not asyncio.current_task():
                task.cancel()

    async def _run(self) -> None:
        client = self._client
        while self.active and not client.closed:
            stream = client.watch(CONFIG_PATH, "data")
            try:
                async for event in stream:
                    if event.data is not None:
                        self.apply(parse_config(event.data))
                    if not self.active:
                        return
            except (ClientClosedError, asyncio.CancelledError):
                return
            except SessionExpiredError:
                continue  # the stream ends with the session; the next one is re-armed
            except (ZooKeeperError, OSError) as exc:
                if not isinstance(exc, ConnectionLossError):
                    log.info("ensemble tracking: cannot read %s: %s", CONFIG_PATH, exc)
                await asyncio.sleep(1.0)
            except Exception:  # a bug must not go unseen, nor kill tracking silently
                log.exception("ensemble tracking failed; it is off for this client")
                return
            finally:
                # Tracking off (or ended): its watch goes too, not at garbage collection.
                await stream.aclose()

    def apply(self, config: EnsembleConfig) -> None:
        """Take a new configuration: update the host list, maybe move. Raises nothing."""
        addresses = config.client_addresses
        if not addresses or not self.active or config.version == self.version:
            return
        engine = self._engine
        old = list(engine.hosts)
        if self.version is None and not set(old) & set(addresses):
            self.active = False
            log.warning(
                "connect string %s names no member of the ensemble (%s): a load balancer "
                "or DNS alias? Ensemble tracking is off for this client; it keeps its "
                "connect string", engine.connect_string,
                ",".join(str(a) for a in addresses))
            return
        self.version = config.version
        self._addresses = list(addresses)
        if set(old) == set(addresses):
            return
        rng = self._supervisor.rng
        current = self._client.current_host
        target = choose_move(old, addresses, current, rng)
        hosts = list(addresses)
        rng.shuffle(hosts)
        self._supervisor.set_hosts(hosts, prefer=target)
        log.info("ensemble 0x%x: hosts now %s%s", config.version,
                 ",".join(str(h) for h in hosts),
                 f"; moving from {current} to {target}" if target is not None else "")
        if self._move is not None:
            self._move.cancel()
            self._move = None
        if target is not None:
            self._schedule_move(current, target)

    def _schedule_move(self, current: HostPort | None, target: HostPort) -> None:
        self.moves += 1
        self._move = asyncio.get_running_loop().create_task(
            self._move_later(current, target), name="zkwarden-ensemble-move")

    async def _move_later(self, current: HostPort | None, target: HostPort) -> None:
        try:
            await self._move_after_delay(current, target)
        finally:
            if self._move is asyncio.current_task():
                self._move = None

    async def _move_after_delay(self, current: HostPort | None, target: HostPort) -> None:
        # A random delay spreads the clients that all heard of the change at once; it is
        # short next to the session timeout, and the old server keeps serving meanwhile
        # (a removed member stays up until its operator stops it).
        spread = min(1.0, self._engine.session_timeout / 10)
        await asyncio.sleep(self._supervisor.rng.uniform(0, spread))
        now = getattr(self._client, "current_host", None)
        if now is None:
            # Disconnected meanwhile: the next attempt goes to the chosen host.
            self._supervisor.prefer(target)
            return
        if now != current and now in self._addresses:
            return  # the connection moved meanwhile, to a member
        self._supervisor.prefer(target)
        self._engine.drop_current(ConnectionLossError(
            f"moving from {current} to {target}: the ensemble changed"))
