"""The output layer of the command: text or JSON on stdout, notes and errors on stderr.

Everything the command prints goes through :class:`Output`, which looks up
``sys.stdout``/``sys.stderr`` at each write (so tests capturing them see everything) and
knows whether stdout is a terminal (live views redraw in place only there).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import logging
import shutil
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import fields
from typing import Any, TextIO

from ..discovery import ServiceInstance
from ..types import ACL, Perms, Stat
from .exitcodes import describe_error, exit_code_for

__all__ = (
    "Output",
    "Progress",
    "stat_to_dict",
    "format_stat",
    "acl_to_text",
    "acl_to_dict",
    "perms_to_text",
    "instance_to_dict",
    "human_size",
    "clock",
    "configure_logging",
)


class Output:
    """Where the command's output goes, in text or JSON (``json_mode``)."""

    def __init__(self, json_mode: bool = False) -> None:
        self.json_mode = json_mode

    @property
    def stdout(self) -> TextIO:
        """The current ``sys.stdout``."""
        return sys.stdout

    @property
    def stderr(self) -> TextIO:
        """The current ``sys.stderr``."""
        return sys.stderr

    @property
    def is_tty(self) -> bool:
        """True when stdout is an interactive terminal."""
        try:
            return bool(self.stdout.isatty())
        except (AttributeError, ValueError):
            return False

    def line(self, text: str = "") -> None:
        """Print one line of text output."""
        self.stdout.write(text + "\n")
        self.stdout.flush()

    def lines(self, texts: Sequence[str]) -> None:
        """Print several lines of text output."""
        for text in texts:
            self.stdout.write(text + "\n")
        self.stdout.flush()

    def note(self, text: str) -> None:
        """A message for the human (stderr), never part of the machine-readable output."""
        self.stderr.write(text + "\n")
        self.stderr.flush()

    def json(self, obj: object, *, stream: bool = False) -> None:
        """Print one JSON document (one line when ``stream`` or stdout is not a terminal)."""
        indent = 2 if (self.is_tty and not stream) else None
        self.stdout.write(json.dumps(obj, indent=indent, sort_keys=False, default=str) + "\n")
        self.stdout.flush()

    def raw(self, data: bytes) -> None:
        """Write bytes to stdout unchanged (binary-safe ``get``)."""
        self.stdout.flush()
        buffer = getattr(self.stdout, "buffer", None)
        if buffer is not None:
            buffer.write(data)
            buffer.flush()
        else:  # a text-only stream (rare): best effort
            self.stdout.write(data.decode("utf-8", errors="replace"))
            self.stdout.flush()

    def error(self, exc: BaseException, *, code: int | None = None) -> int:
        """Report ``exc`` in one line on stderr; return its exit code."""
        exit_code = exit_code_for(exc) if code is None else code
        message = describe_error(exc)
        if self.json_mode:
            payload: dict[str, Any] = {
                "error": {"type": type(exc).__name__, "message": message, "exit_code": exit_code}
            }
            path = getattr(exc, "path", None)
            if isinstance(path, str):
                payload["error"]["path"] = path
            self.stderr.write(json.dumps(payload) + "\n")
        else:
            self.stderr.write(f"zkwarden: error: {message}\n")
        self.stderr.flush()
        return exit_code


    def interrupted(self) -> int:
        """Report an interrupt (Ctrl-C) on stderr, as JSON under ``--json``; return 130."""
        from .exitcodes import INTERRUPTED

        if self.json_mode:
            payload = {"error": {"type": "Interrupted", "message": "interrupted",
                                 "exit_code": INTERRUPTED}}
            self.stderr.write(json.dumps(payload) + "\n")
            self.stderr.flush()
        else:
            self.note("interrupted")
        return INTERRUPTED


class Progress:
    """A live status line: rewritten in place on a terminal, plain lines otherwise.

    On a terminal every :meth:`update` redraws the line (``\\r``); elsewhere a line is
    printed only when the text (without its leading elapsed-time field) changed, and at
    most every ``min_interval`` seconds, so logs stay readable.
    """

    def __init__(self, out: Output, *, min_interval: float = 1.0, indent: str = "") -> None:
        self._out = out
        self._tty = out.is_tty and not out.json_mode
        self._min_interval = min_interval
        self._indent = indent
        self._last_key: str | None = None
        self._last_time = 0.0
        self._width = 0

    def update(self, text: str, *, key: str | None = None) -> None:
        """Show ``text``; ``key`` is what must change for a plain line to be printed."""
        if self._out.json_mode:
            return
        line = self._indent + text
        if self._tty:
            width = shutil.get_terminal_size().columns - 1
            if len(line) > width:
                line = line[: max(width - 1, 0)] + "…"
            pad = max(0, self._width - len(line))
            self._out.stdout.write("\r" + line + " " * pad)
            self._out.stdout.flush()
            self._width = len(line)
            return
        key = text if key is None else key
        now = time.monotonic()
        if key != self._last_key and now - self._last_time >= self._min_interval:
            self._out.line(line)
            self._last_key = key
            self._last_time = now

    def clear(self) -> None:
        """Remove the live line (terminal) so normal output can follow."""
        if self._tty and self._width:
            self._out.stdout.write("\r" + " " * self._width + "\r")
            self._out.stdout.flush()
            self._width = 0


