"""The forwarding machinery of :class:`~zkwarden.testing.proxy.FaultProxy` (loop thread only).

:class:`FaultState` is the plain state the control methods set and the forwarding loops
read: the armed faults and the counters.  :class:`Forwarder` serves each accepted client
connection: it connects upstream, pumps bytes both ways through the faults in the state,
and applies the frame faults.  It knows the proxy only through the two callables it is
given (which upstream to use, and how to start refusing connections), so this module never
imports the proxy.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ._frames import ConnectRequestSniffer, FrameCutter, FrameFault

__all__ = ("Connection", "FaultState", "Forwarder")

_log = logging.getLogger("zkwarden.testing")

_CHUNK = 65536
# Bytes read ahead per direction while a blackhole holds them (beyond the socket buffers).
_QUEUE_CHUNKS = 64
_LINGER_RST = struct.pack("ii", 1, 0)


@dataclass(slots=True, eq=False)
class FaultState:
    """The faults armed on the proxy and its counters (touched on the loop thread only).

    ``held`` and ``dropped`` hold directions (``"upstream"``, ``"downstream"``) that a
    blackhole keeps back or discards.  ``drop_after`` is (frames, new sessions only, times
    left or None, then refuse) of ``drop_after_server_frames``.  ``bytes`` counts the bytes
    forwarded per direction.
    """

    delay: float = 0.0
    held: set[str] = field(default_factory=set)
    dropped: set[str] = field(default_factory=set)
    accept_then_close: bool = False
    frame_fault: FrameFault | None = None
    body_fault: bool = False
    drop_after: tuple[int, bool, int | None, bool] | None = None
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    bytes: dict[str, int] = field(default_factory=lambda: {"upstream": 0, "downstream": 0})
    accepted: int = 0
    accept_then_closed: int = 0
    upstream_failures: int = 0
    dropped_after_frames: int = 0

    def notify_changed(self) -> None:
        """Wake every pump so it re-reads the faults; a fresh event for the next change."""
        self.changed.set()
        self.changed = asyncio.Event()

    def clear_faults(self) -> None:
        """Clear every fault kept here (refusing connections is the listener's business)."""
        self.delay = 0.0
        self.held.clear()
        self.dropped.clear()
        self.accept_then_close = False
        self.frame_fault = None
        self.body_fault = False
        self.drop_after = None
        self.notify_changed()

    def claim_frame_fault(self) -> FrameFault | None:
        fault, self.frame_fault = self.frame_fault, None
        return fault

    def claim_body_fault(self, xid: int, err: int) -> bool:
        if self.body_fault and xid > 0 and err == 0:
            self.body_fault = False
            return True
        return False

    def claim_drop(self, session_id: int) -> tuple[int, bool] | None:
        """(frames, then_refuse) for a connection asking for ``session_id``, if armed."""
        armed = self.drop_after
        if armed is None or (armed[1] and session_id != 0):
            return None
        frames, new_session, times, then_refuse = armed
        if times is not None:
            left = (frames, new_session, times - 1, then_refuse) if times > 1 else None
            self.drop_after = left
        return frames, then_refuse


class Connection:
    """One proxied client connection and its upstream connection."""

    def __init__(self, client: asyncio.StreamWriter) -> None:
        self.client = client
        self.upstream: asyncio.StreamWriter | None = None
        self.tasks: list[asyncio.Task[None]] = []
        self.closed = False
        self.refuse_after_drop = False

    def abort(self, *, rst: bool) -> None:
        """Close both sides now; with ``rst`` the peers get a TCP reset, not a FIN."""
        if self.closed:
            return
        self.closed = True
        for writer in (self.client, self.upstream):
            if writer is None:
                continue
            if rst:
                sock = writer.transport.get_extra_info("socket")
                if sock is not None:
                    with contextlib.suppress(OSError):
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RST)
            writer.transport.abort()
        self._cancel_others()

    def close(self) -> None:
        """Close both sides gracefully (pending bytes are flushed, then FIN)."""
        if self.closed:
            return
        self.closed = True
        for writer in (self.client, self.upstream):
            if writer is not None:
                writer.close()
        self._cancel_others()

    def _cancel_others(self) -> None:
        current = asyncio.current_task()
        for task in self.tasks:
            if task is not current:
                task.cancel()


