"""One disposable connection to one server: handshake, reader, batched writer, pinger.

A :class:`Connection` never outlives its socket and never reconnects; the client's
supervisor makes a new one. Frames after the handshake are handed to the owner
synchronously from ``data_received`` (no task per frame). The first write after the server
last sent something goes out at once (a sequential request costs no extra loop
iteration); further writes are queued and go out together in one ``write`` call per
event-loop iteration.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol, cast

from ..errors import ConnectionLossError, ProtocolError, ZooKeeperError
from ..hosts import HostPort
from ..protocol.framing import FrameDecoder

__all__ = ("Connection", "ConnectionOwner")

#: Queued writes go out early once this many bytes are waiting (see Connection.write).
_EARLY_FLUSH = 16 * 1024

log = logging.getLogger("zkwarden.connection")


class ConnectionOwner(Protocol):
    def on_frame(self, conn: Connection, payload: bytes | memoryview) -> None: ...

    def on_timer(self, conn: Connection) -> None: ...

    def on_connection_lost(self, conn: Connection, reason: BaseException) -> None: ...


#: the reusable receive buffer of a connection (asyncio reads straight into it)
_RECEIVE_BUFFER = 64 * 1024


class Connection(asyncio.BufferedProtocol):
    """The asyncio protocol for one server connection.

    A buffered protocol: asyncio reads into one buffer owned by the connection instead of
    allocating (and, for a small reply, shrinking and freeing) 256 KiB per read, which cost
    tens of microseconds per reply. ``data_received`` stays the one entry point for bytes
    (transports that are not buffered, such as the simulation's, call it directly).
    """

    def __init__(self, owner: ConnectionOwner, host: HostPort, max_receive: int) -> None:
        self._owner = owner
        self.host = host
        self._decoder = FrameDecoder(max_receive)
        self._loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self._first_frame: asyncio.Future[bytes] = self._loop.create_future()
        self._early: list[bytes] = []
        self._active = False
        self.closed: asyncio.Future[BaseException] = self._loop.create_future()
        self._out: list[bytes] = []
        self._out_size = 0
        self._flush_scheduled = False
        self._eager = True  # see write()
        self._timer: asyncio.TimerHandle | None = None
        self._abort_reason: BaseException | None = None
        self._receive = bytearray(_RECEIVE_BUFFER)
        self._receive_view = memoryview(self._receive)
        self._aborting = False

    # --- asyncio.Protocol ----------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport; not necessarily an asyncio.Transport subclass (uvloop's is
        # not), so no isinstance check.
        self.transport = cast(asyncio.Transport, transport)

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._receive_view

    def buffer_updated(self, nbytes: int) -> None:
        # One copy of what arrived (the frames are cut from it and may outlive the buffer).
        self.data_received(bytes(self._receive_view[:nbytes]))

    def data_received(self, data: bytes) -> None:
        self._eager = True
        try:
            # Zero-copy: each payload is a memoryview of ``data``, decoded and dropped.
            frames = self._decoder.feed_views(data)
            if self._active:
                on_frame = self._owner.on_frame
                for payload in frames:
                    on_frame(self, payload)
                return
            for payload in frames:
                if not self._first_frame.done():
                    self._first_frame.set_result(bytes(payload))
                elif not self._active:
                    self._early.append(bytes(payload))
                else:
                    self._owner.on_frame(self, payload)
        except ProtocolError as exc:
            log.warning("protocol error from %s: %s; dropping the connection", self.host, exc)
            self.abort(exc)
            # Now, not when asyncio gets round to connection_lost: the session must not
            # take requests on a connection that is going.
            self._owner.on_connection_lost(self, self._abort_reason or exc)

    def eof_received(self) -> bool | None:
        # The server closed its side: that is a disconnect now, not after a read timeout.
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        reason: BaseException = self._abort_reason or ConnectionLossError(
            f"connection to {self.host} lost" + (f": {exc}" if exc else "")
        )
        if not self._first_frame.done():
            self._first_frame.set_exception(
                reason if isinstance(reason, ZooKeeperError) else ConnectionLossError(str(reason))
            )
            # Nobody may be awaiting it any more; mark retrieved to avoid a warning.
            self._first_frame.exception()
        if not self.closed.done():
            self.closed.set_result(reason)
        self._active = False
        # Always told, handshake or not: the owner ignores connections it no longer holds.
        self._owner.on_connection_lost(self, reason)

    # --- used by the client ----------------------------------------------------------

    async def first_frame(self, timeout: float) -> bytes:
        """The server's ConnectResponse payload.

        Raises:
            ConnectionLossError: closed or timed out before it arrived.
            ProtocolError: malformed framing.
        """
        try:
            async with asyncio.timeout(timeout):
                return await asyncio.shield(self._first_frame)
        except TimeoutError as exc:
            raise ConnectionLossError(
                f"no handshake reply from {self.host} within {timeout:.2f}s"
            ) from exc

    def activate(self) -> None:
        """Start handing frames to the owner (after a successful handshake)."""
        if self.closed.done():
            return  # the owner has been told through on_connection_lost
        self._active = True
        early, self._early = self._early, []
        on_frame = self._owner.on_frame
        for payload in early:
            on_frame(self, payload)

    def write(self, data: bytes) -> None:
        if self._flush_scheduled:
            self._out.append(data)
            self._out_size += len(data)
            if self._out_size >= _EARLY_FLUSH:
                # Many requests in one iteration: let the server start on the first ones
                # while we encode the rest (a write per 16 KiB, not per request).
                self._send_queued()
            return
        if self._eager:
            # The first write since the server last sent us something goes out at once:
            # a request made in answer to a reply (the sequential pattern) costs no extra
            # loop iteration.
            self._eager = False
            transport = self.transport
            if transport is not None and not transport.is_closing():
                transport.write(data)
            return
        # More writes before any reply: queue them and send them all in one write when
        # the loop comes round (pipelining).
        self._out.append(data)
        self._out_size += len(data)
        self._flush_scheduled = True
        self._loop.call_soon(self._flush)

    def write_now(self, data: bytes) -> None:
        self._out.append(data)
        self._flush()

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self._out:
            self._send_queued()

    def _send_queued(self) -> None:
        out = self._out
        data = out[0] if len(out) == 1 else b"".join(out)
        out.clear()
        self._out_size = 0
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def schedule_timer(self, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._loop.call_at(when, self._fire_timer)

    def _fire_timer(self) -> None:
        self._timer = None
        if self._active:
            self._owner.on_timer(self)

    def abort(self, reason: BaseException | None = None) -> None:
        """Drop the connection at once (RST); the owner hears it via connection_lost."""
        if reason is not None and self._abort_reason is None:
            self._abort_reason = (
                reason
                if isinstance(reason, ConnectionLossError)
                else ConnectionLossError(f"connection to {self.host} dropped: {reason}")
            )
        if self._aborting:
            return
        self._aborting = True
        if self.transport is not None:
            self.transport.abort()
        elif not self.closed.done():
            self.connection_lost(None)
