"""Structured agent logs: one line per event, ``key=value`` text or JSON.

Agent code logs through :class:`EventLog`: ``events.info("check_failed", "check of
web/1 failed", service="web", id="1")``. The event name and fields ride on the record
(``record.event``, ``record.fields``), and the formatters here print them; records from
the rest of zkwarden (client, discovery) come out in the same shape with
``event=log``. :meth:`EventLog.limited` rate-limits an event per key (one line, then
exponentially fewer while the condition lasts, with a count of what was held back), so an
outage writes O(log t) lines, not one per check or reconnect.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

__all__ = (
    "EventLog",
    "JSONFormatter",
    "TextFormatter",
    "configure_logging",
    "restore_logging",
    "logger",
)

#: The agent's logger.
logger = logging.getLogger("zkwarden.agent")

def _fields(record: logging.LogRecord) -> dict[str, Any]:
    fields = getattr(record, "fields", None)
    return dict(fields) if isinstance(fields, dict) else {}


def _timestamp(created: float) -> str:
    ms = int((created % 1) * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created)) + f".{ms:03d}Z"


class JSONFormatter(logging.Formatter):
    """``{"ts": ..., "level": ..., "logger": ..., "event": ..., "msg": ..., <fields>}``."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": _timestamp(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": getattr(record, "event", "log"),
            "msg": record.getMessage(),
        }
        for key, value in _fields(record).items():
            doc.setdefault(key, value)
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str, ensure_ascii=False)


def _quote(value: object) -> str:
    text = str(value)
    if text and all(c.isalnum() or c in "-_.:/@,+" for c in text):
        return text
    return json.dumps(text, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """``2024-05-01T10:00:00.123Z INFO zkwarden.agent check_failed msg="..." key=value``."""

    def format(self, record: logging.LogRecord) -> str:
        parts = [
            _timestamp(record.created),
            record.levelname,
            record.name,
            getattr(record, "event", "log"),
            f"msg={_quote(record.getMessage())}",
        ]
        parts += [f"{k}={_quote(v)}" for k, v in _fields(record).items()]
        line = " ".join(parts)
        if record.exc_info:
            line += " exc=" + _quote(self.formatException(record.exc_info))
        return line.replace("\n", "\\n")


class EventLog:
    """Logs named events with fields; :meth:`limited` rate-limits per key.

    A rate-limited key logs at once, then at most once per interval, the interval doubling
    up to ``max_interval`` while the key keeps firing; :meth:`reset` ends the episode.
    """

    def __init__(
        self,
        log: logging.Logger = logger,
        *,
        interval: float = 1.0,
        max_interval: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._log = log
        self._interval = interval
        self._max_interval = max_interval
        self._clock = clock
        self._next: dict[str, float] = {}
        self._gap: dict[str, float] = {}
        self._held: dict[str, int] = {}
        #: lines written / held back by the rate limit (for tests and metrics)
        self.emitted = 0
        self.suppressed = 0

    def emit(self, level: int, event: str, msg: str, **fields: Any) -> None:
        self.emitted += 1
        self._log.log(level, msg, extra={"event": event, "fields": fields})

    def debug(self, event: str, msg: str, **fields: Any) -> None:
        self.emit(logging.DEBUG, event, msg, **fields)

    def info(self, event: str, msg: str, **fields: Any) -> None:
        self.emit(logging.INFO, event, msg, **fields)

    def warning(self, event: str, msg: str, **fields: Any) -> None:
        self.emit(logging.WARNING, event, msg, **fields)

    def error(self, event: str, msg: str, **fields: Any) -> None:
        self.emit(logging.ERROR, event, msg, **fields)

    def limited(self, key: str, level: int, event: str, msg: str, **fields: Any) -> bool:
        """Log unless ``key`` logged recently; True when a line was written."""
        now = self._clock()
        if now < self._next.get(key, 0.0):
            self._held[key] = self._held.get(key, 0) + 1
            self.suppressed += 1
            return False
        gap = self._gap.get(key, self._interval)
        self._next[key] = now + gap
        self._gap[key] = min(gap * 2, self._max_interval)
        held = self._held.pop(key, 0)
        if held:
            fields["suppressed"] = held
        self.emit(level, event, msg, **fields)
        return True

    def reset(self, key: str) -> None:
        """The condition behind ``key`` is over: its next line is written at once."""
        self._next.pop(key, None)
        self._gap.pop(key, None)
        self._held.pop(key, None)


_installed: logging.Handler | None = None
_saved: tuple[int, bool] | None = None


def configure_logging(
    level: str = "info", fmt: str = "text", stream: TextIO | None = None
) -> logging.Handler:
    """Send the ``zkwarden`` loggers to ``stream`` (stderr) in the agent's line format.

    Calling it again (a reload) replaces the handler it installed before.
    """
    global _installed, _saved
    root = logging.getLogger("zkwarden")
    if _saved is None:
        _saved = (root.level, root.propagate)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JSONFormatter() if fmt == "json" else TextFormatter())
    if _installed is not None:
        root.removeHandler(_installed)
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
    root.propagate = False
    _installed = handler
    return handler


def restore_logging() -> None:
    """Undo :func:`configure_logging` (the agent does this when it exits)."""
    global _installed, _saved
    root = logging.getLogger("zkwarden")
    if _installed is not None:
        root.removeHandler(_installed)
        _installed.flush()
        _installed = None
    if _saved is not None:
        root.setLevel(_saved[0])
        root.propagate = _saved[1]
        _saved = None
