"""Decoders for what a client sends: the inverse of :mod:`zkwarden.protocol.ops`.

The client only ever encodes requests; reading a capture needs the other direction.
:func:`decode_request` turns a request body (the bytes after the RequestHeader) into the
same :class:`~zkwarden.protocol.ops.Request` object that encodes it, so
``decode_request(op, req.body()) == req``; :func:`decode_connect_request` reads the
handshake frame. Two client opcodes have no encoder in ``ops`` (zkwarden's client does
not send them yet): sasl (102) and reconfig (16); their records are defined here.

Like the rest of the core: no I/O, and every failure is a
:class:`~zkwarden.errors.ProtocolError` (unknown opcode, truncated or trailing bytes).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

from ..errors import ProtocolError
from ..types import ACL, Stat
from . import ops
from .jute import Reader, Writer
from .ops import OpCode, Request
from .records import ConnectRequest, MultiHeader, read_acl, read_stat
from .sasl import Sasl

__all__ = (
    "OPCODE_NAMES",
    "Sasl",
    "Reconfig",
    "decode_request",
    "decode_connect_request",
    "read_request",
    "opcode_name",
)

#: ZooKeeper's own names for the opcodes (ZooDefs.OpCode / the server's logs).
OPCODE_NAMES: dict[int, str] = {
    0: "notification",
    1: "create",
    2: "delete",
    3: "exists",
    4: "getData",
    5: "setData",
    6: "getACL",
    7: "setACL",
    8: "getChildren",
    9: "sync",
    11: "ping",
    12: "getChildren2",
    13: "check",
    14: "multi",
    15: "create2",
    16: "reconfig",
    17: "checkWatches",
    18: "removeWatches",
    19: "createContainer",
    20: "deleteContainer",
    21: "createTTL",
    22: "multiRead",
    100: "auth",
    101: "setWatches",
    102: "sasl",
    103: "getEphemerals",
    104: "getAllChildrenNumber",
    105: "setWatches2",
    106: "addWatch",
    107: "whoAmI",
    -10: "createSession",
    -11: "closeSession",
    -1: "error",
}


def opcode_name(opcode: int) -> str:
    """ZooKeeper's name for ``opcode``, or ``"op<N>"`` for one it does not define."""
    return OPCODE_NAMES.get(opcode) or f"op{opcode}"


@dataclass(frozen=True, slots=True)
class Reconfig(Request):
    """reconfig (16): three server lists (null when unused) and the expected config id;
    the reply is a GetDataResponse (the new config and the Stat of /zookeeper/config)."""

    OPCODE: ClassVar[int] = OpCode.RECONFIG
    joining: str | None
    leaving: str | None
    new_members: str | None
    config_id: int = -1
    path: str = "/zookeeper/config"

    def body(self) -> bytes:
        w = Writer()
        w.ustring(self.joining)
        w.ustring(self.leaving)
        w.ustring(self.new_members)
        w.long(self.config_id)
        return bytes(w.buf)

    def read_response(self, r: Reader) -> tuple[bytes, Stat]:
        data = r.buffer()
        return (data or b""), read_stat(r)


def _acls(r: Reader) -> tuple[ACL, ...]:
    acl = r.vector(lambda: read_acl(r))
    if acl is None:  # the server answers InvalidACL; keep what was sent visible
        return ()
    return tuple(acl)


def _create(cls: type[ops.Create] | type[ops.Create2] | type[ops.CreateContainer]
            ) -> Callable[[Reader], Request]:
    def read(r: Reader) -> Request:
        path = r.string()
        data = r.buffer()
        acl = _acls(r)
        return cls(path, data, acl, r.int())

    return read


def _create_ttl(r: Reader) -> Request:
    path = r.string()
    data = r.buffer()
    acl = _acls(r)
    flags = r.int()
    return ops.CreateTTL(path, data, acl, flags, r.long())


def _watchable(cls: type[ops.Exists] | type[ops.GetData] | type[ops.GetChildren]
               | type[ops.GetChildren2]) -> Callable[[Reader], Request]:
    def read(r: Reader) -> Request:
        path = r.string()
        return cls(path, r.bool())

    return read


def _path_only(cls: type[ops.GetACL] | type[ops.Sync] | type[ops.GetEphemerals]
               | type[ops.GetAllChildrenNumber]) -> Callable[[Reader], Request]:
    def read(r: Reader) -> Request:
        return cls(r.string())

    return read


def _path_and_int(cls: type[ops.Delete] | type[ops.CheckVersion] | type[ops.CheckWatches]
                  | type[ops.RemoveWatches] | type[ops.AddWatch]
                  ) -> Callable[[Reader], Request]:
    def read(r: Reader) -> Request:
        path = r.string()
        return cls(path, r.int())

    return read


