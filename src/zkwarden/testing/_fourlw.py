"""Four-letter words: send one to a server, and parse the replies tests care about."""

from __future__ import annotations

import re
import socket
import time

from zkwarden.errors import ConfigurationError

from ._errors import FourLetterWordError

__all__ = (
    "exchange_four_letter_word",
    "four_letter_word",
    "parse_cons_sessions",
    "parse_dump_ephemerals",
    "parse_dump_sessions",
    "parse_mntr",
    "refused_by_whitelist",
    "send_four_letter_word",
)


_REFUSED = "is not executed because it is not in the whitelist"


def exchange_four_letter_word(
    host: str, port: int, cmd: str, timeout: float
) -> tuple[str, int]:
    """Send ``cmd`` and read the reply until EOF; return it (decoded, undecodable bytes
    replaced) and the local port of the connection used.  The whole exchange, connect
    included, is bounded by ``timeout`` seconds.  The reply is returned as it came: see
    :func:`refused_by_whitelist`.

    Raises:
        ConfigurationError: ``cmd`` is not four ASCII letters.
        OSError: no connection, a reset, or no EOF within ``timeout`` (TimeoutError).
    """
    if len(cmd) != 4 or not cmd.isascii() or not cmd.isalpha():
        raise ConfigurationError(f"not a four-letter word: {cmd!r}")
    deadline = time.monotonic() + timeout
    chunks: list[bytes] = []
    with socket.create_connection((host, port), timeout=timeout) as sock:
        local_port = int(sock.getsockname()[1])
        sock.sendall(cmd.encode("ascii"))
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no EOF in {timeout}s")
            sock.settimeout(remaining)
            data = sock.recv(65536)
            if not data:
                break
            chunks.append(data)
    return b"".join(chunks).decode("utf-8", errors="replace"), local_port


def refused_by_whitelist(text: str) -> bool:
    """True when ``text`` is the server's refusal of a command missing from
    ``4lw.commands.whitelist``."""
    return _REFUSED in text


def send_four_letter_word(host: str, port: int, cmd: str, timeout: float) -> tuple[str, int]:
    """Send ``cmd``; return the whole reply and the local port of the connection used.

    The local port lets ``cons`` leave out the connection that asked.

    Raises:
        ConfigurationError: ``cmd`` is not four ASCII letters.
        FourLetterWordError: no connection, no complete reply within ``timeout`` seconds,
            or the command is not in the server's whitelist.
    """
    try:
        text, local_port = exchange_four_letter_word(host, port, cmd, timeout)
    except OSError as exc:
        raise FourLetterWordError(f"{cmd} to {host}:{port} failed: {exc}") from exc
    if refused_by_whitelist(text):
        raise FourLetterWordError(f"{cmd} to {host}:{port}: {text.strip()}")
    return text, local_port


def four_letter_word(host: str, port: int, cmd: str, timeout: float = 5.0) -> str:
    """Send the four-letter word ``cmd`` to ``host:port`` and return the whole reply.

    Raises:
        ConfigurationError: ``cmd`` is not four ASCII letters.
        FourLetterWordError: no connection, no complete reply within ``timeout`` seconds,
            or the command is not in the server's whitelist.
    """
    return send_four_letter_word(host, port, cmd, timeout)[0]


def parse_mntr(text: str) -> dict[str, str]:
    """Parse ``mntr`` output (``key<TAB>value`` lines) into a dict.

    Raises:
        FourLetterWordError: the text holds no metric (e.g. the server is not serving).
    """
    metrics: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("\t")
        if sep:
            metrics[key.strip()] = value.strip()
    if not metrics:
        raise FourLetterWordError(f"mntr returned no metrics: {text.strip()!r}")
    return metrics


def _signed64(value: int) -> int:
    # Session ids are Java longs printed as unsigned hex; clients decode them signed.
    return value - (1 << 64) if value >= 1 << 63 else value


_CONS_SID = re.compile(r"\bsid=0x([0-9a-fA-F]+)")
# Standalone/leader trackers list "\t0x<id>"; a learner's lists "0x<id>\t<timeout>ms".
_DUMP_SID = re.compile(r"^\s*0x([0-9a-fA-F]+)(?:\s+\d+ms)?\s*$")


def parse_cons_sessions(lines: list[str]) -> set[int]:
    """Session ids (signed) of ``cons`` lines; connections without a session are skipped."""
    found: set[int] = set()
    for line in lines:
        match = _CONS_SID.search(line)
        if match is not None and int(match.group(1), 16) != 0:
            found.add(_signed64(int(match.group(1), 16)))
    return found


def parse_dump_sessions(text: str) -> set[int]:
    """Session ids (signed) listed in the session-tracker part of ``dump`` output."""
    tracker = text.split("ephemeral nodes dump:", 1)[0]
    return {
        _signed64(int(m.group(1), 16))
        for m in map(_DUMP_SID.match, tracker.splitlines())
        if m is not None
    }


def parse_dump_ephemerals(text: str) -> dict[int, list[str]]:
    """Ephemeral paths (sorted) per session id (signed) from ``dump`` output."""
    _, _, section = text.partition("Sessions with Ephemerals")
    section = section.split("Connections dump:", 1)[0]
    result: dict[int, list[str]] = {}
    current: list[str] | None = None
    for line in section.splitlines()[1:]:
        stripped = line.strip()
        if stripped.startswith("0x") and stripped.endswith(":"):
            current = result.setdefault(_signed64(int(stripped[2:-1], 16)), [])
        elif stripped.startswith("/") and current is not None:
            current.append(stripped)
    return {sid: sorted(paths) for sid, paths in result.items()}
