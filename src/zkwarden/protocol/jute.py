"""Jute binary primitives: the encoding ZooKeeper uses for every record.

``Writer`` appends to a bytearray; ``Reader`` walks a bytes-like object with an offset.
Every decoding failure raises :class:`~zkwarden.errors.ProtocolError` (and nothing else):
the reader checks lengths before slicing, so a malformed frame from a server can never
crash the caller with ``struct.error`` or ``IndexError``.
"""

from __future__ import annotations

import builtins
import struct
from collections.abc import Callable, Iterable
from typing import TypeVar

from ..errors import ProtocolError

__all__ = ("Writer", "Reader", "decode_string")

T = TypeVar("T")

_INT = struct.Struct(">i")
_LONG = struct.Struct(">q")
_INT_PAIR = struct.Struct(">ii")

# Records may legitimately hold up to ~1 MiB of data; a length far beyond any frame is
# garbage. The frame itself bounds every length, this only catches negatives.
_NULL = -1


def decode_string(raw: bytes) -> str:
    """Decode a jute ustring from the server.

    The Java writer emits CESU-8 for characters outside the BMP (each UTF-16 surrogate as
    its own 3-byte sequence), which strict UTF-8 rejects; decode with surrogatepass and
    re-pair the surrogates through UTF-16.
    """
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        pass
    try:
        text = raw.decode("utf-8", "surrogatepass")
        return text.encode("utf-16", "surrogatepass").decode("utf-16")
    except UnicodeError as exc:
        raise ProtocolError(f"undecodable string from server: {raw[:40]!r}") from exc


class Writer:
    """Appends jute-encoded values to a bytearray (``buf``)."""

    __slots__ = ("buf",)

    def __init__(self) -> None:
        self.buf = bytearray()

    def int(self, value: builtins.int) -> None:
        self.buf += _INT.pack(value)

    def long(self, value: builtins.int) -> None:
        self.buf += _LONG.pack(value)

    def bool(self, value: builtins.bool) -> None:
        self.buf.append(1 if value else 0)

    def buffer(self, value: bytes | None) -> None:
        if value is None:
            self.buf += _INT.pack(_NULL)
        else:
            self.buf += _INT.pack(len(value))
            self.buf += value

    def ustring(self, value: str | None) -> None:
        self.buffer(None if value is None else value.encode("utf-8"))

    def vector(self, items: Iterable[T] | None, write: Callable[[T], None]) -> None:
        if items is None:
            self.buf += _INT.pack(_NULL)
            return
        items = list(items)
        self.buf += _INT.pack(len(items))
        for item in items:
            write(item)

    def ustrings(self, items: Iterable[str] | None) -> None:
        self.vector(items, self.ustring)

    def getvalue(self) -> bytes:
        return bytes(self.buf)


class Reader:
    """Reads jute values from ``data`` starting at ``offset``."""

    __slots__ = ("data", "offset", "end")

    def __init__(self, data: bytes | bytearray | memoryview, offset: builtins.int = 0) -> None:
        self.data = data
        self.offset = offset
        self.end = len(data)

    def _need(self, n: builtins.int) -> builtins.int:
        start = self.offset
        if n < 0 or start + n > self.end:
            raise ProtocolError(
                f"record truncated: need {n} bytes at offset {start}, frame has {self.end}"
            )
        self.offset = start + n
        return start

    def int(self) -> builtins.int:
        start = self._need(4)
        return builtins.int(_INT.unpack_from(self.data, start)[0])

    def long(self) -> builtins.int:
        start = self._need(8)
        return builtins.int(_LONG.unpack_from(self.data, start)[0])

    def int_pair(self) -> tuple[builtins.int, builtins.int]:
        start = self._need(8)
        a, b = _INT_PAIR.unpack_from(self.data, start)
        return builtins.int(a), builtins.int(b)

    def bool(self) -> builtins.bool:
        start = self._need(1)
        return self.data[start] != 0

    def buffer(self) -> bytes | None:
        length = self.int()
        if length == _NULL:
            return None
        if length < 0:
            raise ProtocolError(f"negative buffer length {length}")
        start = self._need(length)
        return bytes(self.data[start : start + length])

    def ustring(self) -> str | None:
        raw = self.buffer()
        return None if raw is None else decode_string(raw)

    def string(self) -> str:
        """A ustring that must not be null (paths, names)."""
        value = self.ustring()
        return "" if value is None else value

    def vector(self, read: Callable[[], T]) -> list[T] | None:
        count = self.int()
        if count == _NULL:
            return None
        if count < 0:
            raise ProtocolError(f"negative vector length {count}")
        # Each element takes at least one byte; a count beyond what remains is garbage
        # and must not make us loop (or allocate) for billions of iterations.
        if count > self.end - self.offset:
            raise ProtocolError(f"vector length {count} exceeds remaining frame")
        return [read() for _ in range(count)]

    def ustrings(self) -> list[str]:
        return self.vector(self.string) or []

    def remaining(self) -> builtins.int:
        return self.end - self.offset

    def expect_end(self, what: str) -> None:
        if self.offset != self.end:
            raise ProtocolError(f"{self.end - self.offset} trailing bytes after {what}")
