"""TCP/TLS connections: the seam between the protocol and the network.

``open_connection`` opens a socket to one server with a bounded connect time and hands
it to an asyncio protocol. ``close_session_blocking`` attaches to a session from a plain
blocking socket and closes it: used at interpreter exit (no event loop left) and by
``zkwarden.testing.expire_session`` for a real server-side expiry.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections import deque
from collections.abc import Callable
from typing import TypeVar

from ..errors import ConnectionLossError, ProtocolError
from ..hosts import HostPort
from ..protocol import ops
from ..protocol.framing import FrameDecoder, frame
from ..protocol.jute import Reader
from ..protocol.records import (
    ConnectRequest,
    ConnectResponse,
    read_reply_header,
    request_header,
)

__all__ = ("open_connection", "close_session_blocking")

P = TypeVar("P", bound=asyncio.BaseProtocol)


async def open_connection(
    host: HostPort,
    protocol_factory: Callable[[], P],
    *,
    timeout: float,
    tls: ssl.SSLContext | None = None,
) -> tuple[asyncio.Transport, P]:
    """Connect to ``host`` within ``timeout`` seconds.

    Raises:
        ConnectionLossError: refused, unreachable, TLS failure, or timed out.
    """
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(timeout):
            transport, protocol = await loop.create_connection(
                protocol_factory,
                host.host,
                host.port,
                ssl=tls,
                server_hostname=host.host if tls is not None else None,
            )
    except TimeoutError as exc:
        raise ConnectionLossError(f"connect to {host} timed out after {timeout:.2f}s") from exc
    except (OSError, ssl.SSLError) as exc:
        raise ConnectionLossError(f"connect to {host} failed: {exc}") from exc
    sock = transport.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:  # pragma: no cover - not every socket type supports it
            pass
    return transport, protocol


class _FrameReader:
    """Blocking frame reader over a socket: every frame of a read is kept, so two frames
    that arrive together (the ConnectResponse and the closeSession reply usually do) are
    both returned, one per call."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._decoder = FrameDecoder()
        self._frames: deque[bytes] = deque()

    def next(self) -> bytes:
        """The next frame's payload.

        Raises:
            ConnectionLossError: the server closed the connection first.
            ProtocolError: a frame length out of range.
            OSError: the socket failed or timed out.
        """
        while not self._frames:
            chunk = self._sock.recv(65536)
            if not chunk:
                raise ConnectionLossError("server closed the connection")
            self._frames.extend(self._decoder.feed(chunk))
        return self._frames.popleft()


_CLOSE_XID = 1


def close_session_blocking(
    host: HostPort,
    session_id: int,
    password: bytes,
    *,
    timeout: float = 2.0,
    tls: ssl.SSLContext | None = None,
) -> bool:
    """Attach to ``session_id`` from a new blocking connection and close the session.

    Returns True when the server confirmed the close, False when the session was already
    gone (the server answered with timeout 0) or refused the close.

    Raises:
        ConnectionLossError: the server could not be reached or dropped the connection.
        ProtocolError: the server answered with something that is not ZooKeeper.
    """
    connect = ConnectRequest(0, 0, 10_000, session_id, password, False).encode()
    close = request_header(_CLOSE_XID, ops.CloseSession.OPCODE) + ops.CloseSession().body()
    try:
        raw = socket.create_connection((host.host, host.port), timeout=timeout)
    except OSError as exc:
        raise ConnectionLossError(f"connect to {host} failed: {exc}") from exc
    sock: socket.socket = raw
    try:
        if tls is not None:
            sock = tls.wrap_socket(raw, server_hostname=host.host)
        sock.settimeout(timeout)
        frames = _FrameReader(sock)
        # ConnectRequest and closeSession in one write: the server runs them in order once
        # the session is attached, and the owner of the session gets no window to
        # re-attach it in between.
        sock.sendall(frame(connect) + frame(close))
        response = ConnectResponse.read(Reader(frames.next()))
        if response.timeout_ms <= 0:
            return False
        header = read_reply_header(Reader(frames.next()))
        if header.xid != _CLOSE_XID:
            raise ProtocolError(f"closeSession answered with xid {header.xid}")
        return header.err == 0
    except OSError as exc:
        raise ConnectionLossError(f"closing session 0x{session_id:x} failed: {exc}") from exc
    finally:
        sock.close()
