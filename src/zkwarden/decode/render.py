"""Output: the timeline (one line per frame, grouped per connection unless followed), JSON
lines, and the per-session summary (text lines or one JSON object per session).

Session ids are printed in hex (``0x100002c74430001``), as ZooKeeper's own logs show them.
Credentials (session passwords, auth data, SASL tokens) are redacted here, at the last
moment, unless ``show_secrets``: the decoder keeps them so ``--show-secrets`` can print
them.
"""

from __future__ import annotations

import json
import time as _time
from collections import Counter, defaultdict
from collections.abc import Iterator
from typing import Any

from .model import SECRET_KEYS, Connection, Finding, Frame

__all__ = ("frame_json", "finding_json", "frame_line", "finding_line", "connection_line",
           "timeline_lines", "summary_records", "summary_lines")

#: Detail keys that hold a session id: shown in hex like every other session id.
_SESSION_KEYS = frozenset({"session_id"})


def _clean(details: dict[str, Any] | None, show_secrets: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in (details or {}).items():
        if key in SECRET_KEYS and not show_secrets:
            out[key] = None if value is None else f"<redacted {len(value)} bytes>"
        elif isinstance(value, (bytes, bytearray)):
            out[key] = value.hex()
        elif key in _SESSION_KEYS and isinstance(value, int):
            out[key] = f"0x{value:x}"
        else:
            out[key] = value
    return out


def _session(session: int | None) -> str | None:
    return f"0x{session:x}" if session else None


def frame_json(frame: Frame, show_secrets: bool = False) -> str:
    """One JSON object (a line) for a frame."""
    obj: dict[str, Any] = {
        "time": round(frame.time, 6), "frame": frame.index, "connection": frame.connection,
        "session": _session(frame.session), "direction": frame.direction, "xid": frame.xid,
        "op": frame.op, "path": frame.path, "err": frame.err, "size": frame.size,
    }
    if frame.direction == "reply":
        obj["latency_ms"] = frame.latency_ms
        obj["reply_to"] = frame.reply_to
    if frame.zxid is not None:
        obj["zxid"] = frame.zxid
    if frame.details:
        obj.update(_clean(frame.details, show_secrets))
    return json.dumps(obj, separators=(",", ":"))


def finding_json(finding: Finding) -> str:
    """One JSON object (a line) for a finding."""
    return json.dumps({
        "finding": finding.name, "time": round(finding.time, 6),
        "connection": finding.connection, "session": _session(finding.session),
        "message": finding.message, "frames": finding.frames,
    }, separators=(",", ":"))


def _clock(t: float) -> str:
    return _time.strftime("%H:%M:%S", _time.gmtime(t)) + f"{t % 1:.6f}"[1:]


_ARROW = {"request": "->", "reply": "<-", "event": "<*", "note": "!!"}


def frame_line(frame: Frame, show_secrets: bool = False, grouped: bool = False) -> str:
    """One timeline line for a frame: its connection and session first (``--follow``), or,
    ``grouped`` under its connection's header, indented with its frame number instead (the
    numbers findings cite)."""
    if grouped:
        parts = [f"  {frame.index or '-':>5}", _clock(frame.time)]
    else:
        parts = [_clock(frame.time), f"#{frame.connection}", _session(frame.session) or "-"]
    parts.append(_ARROW.get(frame.direction, "?"))
    if frame.direction == "note":
        parts.append(str((frame.details or {}).get("message", "")))
        return " ".join(parts)
    parts.append(frame.op)
    if frame.path:
        parts.append(frame.path)
    if frame.xid is not None and frame.xid not in (-1, -2):
        parts.append(f"xid={frame.xid}")
    if frame.err:
        parts.append(f"err={frame.err}")
    if frame.latency_ms is not None:
        parts.append(f"{frame.latency_ms:.3f}ms")
    for key, value in _clean(frame.details, show_secrets).items():
        parts.append(f"{key}={value}")
    return " ".join(parts)


def finding_line(finding: Finding, grouped: bool = False) -> str:
    """The timeline line for a finding (``grouped``: indented under its connection)."""
    frames = ",".join(str(i) for i in finding.frames)
    where = f" (frames {frames})" if frames else ""
    head = f"  {'':>5} {_clock(finding.time)}" if grouped \
        else f"{_clock(finding.time)} #{finding.connection}"
    return f"{head} FINDING {finding.name}: {finding.message}{where}"


def connection_line(conn: Connection) -> str:
    """The header of a connection's group: its number, ends and session."""
    if conn.four_letter_word is not None:
        what = f"four-letter word {conn.four_letter_word}"
    elif conn.session:
        what = f"session 0x{conn.session:x}"
        if conn.timeout_ms:
            what += f" (timeout {conn.timeout_ms} ms)"
        if conn.expired:
            what += ", reattach refused: expired"
    elif conn.expired:
        what = "no session (the session it asked for had expired)"
    elif conn.established is False:
        what = "no session established"
    else:
        what = "session unknown (the capture starts after the handshake)"
    return f"connection #{conn.number} {conn.client} -> {conn.server}, {what}"


def timeline_lines(frames: list[Frame], findings: list[Finding],
                   connections: list[Connection], show_secrets: bool = False
                   ) -> Iterator[str]:
    """The timeline grouped per connection: a header line per connection (with its session
    id), then its frames and findings in time order; findings that span connections (a
    reconnect storm cites connections, not frames) come last."""
    groups: dict[int, list[tuple[float, int, str]]] = defaultdict(list)
    for n, frame in enumerate(frames):
        groups[frame.connection].append((frame.time, n,
                                         frame_line(frame, show_secrets, grouped=True)))
    across: list[Finding] = []
    for n, finding in enumerate(findings, start=len(frames)):
        if finding.connection is None or not finding.frames:
            across.append(finding)
        else:
            groups[finding.connection].append((finding.time, n,
                                               finding_line(finding, grouped=True)))
    for conn in connections:
        # a connection without a frame still gets its header: that it was opened (and
        # closed) is what a reconnect storm is made of
        yield connection_line(conn)
        items = groups.pop(conn.number, [])
        # sorted by time; capture order breaks ties, so a finding follows its frame
        for _when, _order, line in sorted(items):
            yield line
    if across:
        yield "across connections"
        for finding in across:
            yield finding_line(finding, grouped=True)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summary_records(frames: list[Frame], findings: list[Finding],
                    connections: list[Connection]) -> list[dict[str, Any]]:
    """Per-session statistics, one dict per session (``--summary --json`` prints each as a
    JSON object): ``session`` (hex; ``None`` with ``connection`` for a connection whose
    session is unknown), ``connections``, ``reconnects``, ``ops`` (requests by opcode),
    ``latency_ms`` (p50/p90/p99/max of the paired replies), ``errors`` (by error code),
    ``watches_set``, ``watches_fired`` and ``findings`` (by name)."""
    final = {c.number: c.session for c in connections}

    def key(session: int | None, connection: int | None) -> tuple[int, int | None]:
        # sessions first-seen keyed by id; session-less traffic by its connection
        return (session, None) if session else (0, connection)

    by_session: dict[tuple[int, int | None], list[Frame]] = defaultdict(list)
    for f in frames:
        if f.direction != "note":
            by_session[key(f.session or final.get(f.connection), f.connection)].append(f)
    conns: Counter[tuple[int, int | None]] = Counter(
        key(c.session, c.number) for c in connections if c.four_letter_word is None)
    found: dict[tuple[int, int | None], Counter[str]] = defaultdict(Counter)
    for finding in findings:
        found[key(finding.session, finding.connection)][finding.name] += 1
    records: list[dict[str, Any]] = []
    for (session, connection), fs in by_session.items():
        ops = Counter(f.op for f in fs if f.direction == "request")
        latencies = [f.latency_ms for f in fs if f.direction == "reply"
                     and f.latency_ms is not None]
        errors = Counter(f.err for f in fs if f.direction == "reply" and f.err)
        count = conns.get((session, connection), 0)
        latency = None
        if latencies:
            latency = {"p50": _percentile(latencies, 0.5), "p90": _percentile(latencies, 0.9),
                       "p99": _percentile(latencies, 0.99), "max": max(latencies)}
        records.append({
            "session": _session(session), "connection": connection,
            "connections": count, "reconnects": max(0, count - 1),
            "ops": dict(ops.most_common()), "latency_ms": latency,
            "errors": {str(code): n for code, n in errors.items()},
            "watches_set": sum(1 for f in fs if f.direction == "request" and (
                (f.details or {}).get("watch") or f.op == "addWatch")),
            "watches_fired": sum(1 for f in fs if f.direction == "event"),
            "findings": dict(found.get((session, connection), {})),
        })
    return records


def summary_lines(frames: list[Frame], findings: list[Finding],
                  connections: list[Connection]) -> list[str]:
    """Per-session statistics: operations by opcode, latency percentiles, errors,
    watches set and fired, reconnects; then the findings by name."""
    lines = [f"{len(connections)} connections, {sum(1 for f in frames if f.index)} frames, "
             f"{len(findings)} findings"]
    for rec in summary_records(frames, findings, connections):
        name = rec["session"] or f"connection #{rec['connection']}"
        lines.append(f"session {name}: {rec['connections']} connections "
                     f"({rec['reconnects']} reconnects)")
        lines.append("  ops: " + ", ".join(f"{op} {n}" for op, n in rec["ops"].items()))
        latency = rec["latency_ms"]
        if latency:
            lines.append(f"  latency ms: p50 {latency['p50']:.3f} p90 {latency['p90']:.3f} "
                         f"p99 {latency['p99']:.3f} max {latency['max']:.3f}")
        lines.append("  errors: " + (", ".join(f"{e} x{n}" for e, n in rec["errors"].items())
                                      or "none"))
        lines.append(f"  watches set {rec['watches_set']}, fired {rec['watches_fired']}")
    counts = Counter(f.name for f in findings)
    lines.append("findings: " + (", ".join(f"{n} {c}" for n, c in counts.items()) or "none"))
    return lines
