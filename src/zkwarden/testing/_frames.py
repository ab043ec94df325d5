"""Frame boundaries of a ZooKeeper byte stream, and one-shot faults applied to a frame.

Sans-IO: the fault proxy feeds it the server→client bytes and forwards what it returns.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Literal

__all__ = (
    "BOGUS_BODY_PREFIX",
    "BOGUS_LENGTH",
    "ConnectRequestSniffer",
    "FrameCutter",
    "FrameFault",
)

#: ``payload`` inverts every payload byte, ``length`` replaces the length prefix with
#: :data:`BOGUS_LENGTH`, ``truncate`` sends half the frame and then asks to close.
FrameFault = Literal["payload", "length", "truncate"]
BOGUS_LENGTH = 0x7FFFFFFF
#: What a body fault writes over the first 4 bytes after the ReplyHeader: a length of -2,
#: which no buffer, string or vector may have (-1 alone means null), so the reply of every
#: request whose response starts with one (getData, getChildren, create, getACL, multi ...)
#: fails to decode while its header stays intact.
BOGUS_BODY_PREFIX = struct.pack(">i", -2)
_INVERT = bytes(b ^ 0xFF for b in range(256))
_REPLY_HEADER = struct.Struct(">iqi")  # xid, zxid, err
# Offset and size of the session id in a ConnectRequest frame (length, protocol version,
# last zxid, timeout, then the session id).
_SID_OFFSET = 4 + 4 + 8 + 4
_SID = struct.Struct(">q")


class FrameCutter:
    """Follows the frames (4-byte big-endian length + payload) of one server→client stream
    and applies a one-shot fault to the frame that starts when one is armed.

    ``claim`` is asked at the start of every frame for a :data:`FrameFault`.  When the frame
    is not claimed that way and ``claim_body`` is given, the first 16 payload bytes (a
    ReplyHeader) are held until complete and ``claim_body(xid, err)`` decides whether the
    body after them is corrupted (its first 4 bytes become :data:`BOGUS_BODY_PREFIX`); only
    frames with at least 4 body bytes are offered.  Setting :attr:`reset_after_frames` to
    ``n`` makes ``feed`` stop right after the stream's ``n``-th complete frame (counted from
    the first byte of the stream) and ask to close, with :attr:`reset` set.

    Sans-IO: ``feed`` returns the bytes to forward and whether to close the connection
    after them.  At most 3 length bytes (and 16 ReplyHeader bytes with ``claim_body``) are
    held back until complete.
    """

    def __init__(
        self,
        claim: Callable[[], FrameFault | None],
        claim_body: Callable[[int, int], bool] | None = None,
    ) -> None:
        self._claim = claim
        self._claim_body = claim_body
        self._header = bytearray()
        self._body_left = 0
        self._mode: FrameFault | Literal["peek", "body"] | None = None
        self._cut_left = 0
        self._peek = bytearray()
        self._rewrite_left = 0
        #: complete frames seen so far
        self.frames = 0
        #: stop after this many complete frames (None: never)
        self.reset_after_frames: int | None = None
        #: True once ``feed`` stopped because of :attr:`reset_after_frames`
        self.reset = False

    def flush(self) -> bytes:
        """Bytes held back at end of stream (a non-ZooKeeper reply, e.g. a 4lw)."""
        held = bytes(self._header) + bytes(self._peek)
        self._header, self._peek = bytearray(), bytearray()
        return held

    def _frame_done(self) -> bool:
        """Count a complete frame; True when the stream must stop here."""
        self._mode = None
        self.frames += 1
        limit = self.reset_after_frames
        if limit is not None and self.frames >= limit:
            self.reset = True
            return True
        return False

    def feed(self, data: bytes) -> tuple[bytes, bool]:
        """Take the next bytes of the stream; return the bytes to forward and whether the
        connection must be closed after them (a truncated frame, or :attr:`reset`).
        Never raises."""
        out = bytearray()
        if self.reset:
            return b"", True
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
                elif (
                    self._mode is None
                    and self._claim_body is not None
                    and self._body_left >= _REPLY_HEADER.size + 4
                ):
                    self._mode = "peek"
                out += header
                if self._body_left == 0 and self._frame_done():
                    return bytes(out), True
                continue
            if self._mode == "peek":
                take = _REPLY_HEADER.size - len(self._peek)
                piece = bytes(view[:take])
                view = view[len(piece) :]
                self._peek += piece
                self._body_left -= len(piece)
                if len(self._peek) < _REPLY_HEADER.size:
                    break
                xid, _zxid, err = _REPLY_HEADER.unpack(self._peek)
                out += self._peek
                self._peek = bytearray()
                self._mode = None
                assert self._claim_body is not None
                if self._claim_body(xid, err):
                    self._mode = "body"
                    self._rewrite_left = len(BOGUS_BODY_PREFIX)
                continue  # at least 4 body bytes follow
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
            elif self._mode == "body" and self._rewrite_left:
                start = len(BOGUS_BODY_PREFIX) - self._rewrite_left
                n = min(self._rewrite_left, len(piece))
                piece = BOGUS_BODY_PREFIX[start : start + n] + piece[n:]
                self._rewrite_left -= n
            out += piece
            if self._body_left == 0 and self._frame_done():
                return bytes(out), True
        return bytes(out), False


class ConnectRequestSniffer:
    """Reads the session id of the ConnectRequest that opens a client→server stream.

    ``feed`` returns None until the id is complete, then the id (0: a new session) once;
    it never changes the bytes (the caller forwards them itself).
    """

    def __init__(self) -> None:
        self._head = bytearray()
        self.done = False

    def feed(self, data: bytes) -> int | None:
        """Take the next client→server bytes; the session id once it is known.  Never
        raises."""
        if self.done:
            return None
        need = _SID_OFFSET + _SID.size - len(self._head)
        self._head += data[:need]
        if len(self._head) < _SID_OFFSET + _SID.size:
            return None
        self.done = True
        (session_id,) = _SID.unpack_from(self._head, _SID_OFFSET)
        return int(session_id)
