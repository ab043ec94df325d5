"""Znode path validation, join/split, and chroot handling (the one place for chroot)."""

from __future__ import annotations

from .errors import InvalidPathError

__all__ = ("validate", "join", "split", "parent", "basename", "add_chroot", "strip_chroot")


def _bad_char(ch: str) -> bool:
    # Same code-unit ranges the server's PathUtils rejects; checking here gives a clear
    # error instead of a BadArguments reply (and rejects non-BMP characters, which the
    # server sees as surrogates).
    c = ord(ch)
    return (
        c <= 0x1F
        or 0x7F <= c <= 0x9F
        or 0xD800 <= c <= 0xF8FF
        or 0xFFF0 <= c <= 0xFFFF
        or c > 0xFFFF
    )


def validate(path: str, *, sequential: bool = False) -> str:
    """Return ``path`` if it is a valid absolute znode path.

    ``sequential`` allows a trailing ``/`` (the server appends the sequence number).

    Raises:
        InvalidPathError: not a string, not absolute, empty segment, ``.``/``..`` segment,
            trailing slash, or a character ZooKeeper rejects.
    """
    if not isinstance(path, str):
        raise InvalidPathError(f"path must be a str, not {type(path).__name__}")
    if not path.startswith("/"):
        raise InvalidPathError(f"path must start with '/': {path!r}")
    if path == "/":
        return path
    check = path[:-1] if sequential and path.endswith("/") else path
    if check.endswith("/"):
        raise InvalidPathError(f"path must not end with '/': {path!r}")
    for segment in check[1:].split("/"):
        if segment == "":
            raise InvalidPathError(f"empty segment in path: {path!r}")
        if segment in (".", ".."):
            raise InvalidPathError(f"relative segment {segment!r} in path: {path!r}")
    for ch in path:
        if _bad_char(ch):
            raise InvalidPathError(f"invalid character {ch!r} (U+{ord(ch):04X}) in path: {path!r}")
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
