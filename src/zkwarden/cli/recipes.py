"""``zkwarden lock PATH -- COMMAND...`` and ``zkwarden leader PATH``.

``lock`` runs a command while holding a Curator-compatible :class:`~zkwarden.recipes.lock.Lock`
(a cron job that must not run twice, also against Java services on the same path):

* it waits for the lock as long as it takes, or at most ``--timeout`` seconds (then it
  exits 11, LOCK_TIMEOUT, without running the command; the global ``--timeout`` bounds the
  connection wait as well);
* the command runs in a process group of its own, with the lock node and fencing token in
  ``$ZKWARDEN_LOCK_NODE`` and ``$ZKWARDEN_FENCING_TOKEN``; its exit code is passed
  through (a command killed by signal N gives 128+N, as in a shell);
* SIGINT and SIGTERM are forwarded to the command's process group; the lock is held until
  the command has exited, then released (its node deleted). A command still running
  ``--kill-after`` seconds after a forwarded signal is killed (SIGKILL). Interrupted while
  still waiting for the lock: nothing is left behind, exit 130;
* if the lock is lost while the command runs (its session LOST, which zkwarden presumes one
  session timeout after the last word from the server, or its node deleted), the command's
  group gets SIGTERM (then SIGKILL after ``--kill-after``) and the exit code is 12,
  LOCK_LOST. A SUSPENDED connection alone does not stop the command: the session may
  well survive it;
* a command that cannot be started exits 127 (not found) or 126 (not executable).

``leader`` shows the participants of a leader latch (``latch-`` nodes) or of a leader
election / LeaderSelector (``lock-`` nodes, the mutex layout), in Curator's order, the
leader first, with each participant's id read from its node's data. Exit 0 with a leader,
13 (NO_LEADER) when nobody takes part, also when the path does not exist (its container
parent is removed by the server once the last participant left, so the two are the same
situation a moment apart).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import socket
import sys
import textwrap
import time
from collections.abc import Sequence
from typing import Any

from .. import paths as _paths
from .._aio.client import AsyncClient
from ..errors import ConfigurationError, NoNodeError, ZooKeeperError
from ..recipes._curator import LATCH_MARKER, LOCK_MARKER, sorted_children
from ..recipes.lock import Lock
from . import exitcodes
from .output import Output
from .session import Options, connected

__all__ = ("add_lock_arguments", "add_leader_arguments", "cmd_lock", "cmd_leader")

#: How long releasing the lock may take before we leave it to the session close.
_RELEASE_BOUND = 5.0


def add_lock_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``zkwarden lock``."""
    parser.add_argument("path", help="the lock's path (Curator InterProcessMutex layout)")
    parser.add_argument("--identifier", "--id", dest="identifier",
                        help="written in the lock node (default HOSTNAME:PID)")
    parser.add_argument("--kill-after", type=float, default=5.0, metavar="SECONDS",
                        help="SIGKILL the command this long after a forwarded or loss "
                             "SIGTERM (default 5)")
    parser.description = textwrap.fill(
        "Run COMMAND while holding the lock at PATH (Curator InterProcessMutex layout): a "
        "job that must not run twice. Waits for the lock as long as it takes, or at most "
        "--timeout seconds (exit 11). The command's exit code is passed through; SIGINT/"
        "SIGTERM are forwarded to it and the lock is released once it exited; if the lock "
        "is lost meanwhile (session LOST), the command is terminated and the exit code is "
        "12. The lock node and fencing token are in $ZKWARDEN_LOCK_NODE and "
        "$ZKWARDEN_FENCING_TOKEN.", width=88)
    parser.add_argument("cmd", nargs="*", metavar="COMMAND",
                        help="the command to run while holding the lock")
    # Everything after the first `--` is the command, whatever options it holds, and the
    # verb's own options may come before or after PATH: argparse alone cannot do both
    # (a positional list after PATH stops at the first option), so split here.
    original = parser.parse_known_args

    def parse_known_args(
        args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        strings = list(sys.argv[1:] if args is None else args)
        if "--" not in strings:
            return original(strings, namespace)
        cut = strings.index("--")
        parsed, extras = original(strings[:cut], namespace)
        parsed.cmd = [*(parsed.cmd or ()), *strings[cut + 1:]]
        return parsed, extras

    parser.parse_known_args = parse_known_args  # type: ignore[method-assign,assignment]


def add_leader_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``zkwarden leader``."""
    parser.description = textwrap.fill(
        "Show the participants of a leader latch (latch- nodes) or election / "
        "LeaderSelector (lock- nodes) at PATH, in Curator's order, the leader first, with "
        "the ids their nodes hold. Exit 13 when nobody takes part (PATH missing included).", width=88)
    parser.add_argument("path", help="the latch's or election's path")


# --- lock ---------------------------------------------------------------------------------


class _Signals:
    """SIGINT/SIGTERM as a queue of signal numbers (while installed)."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[int] = asyncio.Queue()
        self._installed: list[int] = []

    def __enter__(self) -> _Signals:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, self.queue.put_nowait, int(sig))
            except (ValueError, RuntimeError, NotImplementedError):
                continue  # not the main thread
            self._installed.append(sig)
        return self

    def __exit__(self, *exc: object) -> None:
        loop = asyncio.get_running_loop()
        for sig in self._installed:
            with contextlib.suppress(ValueError, RuntimeError):
                loop.remove_signal_handler(sig)


