"""Raw ZooKeeper wire helpers for testing the harness without any zkwarden client."""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

CONNECT_REQUEST_LEN = 45
CONNECT_RESPONSE_LEN = 37


@dataclass
class Handshake:
    protocol_version: int
    timeout: int
    session_id: int
    password: bytes
    read_only: bool


def connect_request(timeout_ms: int = 4000) -> bytes:
    """A ConnectRequest frame for a new session (length 45 + payload)."""
    payload = struct.pack(">iqiqi16sb", 0, 0, timeout_ms, 0, 16, b"\0" * 16, 0)
    assert len(payload) == CONNECT_REQUEST_LEN
    return struct.pack(">i", len(payload)) + payload


def parse_connect_response(payload: bytes) -> Handshake:
    proto, timeout, sid, pwlen = struct.unpack(">iiqi", payload[:20])
    assert pwlen == 16
    password = payload[20:36]
    return Handshake(proto, timeout, sid, password, payload[36:37] == b"\x01")


def _ustring(text: str) -> bytes:
    data = text.encode()
    return struct.pack(">i", len(data)) + data


class RawZK:
    """One raw TCP connection speaking just enough ZooKeeper for these tests."""

    def __init__(self, host: str, port: int, timeout: float = 3.0) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.xid = 0

    connect_request = staticmethod(connect_request)
    parse_connect_response = staticmethod(parse_connect_response)

    def close(self) -> None:
        self.sock.close()

    def recv_exact(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                break
            data += chunk
        return data

    def read_frame(self) -> bytes:
        """Header + payload of the next frame (short if the stream ends early)."""
        header = self.recv_exact(4)
        if len(header) < 4:
            return header
        (length,) = struct.unpack(">i", header)
        return header + self.recv_exact(length)

    def handshake(self, timeout_ms: int = 4000) -> Handshake:
        self.sock.sendall(connect_request(timeout_ms))
        frame = self.read_frame()
        assert len(frame) == 4 + CONNECT_RESPONSE_LEN, frame
        return parse_connect_response(frame[4:])

    def request(self, op: int, body: bytes = b"") -> tuple[int, int, int, bytes]:
        """Send one request; return (xid, zxid, err, body) of its reply."""
        self.xid += 1
        payload = struct.pack(">ii", self.xid, op) + body
        self.sock.sendall(struct.pack(">i", len(payload)) + payload)
        frame = self.read_frame()
        xid, zxid, err = struct.unpack(">iqi", frame[4:20])
        return xid, zxid, err, frame[20:]

    def create(self, path: str, *, ephemeral: bool = False) -> int:
        acl = struct.pack(">ii", 1, 31) + _ustring("world") + _ustring("anyone")
        body = (
            _ustring(path) + struct.pack(">i", 0) + acl + struct.pack(">i", 1 if ephemeral else 0)
        )
        return self.request(1, body)[2]

    def exists(self, path: str) -> bool:
        err = self.request(3, _ustring(path) + b"\x00")[2]
        assert err in (0, -101), err
        return err == 0

    def ping(self) -> int:
        """Send a ping (xid -2); return the xid of the reply."""
        payload = struct.pack(">ii", -2, 11)
        self.sock.sendall(struct.pack(">i", len(payload)) + payload)
        frame = self.read_frame()
        return int(struct.unpack(">i", frame[4:8])[0])

    def close_session(self) -> None:
        """Close the session and wait for the server to close the connection.

        The server drops the connection from ``cons`` before it closes the socket, so once
        the stream ends neither ``cons`` nor ``dump`` lists the session.
        """
        assert self.request(-11)[2] == 0
        while self.sock.recv(4096):
            pass


@pytest.fixture
def raw_zk() -> Iterator[Callable[..., RawZK]]:
    """Factory ``raw_zk(host, port, timeout=3.0)`` of raw connections, closed after the test.

    Each connection also offers ``connect_request()`` and ``parse_connect_response()``.
    """
    opened: list[RawZK] = []

    def open_raw(host: str, port: int, timeout: float = 3.0) -> RawZK:
        conn = RawZK(host, port, timeout)
        opened.append(conn)
        return conn

    yield open_raw
    for conn in opened:
        conn.close()
