"""An in-memory network between the real client and a model server, with faults.

:meth:`SimNetwork.installed` patches the client's connection seam
(``zkwarden._aio.transport.open_connection``) so every connection the client opens is a
:class:`SimTransport` pair instead of a socket. Frames travel with a small latency on
virtual time, in order per direction (as over TCP); the :class:`FaultPlan` decides what
happens to each frame. Everything is delivered through ``call_soon``/``call_at``, never
re-entrantly inside ``write()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from ...errors import ConnectionLossError
from .faults import Fault, FaultKind, FaultPlan

__all__ = ("SimNetwork", "SimConnection", "SimTransport", "ServerSide")

_LEN = struct.Struct(">i")
_NEG2 = _LEN.pack(-2)


class ServerSide(Protocol):
    """What the network needs from the server model."""

    def accept(self, conn: SimConnection) -> None: ...

    def on_frame(self, conn: SimConnection, payload: bytes) -> None: ...

    def on_closed(self, conn: SimConnection) -> None: ...


class _Direction:
    __slots__ = ("ready_at", "blackholed", "held", "release")

    def __init__(self) -> None:
        self.ready_at = 0.0
        self.blackholed = False
        self.held: list[tuple[bytes, bytes]] | None = None
        self.release: asyncio.TimerHandle | None = None


def corrupt_body(payload: bytes, *, first: bool) -> bytes:
    """The same frame with its body made undecodable and its header left intact.

    A reply keeps xid, zxid and err (the first 16 bytes); its first body field becomes
    a buffer length of -2 and its last byte goes (so a fixed-size Stat is short too). A
    ConnectResponse (``first``) gets a password length of -2.
    """
    if first:
        if len(payload) < 20:
            return payload[:-1]
        return payload[:16] + _NEG2 + payload[20:]
    if len(payload) <= 16:
        return payload  # no body to corrupt
    body = payload[16:]
    if len(body) >= 4:
        body = _NEG2 + body[4:]
    return payload[:16] + body[:-1]


class SimConnection:
    """One simulated TCP connection: the client's protocol on one end, the model on the
    other."""

    def __init__(self, net: SimNetwork, protocol: asyncio.BaseProtocol, number: int) -> None:
        self.net = net
        self.protocol: Any = protocol
        self.number = number
        self.transport = SimTransport(self)
        self.open = True  # until either side's close reaches the client
        self.server_open = True  # until the server stops sending (or hears of the close)
        self.c2s = _Direction()
        self.s2c = _Direction()
        self._inbuf = bytearray()
        self.frames_to_server = 0
        self.frames_to_client = 0
        #: free for the server model (its per-connection state)
        self.server_state: Any = None

    def __repr__(self) -> str:
        return f"<SimConnection #{self.number} {'open' if self.open else 'closed'}>"

    # --- client side -------------------------------------------------------------------

    def client_write(self, data: bytes) -> None:
        if not self.open:
            return
        self._inbuf += data
        while len(self._inbuf) >= 4:
            (length,) = _LEN.unpack_from(self._inbuf, 0)
            if length < 0 or len(self._inbuf) < 4 + length:
                break
            frame = bytes(self._inbuf[4 : 4 + length])
            del self._inbuf[: 4 + length]
            self._send(self.c2s, frame, to_server=True)

    def client_close(self) -> None:
        """The client aborted (or closed) its end."""
        if not self.open:
            return
        self.open = False
        loop = self.net.loop
        loop.call_soon(self.protocol.connection_lost, None)
        if self.server_open and not self.c2s.blackholed:
            self.server_open = False
            at = max(loop.time(), self.c2s.ready_at) + self.net.latency
            loop.call_at(at, self.net.server.on_closed, self)

    # --- server side -------------------------------------------------------------------

    def send(self, payload: bytes) -> None:
        """The server sends one frame (``payload`` without its length prefix)."""
        if not self.server_open:
            return
        bulk = self.net._bulk
        if bulk is not None:
            bulk.setdefault(self, []).append(payload)
            return
        self._send(self.s2c, payload, to_server=False)

    def close(self) -> None:
        """The server closes: the client gets what was sent, then EOF."""
        if not self.server_open:
            return
        self.server_open = False
        if self.s2c.blackholed:
            return
        loop = self.net.loop
        at = max(loop.time(), self.s2c.ready_at) + self.net.latency
        self.s2c.ready_at = at
        loop.call_at(at, self._eof_to_client)

    def _eof_to_client(self) -> None:
        if not self.open:
            return
        self.open = False
        self.protocol.eof_received()
        self.protocol.connection_lost(None)

    def reset(self) -> None:
        """Abort both ends at once (an RST)."""
        loop = self.net.loop
        if self.open:
            self.open = False
            loop.call_soon(self.protocol.connection_lost, ConnectionResetError("reset by sim"))
        if self.server_open:
            self.server_open = False
            loop.call_soon(self.net.server.on_closed, self)

    # --- the wire ----------------------------------------------------------------------

    def _send(self, d: _Direction, frame: bytes, *, to_server: bool,
              more: list[bytes] | None = None) -> None:
        # ``more``: frames that travel in the same segment behind ``frame`` (a burst the
        # server wrote at once); the fault applies to the segment as a whole.
        net = self.net
        first = (self.frames_to_server if to_server else self.frames_to_client) == 0
        if to_server:
            self.frames_to_server += 1
        else:
            self.frames_to_client += 1
        fault = net.next_fault(("c>s" if to_server else "s>c") + f" #{self.number}", frame)
        other = self.s2c if to_server else self.c2s
        if other.held is not None:
            self._release(other, to_server=not to_server)
        if d.blackholed:
            return
        extra = 0.0
        if fault is not None:
            kind = fault.kind
            if kind is FaultKind.DELAY:
                extra = fault.seconds
            elif kind is FaultKind.HOLD:
                if d.held is None:
                    d.held = []
                    d.release = net.loop.call_at(
                        net.loop.time() + (fault.seconds or 5.0),
                        self._release, d, to_server,
                    )
            elif kind in (FaultKind.RESET, FaultKind.REFUSE):
                if kind is FaultKind.REFUSE:
                    net.refuse_for(fault.seconds)
                self.reset()
                return
            elif kind is FaultKind.TRUNCATE:
                # Half a frame arrives, then the sender's side closes: a reader that got
                # only part of a frame must treat the connection as lost.
                self._schedule(d, frame, to_server, truncated=True)
                if to_server:
                    self._close_server_later(d)
                else:
                    self._server_gives_up()
                return
            elif kind is FaultKind.CORRUPT:
                frame = corrupt_body(frame, first=first)
            elif kind is FaultKind.DROP:
                d.blackholed = True
                net.hang_for(fault.seconds)
                return
            elif kind is FaultKind.ACCEPT_CLOSE:
                self._server_gives_up()
                return
        tail = b"".join(_LEN.pack(len(f)) + f for f in more) if more else b""
        if d.held is not None:
            d.held.append((frame, tail))
            return
        self._schedule(d, frame, to_server, extra=extra, tail=tail)

    def _server_gives_up(self) -> None:
        # The server side closes (the model hears of it too, as of any closed socket).
        if self.server_open:
            self.close()
            self.net.loop.call_soon(self.net.server.on_closed, self)

    def _close_server_later(self, d: _Direction) -> None:
        loop = self.net.loop
        at = max(loop.time(), d.ready_at) + self.net.latency

        def server_sees_eof() -> None:
            if self.server_open:
                self.server_open = False
                self.net.server.on_closed(self)
                self.close_client_side()

        loop.call_at(at, server_sees_eof)

    def close_client_side(self) -> None:
        """The server side is gone: the client gets EOF (after what is in flight)."""
        loop = self.net.loop
        at = max(loop.time(), self.s2c.ready_at) + self.net.latency
        self.s2c.ready_at = at
        loop.call_at(at, self._eof_to_client)

    def _schedule(
        self, d: _Direction, frame: bytes, to_server: bool, *, extra: float = 0.0,
        truncated: bool = False, tail: bytes = b"",
    ) -> None:
        loop = self.net.loop
        # Strictly increasing per direction: timers due at the same instant have no
        # defined order, and TCP never reorders.
        at = max(loop.time() + self.net.latency + extra, d.ready_at + 1e-6)
        d.ready_at = at
        data = _LEN.pack(len(frame)) + frame + tail
        if truncated:
            data = data[: max(1, len(data) // 2)]
        if to_server:
            loop.call_at(at, self._to_server, data, truncated)
        else:
            loop.call_at(at, self._to_client, data)

    def _release(self, d: _Direction, to_server: bool) -> None:
        held, d.held = d.held, None
        if d.release is not None:
            d.release.cancel()
            d.release = None
        for frame, tail in held or ():
            self._schedule(d, frame, to_server, tail=tail)

    def _to_client(self, data: bytes) -> None:
        if self.open:
            self.protocol.data_received(data)

    def _to_server(self, data: bytes, truncated: bool) -> None:
        if not self.server_open or truncated:
            return
        self.net.server.on_frame(self, data[4:])


class SimTransport(asyncio.Transport):
    """The client's end of a :class:`SimConnection` (what ``open_connection`` returns)."""

    def __init__(self, conn: SimConnection) -> None:
        super().__init__()
        self._conn = conn
        self._closing = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not self._closing:
            self._conn.client_write(bytes(data))

    def writelines(self, list_of_data: Any) -> None:
        for data in list_of_data:
            self.write(data)

    def abort(self) -> None:
        if not self._closing:
            self._closing = True
            self._conn.client_close()

    def close(self) -> None:
        self.abort()

    def is_closing(self) -> bool:
        return self._closing or not self._conn.open

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default

    def can_write_eof(self) -> bool:
        return False

    def get_write_buffer_size(self) -> int:
        return 0

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def is_reading(self) -> bool:
        return not self.is_closing()

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._conn.protocol = protocol

    def get_protocol(self) -> asyncio.BaseProtocol:
        proto: asyncio.BaseProtocol = self._conn.protocol
        return proto


