"""Public value types: Stat, ACL, Id, WatchEvent, EventType, ClientState and friends."""

from __future__ import annotations

import base64
import enum
import hashlib
from dataclasses import dataclass

from .errors import InvalidArgumentError

__all__ = (
    "Id",
    "ACL",
    "Perms",
    "Stat",
    "EventType",
    "KeeperState",
    "WatchEvent",
    "WatcherType",
    "AddWatchMode",
    "CreateMode",
    "ClientState",
    "ClientStateChange",
    "OPEN_ACL_UNSAFE",
    "CREATOR_ALL_ACL",
    "READ_ACL_UNSAFE",
    "make_digest_acl",
    "make_digest_id",
)


class Perms(enum.IntFlag):
    """ACL permission bits."""

    READ = 1
    WRITE = 2
    CREATE = 4
    DELETE = 8
    ADMIN = 16
    ALL = 31


@dataclass(frozen=True, slots=True)
class Id:
    """An ACL identity: ``scheme`` (world, digest, ip, auth, x509, sasl) and ``id``."""

    scheme: str
    id: str


@dataclass(frozen=True, slots=True)
class ACL:
    """One access-control entry: permission bits for an identity."""

    perms: int
    id: Id

    @classmethod
    def digest(cls, user: str, password: str, perms: int = Perms.ALL) -> ACL:
        """``perms`` for the digest user ``user`` (id ``user:base64(sha1(user:password))``,
        as the server derives it; the password itself is not kept).

        Raises:
            InvalidArgumentError: ``user`` contains ``:`` (the server could never match it).
        """
        if ":" in user:
            raise InvalidArgumentError("a digest user name cannot contain ':'")
        return make_digest_acl(user, password, perms)

    @classmethod
    def sasl(cls, principal: str, perms: int = Perms.ALL) -> ACL:
        """``perms`` for a SASL identity: a DIGEST-MD5 user name, or a Kerberos principal
        as the server names it (``alice@REALM``). Needs the server's
        ``SASLAuthenticationProvider``."""
        return cls(int(perms), Id("sasl", principal))

    @classmethod
    def x509(cls, dn: str, perms: int = Perms.ALL) -> ACL:
        """``perms`` for a TLS client certificate, by its subject DN as the server prints it
        (e.g. ``CN=app,OU=ops``)."""
        return cls(int(perms), Id("x509", dn))

    @classmethod
    def world(cls, perms: int = Perms.ALL) -> ACL:
        """``perms`` for everybody (``world:anyone``)."""
        return cls(int(perms), Id("world", "anyone"))

    @classmethod
    def creator(cls, perms: int = Perms.ALL) -> ACL:
        """``perms`` for the identities of the connection that creates the node (``auth:``)."""
        return cls(int(perms), Id("auth", ""))


OPEN_ACL_UNSAFE: tuple[ACL, ...] = (ACL(Perms.ALL, Id("world", "anyone")),)
READ_ACL_UNSAFE: tuple[ACL, ...] = (ACL(Perms.READ, Id("world", "anyone")),)
CREATOR_ALL_ACL: tuple[ACL, ...] = (ACL(Perms.ALL, Id("auth", "")),)


def make_digest_id(user: str, password: str) -> Id:
    """The ``digest`` identity ZooKeeper derives from ``user:password`` (base64 of sha1)."""
    raw = hashlib.sha1(f"{user}:{password}".encode()).digest()
    return Id("digest", f"{user}:{base64.b64encode(raw).decode()}")


def make_digest_acl(user: str, password: str, perms: int = Perms.ALL) -> ACL:
    """An ACL entry granting ``perms`` to the digest user ``user`` with ``password``."""
    return ACL(int(perms), make_digest_id(user, password))


@dataclass(frozen=True, slots=True)
class Stat:
    """A znode's metadata, as returned by the server (times in milliseconds since epoch)."""

    czxid: int
    mzxid: int
    ctime: int
    mtime: int
    version: int
    cversion: int
    aversion: int
    ephemeral_owner: int
    data_length: int
    num_children: int
    pzxid: int

    @property
    def created(self) -> float:
        """Creation time in seconds since the epoch."""
        return self.ctime / 1000.0

    @property
    def last_modified(self) -> float:
        """Last modification time in seconds since the epoch."""
        return self.mtime / 1000.0


