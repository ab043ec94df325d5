"""Frame boundaries of a ZooKeeper byte stream, and one-shot faults applied to a frame.

Sans-IO: the fault proxy feeds it the server→client bytes and forwards what it returns.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Literal

__all__ = ("BOGUS_LENGTH", "FrameCutter", "FrameFault")

#: ``payload`` inverts every payload byte, ``length`` replaces the length prefix with
#: :data:`BOGUS_LENGTH`, ``truncate`` sends half the frame and then asks to close.
FrameFault = Literal["payload", "length", "truncate"]
BOGUS_LENGTH = 0x7FFFFFFF
_INVERT = bytes(b ^ 0xFF for b in range(256))


class FrameCutter:
    """Follows the frames (4-byte big-endian length + payload) of one server→client stream
    and applies a one-shot fault to the frame that starts when one is armed.

    Sans-IO: ``feed`` returns the bytes to forward and whether to close the connection
    after them.  At most 3 header bytes are held back until the length is complete.
    """

    def __init__(self, claim: Callable[[], FrameFault | None]) -> None:
        self._claim = claim
        self._header = bytearray()
        self._body_left = 0
        self._mode: FrameFault | None = None
        self._cut_left = 0

    def flush(self) -> bytes:
        """Header bytes held back at end of stream (a non-ZooKeeper reply, e.g. a 4lw)."""
        held, self._header = bytes(self._header), bytearray()
        return held

    def feed(self, data: bytes) -> tuple[bytes, bool]:
        """Take the next bytes of the stream; return the bytes to forward and whether the
        connection must be closed after them (a truncated frame).  Never raises."""
        out = bytearray()
        view = memoryview(data)
        while view:
            if self._body_left == 0 and self._mode != "truncate":
                take = 4 - len(self._header)
                self._header += view[:take]
                view = view[take:]
                if len(self._header) < 4:
                    break
                length = int.from_bytes(self._header, "big", signed=True)
                header, self._header = bytes(self._header), bytearray()
                self._body_left = max(length, 0)
                self._mode = self._claim()
                if self._mode == "length":
                    header = struct.pack(">i", BOGUS_LENGTH)
                elif self._mode == "truncate":
                    self._cut_left = (4 + self._body_left) // 2
                    out += header[: self._cut_left]
                    self._cut_left -= min(4, self._cut_left)
                    if self._cut_left == 0:
                        return bytes(out), True
                    continue
                out += header
                if self._body_left == 0:
                    self._mode = None
                continue
            piece = bytes(view[: self._body_left])
            view = view[len(piece) :]
            self._body_left -= len(piece)
            if self._mode == "truncate":
                sent = piece[: self._cut_left]
                out += sent
                self._cut_left -= len(sent)
                if self._cut_left == 0:
                    return bytes(out), True
                continue
            if self._mode == "payload":
                piece = piece.translate(_INVERT)
            out += piece
            if self._body_left == 0:
                self._mode = None
        return bytes(out), False
