"""Records named as in ``zookeeper.jute``: headers, handshake, Stat, ACL, WatcherEvent.

Each record has ``write(w)`` (or ``encode()``) and a ``read(r)`` classmethod/function.
Field orders follow the jute file exactly; see ``reference/zk_protocol.md`` section 5.
"""

from __future__ import annotations

import dataclasses
import struct
from dataclasses import dataclass

from ..errors import ProtocolError
from ..types import ACL, EventType, Id, KeeperState, Stat
from .jute import Reader, Writer

__all__ = (
    "ConnectRequest",
    "ConnectResponse",
    "ReplyHeader",
    "MultiHeader",
    "ClientInfo",
    "WatcherEvent",
    "request_header",
    "read_reply_header",
    "read_stat",
    "write_stat",
    "read_acl",
    "write_acl",
    "read_watcher_event",
    "STAT_SIZE",
    "REPLY_HEADER_SIZE",
)

_STAT = struct.Struct(">qqqqiiiqiiq")
STAT_SIZE = _STAT.size  # 68
_REPLY_HEADER = struct.Struct(">iqi")
REPLY_HEADER_SIZE = _REPLY_HEADER.size  # 16
_REQUEST_HEADER = struct.Struct(">ii")
_MULTI_HEADER = struct.Struct(">i?i")  # MultiHeader: int type, boolean done, int err


def request_header(xid: int, opcode: int) -> bytes:
    """RequestHeader: ``int xid, int type``."""
    return _REQUEST_HEADER.pack(xid, opcode)


@dataclass(frozen=True, slots=True)
class ReplyHeader:
    """ReplyHeader: ``int xid, long zxid, int err``."""

    xid: int
    zxid: int
    err: int


def read_reply_header(r: Reader) -> ReplyHeader:
    start = r._need(REPLY_HEADER_SIZE)
    xid, zxid, err = _REPLY_HEADER.unpack_from(r.data, start)
    return ReplyHeader(xid, zxid, err)


# Stat is a frozen slots dataclass: its __init__ assigns each of the 11 fields through
# object.__setattr__, which costs more than decoding the reply it came in. Every reply to a
# read or write carries a Stat, so build it through the slot descriptors instead (same
# object, same fields; about 2.5x faster).
_new = object.__new__
(_czxid, _mzxid, _ctime, _mtime, _version, _cversion, _aversion, _ephemeral_owner,
 _data_length, _num_children, _pzxid) = (
    getattr(Stat, f.name).__set__ for f in dataclasses.fields(Stat)
)


def make_stat(v: tuple[int, ...]) -> Stat:
    """``Stat(*v)`` for the 11 values in wire order, without the dataclass __init__."""
    s: Stat = _new(Stat)
    _czxid(s, v[0])
    _mzxid(s, v[1])
    _ctime(s, v[2])
    _mtime(s, v[3])
    _version(s, v[4])
    _cversion(s, v[5])
    _aversion(s, v[6])
    _ephemeral_owner(s, v[7])
    _data_length(s, v[8])
    _num_children(s, v[9])
    _pzxid(s, v[10])
    return s


def read_stat(r: Reader) -> Stat:
    start = r.offset
    if start + STAT_SIZE > r.end:
        raise r._truncated(STAT_SIZE, start)
    r.offset = start + STAT_SIZE
    return make_stat(_STAT.unpack_from(r.data, start))


def write_stat(w: Writer, s: Stat) -> None:
    w.buf += _STAT.pack(
        s.czxid, s.mzxid, s.ctime, s.mtime, s.version, s.cversion, s.aversion,
        s.ephemeral_owner, s.data_length, s.num_children, s.pzxid,
    )


def write_acl(w: Writer, acl: ACL) -> None:
    w.int(int(acl.perms))
    w.ustring(acl.id.scheme)
    w.ustring(acl.id.id)


def read_acl(r: Reader) -> ACL:
    perms = r.int()
    scheme = r.string()
    ident = r.string()
    return ACL(perms, Id(scheme, ident))


