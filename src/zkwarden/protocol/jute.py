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
from operator import itemgetter
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

# The ASCII fast path of Reader.ustrings (see _ascii_ustrings): below this many strings the
# plain loop is as fast, and it never looks past the vector.
_FAST_MIN = 32
# A length prefix below 256 is three NUL bytes and one length byte.
_SEP = "\0\0\0"
_FIRST = itemgetter(0)
_TAIL = itemgetter(slice(1, None))
# Byte b -> b + 1; 255 maps to 0, which no piece's size (at least 1) can equal.
_PLUS_ONE = bytes(range(1, 256)) + b"\0"


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


def _ascii_ustrings(
    data: bytes | bytearray | memoryview, pos: builtins.int, end: builtins.int,
    count: builtins.int,
) -> tuple[list[str], builtins.int] | None:
    """``count`` ustrings at ``pos`` in one pass of C loops, or None to use the general loop.

    Child names are nearly always short ASCII: each item is then ``"\\0\\0\\0"``, one
    length byte, the name. The bytes are decoded once (latin-1: one char per byte, never
    fails) and split at the NUL triples; the pieces are only trusted after checking that
    each one is exactly its length byte + 1 long (the last at least that long: the record
    goes on after it), which by induction from the first prefix means the split found
    every prefix where the wire format puts it, and that the names are ASCII (where
    latin-1 and UTF-8 agree). Anything else (a long or non-ASCII name, a NUL in a name, a
    truncated frame) returns None and the checked loop decodes it or raises. Costs tens of
    ns per name instead of a few hundred for a per-item unpack, slice and decode.
    """
    # An item is at most 4 + 255 bytes here: never decode more than the vector can span
    # (a multi reply holds many vectors; each call must stay linear in its own size).
    stop = min(end, pos + count * 259)
    text = str(data[pos:stop], "latin-1")
    if not text.startswith(_SEP):
        return None
    uniform = _uniform_ustrings(text, count)
    if uniform is not None:
        return uniform, pos + count * (4 + len(uniform[0]))
    pieces = text.split(_SEP, count + 1)
    if len(pieces) < count + 1:
        return None
    items = pieces[1 : count + 1]
    sizes = list(map(len, items))
    if not all(sizes):  # an empty piece: two prefixes back to back or a NUL in a name
        return None
    lengths = "".join(map(_FIRST, items)).encode("latin-1")
    last = count - 1
    # Every piece but the last must be exactly its length byte + 1 long, compared as two
    # byte strings in C; the last one may run on into what follows. A piece of 256 chars
    # or more cannot be one name (bytes() refuses the size).
    try:
        if lengths[:last].translate(_PLUS_ONE) != bytes(sizes[:last]):
            return None
    except ValueError:
        return None
    if lengths[last] + 1 > sizes[last]:
        return None
    names = list(map(_TAIL, items[:last]))
    tail = items[last]
    names.append(tail[1 : 1 + lengths[last]])
    # str.isascii() is O(1) (CPython records a string's widest char): the whole text is
    # nearly always ASCII, else join the names and ask again.
    if not (text.isascii() or "".join(names).isascii()):
        return None
    # Each item: three NULs, then its piece (length byte + name); the last piece's name ends
    # at its length, not at the piece's end.
    return names, pos + 3 * count + sum(sizes[:last]) + 1 + lengths[last]