def _status(returncode: int) -> int:
    return 128 - returncode if returncode < 0 else returncode


def _signal_group(proc: asyncio.subprocess.Process, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


async def _first(*aws: asyncio.Future[Any]) -> set[asyncio.Future[Any]]:
    done, _ = await asyncio.wait(set(aws), return_when=asyncio.FIRST_COMPLETED)
    return done


class _LockRun:
    """One ``zkwarden lock`` run: what happened, for the report."""

    def __init__(self, args: argparse.Namespace, out: Output, verbose: bool) -> None:
        self.args = args
        self.out = out
        self.verbose = verbose
        self.doc: dict[str, Any] = {"path": args.path, "acquired": False, "node": None,
                                    "fencing_token": None, "command": list(args.cmd),
                                    "command_exit": None, "signals_forwarded": [],
                                    "lost": None, "waited_seconds": None,
                                    "held_seconds": None}

    def note(self, text: str) -> None:
        if self.verbose and not self.out.json_mode:
            self.out.note(f"zkwarden: lock: {text}")

    def finish(self, code: int, reason: str | None = None) -> int:
        self.doc["exit_code"] = code
        if reason is not None:
            self.doc["reason"] = reason
            if not self.out.json_mode:
                self.out.note(f"zkwarden: lock: {reason}")
        if self.out.json_mode:
            self.out.json(self.doc, stream=True)
        return code

    async def run(self, zk: AsyncClient, signals: _Signals) -> int:
        args = self.args
        identifier = args.identifier or f"{socket.gethostname()}:{os.getpid()}"
        lock = Lock(zk, args.path, identifier=identifier)
        wait = getattr(args, "timeout", None)  # the global --timeout, when given
        began = time.monotonic()
        try:
            acquire = asyncio.ensure_future(lock.acquire(timeout=wait))
            interrupted = asyncio.ensure_future(signals.queue.get())
            done = await _first(acquire, interrupted)
            if acquire not in done:
                acquire.cancel()  # the acquire deletes its node before it ends
                await asyncio.gather(acquire, return_exceptions=True)
                return self.finish(exitcodes.INTERRUPTED,
                                   "interrupted while waiting for the lock; nothing left")
            interrupted.cancel()
            self.doc["waited_seconds"] = round(time.monotonic() - began, 3)
            if not acquire.result():
                return self.finish(exitcodes.LOCK_TIMEOUT,
                                   f"{args.path} not acquired within {wait:g}s; "
                                   "the command did not run")
            return await self._hold(lock, signals)
        finally:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_RELEASE_BOUND):
                    await lock.close()  # deletes our node, retried until confirmed

    async def _hold(self, lock: Lock, signals: _Signals) -> int:
        args = self.args
        lease = lock.lease
        assert lease is not None
        self.doc.update(acquired=True, node=lease.node_path, fencing_token=lease.fencing_token)
        self.note(f"acquired {args.path} ({lease.node_path}, fencing token "
                  f"{lease.fencing_token}) after {self.doc['waited_seconds']}s")
        env = dict(os.environ, ZKWARDEN_LOCK_NODE=lease.node_path,
                   ZKWARDEN_FENCING_TOKEN=str(lease.fencing_token))
        held_since = time.monotonic()
        try:
            proc = await asyncio.create_subprocess_exec(*args.cmd, env=env, process_group=0)
        except FileNotFoundError as exc:
            return self.finish(exitcodes.COMMAND_NOT_FOUND, f"command not found: {exc}")
        except PermissionError as exc:
            return self.finish(exitcodes.COMMAND_NOT_EXECUTABLE, f"cannot execute: {exc}")
        except OSError as exc:
            return self.finish(exitcodes.COMMAND_NOT_EXECUTABLE, f"cannot execute: {exc}")
        child = asyncio.ensure_future(proc.wait())
        lost = asyncio.ensure_future(lease.lost.wait())
        kill_at: float | None = None
        code: int | None = None
        try:
            while not child.done():
                sig = asyncio.ensure_future(signals.queue.get())
                timer = asyncio.ensure_future(asyncio.sleep(
                    3600.0 if kill_at is None else max(0.0, kill_at - time.monotonic())))
                waiting = [child, sig, timer] + ([lost] if code is None else [])
                done = await _first(*waiting)
                sig.cancel()
                timer.cancel()
                if child in done:
                    break
                if sig in done and not sig.cancelled():
                    number = sig.result()
                    self.doc["signals_forwarded"].append(signal.Signals(number).name)
                    _signal_group(proc, number)
                    kill_at = kill_at or time.monotonic() + args.kill_after
                if lost in done and code is None:
                    code = exitcodes.LOCK_LOST
                    self.doc["lost"] = lease.lost_reason
                    self.out.note(f"zkwarden: lock: lost {args.path} ({lease.lost_reason}) "
                                  "while the command ran: terminating it")
                    _signal_group(proc, signal.SIGTERM)
                    kill_at = time.monotonic() + args.kill_after
                if kill_at is not None and time.monotonic() >= kill_at:
                    _signal_group(proc, signal.SIGKILL)
                    kill_at = time.monotonic() + 3600.0
        finally:
            lost.cancel()
            if not child.done():  # cancelled (second interrupt of the verb): no orphan
                _signal_group(proc, signal.SIGKILL)
                with contextlib.suppress(BaseException):
                    await asyncio.wait_for(asyncio.shield(child), 5.0)
        status = _status(child.result())
        self.doc["command_exit"] = status
        self.doc["held_seconds"] = round(time.monotonic() - held_since, 3)
        self.note(f"the command exited {status}; releasing {args.path}")
        if code is not None:
            return self.finish(code, f"the command was terminated (it exited {status})")
        return self.finish(status)