class Forwarder:
    """Serves the proxy's client connections through the faults of ``state``.

    ``pick_upstream`` names the server for a new connection (None: none configured);
    ``start_refusing`` makes the proxy refuse new connections, for a drop armed with
    ``then_refuse``.
    """

    def __init__(
        self,
        state: FaultState,
        *,
        pick_upstream: Callable[[], tuple[str, int] | None],
        start_refusing: Callable[[], None],
        connect_timeout: float,
    ) -> None:
        self.state = state
        self.connections: set[Connection] = set()
        self._pick_upstream = pick_upstream
        self._start_refusing = start_refusing
        self._connect_timeout = connect_timeout

    def abort_all(self, *, rst: bool) -> list[asyncio.Task[None]]:
        """Abort every open connection; return their tasks, to wait for if wanted."""
        tasks = [t for conn in self.connections for t in conn.tasks]
        for conn in list(self.connections):
            conn.abort(rst=rst)
        self.connections.clear()
        return tasks

    async def on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """The listener's callback for each accepted client connection."""
        state = self.state
        state.accepted += 1
        if state.accept_then_close:
            state.accept_then_closed += 1
            # FIN first: closing with unread bytes from the client would send a reset.
            with contextlib.suppress(OSError):
                writer.write_eof()
            writer.close()
            return
        conn = Connection(writer)
        self.connections.add(conn)
        try:
            await self._serve(conn, reader)
        finally:
            self.connections.discard(conn)

    async def _serve(self, conn: Connection, client_reader: asyncio.StreamReader) -> None:
        target = self._pick_upstream()
        try:
            if target is None:
                raise OSError("no upstream configured")
            up_reader, up_writer = await asyncio.wait_for(
                asyncio.open_connection(*target), self._connect_timeout
            )
        except (TimeoutError, OSError) as exc:
            self.state.upstream_failures += 1
            _log.info("fault proxy: upstream %s unreachable: %s", target, exc)
            conn.abort(rst=True)
            return
        if conn.closed:  # reset() or close() while connecting
            up_writer.transport.abort()
            return
        conn.upstream = up_writer
        queues: dict[str, asyncio.Queue[tuple[float, bytes]]] = {
            "upstream": asyncio.Queue(_QUEUE_CHUNKS),
            "downstream": asyncio.Queue(_QUEUE_CHUNKS),
        }
        cutter = FrameCutter(self.state.claim_frame_fault, self.state.claim_body_fault)
        conn.tasks = [
            asyncio.create_task(self._read(client_reader, queues["upstream"], conn)),
            asyncio.create_task(
                self._write("upstream", queues["upstream"], up_writer, conn, cutter)
            ),
            asyncio.create_task(self._read(up_reader, queues["downstream"], conn)),
            asyncio.create_task(
                self._write("downstream", queues["downstream"], conn.client, conn, cutter)
            ),
        ]
        await asyncio.wait(conn.tasks)
        conn.close()

    def _drop(self, conn: Connection) -> None:
        self.state.dropped_after_frames += 1
        if conn.refuse_after_drop:
            self._start_refusing()
        conn.abort(rst=True)

    async def _read(
        self,
        reader: asyncio.StreamReader,
        queue: asyncio.Queue[tuple[float, bytes]],
        conn: Connection,
    ) -> None:
        try:
            while True:
                data = await reader.read(_CHUNK)
                await queue.put((time.monotonic(), data))
                if not data:
                    return
        except OSError:
            # The peer reset the connection: reset the other side too.
            conn.abort(rst=True)

    async def _write(
        self,
        direction: str,
        queue: asyncio.Queue[tuple[float, bytes]],
        writer: asyncio.StreamWriter,
        conn: Connection,
        downstream_cutter: FrameCutter,
    ) -> None:
        # The downstream writer cuts frames; the upstream one reads the ConnectRequest's
        # session id to arm a drop_after_server_frames on the cutter of its own connection
        # before the request is forwarded, so before any server frame can arrive.
        state = self.state
        downstream = direction == "downstream"
        cutter = downstream_cutter if downstream else None
        sniffer = None if downstream else ConnectRequestSniffer()
        try:
            while True:
                arrived, data = await queue.get()
                await self._wait_sendable(direction, arrived, eof=not data)
                if not data:
                    if cutter is not None:
                        writer.write(cutter.flush())
                    if writer.can_write_eof():
                        writer.write_eof()
                    return
                if direction in state.dropped:
                    if sniffer is not None:
                        sniffer.done = True  # what follows is no longer the stream's start
                    continue
                close_after = False
                if sniffer is not None and not sniffer.done:
                    session_id = sniffer.feed(data)
                    claimed = None if session_id is None else state.claim_drop(session_id)
                    if claimed is not None:
                        conn.refuse_after_drop = claimed[1]
                        if claimed[0] == 0:
                            self._drop(conn)
                            return
                        downstream_cutter.reset_after_frames = claimed[0]
                if cutter is not None:
                    data, close_after = cutter.feed(data)
                writer.write(data)
                state.bytes[direction] += len(data)
                if close_after:
                    await writer.drain()
                    if cutter is not None and cutter.reset:
                        self._drop(conn)
                    else:
                        conn.close()
                    return
                await writer.drain()
        except OSError:
            conn.abort(rst=True)

    async def _wait_sendable(self, direction: str, arrived: float, *, eof: bool) -> None:
        """Wait until ``direction`` is not held and the chunk has aged ``delay`` seconds;
        re-checked on every fault change, so changes apply to bytes already waiting.
        An EOF is held by a discarding blackhole too: a dropped FIN reaches nobody."""
        state = self.state
        while True:
            changed = state.changed
            timeout: float | None = None
            held = direction in state.held or (eof and direction in state.dropped)
            if not held:
                timeout = arrived + state.delay - time.monotonic()
                if timeout <= 0:
                    return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), timeout)