class SimNetwork:
    """The network: connects, frames, faults. ``server`` is the model on the other end."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        server: ServerSide,
        plan: FaultPlan | None = None,
        *,
        latency: float = 0.001,
    ) -> None:
        self.loop = loop
        self.server = server
        if hasattr(server, "network"):
            server.network = self
        self.plan = plan if plan is not None else FaultPlan()
        self.latency = latency
        self.index = 0  # frames and connects seen so far
        self.connections: list[SimConnection] = []
        self.refuse_until = -1.0
        self.hang_until = -1.0
        #: (index, virtual time, where, fault) of every fault applied
        self.fired: list[tuple[int, float, str, Fault]] = []
        #: called with (index, where, frame) for every frame (tests may watch the wire)
        self.observers: list[Callable[[int, str, bytes], None]] = []
        self._bulk: dict[SimConnection, list[bytes]] | None = None

    @contextlib.contextmanager
    def bulk(self) -> Iterator[None]:
        """Frames the server sends inside the block go out as one segment per connection
        (one frame index, one delivery): a burst of 10,000 notifications costs one step."""
        self._bulk = {}
        try:
            yield
        finally:
            bulk, self._bulk = self._bulk, None
            for conn, frames in bulk.items():
                conn._send(conn.s2c, frames[0], to_server=False, more=frames[1:])

    def next_fault(self, where: str, frame: bytes = b"") -> Fault | None:
        index = self.index
        self.index += 1
        for observer in self.observers:
            observer(index, where, frame)
        fault = self.plan.take(index)
        if fault is not None and fault.kind is not FaultKind.DELIVER:
            self.fired.append((index, self.loop.time(), where, fault))
            return fault
        return None

    def refuse_for(self, seconds: float) -> None:
        self.refuse_until = max(self.refuse_until, self.loop.time() + seconds)

    def hang_for(self, seconds: float) -> None:
        self.hang_until = max(self.hang_until, self.loop.time() + seconds)

    def fired_since(self, when: float) -> bool:
        """True when a fault was applied at or after virtual time ``when``."""
        return any(t >= when for _, t, _, _ in self.fired)

    def idle(self) -> bool:
        """True when no frame is in flight, delayed or held on any open connection."""
        now = self.loop.time()
        for conn in self.live_connections():
            for d in (conn.c2s, conn.s2c):
                if d.held is not None or d.ready_at > now:
                    return False
        return True

    def in_outage(self) -> bool:
        now = self.loop.time()
        return now < self.refuse_until or now < self.hang_until

    def live_connections(self) -> list[SimConnection]:
        return [c for c in self.connections if c.open]

    def reset_all(self) -> None:
        """Abort every open connection (a network blip)."""
        for conn in self.connections:
            if conn.open or conn.server_open:
                conn.reset()

    async def open_connection(
        self, host: Any, protocol_factory: Callable[[], Any], *, timeout: float,
        tls: Any = None,
    ) -> tuple[SimTransport, Any]:
        """The replacement for ``zkwarden._aio.transport.open_connection``.

        Raises:
            ConnectionLossError: refused, or no answer within ``timeout``.
        """
        loop = self.loop
        fault = self.next_fault(f"connect {host}")
        kind = fault.kind if fault is not None else None
        if kind is FaultKind.REFUSE or kind is FaultKind.RESET:
            self.refuse_for(fault.seconds if fault is not None else 0.0)
            await asyncio.sleep(self.latency)
            raise ConnectionLossError(f"connect to {host} failed: refused (sim)")
        if kind is FaultKind.DROP:
            self.hang_for(fault.seconds if fault is not None else 0.0)
        now = loop.time()
        if now < self.refuse_until:
            await asyncio.sleep(self.latency)
            raise ConnectionLossError(f"connect to {host} failed: refused (sim)")
        if now < self.hang_until or kind is FaultKind.HOLD:
            await asyncio.sleep(timeout)
            raise ConnectionLossError(f"connect to {host} timed out after {timeout:.2f}s (sim)")
        delay = self.latency + (fault.seconds if kind is FaultKind.DELAY and fault else 0.0)
        if delay >= timeout:
            await asyncio.sleep(timeout)
            raise ConnectionLossError(f"connect to {host} timed out after {timeout:.2f}s (sim)")
        await asyncio.sleep(delay)
        protocol = protocol_factory()
        conn = SimConnection(self, protocol, len(self.connections))
        self.connections.append(conn)
        made: asyncio.Future[None] = loop.create_future()

        def connection_made() -> None:
            protocol.connection_made(conn.transport)
            made.set_result(None)

        loop.call_soon(connection_made)
        await made
        if kind in (FaultKind.ACCEPT_CLOSE, FaultKind.TRUNCATE, FaultKind.CORRUPT):
            conn.server_open = True
            conn.close()
        else:
            self.server.accept(conn)
        return conn.transport, protocol

    def close_session_blocking(
        self, host: Any, session_id: int, password: bytes, *, timeout: float = 2.0,
        tls: Any = None,
    ) -> bool:
        """The replacement for the old ``close_session_blocking`` (a synchronous attach
        and closeSession, straight into the model; it counts as one connect).

        Raises:
            ConnectionLossError: the network refuses or blackholes connects now.
        """
        fault = self.next_fault(f"close-session connect {host}")
        if fault is not None and fault.kind is not FaultKind.DELAY:
            raise ConnectionLossError(f"connect to {host} failed (sim {fault})")
        if self.in_outage():
            raise ConnectionLossError(f"connect to {host} failed (sim outage)")
        close = getattr(self.server, "close_session_direct", None)
        if close is None:
            raise ConnectionLossError("the model cannot close sessions directly")
        result: bool = close(session_id, password)
        return result

    @contextlib.contextmanager
    def installed(self) -> Iterator[SimNetwork]:
        """Route the client's connections through this network for the block.

        Patches ``zkwarden._aio.transport.open_connection`` (looked up at call time) and,
        when they exist (older engines), the names ``open_connection`` imported into
        ``zkwarden._aio.engine`` and ``close_session_blocking`` imported into
        ``zkwarden._aio.client``. Restores them on exit.
        """
        from ..._aio import client as _client
        from ..._aio import engine as _engine
        from ..._aio import transport as _transport

        saved: list[tuple[Any, str, Any]] = []

        def patch(module: Any, name: str, value: Any) -> None:
            if hasattr(module, name):
                saved.append((module, name, getattr(module, name)))
                setattr(module, name, value)

        patch(_transport, "open_connection", self.open_connection)
        patch(_engine, "open_connection", self.open_connection)
        patch(_client, "close_session_blocking", self.close_session_blocking)
        try:
            yield self
        finally:
            for module, name, value in reversed(saved):
                setattr(module, name, value)