async def cmd_lock(args: argparse.Namespace, opts: Options, out: Output) -> int:
    """``lock PATH [--identifier ID] [--kill-after S] -- COMMAND...``: see the module doc."""
    command = list(args.cmd)
    if not command:
        raise ConfigurationError("lock: give the command to run after `--`")
    _paths.validate(args.path)
    args.cmd = command
    run = _LockRun(args, out, verbose=opts.verbose > 0)
    with _Signals() as signals:
        async with connected(opts) as zk:
            return await run.run(zk, signals)


# --- leader -------------------------------------------------------------------------------


def _layout(children: list[str]) -> tuple[str, str | None]:
    """(layout, marker) of a leadership path from its children's names."""
    latch = sum(LATCH_MARKER in c for c in children)
    lock = sum(LOCK_MARKER in c for c in children)
    if not children:
        return "empty", None
    if latch >= lock and latch:
        return ("latch" if not lock else "mixed"), LATCH_MARKER
    if lock:
        return ("election" if not latch else "mixed"), LOCK_MARKER
    return "unknown", None


async def read_leadership(zk: AsyncClient, path: str) -> dict[str, Any]:
    """The participants of the latch or election at ``path``, leader first.

    Raises:
        ConnectionLossError, SessionExpiredError, NoAuthError.
    """
    try:
        children: list[str] = await zk.get_children(path)
    except NoNodeError:  # a container parent is reaped once its last participant left
        return {"path": path, "layout": "missing", "leader": None, "participants": []}
    layout, marker = _layout(children)
    ordered = sorted_children(children, marker) if marker else sorted(children)
    results = await zk.get_many([_paths.join(path, c) for c in ordered])
    participants: list[dict[str, Any]] = []
    for name, result in zip(ordered, results, strict=True):
        if isinstance(result, ZooKeeperError):
            continue  # left while we read
        data, stat = result
        participants.append({
            "id": data.decode("utf-8", errors="replace"), "node": name,
            "czxid": stat.czxid, "session": f"0x{stat.ephemeral_owner & (2**64 - 1):x}",
            "leader": False,
        })
    if participants:
        participants[0]["leader"] = True
    return {"path": path, "layout": layout,
            "leader": participants[0]["id"] if participants else None,
            "participants": participants}


async def cmd_leader(args: argparse.Namespace, opts: Options, out: Output) -> int:
    """``leader PATH``: the participants of a latch or election, the leader first."""
    _paths.validate(args.path)
    async with connected(opts) as zk:
        doc = await read_leadership(zk, args.path)
    code = exitcodes.OK if doc["participants"] else exitcodes.NO_LEADER
    if out.json_mode:
        out.json({**doc, "exit_code": code})
        return code
    participants = doc["participants"]
    if not participants:
        out.note(f"zkwarden: leader: nobody takes part in {args.path}")
        return code
    if doc["layout"] in ("mixed", "unknown"):
        out.note(f"zkwarden: leader: warning: {args.path} holds {doc['layout']} nodes "
                 "(latch- and lock- participants must not share a path)")
    rows = [("", "ID", "NODE", "SESSION")]
    rows += [("*" if p["leader"] else "", p["id"] or '""', p["node"], p["session"])
             for p in participants]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    out.line(f"{doc['layout']} {args.path}: leader {participants[0]['id']!r}, "
             f"{len(participants)} participant(s)")
    out.lines(["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
               for r in rows])
    return code
