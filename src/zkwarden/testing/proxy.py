"""A TCP proxy that injects network faults between a ZooKeeper client and its servers.

:class:`FaultProxy` runs its own asyncio event loop on a daemon thread, so the same object
works from blocking tests, from async tests (whatever loop they run) and from a command.
All control methods are plain thread-safe methods; each one has taken effect, for open and
new connections alike, by the time it returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import itertools
import logging
import socket
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal, TypeVar

from zkwarden.errors import ConfigurationError
from zkwarden.hosts import parse_connect_string

from ._errors import ProxyError
from ._forward import FaultState, Forwarder
from ._frames import FrameFault

__all__ = ("Direction", "FaultProxy", "ProxyStats")

_log = logging.getLogger("zkwarden.testing")

_T = TypeVar("_T")
Direction = Literal["both", "upstream", "downstream"]

_CONTROL_TIMEOUT = 5.0


@dataclass(frozen=True, slots=True)
class ProxyStats:
    """Counters since the proxy started.

    ``bytes_up`` is client→server and ``bytes_down`` server→client, as forwarded (after
    drops).  ``accepted`` counts every accepted client connection, ``open`` those still
    open, ``accept_then_closed`` those closed at once by :meth:`FaultProxy.accept_then_close`,
    ``upstream_failures`` those closed because the upstream server could not be reached,
    ``dropped_after_frames`` those reset by :meth:`FaultProxy.drop_after_server_frames`.
    """

    bytes_up: int
    bytes_down: int
    accepted: int
    open: int
    accept_then_closed: int
    upstream_failures: int
    dropped_after_frames: int = 0


def _require_loopback(host: str) -> None:
    if host == "localhost":
        return
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ConfigurationError(f"FaultProxy only uses loopback addresses, not {host!r}")


def _normalize_upstreams(
    upstreams: str | Sequence[tuple[str, int]],
) -> list[tuple[str, int]]:
    if isinstance(upstreams, str):
        parsed = parse_connect_string(upstreams)
        if parsed.chroot:
            raise ConfigurationError(f"upstreams take no chroot: {upstreams!r}")
        result = [(h.host, h.port) for h in parsed.hosts]
    else:
        result = [(str(host), int(port)) for host, port in upstreams]
    for host, port in result:
        _require_loopback(host)
        if not 0 < port < 65536:
            raise ConfigurationError(f"upstream port out of range: {port!r}")
    return result


class FaultProxy:
    """A TCP proxy on a free 127.0.0.1 port in front of one or more upstream servers.

    Faults: :meth:`delay`, :meth:`blackhole`, :meth:`reset`, :meth:`refuse_connections`,
    :meth:`accept_then_close`, :meth:`corrupt_next_frame`, :meth:`corrupt_next_reply_body`,
    :meth:`truncate_next_frame`, :meth:`drop_after_server_frames`; :meth:`pass_through`
    clears them all.  New connections go to the upstreams in turn, or
    to the one chosen with :meth:`use_upstream`.  Only loopback addresses are accepted.

    Example::

        with FaultProxy(server.connect_string) as proxy:
            client = Client(proxy.connect_string)
            proxy.blackhole()
    """

    def __init__(
        self,
        upstreams: str | Sequence[tuple[str, int]] = (),
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        connect_timeout: float = 5.0,
    ) -> None:
        """Configure the proxy; it listens once :meth:`start` is called.

        ``upstreams`` is a connect string (``"127.0.0.1:2181,127.0.0.1:2182"``) or a list of
        ``(host, port)``; it can be set later with :meth:`set_upstreams`.

        Raises:
            ConfigurationError: a non-loopback address or an invalid port.
        """
        _require_loopback(host)
        if not 0 <= port < 65536:
            raise ConfigurationError(f"port out of range: {port!r}")
        self._host = host
        self._port = port
        self._upstreams = _normalize_upstreams(upstreams)
        self._chosen: int | None = None
        self._turn = itertools.count()
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._closed = False
        # Everything below is touched on the loop thread only.
        self._server: asyncio.Server | None = None
        self._placeholder: socket.socket | None = None
        self._refusing = False
        # The faults the control methods arm, read by the forwarding loops.
        self._state = FaultState()
        self._forwarder = Forwarder(
            self._state,
            pick_upstream=self._pick_upstream,
            start_refusing=self._start_refusing,
            connect_timeout=connect_timeout,
        )

    # -- addresses ------------------------------------------------------------------------

    @property
    def host(self) -> str:
        """The address the proxy listens on."""
        return self._host

    @property
    def port(self) -> int:
        """The port the proxy listens on (known once started)."""
        return self._port

    @property
    def connect_string(self) -> str:
        """``"127.0.0.1:PORT"`` of the proxy, for a client."""
        return f"{self._host}:{self._port}"

    def __repr__(self) -> str:
        return f"<FaultProxy {self.connect_string} -> {self._upstreams}>"

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> FaultProxy:
        """Start the loop thread and listen.  Idempotent; returns self.

        Raises:
            ProxyError: the proxy was closed, or it cannot listen.
        """
        with self._lock:
            if self._closed:
                raise ProxyError("FaultProxy was closed; create a new one")
            if self._thread is not None:
                return self
            loop = asyncio.new_event_loop()
            thread = threading.Thread(
                target=self._run_loop, args=(loop,), name="zkwarden-fault-proxy", daemon=True
            )
            self._loop, self._thread = loop, thread
            thread.start()
        try:
            self._run(self._listen())
        except BaseException:
            self.close()
            raise
        _log.info("fault proxy on %s -> %s", self.connect_string, self._upstreams)
        return self

    @staticmethod
    def _run_loop(loop: asyncio.AbstractEventLoop) -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
        finally:
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.close()

    def close(self, timeout: float = 3.0) -> None:
        """Close the listener and every connection, and stop the loop thread.

        Idempotent, callable from any thread, and bounded by about ``timeout`` seconds.
        Never raises.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        deadline = time.monotonic() + timeout
        if threading.current_thread() is thread:
            loop.create_task(self._shutdown())
            loop.call_soon(loop.stop)
            return
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(timeout / 2)
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(loop.stop)
        thread.join(max(0.1, deadline - time.monotonic()))
        if thread.is_alive():
            _log.warning("fault proxy thread did not stop within %.1fs", timeout)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _run(self, coro: Coroutine[Any, Any, _T]) -> _T:
        """Run ``coro`` on the loop thread and wait for its result."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None or self._closed:
            coro.close()
            raise ProxyError("FaultProxy is not running: call start() first")
        if threading.current_thread() is thread:
            coro.close()
            raise ProxyError("FaultProxy control methods cannot be called on its own loop")
        future = asyncio.run_coroutine_threadsafe(coro, loop)
        try:
            return future.result(_CONTROL_TIMEOUT)
        except TimeoutError as exc:
            future.cancel()
            raise ProxyError(f"FaultProxy did not answer in {_CONTROL_TIMEOUT}s") from exc

    def _call(self, fn: Callable[[], _T]) -> _T:
        async def call() -> _T:
            return fn()

        return self._run(call())

    async def _listen(self) -> None:
        try:
            self._server = await asyncio.start_server(
                self._forwarder.on_client, self._host, self._port, reuse_address=True, backlog=128
            )
        except OSError as exc:
            raise ProxyError(f"cannot listen on {self._host}:{self._port}: {exc}") from exc
        self._port = int(self._server.sockets[0].getsockname()[1])

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        if self._placeholder is not None:
            self._placeholder.close()
            self._placeholder = None
        tasks = self._forwarder.abort_all(rst=False)
        if tasks:
            await asyncio.wait(tasks, timeout=1.0)

    # -- control --------------------------------------------------------------------------

    def pass_through(self) -> None:
        """Clear every fault: bytes flow unchanged, new connections are served.

        Raises:
            ProxyError: the proxy is not running, or it cannot listen again.
        """
        self.refuse_connections(False)

        self._call(self._state.clear_faults)

    def delay(self, seconds: float) -> None:
        """Add ``seconds`` of latency to every chunk, in both directions (0 removes it).

        Raises:
            ConfigurationError: ``seconds`` is negative.
            ProxyError: the proxy is not running.
        """
        if seconds < 0:
            raise ConfigurationError(f"delay must be >= 0, got {seconds!r}")

        def apply() -> None:
            self._state.delay = float(seconds)
            self._state.notify_changed()

        self._call(apply)

    def blackhole(self, direction: Direction = "both", *, discard: bool = False) -> None:
        """Stop forwarding bytes in ``direction`` without closing anything, like a firewall
        DROP: nobody gets an error or an EOF; new connections are accepted but nothing flows.

        ``"upstream"`` is client→server, ``"downstream"`` server→client; the call replaces
        any earlier blackhole (``blackhole("upstream")`` lets the downstream flow again).  By default bytes
        are held back (read ahead a little, then left in the socket buffers), so after
        :meth:`pass_through` they arrive late and intact, as after a real DROP rule is
        removed.  With ``discard`` they are read and thrown away for good.

        Raises:
            ConfigurationError: an unknown direction.
            ProxyError: the proxy is not running.
        """
        if direction not in ("both", "upstream", "downstream"):
            raise ConfigurationError(f"unknown direction {direction!r}")
        chosen: set[str] = {"upstream", "downstream"} if direction == "both" else {direction}

        def apply() -> None:
            state = self._state
            state.held, state.dropped = (set(), chosen) if discard else (chosen, set())
            state.notify_changed()

        self._call(apply)

    def reset(self) -> None:
        """Abort every open connection with a TCP reset (SO_LINGER 0), both the client and
        the upstream side.  New connections are unaffected.

        Raises:
            ProxyError: the proxy is not running.
        """

        def apply() -> None:
            self._forwarder.abort_all(rst=True)

        self._call(apply)

    def refuse_connections(self, refuse: bool = True) -> None:
        """Refuse new connections (``ECONNREFUSED``) while ``refuse``; open ones carry on.

        The port stays reserved by a bound socket that does not listen.

        Raises:
            ProxyError: the proxy is not running, or it cannot listen again.
        """
        self._run(self._set_refusing(refuse))

    async def _set_refusing(self, refuse: bool) -> None:
        if refuse == self._refusing:
            return
        if refuse:
            self._start_refusing()
            return
        if self._placeholder is not None:
            self._placeholder.close()
            self._placeholder = None
        await self._listen()
        self._refusing = False

    def _start_refusing(self) -> None:
        if self._refusing:
            return
        if self._server is not None:
            self._server.close()
            self._server = None
        placeholder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        placeholder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            placeholder.bind((self._host, self._port))
        except OSError as exc:
            _log.warning("fault proxy: cannot reserve port %d while refusing: %s", self._port, exc)
        self._placeholder = placeholder
        self._refusing = True

    def accept_then_close(self, enabled: bool = True) -> None:
        """While ``enabled``, accept new connections and close them at once: the client's
        connect succeeds, then it reads EOF before any byte.  Open connections carry on.

        Raises:
            ProxyError: the proxy is not running.
        """

        def apply() -> None:
            self._state.accept_then_close = enabled

        self._call(apply)

    def corrupt_next_frame(self, mode: Literal["payload", "length"] = "payload") -> None:
        """Corrupt the next server→client ZooKeeper frame (on whichever connection gets one
        first): ``"payload"`` inverts every payload byte, ``"length"`` replaces the length
        prefix with 0x7FFFFFFF.

        Raises:
            ConfigurationError: an unknown mode.
            ProxyError: the proxy is not running.
        """
        if mode not in ("payload", "length"):
            raise ConfigurationError(f"unknown corruption mode {mode!r}")
        self._arm(mode)

    def truncate_next_frame(self) -> None:
        """Send only the first half of the next server→client frame, then close that
        connection (both sides, with FIN).

        Raises:
            ProxyError: the proxy is not running.
        """
        self._arm("truncate")

    def corrupt_next_reply_body(self) -> None:
        """Corrupt the body of the next server→client reply with xid > 0 and err == 0 (a
        reply to a request; not a ping, a watch event nor the ConnectResponse), on whichever
        connection gets one first.  The length prefix and the ReplyHeader (xid, zxid, err)
        pass intact; the first 4 body bytes become a length of -2, so a reply whose body
        starts with a buffer, string or vector (getData, getChildren, create, getACL ...)
        cannot be decoded.  Only replies with at least 4 body bytes qualify.

        Raises:
            ProxyError: the proxy is not running.
        """

        def apply() -> None:
            self._state.body_fault = True

        self._call(apply)

    def drop_after_server_frames(
        self,
        frames: int,
        *,
        new_session: bool = False,
        times: int | None = 1,
        then_refuse: bool = False,
    ) -> None:
        """Reset (TCP RST, both sides) the next connection right after the server has sent
        it ``frames`` frames, the ConnectResponse being frame 1: ``1`` kills a connection
        between its handshake and the first reply, e.g. while the client restores its
        watches or re-sends its auth; ``0`` resets it as soon as its ConnectRequest is
        seen, before the server gets it.  The next connection is the next one to send a
        ConnectRequest; with ``new_session`` the next one asking for a new session
        (session id 0), so reconnects of an existing session pass.  ``times`` connections
        are dropped so (``None``: every one until :meth:`pass_through`).  With
        ``then_refuse`` the proxy also starts refusing new connections (as
        :meth:`refuse_connections`) at the moment of the drop, before the client can
        connect again: e.g. a client learns that its session expired, then finds no server.

        Raises:
            ConfigurationError: ``frames`` is negative or ``times`` below 1.
            ProxyError: the proxy is not running.
        """
        if frames < 0:
            raise ConfigurationError(f"frames must be >= 0, got {frames!r}")
        if times is not None and times < 1:
            raise ConfigurationError(f"times must be >= 1 or None, got {times!r}")

        def apply() -> None:
            self._state.drop_after = (int(frames), new_session, times, then_refuse)

        self._call(apply)

    def end_blackhole(self) -> None:
        """Lift :meth:`blackhole` alone (held bytes flow again), keeping every other fault.

        Raises:
            ProxyError: the proxy is not running.
        """

        def apply() -> None:
            state = self._state
            state.held, state.dropped = set(), set()
            state.notify_changed()

        self._call(apply)

    def _arm(self, fault: FrameFault) -> None:
        def apply() -> None:
            self._state.frame_fault = fault

        self._call(apply)

    # -- upstreams ------------------------------------------------------------------------

    def set_upstreams(self, upstreams: str | Sequence[tuple[str, int]]) -> None:
        """Replace the upstream servers used by new connections (open ones stay put).

        Raises:
            ConfigurationError: a non-loopback address or an invalid port.
        """
        normalized = _normalize_upstreams(upstreams)
        with self._lock:
            self._upstreams = normalized
            if self._chosen is not None and self._chosen >= len(normalized):
                self._chosen = None

    def use_upstream(self, index: int | None) -> None:
        """Send new connections to upstream ``index`` only; ``None`` means round-robin.

        Raises:
            ConfigurationError: ``index`` is out of range.
        """
        with self._lock:
            if index is not None and not 0 <= index < len(self._upstreams):
                raise ConfigurationError(f"no upstream {index} in {self._upstreams}")
            self._chosen = index

    def _pick_upstream(self) -> tuple[str, int] | None:
        with self._lock:
            if not self._upstreams:
                return None
            if self._chosen is not None:
                return self._upstreams[self._chosen]
            return self._upstreams[next(self._turn) % len(self._upstreams)]

    # -- stats ----------------------------------------------------------------------------

    def stats(self) -> ProxyStats:
        """A snapshot of the counters (the final ones once the proxy is closed).

        Raises:
            ProxyError: the proxy was never started.
        """
        if self._closed and self._loop is not None:
            return self._snapshot()
        return self._call(self._snapshot)

    def _snapshot(self) -> ProxyStats:
        state = self._state
        return ProxyStats(
            bytes_up=state.bytes["upstream"],
            bytes_down=state.bytes["downstream"],
            accepted=state.accepted,
            open=len(self._forwarder.connections),
            accept_then_closed=state.accept_then_closed,
            upstream_failures=state.upstream_failures,
            dropped_after_frames=state.dropped_after_frames,
        )