def _uniform_ustrings(text: str, count: builtins.int) -> list[str] | None:
    """The names when all ``count`` have the first one's length (sequential nodes, UUIDs,
    zero-padded names: the common case), else None.

    Every prefix is then the same four chars, so one split at them yields the names
    themselves, with no per-name slicing or length byte to pick out: checking that every
    piece is that long proves (by induction from the first prefix) that each split point
    is a prefix. ``text`` is latin-1 and starts with three NULs (checked by the caller).
    """
    length = ord(text[3])
    if length == 0:
        return None
    pieces = text.split(text[:4], count)
    if len(pieces) != count + 1:
        return None
    names = pieces[1:]
    last = names[-1]
    if len(last) < length:
        return None
    names[-1] = last[:length]  # the last piece runs on into what follows the vector
    sizes = list(map(len, names))
    if min(sizes) != length or max(sizes) != length:
        return None
    # O(1) when the text is all ASCII (see _ascii_ustrings), else ask the names.
    if not (text.isascii() or "".join(names).isascii()):
        return None
    return names


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
    """Reads jute values from ``data`` starting at ``offset``.

    ``data`` may be a memoryview (zero-copy frame parsing): values are copied out of it
    (``bytes``/``str``), never kept as views. The methods inline their bounds checks; they
    are on the path of every reply.
    """

    __slots__ = ("data", "offset", "end")

    def __init__(self, data: bytes | bytearray | memoryview, offset: builtins.int = 0) -> None:
        self.data = data
        self.offset = offset
        self.end = len(data)

    def _truncated(self, n: builtins.int, start: builtins.int) -> ProtocolError:
        return ProtocolError(
            f"record truncated: need {n} bytes at offset {start}, frame has {self.end}"
        )

    def _need(self, n: builtins.int) -> builtins.int:
        start = self.offset
        if n < 0 or start + n > self.end:
            raise self._truncated(n, start)
        self.offset = start + n
        return start

    def int(self) -> builtins.int:
        start = self.offset
        if start + 4 > self.end:
            raise self._truncated(4, start)
        self.offset = start + 4
        value: builtins.int = _INT.unpack_from(self.data, start)[0]
        return value

    def long(self) -> builtins.int:
        start = self.offset
        if start + 8 > self.end:
            raise self._truncated(8, start)
        self.offset = start + 8
        value: builtins.int = _LONG.unpack_from(self.data, start)[0]
        return value

    def int_pair(self) -> tuple[builtins.int, builtins.int]:
        start = self._need(8)
        a, b = _INT_PAIR.unpack_from(self.data, start)
        return a, b

    def bool(self) -> builtins.bool:
        start = self._need(1)
        return self.data[start] != 0

    def buffer(self) -> bytes | None:
        start = self.offset
        end = self.end
        if start + 4 > end:
            raise self._truncated(4, start)
        (length,) = _INT.unpack_from(self.data, start)
        start += 4
        if length < 0:
            if length == _NULL:
                self.offset = start
                return None
            raise ProtocolError(f"negative buffer length {length}")
        stop = start + length
        if stop > end:
            self.offset = start
            raise self._truncated(length, start)
        self.offset = stop
        return bytes(self.data[start:stop])

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
        """A vector of non-null ustrings (child names, paths); null or empty is ``[]``.

        One loop with the bounds checks inline: a getChildren of 10,000 children is
        10,000 strings.
        """
        count = self.int()
        if count == _NULL:
            return []
        if count < 0:
            raise ProtocolError(f"negative vector length {count}")
        data, pos, end = self.data, self.offset, self.end
        if count > end - pos:
            raise ProtocolError(f"vector length {count} exceeds remaining frame")
        if count >= _FAST_MIN:
            fast = _ascii_ustrings(data, pos, end, count)
            if fast is not None:
                self.offset = fast[1]
                return fast[0]
        unpack = _INT.unpack_from
        out: list[str] = []
        append = out.append
        for _ in range(count):
            if pos + 4 > end:
                self.offset = pos
                raise self._truncated(4, pos)
            (length,) = unpack(data, pos)
            pos += 4
            if length <= 0:
                if length == 0 or length == _NULL:
                    append("")
                    continue
                self.offset = pos
                raise ProtocolError(f"negative buffer length {length}")
            stop = pos + length
            if stop > end:
                self.offset = pos
                raise self._truncated(length, pos)
            raw = data[pos:stop]
            try:
                append(str(raw, "utf-8"))
            except UnicodeDecodeError:
                append(decode_string(bytes(raw)))
            pos = stop
        self.offset = pos
        return out

    def remaining(self) -> builtins.int:
        return self.end - self.offset

    def expect_end(self, what: str) -> None:
        if self.offset != self.end:
            raise ProtocolError(f"{self.end - self.offset} trailing bytes after {what}")
