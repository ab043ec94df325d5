"""One request type per client opcode, each knowing how to read its response.

Paths here are *server* paths (chroot already applied by the client). A request's
``body()`` is the record after the RequestHeader; ``read_response(r)`` decodes the record
after a ReplyHeader with ``err == 0`` and returns a plain Python value. Nothing here does
I/O or keeps state.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from ..errors import ProtocolError, ZooKeeperError
from ..types import ACL, Stat
from .jute import Reader, Writer
from .multi import read_multi_results
from .records import ClientInfo, MultiHeader, read_acl, read_stat, write_acl

__all__ = (
    "OpCode",
    "Request",
    "Create",
    "Create2",
    "CreateContainer",
    "CreateTTL",
    "Delete",
    "Exists",
    "GetData",
    "SetData",
    "GetACL",
    "SetACL",
    "GetChildren",
    "GetChildren2",
    "Sync",
    "Ping",
    "CheckVersion",
    "Multi",
    "MultiRead",
    "CheckWatches",
    "RemoveWatches",
    "Auth",
    "SetWatches",
    "SetWatches2",
    "GetEphemerals",
    "GetAllChildrenNumber",
    "AddWatch",
    "WhoAmI",
    "CloseSession",
    "WatchKind",
)


class OpCode(enum.IntEnum):
    """ZooDefs.OpCode values (identical in 3.5–3.9)."""

    CREATE = 1
    DELETE = 2
    EXISTS = 3
    GET_DATA = 4
    SET_DATA = 5
    GET_ACL = 6
    SET_ACL = 7
    GET_CHILDREN = 8
    SYNC = 9
    PING = 11
    GET_CHILDREN2 = 12
    CHECK = 13
    MULTI = 14
    CREATE2 = 15
    RECONFIG = 16
    CHECK_WATCHES = 17
    REMOVE_WATCHES = 18
    CREATE_CONTAINER = 19
    CREATE_TTL = 21
    MULTI_READ = 22
    AUTH = 100
    SET_WATCHES = 101
    SASL = 102
    GET_EPHEMERALS = 103
    GET_ALL_CHILDREN_NUMBER = 104
    SET_WATCHES2 = 105
    ADD_WATCH = 106
    WHO_AM_I = 107
    CLOSE_SESSION = -11
    ERROR = -1


class WatchKind(enum.Enum):
    """Which client-side watch table a successful read arms."""

    DATA = "data"
    EXIST = "exist"
    CHILD = "child"
    PERSISTENT = "persistent"
    PERSISTENT_RECURSIVE = "persistent_recursive"


_I = struct.Struct(">i")
_Q = struct.Struct(">q")


def _path_bytes(path: str) -> bytes:
    raw = path.encode("utf-8")
    return _I.pack(len(raw)) + raw


def _data_bytes(data: bytes | None) -> bytes:
    if data is None:
        return b"\xff\xff\xff\xff"
    return _I.pack(len(data)) + data


def _acl_bytes(acl: Sequence[ACL]) -> bytes:
    w = Writer()
    w.vector(acl, lambda a: write_acl(w, a))
    return bytes(w.buf)


class Request:
    """Base of all requests. Subclasses set OPCODE and implement body/read_response."""

    OPCODE: ClassVar[int]
    #: watch table armed on success (None: the request sets no watch)
    WATCH: ClassVar[WatchKind | None] = None
    path: str

    def body(self) -> bytes:
        return b""

    def read_response(self, r: Reader) -> Any:
        return None

    @property
    def watch_kind(self) -> WatchKind | None:
        return None


@dataclass(frozen=True, slots=True)
class _CreateBase(Request):
    path: str
    data: bytes | None
    acl: Sequence[ACL]
    flags: int

    def body(self) -> bytes:
        return (
            _path_bytes(self.path) + _data_bytes(self.data) + _acl_bytes(self.acl)
            + _I.pack(self.flags)
        )


@dataclass(frozen=True, slots=True)
class Create(_CreateBase):
    """create (1) → the actual path (with any sequence suffix)."""

    OPCODE: ClassVar[int] = OpCode.CREATE

    def read_response(self, r: Reader) -> tuple[str, Stat | None]:
        return r.string(), None


@dataclass(frozen=True, slots=True)
class Create2(_CreateBase):
    """create2 (15) → (actual path, Stat)."""

    OPCODE: ClassVar[int] = OpCode.CREATE2

    def read_response(self, r: Reader) -> tuple[str, Stat | None]:
        return r.string(), read_stat(r)


@dataclass(frozen=True, slots=True)
class CreateContainer(_CreateBase):
    """createContainer (19) → (path, Stat); flags must be 4."""

    OPCODE: ClassVar[int] = OpCode.CREATE_CONTAINER

    def read_response(self, r: Reader) -> tuple[str, Stat | None]:
        return r.string(), read_stat(r)


@dataclass(frozen=True, slots=True)
class CreateTTL(Request):
    """createTTL (21) → (path, Stat); flags 5 or 6, ttl in ms."""

    OPCODE: ClassVar[int] = OpCode.CREATE_TTL
    path: str
    data: bytes | None
    acl: Sequence[ACL]
    flags: int
    ttl_ms: int

    def body(self) -> bytes:
        return (
            _path_bytes(self.path) + _data_bytes(self.data) + _acl_bytes(self.acl)
            + _I.pack(self.flags) + _Q.pack(self.ttl_ms)
        )

    def read_response(self, r: Reader) -> tuple[str, Stat | None]:
        return r.string(), read_stat(r)


@dataclass(frozen=True, slots=True)
class Delete(Request):
    """delete (2) → None."""

    OPCODE: ClassVar[int] = OpCode.DELETE
    path: str
    version: int = -1

    def body(self) -> bytes:
        return _path_bytes(self.path) + _I.pack(self.version)


@dataclass(frozen=True, slots=True)
class _WatchableRead(Request):
    path: str
    watch: bool = False

    def body(self) -> bytes:
        return _path_bytes(self.path) + (b"\x01" if self.watch else b"\x00")

    @property
    def watch_kind(self) -> WatchKind | None:
        return self.WATCH if self.watch else None


@dataclass(frozen=True, slots=True)
class Exists(_WatchableRead):
    """exists (3) → Stat. NoNode still arms an exist watch on the server."""

    OPCODE: ClassVar[int] = OpCode.EXISTS
    WATCH: ClassVar[WatchKind | None] = WatchKind.EXIST

    def read_response(self, r: Reader) -> Stat:
        return read_stat(r)


@dataclass(frozen=True, slots=True)
class GetData(_WatchableRead):
    """getData (4) → (data, Stat); null data decodes as b""."""

    OPCODE: ClassVar[int] = OpCode.GET_DATA
    WATCH: ClassVar[WatchKind | None] = WatchKind.DATA

    def read_response(self, r: Reader) -> tuple[bytes, Stat]:
        data = r.buffer()
        return (data or b""), read_stat(r)


@dataclass(frozen=True, slots=True)
class GetChildren(_WatchableRead):
    """getChildren (8) → list of child names."""

    OPCODE: ClassVar[int] = OpCode.GET_CHILDREN
    WATCH: ClassVar[WatchKind | None] = WatchKind.CHILD

    def read_response(self, r: Reader) -> list[str]:
        return r.ustrings()


@dataclass(frozen=True, slots=True)
class GetChildren2(_WatchableRead):
    """getChildren2 (12) → (children, Stat)."""

    OPCODE: ClassVar[int] = OpCode.GET_CHILDREN2
    WATCH: ClassVar[WatchKind | None] = WatchKind.CHILD

    def read_response(self, r: Reader) -> tuple[list[str], Stat]:
        children = r.ustrings()
        return children, read_stat(r)


@dataclass(frozen=True, slots=True)
class SetData(Request):
    """setData (5) → Stat."""

    OPCODE: ClassVar[int] = OpCode.SET_DATA
    path: str
    data: bytes | None
    version: int = -1

    def body(self) -> bytes:
        return _path_bytes(self.path) + _data_bytes(self.data) + _I.pack(self.version)

    def read_response(self, r: Reader) -> Stat:
        return read_stat(r)


@dataclass(frozen=True, slots=True)
class GetACL(Request):
    """getACL (6) → (acl list, Stat)."""

    OPCODE: ClassVar[int] = OpCode.GET_ACL
    path: str

    def body(self) -> bytes:
        return _path_bytes(self.path)

    def read_response(self, r: Reader) -> tuple[list[ACL], Stat]:
        acl = r.vector(lambda: read_acl(r)) or []
        return acl, read_stat(r)


@dataclass(frozen=True, slots=True)
class SetACL(Request):
    """setACL (7) → Stat; ``version`` is the node's aversion."""

    OPCODE: ClassVar[int] = OpCode.SET_ACL
    path: str
    acl: Sequence[ACL]
    version: int = -1

    def body(self) -> bytes:
        return _path_bytes(self.path) + _acl_bytes(self.acl) + _I.pack(self.version)

    def read_response(self, r: Reader) -> Stat:
        return read_stat(r)