@dataclass(frozen=True, slots=True)
class ConnectRequest:
    """The client's first frame (no RequestHeader). ``read_only`` is the trailing byte."""

    protocol_version: int
    last_zxid_seen: int
    timeout_ms: int
    session_id: int
    password: bytes
    read_only: bool

    def encode(self) -> bytes:
        w = Writer()
        w.int(self.protocol_version)
        w.long(self.last_zxid_seen)
        w.int(self.timeout_ms)
        w.long(self.session_id)
        w.buffer(self.password)
        w.bool(self.read_only)
        return w.getvalue()

    @classmethod
    def read(cls, r: Reader) -> ConnectRequest:
        version = r.int()
        zxid = r.long()
        timeout = r.int()
        session = r.long()
        password = r.buffer() or b""
        read_only = r.bool() if r.remaining() else False
        return cls(version, zxid, timeout, session, password, read_only)


@dataclass(frozen=True, slots=True)
class ConnectResponse:
    """The server's first frame (no ReplyHeader). ``timeout_ms == 0`` means expired."""

    protocol_version: int
    timeout_ms: int
    session_id: int
    password: bytes
    read_only: bool

    def encode(self) -> bytes:
        w = Writer()
        w.int(self.protocol_version)
        w.int(self.timeout_ms)
        w.long(self.session_id)
        w.buffer(self.password)
        w.bool(self.read_only)
        return w.getvalue()

    @classmethod
    def read(cls, r: Reader) -> ConnectResponse:
        version = r.int()
        timeout = r.int()
        session = r.long()
        password = r.buffer() or b""
        # The readOnly byte is sent only when the request carried one; tolerate both.
        read_only = r.bool() if r.remaining() else False
        return cls(version, timeout, session, password, read_only)


@dataclass(frozen=True, slots=True, init=False)
class MultiHeader:
    """MultiHeader: ``int type, boolean done, int err`` (one per op in multi)."""

    type: int
    done: bool
    err: int

    def __init__(self, type: int, done: bool, err: int) -> None:
        # Through the slot setters, like Stat: the frozen dataclass __init__ assigns each
        # field by name through object.__setattr__, and multi and multiRead build a header
        # per op (10,000 for ServiceDiscovery.instances() of 10,000).
        _mh_type(self, type)
        _mh_done(self, done)
        _mh_err(self, err)

    def write(self, w: Writer) -> None:
        # One pack instead of three Writer calls: multi and multiRead write one header per
        # op (thousands for ServiceDiscovery.instances()).
        w.buf += _MULTI_HEADER.pack(self.type, self.done, self.err)

    @classmethod
    def read(cls, r: Reader) -> MultiHeader:
        op_type = r.int()
        done = r.bool()
        err = r.int()
        return cls(op_type, done, err)


_mh_type, _mh_done, _mh_err = (
    getattr(MultiHeader, f.name).__set__ for f in dataclasses.fields(MultiHeader)
)


@dataclass(frozen=True, slots=True)
class ClientInfo:
    """One identity of the connection, as returned by whoAmI."""

    auth_scheme: str
    user: str


@dataclass(frozen=True, slots=True)
class WatcherEvent:
    """WatcherEvent: ``int type, int state, ustring path`` (server path, with chroot)."""

    type: int
    state: int
    path: str

    def write(self, w: Writer) -> None:
        w.int(self.type)
        w.int(self.state)
        w.ustring(self.path)


_we_type, _we_state, _we_path = (
    getattr(WatcherEvent, f.name).__set__ for f in dataclasses.fields(WatcherEvent)
)


def read_watcher_event(r: Reader) -> WatcherEvent:
    op_type, state = r.int_pair()
    path = r.string()
    # Built through its slots, like Stat: every notification is one of these.
    event: WatcherEvent = _new(WatcherEvent)
    _we_type(event, op_type)
    _we_state(event, state)
    _we_path(event, path)
    return event


def event_type(value: int) -> EventType:
    try:
        return EventType(value)
    except ValueError as exc:
        raise ProtocolError(f"unknown watch event type {value}") from exc


def keeper_state(value: int) -> KeeperState:
    try:
        return KeeperState(value)
    except ValueError as exc:
        raise ProtocolError(f"unknown keeper state {value}") from exc
