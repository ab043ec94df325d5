"""Output: the timeline (one line per frame), JSON lines, and the per-session summary.

Credentials (session passwords, auth data, SASL tokens) are redacted here, at the last
moment, unless ``show_secrets``: the decoder keeps them so ``--show-secrets`` can print
them.
"""

from __future__ import annotations

import json
import time as _time
from collections import Counter, defaultdict
from typing import Any

from .model import SECRET_KEYS, Connection, Finding, Frame

__all__ = ("frame_json", "finding_json", "frame_line", "finding_line", "summary_lines")


def _clean(details: dict[str, Any] | None, show_secrets: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in (details or {}).items():
        if key in SECRET_KEYS and not show_secrets:
            out[key] = None if value is None else f"<redacted {len(value)} bytes>"
        elif isinstance(value, (bytes, bytearray)):
            out[key] = value.hex()
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


def frame_line(frame: Frame, show_secrets: bool = False) -> str:
    """One timeline line for a frame."""
    parts = [_clock(frame.time), f"#{frame.connection}", _session(frame.session) or "-",
             _ARROW.get(frame.direction, "?")]
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


def finding_line(finding: Finding) -> str:
    """The timeline line for a finding."""
    frames = ",".join(str(i) for i in finding.frames)
    where = f" (frames {frames})" if frames else ""
    return f"{_clock(finding.time)} #{finding.connection} FINDING {finding.name}: " \
           f"{finding.message}{where}"


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summary_lines(frames: list[Frame], findings: list[Finding],
                  connections: list[Connection]) -> list[str]:
    """Per-session statistics: operations by opcode, latency percentiles, errors,
    watches set and fired, reconnects; then the findings by name."""
    final = {c.number: c.session for c in connections}
    by_session: dict[str, list[Frame]] = defaultdict(list)
    for f in frames:
        if f.direction != "note":
            session = f.session or final.get(f.connection)
            by_session[_session(session) or f"connection #{f.connection}"].append(f)
    conns: dict[str, list[Connection]] = defaultdict(list)
    for c in connections:
        if c.four_letter_word is None:
            conns[_session(c.session) or f"connection #{c.number}"].append(c)
    lines = [f"{len(connections)} connections, {sum(1 for f in frames if f.index)} frames, "
             f"{len(findings)} findings"]
    for name, fs in by_session.items():
        ops = Counter(f.op for f in fs if f.direction == "request")
        latencies = [f.latency_ms for f in fs if f.direction == "reply"
                     and f.latency_ms is not None]
        errors = Counter(f.err for f in fs if f.direction == "reply" and f.err)
        watches = sum(1 for f in fs if f.direction == "request" and (
            (f.details or {}).get("watch") or f.op == "addWatch"))
        fired = sum(1 for f in fs if f.direction == "event")
        lines.append(f"session {name}: {len(conns.get(name, []))} connections "
                     f"({max(0, len(conns.get(name, [])) - 1)} reconnects)")
        lines.append("  ops: " + ", ".join(f"{op} {n}" for op, n in ops.most_common()))
        if latencies:
            lines.append(f"  latency ms: p50 {_percentile(latencies, 0.5):.3f} "
                         f"p90 {_percentile(latencies, 0.9):.3f} "
                         f"p99 {_percentile(latencies, 0.99):.3f} max {max(latencies):.3f}")
        lines.append("  errors: " + (", ".join(f"{e} x{n}" for e, n in errors.items())
                                      or "none"))
        lines.append(f"  watches set {watches}, fired {fired}")
    counts = Counter(f.name for f in findings)
    lines.append("findings: " + (", ".join(f"{n} {c}" for n, c in counts.items()) or "none"))
    return lines
