"""``zkwarden watch``: stream a node's (or a subtree's) events until Ctrl-C.

The stream survives reconnects (the persistent watch is re-armed by the client) and
session expiry (the verb subscribes again on the new session), and says so: every state
change is reported between the events, as a ``--`` line (text) or a ``state`` object
(JSON).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from .. import paths as _paths
from .._aio.client import AsyncClient
from ..errors import ClientClosedError, NoNodeError, SessionExpiredError
from ..types import ClientState, ClientStateChange, EventType, WatchEvent
from .output import Output, clock
from .session import Interrupt, Options, connected, run_until_interrupted

__all__ = ("cmd_watch", "StateReporter", "wait_connected")


def _sid(session_id: int | None) -> str:
    return f"0x{session_id:x}" if session_id else "none"


class StateReporter:
    """Reports a client's state changes on the output, in words (a client listener).

    ``after_resume`` and ``after_new`` are appended to the messages for a resumed and a
    new session, to say what that means for the verb (watch, registration …).
    """

    def __init__(
        self, out: Output, client: AsyncClient, *, after_resume: str = "", after_new: str = ""
    ) -> None:
        self._out = out
        self._client = client
        self._after_resume = after_resume
        self._after_new = after_new
        self.changes: list[ClientStateChange] = []

    def __call__(self, change: ClientStateChange) -> None:
        self.changes.append(change)
        if change.state is ClientState.CLOSED or change.previous is ClientState.CONNECTING:
            return
        if self._out.json_mode:
            doc: dict[str, Any] = {
                "time": time.time(),
                "state": change.state.value,
                "previous": change.previous.value,
                "session": _sid(change.session_id),
                "new_session": change.new_session,
            }
            if change.state is ClientState.LOST:
                doc["confirmed"] = change.confirmed
            self._out.json(doc, stream=True)
            return
        self._out.line(f"-- {clock()} {self._describe(change)}")

    def _describe(self, change: ClientStateChange) -> str:
        sid = _sid(change.session_id)
        host = self._client.current_host
        where = f" on {host}" if host is not None else ""
        if change.state is ClientState.SUSPENDED:
            return f"disconnected; reconnecting (session {sid} may still be alive)"
        if change.state is ClientState.LOST:
            how = ("expired (confirmed by the server)" if change.confirmed
                   else "presumed expired (no server for a whole session timeout)")
            return f"session {sid} {how}; opening a new session"
        if change.state in (ClientState.CONNECTED, ClientState.READ_ONLY):
            mode = " (read-only)" if change.state is ClientState.READ_ONLY else ""
            if change.new_session:
                return f"connected{where}{mode}, new session {sid}{self._after_new}"
            return f"reconnected{where}{mode}, session {sid} resumed{self._after_resume}"
        return f"state {change.state.value}"


async def wait_connected(zk: AsyncClient) -> None:
    """Wait until the client has a live session again (no polling).

    Raises:
        ClientClosedError: the client was closed.
    """
    if zk.connected:
        return
    changed = asyncio.Event()

    def on_change(change: ClientStateChange) -> None:
        changed.set()

    zk.add_listener(on_change)
    try:
        while not zk.connected:
            if zk.closed:
                raise ClientClosedError("client is closed")
            changed.clear()
            await changed.wait()
    finally:
        zk.remove_listener(on_change)


async def _event_doc(zk: AsyncClient, event: WatchEvent, with_data: bool) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "time": time.time(),
        "event": event.type.name,
        "path": event.path,
        "zxid": event.zxid,
    }
    if with_data and event.type in (EventType.NODE_CREATED, EventType.NODE_DATA_CHANGED):
        try:
            data, stat = await zk.get(event.path)
        except NoNodeError:
            doc["data"] = None
        else:
            try:
                doc["data"] = data.decode("utf-8")
            except UnicodeDecodeError:
                doc["data"] = repr(data)
            doc["version"] = stat.version
    return doc


def _event_text(doc: dict[str, Any]) -> str:
    line = f"{clock(doc['time'])} {doc['event']:<22} {doc['path']}"
    if "data" in doc:
        data = doc["data"]
        line += "  (gone)" if data is None else f"  {data!r} v{doc.get('version')}"
    return line


async def _watch_loop(zk: AsyncClient, path: str, args: argparse.Namespace, out: Output) -> None:
    kind = "persistent recursive" if args.recursive else "persistent"
    first = True
    renewed = False
    while True:
        stream = zk.add_watch(path, recursive=args.recursive)
        try:
            async for event in stream:
                if event.type is EventType.NONE:
                    if first and not out.json_mode:
                        out.note(f"watching {path} ({kind} watch); Ctrl-C to stop")
                    elif first or renewed:
                        out.json({"time": time.time(), "watching": path,
                                  "recursive": args.recursive,
                                  "session": f"0x{zk.session_id or 0:x}"}, stream=True)
                    if renewed and not out.json_mode:
                        out.line(f"-- {clock()} watching {path} again on session "
                                 f"0x{zk.session_id or 0:x} (changes made meanwhile are "
                                 "not replayed)")
                    # Other NONE events mark a re-arm after a reconnect, which the state
                    # reporter has just announced.
                    first = renewed = False
                    continue
                doc = await _event_doc(zk, event, args.data)
                if out.json_mode:
                    out.json(doc, stream=True)
                else:
                    out.line(_event_text(doc))
        except SessionExpiredError:
            # Said already by the state reporter; subscribe again on the new session.
            await wait_connected(zk)
            renewed = True
            continue
        except ClientClosedError:
            return
        finally:
            await stream.aclose()


async def cmd_watch(args: argparse.Namespace, opts: Options, out: Output) -> int:
    """``watch PATH [--recursive] [--data]``: print every event until Ctrl-C."""
    path = _paths.validate(args.path)
    async with connected(opts) as zk:
        reporter = StateReporter(
            out, zk,
            after_resume="; watch kept (changes made while disconnected are not replayed)",
            after_new="; subscribing again",
        )
        zk.add_listener(reporter)
        try:
            with Interrupt() as interrupt:
                await run_until_interrupted(
                    lambda: _watch_loop(zk, path, args, out), interrupt, duration=args.duration
                )
        finally:
            zk.remove_listener(reporter)
    if not out.json_mode:
        out.note(f"stopped watching {path}")
    return 0