@dataclass(frozen=True, slots=True)
class Sync(Request):
    """sync (9) → the path."""

    OPCODE: ClassVar[int] = OpCode.SYNC
    path: str

    def body(self) -> bytes:
        return _path_bytes(self.path)

    def read_response(self, r: Reader) -> str:
        return r.string()


@dataclass(frozen=True, slots=True)
class Ping(Request):
    """ping (11), sent with xid -2; no body either way."""

    OPCODE: ClassVar[int] = OpCode.PING
    path: str = ""


@dataclass(frozen=True, slots=True)
class CheckVersion(Request):
    """check (13): only valid inside multi (standalone it hangs or closes the connection)."""

    OPCODE: ClassVar[int] = OpCode.CHECK
    path: str
    version: int

    def body(self) -> bytes:
        return _path_bytes(self.path) + _I.pack(self.version)


_MULTI_END = MultiHeader(-1, True, -1)
_MULTI_END_BYTES = struct.pack(">i?i", -1, True, -1)
# a multiRead op: its MultiHeader (type, done, err) and the length of its path
_MULTI_READ_OP = struct.Struct(">i?ii")
_WRITE_OPS = (Create, Create2, CreateContainer, CreateTTL, Delete, SetData, CheckVersion)
_READ_OPS = (GetData, GetChildren)


