"""Znode path validation, join/split, and chroot handling (the one place for chroot)."""

from __future__ import annotations

import functools
import re

from .errors import InvalidPathError

__all__ = ("validate", "join", "split", "parent", "basename", "add_chroot", "strip_chroot",
           "CONFIG_PATH", "watch_server_path", "watch_client_path")


# The code-unit ranges the server's PathUtils rejects; checking here gives a clear error
# instead of a BadArguments reply (and rejects non-BMP characters, which the server sees
# as surrogates).
_BAD_CHARS = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\uf8ff\ufff0-\uffff\U00010000-\U0010ffff]")
_BAD_SEGMENT = re.compile(r"//|/\.\.?(?:/|$)")
# Paths that are valid beyond doubt: one or more segments of printable ASCII (U+0020 to
# U+007E) that do not start with '.'. Almost every path is one; matching it costs less than
# a miss of _check's cache, which misses on every path when more distinct paths than its
# size go by (the 10,000 instance nodes read by ServiceDiscovery.instances()). Any other
# path (non-ASCII, a segment starting with '.', '/', a sequential prefix ending in '/')
# takes the full check.
_PLAIN = re.compile(r"(?:/[\x20-\x2d\x30-\x7e][\x20-\x2e\x30-\x7e]*)+").fullmatch


@functools.lru_cache(maxsize=8192)
def _check(path: str, sequential: bool) -> str | None:
    """The reason ``path`` is invalid, or None. Cached: the same paths recur constantly."""
    if not path.startswith("/"):
        return "path must start with '/'"
    if path == "/":
        return None
    check = path[:-1] if sequential and path.endswith("/") else path
    if check.endswith("/"):
        return "path must not end with '/'"
    bad = _BAD_SEGMENT.search(check)
    if bad is not None:
        return "empty segment in path" if bad.group() == "//" else "relative segment in path"
    ch = _BAD_CHARS.search(path)
    if ch is not None:
        return f"invalid character {ch.group()!r} (U+{ord(ch.group()):04X})"
    return None


def validate(path: str, *, sequential: bool = False) -> str:
    """Return ``path`` if it is a valid absolute znode path.

    ``sequential`` allows a trailing ``/`` (the server appends the sequence number).

    Raises:
        InvalidPathError: not a string, not absolute, empty segment, ``.``/``..`` segment,
            trailing slash, or a character ZooKeeper rejects.
    """
    if not isinstance(path, str):
        raise InvalidPathError(f"path must be a str, not {type(path).__name__}")
    if _PLAIN(path) is not None:
        return path
    reason = _check(path, sequential)
    if reason is not None:
        raise InvalidPathError(f"{reason}: {path!r}")
    return path


def join(base: str, *parts: str) -> str:
    """Join path segments: ``join("/a", "b", "c") == "/a/b/c"``."""
    out = base.rstrip("/")
    for part in parts:
        part = part.strip("/")
        if part:
            out = f"{out}/{part}"
    return out or "/"


def split(path: str) -> tuple[str, str]:
    """Split into (parent, name): ``split("/a/b") == ("/a", "b")``; ``split("/") == ("/", "")``."""
    if path == "/":
        return "/", ""
    head, _, tail = path.rpartition("/")
    return head or "/", tail


def parent(path: str) -> str:
    """The parent of ``path`` (``/`` for top-level nodes and for ``/``)."""
    return split(path)[0]


def basename(path: str) -> str:
    """The last segment of ``path``."""
    return split(path)[1]


def add_chroot(chroot: str, path: str) -> str:
    """Map a client path to the server path under ``chroot`` ("" means no chroot)."""
    if not chroot:
        return path
    return chroot if path == "/" else chroot + path


def strip_chroot(chroot: str, server_path: str) -> str:
    """Map a server path back to the client's view; paths outside the chroot are kept."""
    if not chroot:
        return server_path
    if server_path == chroot:
        return "/"
    if server_path.startswith(chroot + "/"):
        return server_path[len(chroot) :]
    return server_path


#: the ensemble's configuration node: outside any chroot for config reads and watches
CONFIG_PATH = "/zookeeper/config"


def watch_server_path(chroot: str, path: str) -> str:
    """The server path of a watched client path: under the chroot, except
    ``/zookeeper/config``, which the chroot never applies to (the Java client's getConfig)."""
    if path == CONFIG_PATH:
        return path
    return add_chroot(chroot, path)


def watch_client_path(chroot: str, path: str) -> str:
    """The client path of a notification's server path: the inverse of
    :func:`watch_server_path`."""
    if path == CONFIG_PATH:
        return path
    return strip_chroot(chroot, path)
