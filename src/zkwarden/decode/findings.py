"""The incident patterns, detected as the frames go by (and at the end of the capture).

=========================  ===============================================================
``watch-gap``              after a notification, the client re-read the node (or re-listed
                           its children) *without* setting a watch: a change between that
                           read and the next watch is never seen
``reconnect-storm``        many connections from one host that never got a session, or
                           connect/close pairs at a regular interval
``expired-reattach``       a client reattached a session the server had expired (the
                           ConnectResponse said timeout 0): its ephemerals and watches are
                           gone; a second attempt means the client ignores expiry
``unfollowed-notification`` a notification the client never followed with a read of that
                           path (within ``follow_window`` while the session lived on)
``slow-ping``              a ping answered after ``slow_ping_ms`` (or a tenth of the session
                           timeout, if larger): a server or network stall
``out-of-order``           a reply that overtook the reply to an earlier request (the
                           server answers in order: a broken client or proxy)
``oversize``               a request larger than jute.maxbuffer: the server drops the
                           connection without a reply
=========================  ===============================================================
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from ..protocol import ops
from .model import Connection, DecodeOptions, Finding, Frame

__all__ = ("Detectors",)

_WATCH_READS = (ops.GetData, ops.Exists, ops.GetChildren, ops.GetChildren2)
_CHILD_READS = (ops.GetChildren, ops.GetChildren2)
_EVENT_LABEL = {1: "NodeCreated", 3: "NodeDataChanged", 4: "NodeChildrenChanged"}


def _key(info: Connection) -> Any:
    return info.session if info.session else ("connection", info.number)


def _sid(session: int | None) -> str:
    return f"0x{session:x}" if session else "(no session)"


class _SessionWatch:
    __slots__ = ("fired", "persistent", "recursive", "closed_at")

    def __init__(self) -> None:
        # (path, "child" | "data") -> the notification that consumed the one-shot watch
        self.fired: dict[tuple[str, str], Frame] = {}
        self.persistent: set[str] = set()
        self.recursive: set[str] = set()
        self.closed_at: float | None = None

    def covered(self, path: str) -> bool:
        if path in self.persistent or path in self.recursive:
            return True
        return any(path == p or path.startswith(p.rstrip("/") + "/") for p in self.recursive)


class Detectors:
    """Receives decoder callbacks; reports each :class:`Finding` to ``sink`` and keeps it."""

    def __init__(self, options: DecodeOptions, sink: Callable[[Frame | Finding], None]) -> None:
        self.options = options
        self._sink = sink
        self.findings: list[Finding] = []
        self._sessions: dict[Any, _SessionWatch] = defaultdict(_SessionWatch)
        self._expired: dict[int, Frame] = {}

    def _report(self, name: str, frame: Frame, message: str, frames: list[int],
                connection: int | None = None) -> None:
        finding = Finding(name, frame.time, frame.connection if connection is None
                          else connection, frame.session, message,
                          [i for i in frames if i])
        self.findings.append(finding)
        self._sink(finding)

    # -- per frame ----------------------------------------------------------------------

    def on_request(self, frame: Frame, req: ops.Request, info: Connection) -> None:
        """A decoded client request."""
        state = self._sessions[_key(info)]
        if isinstance(req, _WATCH_READS):
            kind = "child" if isinstance(req, _CHILD_READS) else "data"
            event = state.fired.pop((req.path, kind), None)
            if event is None:
                return
            if not req.watch and not state.covered(req.path):
                label = (event.details or {}).get("type", "a notification")
                what = "re-listed its children" if kind == "child" else "re-read it"
                self._report(
                    "watch-gap", frame,
                    f"{label} on {req.path}, then the client {what} with {frame.op} "
                    "without a watch: a change after this read is never notified "
                    "(read and watch in one request)",
                    [event.index, frame.index])
        elif isinstance(req, ops.AddWatch):
            (state.recursive if req.mode == 1 else state.persistent).add(req.path)
        elif isinstance(req, ops.SetWatches2):
            state.persistent.update(req.persistent)
            state.recursive.update(req.persistent_recursive)
        elif isinstance(req, (ops.Multi, ops.MultiRead)):
            for op in req.ops:
                kind = "child" if isinstance(op, _CHILD_READS) else "data"
                state.fired.pop((op.path, kind), None)
        elif isinstance(req, ops.CloseSession):
            state.closed_at = frame.time

    def on_event(self, frame: Frame, event_type: int, info: Connection) -> None:
        """A watch notification (xid -1)."""
        if event_type not in _EVENT_LABEL or frame.path is None:
            return  # NodeDeleted: nothing left to read
        state = self._sessions[_key(info)]
        if state.covered(frame.path):
            return  # persistent watches stay armed: no gap, and no read is owed
        kind = "child" if event_type == 4 else "data"
        state.fired[(frame.path, kind)] = frame

    def on_reply(self, frame: Frame, req: ops.Request, info: Connection) -> None:
        """A reply paired with its request."""

    def on_ping_reply(self, frame: Frame, info: Connection) -> None:
        """A ping reply paired with its ping."""
        latency = frame.latency_ms
        if latency is None:
            return
        threshold = self.options.slow_ping_ms
        if info.timeout_ms:
            threshold = max(threshold, info.timeout_ms / 10.0)
        if latency >= threshold:
            self._report(
                "slow-ping", frame,
                f"ping answered after {latency:.0f} ms (threshold {threshold:.0f} ms): the "
                "server or the network stalled; at 2/3 of the session timeout "
                "the client gives up the connection",
                [frame.reply_to or 0, frame.index])

    def out_of_order(self, frame: Frame, waiting: Frame, info: Connection) -> None:
        """A reply overtook the reply to an earlier pipelined request."""
        self._report(
            "out-of-order", frame,
            f"reply to xid {frame.xid} ({frame.op}) arrived before the reply to the earlier "
            f"xid {waiting.xid} ({waiting.op}): ZooKeeper answers in order, so a client or "
            "proxy between them reordered the stream",
            [waiting.index, frame.reply_to or 0, frame.index])

    def oversize(self, frame: Frame) -> None:
        """A request frame above jute.maxbuffer."""
        self._report(
            "oversize", frame,
            f"{frame.op} {frame.path or ''} is a {frame.size}-byte request, above "
            f"jute.maxbuffer ({self.options.max_buffer}): the server closes the connection "
            "without a reply",
            [frame.index])

    def on_connected(self, frame: Frame, request: Frame | None, asked: int, timeout_ms: int,
                     info: Connection) -> None:
        """A ConnectResponse (``timeout_ms`` 0: the session ``asked`` for has expired)."""
        if timeout_ms > 0 or not asked:
            return
        earlier = self._expired.get(asked)
        if earlier is None:
            message = (f"session {_sid(asked)} reattached after it expired on the server "
                       "(ConnectResponse timeout 0): its ephemeral nodes and watches are "
                       "gone; the client must start a new session and rebuild them")
            frames = [request.index if request else 0, frame.index]
        else:
            message = (f"session {_sid(asked)} reattached AGAIN after the server reported "
                       "it expired: the client does not handle session expiry")
            frames = [earlier.index, request.index if request else 0, frame.index]
        self._expired.setdefault(asked, frame)
        frame_with_session = Frame(frame.index, frame.time, frame.connection, asked,
                                   frame.direction, frame.xid, frame.op)
        self._report("expired-reattach", frame_with_session, message, frames)

    def on_close(self, info: Connection, time: float) -> None:
        """The connection ended (FIN or RST)."""

    # -- at the end -------------------------------------------------------------------

    def finish(self, connections: list[Connection], end: float) -> None:
        """Whole-capture patterns: unfollowed notifications, reconnect storms."""
        window = self.options.follow_window
        for state in self._sessions.values():
            until = state.closed_at if state.closed_at is not None else end
            for (path, _kind), event in sorted(state.fired.items(), key=lambda i: i[1].index):
                if until - event.time < window:
                    continue  # the capture (or session) ended too soon to tell
                label = (event.details or {}).get("type", "notification")
                self._report(
                    "unfollowed-notification", event,
                    f"{label} on {path} was never followed by a read of {path} "
                    f"({until - event.time:.1f} s until the session or capture ended): the "
                    "client did not act on it and its watch is gone",
                    [event.index])
        self._storms(connections)

    def _storms(self, connections: list[Connection]) -> None:
        groups: dict[tuple[str, str], list[Connection]] = defaultdict(list)
        for c in connections:
            if c.four_letter_word is None:
                groups[(c.client.rsplit(":", 1)[0], c.server)].append(c)
        minimum = self.options.storm_min
        for (host, server), conns in groups.items():
            failed = [c for c in conns if c.established is False]
            if len(failed) >= minimum:
                span = (failed[-1].end or failed[-1].start) - failed[0].start
                numbers = ", ".join(str(c.number) for c in failed[:20])
                self._storm(failed, f"{len(failed)} connections from {host} to {server} in "
                            f"{span:.1f} s never established a session (connections "
                            f"{numbers}{', ...' if len(failed) > 20 else ''}): a reconnect "
                            "storm; each attempt costs the server a connection and a "
                            "handshake")
                continue
            short = [c for c in conns if c.established and c.end is not None
                     and c.end - c.start < 5.0]
            if len(short) >= minimum:
                gaps = [b.start - a.start for a, b in zip(short, short[1:], strict=False)]
                mean = statistics.fmean(gaps)
                if mean > 0 and statistics.pstdev(gaps) / mean < 0.25:
                    self._storm(short, f"{len(short)} sessions from {host} to {server} "
                                f"connected and closed every {mean:.2f} s: a client "
                                "reconnecting in a loop (a reconnect storm)")

    def _storm(self, conns: list[Connection], message: str) -> None:
        first = conns[0]
        anchor = Frame(0, first.start, first.number, first.session, "note", None, "")
        self._report("reconnect-storm", anchor, message, [])
