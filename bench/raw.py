"""A minimal raw-socket ZooKeeper client: the bound the real clients are measured against.

Blocking socket, TCP_NODELAY, one handshake, then hand-built request frames. It checks
each reply's xid and error code and nothing else: no session handling, no pings, no
decoding of the reply body. It lives in ``bench/`` on purpose; it is not a client.
"""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Sequence

__all__ = ("RawClient",)

_LEN = struct.Struct(">i")
_REQ_HEADER = struct.Struct(">iii")  # frame length, xid, opcode
_REPLY_HEADER = struct.Struct(">iqi")  # xid, zxid, err
_GET_DATA = 4
_CREATE = 1
_DELETE = 2
_GET_CHILDREN = 8
# world:anyone, all permissions
_OPEN_ACL = struct.pack(">ii", 1, 31) + struct.pack(">i", 5) + b"world" + struct.pack(">i", 6) + b"anyone"


def _ustring(text: str) -> bytes:
    raw = text.encode()
    return _LEN.pack(len(raw)) + raw


class RawClient:
    """One connection, one session; ``close()`` ends both."""

    def __init__(self, host: str, port: int, session_timeout: float = 30.0) -> None:
        self.sock = socket.create_connection((host, port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._buf = bytearray()
        self._xid = 0
        connect = struct.pack(">iqiq", 0, 0, int(session_timeout * 1000), 0)
        connect += _LEN.pack(16) + b"\x00" * 16 + b"\x00"
        self.sock.sendall(_LEN.pack(len(connect)) + connect)
        self._read_frames(1)

    # --- frames --------------------------------------------------------------------------

    def _frame(self, opcode: int, body: bytes) -> bytes:
        self._xid += 1
        return _REQ_HEADER.pack(8 + len(body), self._xid, opcode) + body

    def get_data_frame(self, path: str) -> bytes:
        return self._frame(_GET_DATA, _ustring(path) + b"\x00")

    def get_children_frame(self, path: str) -> bytes:
        return self._frame(_GET_CHILDREN, _ustring(path) + b"\x00")

    def create_frame(self, path: str, data: bytes) -> bytes:
        body = _ustring(path) + _LEN.pack(len(data)) + data + _OPEN_ACL + _LEN.pack(0)
        return self._frame(_CREATE, body)

    def delete_frame(self, path: str) -> bytes:
        return self._frame(_DELETE, _ustring(path) + _LEN.pack(-1))

    def _read_frames(self, count: int) -> list[bytes]:
        """Read ``count`` whole frames (payloads), keeping any extra bytes for later."""
        sock, buf = self.sock, self._buf
        out: list[bytes] = []
        while len(out) < count:
            pos, end = 0, len(buf)
            while end - pos >= 4:
                (length,) = _LEN.unpack_from(buf, pos)
                if end - pos - 4 < length:
                    break
                out.append(bytes(buf[pos + 4 : pos + 4 + length]))
                pos += 4 + length
                if len(out) == count:
                    break
            if pos:
                del buf[:pos]
            if len(out) < count:
                chunk = sock.recv(1 << 20)
                if not chunk:
                    raise ConnectionError("server closed the connection")
                buf += chunk
        return out

    def _count_replies(self, count: int, first_xid: int) -> None:
        """Read ``count`` replies, checking xids and error codes, without keeping them."""
        sock, buf = self.sock, self._buf
        seen = 0
        expect = first_xid
        while seen < count:
            pos, end = 0, len(buf)
            while end - pos >= 4 and seen < count:
                (length,) = _LEN.unpack_from(buf, pos)
                if end - pos - 4 < length:
                    break
                xid, _, err = _REPLY_HEADER.unpack_from(buf, pos + 4)
                if xid != expect or err != 0:
                    raise RuntimeError(f"reply xid {xid} err {err}, expected xid {expect}")
                expect += 1
                seen += 1
                pos += 4 + length
            if pos:
                del buf[:pos]
            if seen < count:
                chunk = sock.recv(1 << 20)
                if not chunk:
                    raise ConnectionError("server closed the connection")
                buf += chunk

    # --- measured operations -------------------------------------------------------------

    def pipelined(self, frames: Sequence[bytes]) -> float:
        """Send every frame in one ``sendall``, read every reply; seconds elapsed."""
        first = _REQ_HEADER.unpack_from(frames[0])[1]
        data = b"".join(frames)
        t0 = time.perf_counter()
        self.sock.sendall(data)
        self._count_replies(len(frames), first)
        return time.perf_counter() - t0

    def sequential_get(self, path: str, count: int) -> float:
        """``count`` getData round trips, one at a time; seconds elapsed."""
        frames = [self.get_data_frame(path) for _ in range(count)]
        first = _REQ_HEADER.unpack_from(frames[0])[1]
        sock = self.sock
        t0 = time.perf_counter()
        for i, frame in enumerate(frames):
            sock.sendall(frame)
            self._count_replies(1, first + i)
        return time.perf_counter() - t0

    def get_children_count(self, path: str) -> int:
        frame = self.get_children_frame(path)
        self.sock.sendall(frame)
        (payload,) = self._read_frames(1)
        xid, _, err = _REPLY_HEADER.unpack_from(payload, 0)
        if err:
            raise RuntimeError(f"getChildren err {err}")
        return int(_LEN.unpack_from(payload, 16)[0])

    def close(self) -> None:
        try:
            self.sock.sendall(self._frame(-11, b""))
            self._read_frames(1)
        except OSError:
            pass
        self.sock.close()
