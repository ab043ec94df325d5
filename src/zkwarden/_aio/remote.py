"""Closing a session from a connection of its own (not the client's).

Used to close a session the client gave up (presumed expired) or could not close on its
own connection, so its ephemeral nodes go at once instead of after a session timeout.
It goes through :func:`zkwarden._aio.transport.open_connection`, the one seam every
connection of the client passes (the fault proxy and the simulation use it).
"""

from __future__ import annotations

import asyncio
import ssl

from ..errors import ConnectionLossError, ProtocolError
from ..hosts import HostPort
from ..protocol.framing import FrameDecoder
from ..protocol.jute import Reader
from ..protocol.records import ConnectResponse
from ..protocol.session import attach_and_close_frames
from . import transport as _transport

__all__ = ("close_session_remote",)


class _Collector(asyncio.Protocol):
    def __init__(self) -> None:
        self._decoder = FrameDecoder()
        self.frames: list[bytes] = []
        self.changed = asyncio.Event()
        self.lost = False

    def data_received(self, data: bytes) -> None:
        try:
            self.frames.extend(self._decoder.feed(data))
        except ProtocolError:
            self.lost = True
        self.changed.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.changed.set()


async def close_session_remote(
    host: HostPort, session_id: int, password: bytes, *, timeout: float,
    tls: ssl.SSLContext | None = None,
) -> bool:
    """Attach to ``session_id`` on ``host`` and close it.

    True when the server confirmed the close; False when the session was already gone.

    Raises:
        ConnectionLossError: the server could not be reached or did not answer in time.
        ProtocolError: the answer is not a ConnectResponse.
    """
    transport, proto = await _transport.open_connection(host, _Collector, timeout=timeout,
                                                        tls=tls)
    try:
        transport.write(attach_and_close_frames(session_id, password))
        try:
            async with asyncio.timeout(timeout):
                while True:
                    if proto.frames:
                        response = ConnectResponse.read(Reader(proto.frames[0]))
                        if response.timeout_ms <= 0:
                            return False
                        if len(proto.frames) >= 2:
                            return True
                    if proto.lost:
                        raise ConnectionLossError(f"{host} closed before closing the session")
                    proto.changed.clear()
                    await proto.changed.wait()
        except TimeoutError:
            raise ConnectionLossError(f"no answer from {host} within {timeout:.2f}s") from None
    finally:
        transport.abort()
