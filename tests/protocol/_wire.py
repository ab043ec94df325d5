"""Test-side helpers written from reference/zk_protocol.md, independent of zkwarden.

``SpecReader`` and ``decode_request`` decode request bodies from the layouts in section 5
of the reference (not with ``zkwarden.protocol.jute``), so a round trip through them checks
the encoder against an independent reading of the spec. ``split_frames`` splits a byte
stream of client frames (length, xid, opcode, body).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def hx(text: str) -> bytes:
    """``bytes.fromhex`` that also ignores ``|`` separators used to group fields."""
    return bytes.fromhex(text.replace("|", " "))


class SpecError(AssertionError):
    """The bytes do not follow the spec layout."""


class SpecReader:
    """Reads jute values exactly as section 1.2 describes them."""

    def __init__(self, data: bytes) -> None:
        self.data = bytes(data)
        self.pos = 0

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise SpecError(f"need {n} bytes at {self.pos}, have {len(self.data)}")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def int(self) -> int:
        return int.from_bytes(self.take(4), "big", signed=True)

    def long(self) -> int:
        return int.from_bytes(self.take(8), "big", signed=True)

    def bool(self) -> bool:
        b = self.take(1)[0]
        if b not in (0, 1):
            raise SpecError(f"boolean byte {b:#x}")
        return b == 1

    def buffer(self) -> bytes | None:
        n = self.int()
        if n == -1:
            return None
        return self.take(n)

    def ustring(self) -> str | None:
        raw = self.buffer()
        return None if raw is None else raw.decode("utf-8")

    def vector(self, element: Callable[[], T]) -> list[T] | None:
        n = self.int()
        if n == -1:
            return None
        return [element() for _ in range(n)]

    def acl(self) -> tuple[int, str | None, str | None]:
        return (self.int(), self.ustring(), self.ustring())

    def at_end(self) -> bool:
        return self.pos == len(self.data)


def _create(r: SpecReader) -> dict[str, Any]:
    return {
        "path": r.ustring(),
        "data": r.buffer(),
        "acl": r.vector(r.acl),
        "flags": r.int(),
    }


def _record(r: SpecReader, opcode: int) -> dict[str, Any]:
    """The request record for ``opcode`` (section 5.2), read from ``r``."""
    if opcode in (1, 15, 19):  # CreateRequest
        return _create(r)
    if opcode == 21:  # CreateTTLRequest
        out = _create(r)
        out["ttl"] = r.long()
        return out
    if opcode in (2, 13):  # DeleteRequest, CheckVersionRequest
        return {"path": r.ustring(), "version": r.int()}
    if opcode in (3, 4, 8, 12):  # Exists/GetData/GetChildren/GetChildren2 request
        return {"path": r.ustring(), "watch": r.bool()}
    if opcode == 5:  # SetDataRequest
        return {"path": r.ustring(), "data": r.buffer(), "version": r.int()}
    if opcode in (6, 9, 103, 104):  # GetACL, Sync, GetEphemerals, GetAllChildrenNumber
        return {"path": r.ustring()}
    if opcode == 7:  # SetACLRequest
        return {"path": r.ustring(), "acl": r.vector(r.acl), "version": r.int()}
    if opcode in (17, 18):  # CheckWatchesRequest, RemoveWatchesRequest
        return {"path": r.ustring(), "type": r.int()}
    if opcode == 100:  # AuthPacket
        return {"type": r.int(), "scheme": r.ustring(), "auth": r.buffer()}
    if opcode == 101:  # SetWatches
        return {
            "relative_zxid": r.long(),
            "data": r.vector(r.ustring),
            "exist": r.vector(r.ustring),
            "child": r.vector(r.ustring),
        }
    if opcode == 105:  # SetWatches2
        return {
            "relative_zxid": r.long(),
            "data": r.vector(r.ustring),
            "exist": r.vector(r.ustring),
            "child": r.vector(r.ustring),
            "persistent": r.vector(r.ustring),
            "persistent_recursive": r.vector(r.ustring),
        }
    if opcode == 106:  # AddWatchRequest
        return {"path": r.ustring(), "mode": r.int()}
    if opcode in (11, 107, -11):  # ping, whoAmI, closeSession: no body
        return {}
    if opcode in (14, 22):  # multi / multiRead (section 5.3)
        ops: list[tuple[int, dict[str, Any]]] = []
        while True:
            op_type, done, err = r.int(), r.bool(), r.int()
            if done:
                if (op_type, err) != (-1, -1):
                    raise SpecError(f"bad multi terminator ({op_type}, {done}, {err})")
                return {"ops": ops}
            if err != -1:
                raise SpecError(f"multi op header err {err}, expected -1")
            ops.append((op_type, _record(r, op_type)))
    raise SpecError(f"no request record known for opcode {opcode}")


def decode_request(opcode: int, body: bytes) -> dict[str, Any]:
    """Decode a whole request body; it must be consumed exactly."""
    r = SpecReader(body)
    out = _record(r, opcode)
    if not r.at_end():
        raise SpecError(f"{len(body) - r.pos} trailing bytes after opcode {opcode}")
    return out


def split_frames(stream: bytes) -> list[tuple[int, int, bytes]]:
    """Split client frames into (xid, opcode, body); the stream must end on a frame."""
    r = SpecReader(stream)
    frames = []
    while not r.at_end():
        length = r.int()
        payload = SpecReader(r.take(length))
        xid, opcode = payload.int(), payload.int()
        frames.append((xid, opcode, payload.take(length - 8)))
    return frames
