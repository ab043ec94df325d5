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
import struct
from collections.abc import Callable
from typing import TypeVar

from ..errors import ConnectionLossError, ProtocolError
from ..hosts import HostPort
from ..protocol.framing import FrameDecoder
from ..protocol.jute import Reader
from ..protocol.records import ConnectRequest, ConnectResponse

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


def _recv_frame(sock: socket.socket, decoder: FrameDecoder) -> bytes:
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionLossError("server closed the connection")
        frames = decoder.feed(chunk)
        if frames:
            return frames[0]


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
    gone (the server answered with timeout 0).

    Raises:
        ConnectionLossError: the server could not be reached or dropped the connection.
        ProtocolError: the server answered with something that is not ZooKeeper.
    """
    request = ConnectRequest(0, 0, 10_000, session_id, password, False).encode()
    try:
        raw = socket.create_connection((host.host, host.port), timeout=timeout)
    except OSError as exc:
        raise ConnectionLossError(f"connect to {host} failed: {exc}") from exc
    sock: socket.socket = raw
    try:
        if tls is not None:
            sock = tls.wrap_socket(raw, server_hostname=host.host)
        sock.settimeout(timeout)
        decoder = FrameDecoder()
        # ConnectRequest and closeSession (xid 1, opcode -11, no body) in one write: the
        # server runs them in order once the session is attached, and the owner of the
        # session gets no window to re-attach it in between.
        sock.sendall(struct.pack(">i", len(request)) + request + struct.pack(">iii", 8, 1, -11))
        response = ConnectResponse.read(Reader(_recv_frame(sock, decoder)))
        if response.timeout_ms <= 0:
            return False
        reply = _recv_frame(sock, decoder)
        if len(reply) < 16:
            raise ProtocolError("short closeSession reply")
        return True
    except OSError as exc:
        raise ConnectionLossError(f"closing session 0x{session_id:x} failed: {exc}") from exc
    finally:
        sock.close()