def _set_data(r: Reader) -> Request:
    path = r.string()
    data = r.buffer()
    return ops.SetData(path, data, r.int())


def _set_acl(r: Reader) -> Request:
    path = r.string()
    acl = _acls(r)
    return ops.SetACL(path, acl, r.int())


def _auth(r: Reader) -> Request:
    r.int()  # AuthPacket.type: ignored by the server
    scheme = r.string()
    credentials = r.buffer()
    return ops.Auth(scheme, credentials or b"")


def _set_watches(r: Reader) -> Request:
    zxid = r.long()
    return ops.SetWatches(zxid, r.ustrings(), r.ustrings(), r.ustrings())


def _set_watches2(r: Reader) -> Request:
    zxid = r.long()
    data, exist, child = r.ustrings(), r.ustrings(), r.ustrings()
    return ops.SetWatches2(zxid, data, exist, child, r.ustrings(), r.ustrings())


def _sasl(r: Reader) -> Request:
    return Sasl(r.buffer())


def _reconfig(r: Reader) -> Request:
    joining = r.ustring()
    leaving = r.ustring()
    members = r.ustring()
    return Reconfig(joining, leaving, members, r.long())


def _no_body(cls: type[ops.Ping] | type[ops.WhoAmI] | type[ops.CloseSession]
             ) -> Callable[[Reader], Request]:
    def read(r: Reader) -> Request:
        return cls()

    return read


# Ops allowed inside multi (writes) and multiRead (reads); see reference section 5.3.
_MULTI_WRITES = frozenset({1, 2, 5, 13, 15, 19, 21})
_MULTI_READS = frozenset({4, 8})


def _multi(allowed: frozenset[int], read_only: bool) -> Callable[[Reader], Request]:
    def read(r: Reader) -> Request:
        items: list[Request] = []
        while True:
            header = MultiHeader.read(r)
            if header.done:
                break
            if header.type not in allowed:
                raise ProtocolError(
                    f"{opcode_name(header.type)} cannot be part of "
                    f"{'multiRead' if read_only else 'multi'}"
                )
            items.append(_READERS[header.type](r))
        if read_only:
            return ops.MultiRead(items)
        return ops.Multi(items)

    return read


_READERS: dict[int, Callable[[Reader], Request]] = {
    1: _create(ops.Create),
    2: _path_and_int(ops.Delete),
    3: _watchable(ops.Exists),
    4: _watchable(ops.GetData),
    5: _set_data,
    6: _path_only(ops.GetACL),
    7: _set_acl,
    8: _watchable(ops.GetChildren),
    9: _path_only(ops.Sync),
    11: _no_body(ops.Ping),
    12: _watchable(ops.GetChildren2),
    13: _path_and_int(ops.CheckVersion),
    14: _multi(_MULTI_WRITES, False),
    15: _create(ops.Create2),
    16: _reconfig,
    17: _path_and_int(ops.CheckWatches),
    18: _path_and_int(ops.RemoveWatches),
    19: _create(ops.CreateContainer),
    21: _create_ttl,
    22: _multi(_MULTI_READS, True),
    100: _auth,
    101: _set_watches,
    102: _sasl,
    103: _path_only(ops.GetEphemerals),
    104: _path_only(ops.GetAllChildrenNumber),
    105: _set_watches2,
    106: _path_and_int(ops.AddWatch),
    107: _no_body(ops.WhoAmI),
    -11: _no_body(ops.CloseSession),
}

#: Opcodes a client may send and :func:`decode_request` reads.
REQUEST_OPCODES: frozenset[int] = frozenset(_READERS)


def read_request(opcode: int, r: Reader) -> Request:
    """Read the request record for ``opcode`` at ``r``'s offset (trailing bytes allowed).

    Raises:
        ProtocolError: an unknown opcode or a malformed record.
    """
    reader = _READERS.get(opcode)
    if reader is None:
        raise ProtocolError(f"no client request has opcode {opcode}")
    return reader(r)


def decode_request(opcode: int, body: bytes | bytearray | memoryview) -> Request:
    """Decode a whole request body (the frame after its 8-byte RequestHeader).

    Raises:
        ProtocolError: an unknown opcode, a malformed record, or trailing bytes.
    """
    r = Reader(body)
    request = read_request(opcode, r)
    r.expect_end(opcode_name(opcode))
    return request


def decode_connect_request(payload: bytes | bytearray | memoryview) -> ConnectRequest:
    """Decode the client's first frame (no RequestHeader); the readOnly byte is optional.

    Raises:
        ProtocolError: a malformed or over-long record.
    """
    r = Reader(payload)
    request = ConnectRequest.read(r)
    r.expect_end("ConnectRequest")
    return request