@dataclass(frozen=True, slots=True)
class Multi(Request):
    """multi (14): atomic writes. The result list holds a value per op, or an exception.

    A failed multi still has outer err 0: every result is an error, ops before the
    failing one with code 0 (reported as None), the failing one with its real code,
    later ones with RuntimeInconsistency.
    """

    OPCODE: ClassVar[int] = OpCode.MULTI
    ops: Sequence[Request]
    path: str = ""

    def body(self) -> bytes:
        w = Writer()
        for op in self.ops:
            if not isinstance(op, _WRITE_OPS):
                raise ProtocolError(f"{type(op).__name__} cannot be part of a transaction")
            MultiHeader(op.OPCODE, False, -1).write(w)
            w.buf += op.body()
        _MULTI_END.write(w)
        return bytes(w.buf)

    def read_response(self, r: Reader) -> list[Any]:
        return read_multi_results(r)


@dataclass(frozen=True, slots=True)
class MultiRead(Request):
    """multiRead (22, ZooKeeper >= 3.6): getData/getChildren, not atomic, per-op errors."""

    OPCODE: ClassVar[int] = OpCode.MULTI_READ
    ops: Sequence[Request]
    path: str = ""

    def body(self) -> bytes:
        parts: list[bytes] = []
        pack = _MULTI_READ_OP.pack
        for op in self.ops:
            if not isinstance(op, _READ_OPS):
                raise ProtocolError(f"{type(op).__name__} cannot be part of multi_read")
            raw = op.path.encode("utf-8")
            # One pack per op (its MultiHeader and the path's length), then the path and
            # the watch flag the server ignores: a multiRead of 10,000 encodes 10,000.
            parts.append(pack(op.OPCODE, False, -1, len(raw)))
            parts.append(raw)
            parts.append(b"\x00")
        parts.append(_MULTI_END_BYTES)
        return b"".join(parts)

    def read_response(self, r: Reader) -> list[Any]:
        return read_multi_results(r)


@dataclass(frozen=True, slots=True)
class _PathAndType(Request):
    path: str
    watcher_type: int

    def body(self) -> bytes:
        return _path_bytes(self.path) + _I.pack(self.watcher_type)


@dataclass(frozen=True, slots=True)
class CheckWatches(_PathAndType):
    """checkWatches (17) → None; NoWatcher (-121) when absent."""

    OPCODE: ClassVar[int] = OpCode.CHECK_WATCHES


