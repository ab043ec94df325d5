"""A raw, blocking ZooKeeper connection that drives a SASL mechanism by hand.

It tests the mechanisms against a real server on their own (the client's engine drives
them in production): handshake, SASL steps (opcode 102), then whoAmI (107) and getData.
"""

from __future__ import annotations

import socket
import ssl
import struct

from zkwarden.protocol.sasl import SaslMechanism

OP_GET_DATA, OP_SASL, OP_WHOAMI = 4, 102, 107


class RawConnection:
    def __init__(self, host: str, port: int, *, tls: ssl.SSLContext | None = None,
                 server_hostname: str | None = None, timeout: float = 10.0) -> None:
        sock = socket.create_connection((host, port), timeout=timeout)
        if tls is not None:
            sock = tls.wrap_socket(sock, server_hostname=server_hostname or host)
        self.sock = sock
        self.xid = 0
        payload = struct.pack(">iqiqi16sb", 0, 0, 10_000, 0, 16, b"\0" * 16, 0)
        self._send(payload)
        reply = self._recv()
        assert len(reply) >= 36, reply

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> RawConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _send(self, payload: bytes) -> None:
        self.sock.sendall(struct.pack(">i", len(payload)) + payload)

    def _recv_exact(self, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("server closed the connection")
            buf += chunk
        return buf

    def _recv(self) -> bytes:
        (length,) = struct.unpack(">i", self._recv_exact(4))
        return self._recv_exact(length)

    def request(self, opcode: int, body: bytes = b"") -> tuple[int, bytes]:
        """Send one request; return (err, reply body), skipping notifications."""
        self.xid += 1
        self._send(struct.pack(">ii", self.xid, opcode) + body)
        while True:
            reply = self._recv()
            xid, _zxid, err = struct.unpack(">iqi", reply[:16])
            if xid == self.xid:
                return err, reply[16:]

    def sasl_step(self, token: bytes | None) -> tuple[int, bytes | None]:
        body = struct.pack(">i", -1) if token is None else struct.pack(">i", len(token)) + token
        err, reply = self.request(OP_SASL, body)
        if err or len(reply) < 4:
            return err, None
        (n,) = struct.unpack(">i", reply[:4])
        return err, None if n < 0 else reply[4:4 + n]

    def authenticate(self, mechanism: SaslMechanism, max_steps: int = 10) -> int:
        """Drive ``mechanism`` to the end; return the server's error code (0: success)."""
        token: bytes | None = mechanism.initial_response()
        for _ in range(max_steps):
            assert token is not None
            err, challenge = self.sasl_step(token)
            if err:
                return err
            token = mechanism.evaluate(challenge or b"")
            if token is None:
                assert mechanism.complete
                return 0
        raise AssertionError("SASL exchange did not finish")

    def whoami(self) -> set[tuple[str, str]]:
        err, body = self.request(OP_WHOAMI)
        assert err == 0, err
        (count,) = struct.unpack(">i", body[:4])
        pos, out = 4, set()
        for _ in range(count):
            pair = []
            for _ in range(2):
                (n,) = struct.unpack(">i", body[pos:pos + 4])
                pair.append(body[pos + 4:pos + 4 + n].decode())
                pos += 4 + n
            out.add((pair[0], pair[1]))
        return out

    def get_data_err(self, path: str) -> int:
        raw = path.encode()
        err, _ = self.request(OP_GET_DATA, struct.pack(">i", len(raw)) + raw + b"\0")
        return err
