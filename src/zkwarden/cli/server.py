"""``zkwarden server``: a real local ZooKeeper (or ensemble) in the foreground.

Runs Apache ZooKeeper through :mod:`zkwarden.testing` (Debian's ``zookeeper`` package or
``$ZOOKEEPER_HOME``) on loopback ports, for development. Ctrl-C (or SIGTERM) stops every
JVM and deletes the temporary data; ``--data-dir`` keeps a single server's data.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import socket
import threading
import time
from collections.abc import Iterator
from types import FrameType
from typing import Any

from ..errors import ConfigurationError, ZooKeeperError
from ..testing import ZooKeeperEnsemble, ZooKeeperServer
from .output import Output
from .session import Options

__all__ = ("cmd_server", "stop_signals")

#: Session timeouts a development server grants (seconds): the client decides.
_MAX_SESSION_TIMEOUT = 60.0


class PortInUseError(ZooKeeperError):
    """The port the server should listen on is taken."""


def _check_port_free(port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            raise PortInUseError(
                f"port {port} on 127.0.0.1 is already in use (another ZooKeeper?); "
                "choose another with --port"
            ) from None


@contextlib.contextmanager
def stop_signals() -> Iterator[threading.Event]:
    """An event set by the first SIGINT/SIGTERM while the block runs (main thread only;
    elsewhere the event is only set by code). A second signal raises KeyboardInterrupt."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()

    saved = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for sig, previous in saved.items():
            signal.signal(sig, previous)


def _version(server: ZooKeeperServer) -> str:
    try:
        first = server.four_letter_word("srvr", timeout=2.0).splitlines()[0]
    except (ZooKeeperError, IndexError):
        return "ZooKeeper"
    version = first.partition(":")[2].strip().split("-")[0]
    return f"ZooKeeper {version}" if version else "ZooKeeper"


def cmd_server(args: argparse.Namespace, opts: Options, out: Output) -> int:
    """``server [--port N] [--ensemble N] [--tick-time S] [--data-dir DIR]``: run ZooKeeper
    in the foreground until Ctrl-C."""
    size = args.ensemble
    if size < 1:
        raise ConfigurationError("--ensemble needs at least 1 member")
    if args.data_dir is not None and size > 1:
        raise ConfigurationError("--data-dir works with a single server only")
    if args.tick_time <= 0:
        raise ConfigurationError("--tick-time must be > 0")
    ports = [args.port + i for i in range(size)]
    if not all(0 < p < 65536 for p in ports):
        raise ConfigurationError(f"--port {args.port} leaves no room for {size} members")
    for port in ports:
        _check_port_free(port)
    servers: list[ZooKeeperServer]
    target: ZooKeeperServer | ZooKeeperEnsemble
    if size == 1:
        single = ZooKeeperServer(
            tick_time=args.tick_time, max_session_timeout=_MAX_SESSION_TIMEOUT,
            port=ports[0], data_dir=args.data_dir,
        )
        servers, target = [single], single
    else:
        ensemble = ZooKeeperEnsemble(
            size, tick_time=args.tick_time, max_session_timeout=_MAX_SESSION_TIMEOUT,
            client_ports=ports,
        )
        servers, target = ensemble.members, ensemble
    connect = ",".join(s.connect_string for s in servers)
    what = "ZooKeeper" if size == 1 else f"a {size}-member ZooKeeper ensemble"
    if not out.json_mode:
        out.note(f"starting {what} on {connect} …")
    started = time.monotonic()
    with stop_signals() as stop:
        try:
            target.start()
            _serve(out, servers, connect, args, started, stop)
        finally:
            target.stop()
    if out.json_mode:
        out.json({"event": "stopped", "connect_string": connect}, stream=True)
    else:
        out.note("stopped; temporary data removed" if args.data_dir is None else "stopped")
    return 0


def _serve(
    out: Output,
    servers: list[ZooKeeperServer],
    connect: str,
    args: argparse.Namespace,
    started: float,
    stop: threading.Event,
) -> None:
    took = time.monotonic() - started
    modes = {s.connect_string: _mode(s) for s in servers}
    if out.json_mode:
        doc: dict[str, Any] = {
            "event": "serving",
            "connect_string": connect,
            "version": _version(servers[0]),
            "servers": [{"address": k, "mode": v} for k, v in modes.items()],
            "data_dir": servers[0].data_dir if args.data_dir else None,
            "started_in": round(took, 2),
        }
        out.json(doc, stream=True)
    else:
        out.line(f"{_version(servers[0])} serving on {connect} (started in {took:.1f}s)")
        for address, mode in modes.items():
            out.line(f"  {address}  {mode}")
        data = (f"data in {args.data_dir} (kept)" if args.data_dir
                else "temporary data (deleted when stopped)")
        out.line(f"  {data}; tick {args.tick_time:g}s")
        out.line(f"  export ZOOKEEPER_HOSTS={connect}")
        if args.duration is None:
            out.note("Ctrl-C to stop")
    deadline = None if args.duration is None else time.monotonic() + args.duration
    while not stop.wait(0.25):
        dead = [s for s in servers if not s.running]
        if dead:
            raise ZooKeeperError(
                f"ZooKeeper on {dead[0].connect_string} exited unexpectedly"
            )
        if deadline is not None and time.monotonic() >= deadline:
            break
    if not out.json_mode:
        out.note("stopping …")


def _mode(server: ZooKeeperServer) -> str:
    try:
        return server.mode()
    except ZooKeeperError:
        return "unknown"