@dataclass(frozen=True, slots=True)
class RemoveWatches(_PathAndType):
    """removeWatches (18) → None; removes all of this connection's watches of the type."""

    OPCODE: ClassVar[int] = OpCode.REMOVE_WATCHES


@dataclass(frozen=True, slots=True)
class Auth(Request):
    """auth (100), xid -4: ``type`` is ignored by the server; scheme + credentials."""

    OPCODE: ClassVar[int] = OpCode.AUTH
    scheme: str
    credentials: bytes
    path: str = ""

    def body(self) -> bytes:
        w = Writer()
        w.int(0)
        w.ustring(self.scheme)
        w.buffer(self.credentials)
        return bytes(w.buf)


@dataclass(frozen=True, slots=True)
class SetWatches(Request):
    """setWatches (101), xid -8: re-register one-shot watches after a reconnect."""

    OPCODE: ClassVar[int] = OpCode.SET_WATCHES
    relative_zxid: int
    data: Sequence[str]
    exist: Sequence[str]
    child: Sequence[str]
    path: str = ""

    def body(self) -> bytes:
        w = Writer()
        w.long(self.relative_zxid)
        w.ustrings(self.data)
        w.ustrings(self.exist)
        w.ustrings(self.child)
        return bytes(w.buf)


@dataclass(frozen=True, slots=True)
class SetWatches2(Request):
    """setWatches2 (105, ZooKeeper >= 3.6): also persistent and recursive watches."""

    OPCODE: ClassVar[int] = OpCode.SET_WATCHES2
    relative_zxid: int
    data: Sequence[str]
    exist: Sequence[str]
    child: Sequence[str]
    persistent: Sequence[str]
    persistent_recursive: Sequence[str]
    path: str = ""

    def body(self) -> bytes:
        w = Writer()
        w.long(self.relative_zxid)
        for paths in (self.data, self.exist, self.child, self.persistent,
                      self.persistent_recursive):
            w.ustrings(paths)
        return bytes(w.buf)


@dataclass(frozen=True, slots=True)
class GetEphemerals(Request):
    """getEphemerals (103) → full paths of this session's ephemerals under a prefix."""

    OPCODE: ClassVar[int] = OpCode.GET_EPHEMERALS
    path: str  # a plain string prefix, not path-aware

    def body(self) -> bytes:
        return _path_bytes(self.path)

    def read_response(self, r: Reader) -> list[str]:
        return r.ustrings()


@dataclass(frozen=True, slots=True)
class GetAllChildrenNumber(Request):
    """getAllChildrenNumber (104) → number of all descendants."""

    OPCODE: ClassVar[int] = OpCode.GET_ALL_CHILDREN_NUMBER
    path: str

    def body(self) -> bytes:
        return _path_bytes(self.path)

    def read_response(self, r: Reader) -> int:
        return r.int()


@dataclass(frozen=True, slots=True)
class AddWatch(Request):
    """addWatch (106) → None. The reply carries a 4-byte ErrorResponse that must be read."""

    OPCODE: ClassVar[int] = OpCode.ADD_WATCH
    path: str
    mode: int  # 0 persistent, 1 persistent recursive

    def body(self) -> bytes:
        return _path_bytes(self.path) + _I.pack(self.mode)

    def read_response(self, r: Reader) -> None:
        if r.remaining() >= 4:
            r.int()

    @property
    def watch_kind(self) -> WatchKind | None:
        return WatchKind.PERSISTENT_RECURSIVE if self.mode == 1 else WatchKind.PERSISTENT


@dataclass(frozen=True, slots=True)
class WhoAmI(Request):
    """whoAmI (107, ZooKeeper >= 3.7) → the connection's identities."""

    OPCODE: ClassVar[int] = OpCode.WHO_AM_I
    path: str = ""

    def read_response(self, r: Reader) -> list[ClientInfo]:
        def one() -> ClientInfo:
            return ClientInfo(r.string(), r.string())

        return r.vector(one) or []


@dataclass(frozen=True, slots=True)
class CloseSession(Request):
    """closeSession (-11) → None; the server closes the socket after replying."""

    OPCODE: ClassVar[int] = OpCode.CLOSE_SESSION
    path: str = ""


def is_error(result: object) -> bool:
    """True for a multi result that is an error."""
    return isinstance(result, ZooKeeperError)
