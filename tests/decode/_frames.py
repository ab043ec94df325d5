"""ZooKeeper frames for synthetic captures, built with the protocol core's encoders."""

from __future__ import annotations

import struct

from zkwarden.protocol import ops
from zkwarden.protocol.records import ConnectRequest, ConnectResponse, request_header
from zkwarden.types import Stat

STAT = Stat(1, 2, 3, 4, 0, 0, 0, 0, 1, 0, 5)
STAT_BYTES = struct.pack(">qqqqiiiqiiq", 1, 2, 3, 4, 0, 0, 0, 0, 1, 0, 5)
SESSION = 0x0100000434530000


def framed(payload: bytes) -> bytes:
    return struct.pack(">i", len(payload)) + payload


def connect_request(session: int = 0) -> bytes:
    return framed(ConnectRequest(0, 0, 10000, session, b"\x07" * 16, False).encode())


def connect_response(session: int = SESSION, timeout: int = 10000) -> bytes:
    return framed(ConnectResponse(0, timeout, session, b"\x07" * 16, False).encode())


def request(xid: int, req: ops.Request) -> bytes:
    return framed(request_header(xid, req.OPCODE) + req.body())


def reply(xid: int, body: bytes = b"", err: int = 0, zxid: int = 7) -> bytes:
    return framed(struct.pack(">iqi", xid, zxid, err) + body)


def get_data_reply(xid: int) -> bytes:
    return reply(xid, struct.pack(">i", 1) + b"x" + STAT_BYTES)
