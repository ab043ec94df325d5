"""close_session_blocking: the blocking CloseSession used at exit and by expire_session.

Defect 11 of issue 11: it kept only the first frame of a read, so when the ConnectResponse
and the closeSession reply came in one read (the usual case) the reply was dropped, the
next read met the server's EOF, and a close that succeeded raised ConnectionLossError.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
from collections.abc import Iterator

import pytest

from zkwarden import AsyncClient
from zkwarden._aio.transport import close_session_blocking
from zkwarden.errors import ConnectionLossError
from zkwarden.hosts import HostPort
from zkwarden.testing import FaultProxy, ZooKeeperServer

SID = 0x1234_5678_9ABC
PASSWORD = bytes(range(16))


def _connect_response(timeout_ms: int) -> bytes:
    payload = struct.pack(">iiqi16sb", 0, timeout_ms, SID, 16, PASSWORD, 0)
    return struct.pack(">i", len(payload)) + payload


def _close_reply(xid: int = 1, err: int = 0) -> bytes:
    return struct.pack(">iiqi", 16, xid, 77, err)


class _OneShotServer:
    """Accepts one connection, records what the client sent (both of its frames), answers
    with ``reply`` in ONE send, then closes: two frames in one read, deterministically."""

    def __init__(self, reply: bytes) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.reply = reply
        self.received = b""
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.listener.accept()
        with conn:
            conn.settimeout(5)
            want = 4 + 45 + 4 + 8  # ConnectRequest frame + closeSession frame
            while len(self.received) < want:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                self.received += chunk
            conn.sendall(self.reply)

    def close(self) -> None:
        self.thread.join(5)
        self.listener.close()


@pytest.fixture
def one_shot() -> Iterator[type[_OneShotServer]]:
    servers: list[_OneShotServer] = []

    class Tracked(_OneShotServer):
        def __init__(self, reply: bytes) -> None:
            super().__init__(reply)
            servers.append(self)

    yield Tracked
    for server in servers:
        server.close()


def test_d11_both_frames_in_one_read_is_a_confirmed_close(one_shot) -> None:
    server = one_shot(_connect_response(4000) + _close_reply())
    host = HostPort("127.0.0.1", server.port)
    assert close_session_blocking(host, SID, PASSWORD, timeout=3.0) is True
    # What went out: a ConnectRequest for the session, then closeSession (xid 1, -11).
    sent = server.received
    (length,) = struct.unpack_from(">i", sent, 0)
    assert length == 45
    assert struct.unpack_from(">q", sent, 4 + 16)[0] == SID
    assert sent[4 + length :] == struct.pack(">iii", 8, 1, -11)


def test_expired_session_and_refused_close(one_shot) -> None:
    gone = one_shot(_connect_response(0))
    assert close_session_blocking(HostPort("127.0.0.1", gone.port), SID, PASSWORD) is False
    refused = one_shot(_connect_response(4000) + _close_reply(err=-112))
    assert close_session_blocking(HostPort("127.0.0.1", refused.port), SID, PASSWORD) is False
    cut = one_shot(_connect_response(4000))  # EOF instead of the closeSession reply
    with pytest.raises(ConnectionLossError):
        close_session_blocking(HostPort("127.0.0.1", cut.port), SID, PASSWORD)


async def test_d11_real_server_close_is_confirmed_and_ends_the_session(
    zk_server: ZooKeeperServer, zk_path: str
) -> None:
    host = HostPort(zk_server.host, zk_server.port)
    for _ in range(3):  # every attempt, not one lucky one
        # The session's owner reaches the server through a proxy that is then cut, so it
        # cannot re-attach the session (the server would close the closing connection)
        # while it is being closed from outside: the race of a real expire, not the test.
        proxy = FaultProxy(zk_server.connect_string).start()
        zk = AsyncClient(proxy.connect_string, session_timeout=2.0)
        await zk.start()
        try:
            sid = zk.session_id
            assert sid is not None
            await zk.create(zk_path, ephemeral=True)
            proxy.refuse_connections()
            proxy.reset()
            closed = await asyncio.wait_for(
                asyncio.to_thread(
                    close_session_blocking, host, sid, zk.session_password, timeout=3.0
                ),
                5.0,
            )
            assert closed is True
            # Confirmed by the server itself: the session and its ephemeral node are gone.
            assert sid not in zk_server.sessions()
            async with AsyncClient(zk_server.connect_string) as observer:
                assert await observer.exists(zk_path) is None
            # The session is gone: attaching again is answered "expired".
            again = await asyncio.to_thread(
                close_session_blocking, host, sid, zk.session_password, timeout=3.0
            )
            assert again is False
        finally:
            await asyncio.wait_for(zk.close(), 10.0)
            proxy.close()
