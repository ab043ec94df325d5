"""Free loopback ports and reaping of child JVMs (no orphan outlives this interpreter)."""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading

from ._errors import HarnessError

__all__ = ("LOOPBACK", "free_port", "kill_group", "reaper")

_log = logging.getLogger("zkwarden.testing")

LOOPBACK = "127.0.0.1"

# --- ports -------------------------------------------------------------------------------

_port_lock = threading.Lock()
_ports_handed_out: set[int] = set()
# A private generator: test plugins that reseed the global `random` identically in every
# xdist worker would otherwise make the workers pick the same ports.
_port_random = random.Random(int.from_bytes(os.urandom(8), "big") ^ os.getpid())


def _ephemeral_port_floor() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _can_bind(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # The JVM binds with SO_REUSEADDR too, so a port held only by TIME_WAIT is usable.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = LOOPBACK) -> int:
    """Return a TCP port on ``host`` that nothing is bound to, for a server to listen on.

    Ports are drawn below the kernel's ephemeral range, so an outgoing connection cannot
    take the port between this check and the server's bind; a port is never handed out
    twice by one process.

    Raises:
        HarnessError: no free port was found.
    """
    floor = _ephemeral_port_floor()
    low, high = (20000, floor) if floor > 21000 else (floor, 65535)
    with _port_lock:
        for _ in range(500):
            port = _port_random.randrange(low, high)
            if port not in _ports_handed_out and _can_bind(host, port):
                _ports_handed_out.add(port)
                return port
    raise HarnessError(f"no free TCP port found on {host} in [{low}, {high})")


# --- reaping -----------------------------------------------------------------------------

# Runs in its own session with a pipe from us as stdin: "+ PGID WORKDIR" / "- PGID" lines
# register and forget JVM process groups; EOF (we died, however) or SIGTERM/SIGHUP kills
# them all and removes their temporary directories.
_WATCHDOG_SOURCE = """
import os, shutil, signal, sys, time
groups = {}
def reap(*_):
    for g in groups:
        try:
            os.killpg(g, signal.SIGKILL)
        except OSError:
            pass
    time.sleep(0.2)
    for d in groups.values():
        if d:
            shutil.rmtree(d, ignore_errors=True)
    os._exit(0)
signal.signal(signal.SIGINT, signal.SIG_IGN)
signal.signal(signal.SIGTERM, reap)
signal.signal(signal.SIGHUP, reap)
for line in sys.stdin:
    op, _, rest = line.rstrip("\\n").partition(" ")
    group, _, tmp = rest.partition(" ")
    if op == "+":
        groups[int(group)] = tmp
    elif op == "-":
        groups.pop(int(group), None)
reap()
"""


def kill_group(pid: int, sig: int) -> None:
    """Send ``sig`` to the process group led by ``pid``; a group already gone is fine."""
    with contextlib.suppress(OSError):
        os.killpg(pid, sig)


class _Reaper:
    """Tracks live JVM process groups and owned temporary directories.

    At interpreter exit it kills the groups and deletes the directories; a watchdog process
    does the same for the groups if this interpreter dies without running exit handlers.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._groups: dict[int, str] = {}
        self._dirs: set[str] = set()
        self._watchdog: subprocess.Popen[bytes] | None = None
        self._watchdog_pid = -1

    def _tell_watchdog(self, line: str) -> None:
        # A forked child inherits our object but not a usable watchdog: start its own.
        if self._watchdog is None or self._watchdog_pid != os.getpid():
            try:
                self._watchdog = subprocess.Popen(
                    [sys.executable, "-c", _WATCHDOG_SOURCE],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    start_new_session=True,
                )
            except OSError as exc:
                _log.warning("cannot start the JVM watchdog: %s", exc)
                return
            self._watchdog_pid = os.getpid()
            for group, workdir in self._groups.items():
                self._write(f"+ {group} {workdir}")
            return
        self._write(line)

    def _write(self, line: str) -> None:
        watchdog = self._watchdog
        if watchdog is None or watchdog.stdin is None:
            return
        try:
            watchdog.stdin.write(line.encode() + b"\n")
            watchdog.stdin.flush()
        except OSError as exc:
            _log.warning("JVM watchdog is gone: %s", exc)
            self._watchdog = None

    def add_group(self, pid: int, workdir: str) -> None:
        """Track the process group led by ``pid``, whose files live in ``workdir``."""
        with self._lock:
            self._groups[pid] = workdir
            self._tell_watchdog(f"+ {pid} {workdir}")

    def discard_group(self, pid: int) -> None:
        """Stop tracking the group led by ``pid`` (it has exited)."""
        with self._lock:
            if self._groups.pop(pid, None) is not None:
                self._tell_watchdog(f"- {pid}")

    def own_dir(self, path: str) -> None:
        """Delete ``path`` at interpreter exit unless :meth:`release_dir` is called."""
        with self._lock:
            self._dirs.add(path)

    def release_dir(self, path: str) -> None:
        """Forget ``path`` (its owner deleted it)."""
        with self._lock:
            self._dirs.discard(path)

    def kill_all(self) -> None:
        """Kill every tracked group and delete every owned directory (exit handler)."""
        with self._lock:
            groups, self._groups = list(self._groups), {}
            dirs, self._dirs = list(self._dirs), set()
        for pid in groups:
            kill_group(pid, signal.SIGKILL)
        for path in dirs:
            shutil.rmtree(path, ignore_errors=True)


reaper = _Reaper()
atexit.register(reaper.kill_all)
