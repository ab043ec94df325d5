"""Length-prefixed frames: a 4-byte big-endian length, then that many bytes.

``FrameDecoder`` accumulates received bytes and yields complete frame payloads; a
negative or oversized length is a :class:`ProtocolError` (the connection must then be
dropped, since the stream can no longer be resynchronised).
"""

from __future__ import annotations

import struct

from ..errors import DataTooLargeError, ProtocolError

__all__ = (
    "FrameDecoder",
    "frame",
    "DEFAULT_MAX_RECEIVE",
    "DEFAULT_MAX_SEND",
)

_LEN = struct.Struct(">i")

#: The server does not cap what it sends (a 1 MiB znode comes back as a frame slightly
#: over 1 MiB), so the receive default is well above jute.maxbuffer.
DEFAULT_MAX_RECEIVE = 16 * 1024 * 1024
#: The server closes the connection on a frame over jute.maxbuffer (0xfffff); refusing
#: such a request locally gives the caller a clear error and keeps the connection.
DEFAULT_MAX_SEND = 0xFFFFF


def frame(payload: bytes) -> bytes:
    """Prefix ``payload`` with its length."""
    return _LEN.pack(len(payload)) + payload


class FrameDecoder:
    """Incremental frame splitter."""

    __slots__ = ("_buf", "max_size")

    def __init__(self, max_size: int = DEFAULT_MAX_RECEIVE) -> None:
        self._buf = bytearray()
        self.max_size = max_size

    def feed(self, data: bytes) -> list[bytes]:
        """Add received bytes; return the payloads of every complete frame, in order.

        Raises:
            ProtocolError: a negative length or one above ``max_size``.
        """
        return [bytes(view) for view in self.feed_views(data)]

    def feed_views(self, data: bytes) -> list[memoryview]:
        """Like :meth:`feed`, without copying: each payload is a memoryview of ``data``.

        Only a frame split across two reads is copied (once). The views keep ``data``
        alive and never change (``data`` is immutable bytes); decode them and drop them.

        Raises:
            ProtocolError: a negative length or one above ``max_size``.
        """
        frames: list[memoryview] = []
        view = memoryview(data)
        pos = 0
        end = len(view)
        buf = self._buf
        if buf:
            # Finish the frame the last read left incomplete, copying only its bytes.
            if len(buf) < 4:
                take = min(4 - len(buf), end)
                buf += view[:take]
                pos = take
                if len(buf) < 4:
                    return frames
            (length,) = _LEN.unpack_from(buf, 0)
            self._check(length)
            take = min(4 + length - len(buf), end - pos)
            buf += view[pos : pos + take]
            pos += take
            if len(buf) < 4 + length:
                return frames
            frames.append(memoryview(bytes(buf))[4:])
            buf.clear()
        unpack = _LEN.unpack_from
        max_size = self.max_size
        while end - pos >= 4:
            (length,) = unpack(view, pos)
            if length < 0 or length > max_size:
                self._check(length)
            if end - pos - 4 < length:
                break
            frames.append(view[pos + 4 : pos + 4 + length])
            pos += 4 + length
        if pos < end:
            buf += view[pos:]
        return frames

    def _check(self, length: int) -> None:
        if length < 0 or length > self.max_size:
            raise ProtocolError(
                f"frame length {length} out of range (limit {self.max_size} bytes)"
            )

    @property
    def buffered(self) -> int:
        """Bytes received but not yet part of a complete frame."""
        return len(self._buf)


def check_send_size(size: int, limit: int) -> None:
    """Raise DataTooLargeError when a request frame would exceed ``limit`` bytes."""
    if size > limit:
        raise DataTooLargeError(
            f"request of {size} bytes exceeds the server's limit of {limit} bytes "
            "(jute.maxbuffer); raise max_request_size only if the server's is raised too"
        )