class EventType(enum.IntEnum):
    """The type of a watch event (values as on the wire)."""

    NONE = -1
    NODE_CREATED = 1
    NODE_DELETED = 2
    NODE_DATA_CHANGED = 3
    NODE_CHILDREN_CHANGED = 4
    DATA_WATCH_REMOVED = 5
    CHILD_WATCH_REMOVED = 6
    PERSISTENT_WATCH_REMOVED = 7


class KeeperState(enum.IntEnum):
    """The connection state carried by a watch notification (values as on the wire)."""

    DISCONNECTED = 0
    SYNC_CONNECTED = 3
    AUTH_FAILED = 4
    CONNECTED_READ_ONLY = 5
    SASL_AUTHENTICATED = 6
    CLOSED = 7
    EXPIRED = -112


@dataclass(frozen=True, slots=True)
class WatchEvent:
    """One watch notification: what happened, to which path (chroot already stripped).

    Streams from ``watch()`` start with an event of type ``NONE`` holding the current
    state, and every later event carries the state read in the same request that re-armed
    the watch. Persistent streams from ``add_watch()`` yield ``NONE`` when the watch is
    (re-)armed: after a reconnect, changes made meanwhile are not replayed by the server,
    so a consumer that keeps state re-reads it then.
    """

    type: EventType
    state: KeeperState
    path: str
    #: zxid of the change on 3.9+ servers; -1 on 3.8 and for events replayed after reconnect.
    zxid: int = -1
    #: For ``watch(kind="data")``: the node's data read when the watch was re-armed
    #: (None while the node does not exist).
    data: bytes | None = None
    #: For ``watch()`` streams: the node's Stat read when re-arming (None: no such node).
    stat: Stat | None = None
    #: For ``watch(kind="children")``: the child names read when re-arming.
    children: tuple[str, ...] | None = None

    @property
    def exists(self) -> bool:
        """For ``watch()`` streams: whether the node existed when the watch was re-armed."""
        return self.stat is not None


class WatcherType(enum.IntEnum):
    """Watch kinds for remove_watches/check_watches (4 and 5 need ZooKeeper >= 3.9)."""

    CHILDREN = 1
    DATA = 2
    ANY = 3
    PERSISTENT = 4
    PERSISTENT_RECURSIVE = 5


class AddWatchMode(enum.IntEnum):
    """Modes of the addWatch operation."""

    PERSISTENT = 0
    PERSISTENT_RECURSIVE = 1


class CreateMode(enum.IntEnum):
    """Create flags as on the wire."""

    PERSISTENT = 0
    EPHEMERAL = 1
    PERSISTENT_SEQUENTIAL = 2
    EPHEMERAL_SEQUENTIAL = 3
    CONTAINER = 4
    PERSISTENT_WITH_TTL = 5
    PERSISTENT_SEQUENTIAL_WITH_TTL = 6

    @classmethod
    def from_options(
        cls, *, ephemeral: bool, sequence: bool, container: bool, ttl: bool
    ) -> CreateMode:
        """Pick the mode for a combination of create() options (caller validated them)."""
        if container:
            return cls.CONTAINER
        if ttl:
            return cls.PERSISTENT_SEQUENTIAL_WITH_TTL if sequence else cls.PERSISTENT_WITH_TTL
        if ephemeral:
            return cls.EPHEMERAL_SEQUENTIAL if sequence else cls.EPHEMERAL
        return cls.PERSISTENT_SEQUENTIAL if sequence else cls.PERSISTENT


class ClientState(enum.Enum):
    """What applications act on (see DESIGN section 4)."""

    CONNECTING = "CONNECTING"
    CONNECTED = "CONNECTED"
    SUSPENDED = "SUSPENDED"
    LOST = "LOST"
    READ_ONLY = "READ_ONLY"
    CLOSED = "CLOSED"


@dataclass(frozen=True, slots=True)
class ClientStateChange:
    """A change of :class:`ClientState`.

    ``session_id`` is the session the state refers to (None before the first session);
    ``new_session`` is True on the first CONNECTED/READ_ONLY of a session that replaced
    an earlier one (or the very first session).
    """

    state: ClientState
    previous: ClientState
    session_id: int | None
    new_session: bool = False
    #: For LOST: True when a server confirmed the expiry, False when presumed.
    confirmed: bool = False