# --- formatting helpers --------------------------------------------------------------------


def clock(when: float | None = None) -> str:
    """``HH:MM:SS.mmm`` local time."""
    moment = _dt.datetime.fromtimestamp(time.time() if when is None else when)
    return moment.strftime("%H:%M:%S.") + f"{moment.microsecond // 1000:03d}"


def _iso_ms(ms: int) -> str:
    moment = _dt.datetime.fromtimestamp(ms / 1000.0, tz=_dt.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def human_size(n: int) -> str:
    """``512 B``, ``1.5 KiB``, ``3.2 MiB``."""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{int(size)} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"  # pragma: no cover


def stat_to_dict(stat: Stat) -> dict[str, Any]:
    """A Stat as a JSON object (zxids and times as numbers, plus ISO times)."""
    return {
        "czxid": stat.czxid,
        "mzxid": stat.mzxid,
        "pzxid": stat.pzxid,
        "ctime": stat.ctime,
        "mtime": stat.mtime,
        "ctime_iso": _iso_ms(stat.ctime),
        "mtime_iso": _iso_ms(stat.mtime),
        "version": stat.version,
        "cversion": stat.cversion,
        "aversion": stat.aversion,
        "ephemeral_owner": stat.ephemeral_owner,
        "data_length": stat.data_length,
        "num_children": stat.num_children,
    }


def format_stat(stat: Stat) -> list[str]:
    """A Stat as zkCli prints it (``cZxid = 0x...``), one field per line."""
    rows = [
        ("cZxid", f"0x{stat.czxid:x}"),
        ("ctime", _iso_ms(stat.ctime)),
        ("mZxid", f"0x{stat.mzxid:x}"),
        ("mtime", _iso_ms(stat.mtime)),
        ("pZxid", f"0x{stat.pzxid:x}"),
        ("cversion", str(stat.cversion)),
        ("dataVersion", str(stat.version)),
        ("aclVersion", str(stat.aversion)),
        ("ephemeralOwner", f"0x{stat.ephemeral_owner & 0xFFFFFFFFFFFFFFFF:x}"),
        ("dataLength", str(stat.data_length)),
        ("numChildren", str(stat.num_children)),
    ]
    return [f"{name} = {value}" for name, value in rows]


_PERM_LETTERS = (
    ("c", Perms.CREATE),
    ("d", Perms.DELETE),
    ("r", Perms.READ),
    ("w", Perms.WRITE),
    ("a", Perms.ADMIN),
)


def perms_to_text(perms: int) -> str:
    """Permission bits as zkCli letters, ``cdrwa`` order."""
    return "".join(letter for letter, bit in _PERM_LETTERS if perms & bit)


def acl_to_text(acl: ACL) -> str:
    """``scheme:id:perms``, the form ``acl set`` accepts."""
    return f"{acl.id.scheme}:{acl.id.id}:{perms_to_text(acl.perms)}"


def acl_to_dict(acl: ACL) -> dict[str, Any]:
    """An ACL entry as a JSON object."""
    return {"scheme": acl.id.scheme, "id": acl.id.id, "perms": perms_to_text(acl.perms)}


def instance_to_dict(instance: ServiceInstance) -> dict[str, Any]:
    """A ServiceInstance as a JSON object (its fields; enums by value, tuples as lists)."""
    result: dict[str, Any] = {}
    for f in fields(instance):
        value = getattr(instance, f.name)
        if hasattr(value, "value") and not isinstance(value, (int, float, str)):
            value = value.value
        elif isinstance(value, tuple):
            value = list(value)
        elif isinstance(value, Mapping):
            value = dict(value)
        result[f.name] = value
    return result


# --- logging ------------------------------------------------------------------------------


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at the time of each record."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> TextIO:
        """Always the current ``sys.stderr``."""
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:
        """Ignored: the stream is looked up at each record."""
        pass


@contextlib.contextmanager
def configure_logging(verbosity: int) -> Iterator[None]:
    """Show zkwarden's own log records on stderr while the command runs: none by default,
    -v INFO, -vv DEBUG. The logger's previous configuration is restored afterwards.

    Without -v the command reports what matters itself, in its own words; the library's
    warnings (reconnect attempts and such) would only repeat it less clearly.
    """
    logger = logging.getLogger("zkwarden")
    saved = (logger.level, logger.propagate)
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("zkwarden: %(levelname)s %(name)s: %(message)s"))
    logger.addHandler(handler)
    logger.propagate = False
    if verbosity <= 0:
        logger.setLevel(logging.CRITICAL + 1)
    elif verbosity == 1:
        logger.setLevel(logging.INFO)
    else:
        logger.setLevel(logging.DEBUG)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(saved[0])
        logger.propagate = saved[1]
