"""TCP reassembly per direction and ZooKeeper framing, with resynchronisation.

A :class:`HalfStream` is one direction of one connection: it puts segments back in
sequence order (out-of-order segments wait, retransmissions and overlaps are trimmed, a
hole that never fills becomes a gap) and splits the bytes into length-prefixed frames.
A direction whose start was not captured (no SYN), or that lost bytes in a gap, is out of
sync: it scans for the next position where a *plausible* frame starts (the connection
decoder judges plausibility by decoding it) and says how many bytes it skipped.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

__all__ = ("HalfStream", "MAX_FRAME")

_LEN = struct.Struct(">i")
_SEQ_MASK = 0xFFFFFFFF
#: Frames above this are not ZooKeeper (the server sends ~1 MiB at most; requests above
#: jute.maxbuffer are still framed so that they can be reported as oversize).
MAX_FRAME = 16 * 1024 * 1024
# Out-of-order data held while waiting for a hole to fill; beyond it the hole is a gap.
_OOO_LIMIT = 8 * 1024 * 1024
_OOO_SEGMENTS = 2048

# (payload, time) -> None; called for each frame in order
Emit = Callable[[bytes, float], None]
# (payload, complete) -> is this a plausible frame (or frame start) for this direction?
Plausible = Callable[[bytes, bool], bool]
# message -> None: a note about this direction (gap, resync, skipped bytes)
Note = Callable[[str], None]


class HalfStream:
    """One direction of a TCP connection, from segments to ZooKeeper frames."""

    __slots__ = ("next_seq", "_ooo", "_ooo_bytes", "buf", "synced", "_emit", "_plausible",
                 "_note", "retransmissions", "gaps", "skipped", "frames", "raw", "_time",
                 "fin", "first", "big_limit", "on_big", "_big_seen")

    def __init__(self, emit: Emit, plausible: Plausible, note: Note) -> None:
        self.next_seq: int | None = None
        self._ooo: dict[int, tuple[bytes, int]] = {}
        self._ooo_bytes = 0
        self.buf = bytearray()
        self.synced = False
        self._emit = emit
        self._plausible = plausible
        self._note = note
        self.retransmissions = 0
        self.gaps = 0
        self.skipped = 0
        self.frames = 0
        self.raw = False  # a four-letter-word connection: bytes are text, not frames
        self._time = 0.0
        self.fin = False
        # called once with the first 4 bytes of a stream captured from its start: True
        # makes it raw (a four-letter-word command and its text answer)
        self.first: Callable[[bytes], bool] | None = None
        # a frame longer than big_limit is announced by its header, before it is complete
        # (a server drops the connection on such a request: the rest may never come)
        self.big_limit = MAX_FRAME
        self.on_big: Callable[[int, bytes], None] | None = None
        self._big_seen = False

    def syn(self, seq: int) -> None:
        """The SYN was captured: the stream starts in sync at ``seq + 1``."""
        if self.next_seq is None:
            self.next_seq = (seq + 1) & _SEQ_MASK
            self.synced = True

    def segment(self, time: float, seq: int, payload: bytes, wire_len: int) -> None:
        """Add a segment's payload (``wire_len`` bytes on the wire, possibly cut short)."""
        self._time = time
        if self.next_seq is None:
            self.next_seq = seq
            self.synced = False
        rel = (seq - self.next_seq) & _SEQ_MASK
        if rel >= 0x80000000:
            rel -= 0x100000000
        if rel == 0 and not self._ooo and len(payload) == wire_len:
            # the common case: in order, complete
            self.next_seq = (seq + wire_len) & _SEQ_MASK
            self.buf += payload
            self._split()
            return
        if rel < 0:
            if rel + wire_len <= 0:
                self.retransmissions += 1
                return
            cut = -rel  # overlaps what we have: keep only the new tail
            payload = payload[cut:]
            wire_len -= cut
            seq = self.next_seq
            rel = 0
        if rel > 0:
            old = self._ooo.get(seq)
            if old is None or old[1] < wire_len:
                self._ooo[seq] = (payload, wire_len)
                self._ooo_bytes += len(payload)
            if self._ooo_bytes > _OOO_LIMIT or len(self._ooo) > _OOO_SEGMENTS:
                self._skip_hole()
            return
        self._append(payload, wire_len)
        self._drain()

    def _append(self, payload: bytes, wire_len: int) -> None:
        assert self.next_seq is not None
        self.buf += payload
        self.next_seq = (self.next_seq + wire_len) & _SEQ_MASK
        self._split()
        if len(payload) < wire_len:  # cut by the snap length: the rest is lost
            self._gap(wire_len - len(payload))

    def _drain(self) -> None:
        while self._ooo and self.next_seq is not None:
            nxt = self.next_seq
            best: int | None = None
            for seq, (payload, wire_len) in list(self._ooo.items()):
                rel = (seq - nxt) & _SEQ_MASK
                if rel >= 0x80000000:
                    rel -= 0x100000000
                if rel <= 0:
                    del self._ooo[seq]
                    self._ooo_bytes -= len(payload)
                    if rel + wire_len > 0:
                        self._append(payload[-rel:], wire_len + rel)
                        best = -1
                        break
                    self.retransmissions += 1
                    best = -1
                    break
            if best is None:
                return

    def _skip_hole(self) -> None:
        """Give up waiting for the hole before the earliest held segment."""
        if not self._ooo or self.next_seq is None:
            return
        nxt = self.next_seq
        first = min(self._ooo, key=lambda s: (s - nxt) & _SEQ_MASK)
        self._gap((first - nxt) & _SEQ_MASK)
        self.next_seq = first
        self._drain()

    def _gap(self, lost: int) -> None:
        self.gaps += 1
        if self.buf:
            lost += len(self.buf)
            self.buf.clear()
        self.synced = False
        self._note(f"{lost} bytes missing from the capture (a gap): resynchronizing")

    def finish(self) -> None:
        """End of capture: use whatever is still held, then report leftover bytes."""
        while self._ooo:
            self._skip_hole()
        if self.raw:
            return
        if self.synced and self.buf:
            self._note(f"{len(self.buf)} bytes of an incomplete frame at the end")
        elif self.skipped + len(self.buf):
            self._note(f"{self.skipped + len(self.buf)} bytes did not look like ZooKeeper "
                       "frames")
        self.buf.clear()

    def _split(self) -> None:
        if self.raw:
            self.buf.clear()
            return
        buf = self.buf
        end = len(buf)
        pos = 0
        if self.first is not None and self.synced:
            if end < 4:
                return
            check, self.first = self.first, None
            if check(bytes(buf[:4])):
                self.raw = True
                buf.clear()
                return
        emit = self._emit
        time = self._time
        unpack = _LEN.unpack_from
        while True:
            if not self.synced:
                found, state = self._resync(pos)
                pos = found
                if state != _FOUND:
                    break  # what is left from pos may still start a frame
            if end - pos < 4:
                break
            (length,) = unpack(buf, pos)
            if length < 0 or length > MAX_FRAME:
                self.synced = False
                self._note(f"frame length {length} is not ZooKeeper: resynchronizing")
                continue
            stop = pos + 4 + length
            if stop > end:
                if length > self.big_limit and not self._big_seen and self.on_big:
                    self._big_seen = True
                    self.on_big(length, bytes(buf[pos + 4:min(end, pos + 4 + 4096)]))
                break
            if self._big_seen:
                self._big_seen = False
                pos = stop  # announced already; the whole frame adds nothing
                continue
            self.frames += 1
            emit(bytes(buf[pos + 4:stop]), time)
            pos = stop
        if pos:
            del buf[:pos]

    def _resync(self, pos: int) -> tuple[int, int]:
        """Scan for the next plausible frame at or after ``pos``: (position, state)."""
        buf = self.buf
        end = len(buf)
        start = pos
        unpack = _LEN.unpack_from
        plausible = self._plausible
        while end - pos >= 12:
            (length,) = unpack(buf, pos)
            if 8 <= length <= MAX_FRAME:
                stop = pos + 4 + length
                if stop > end:
                    # not all here: wait for the rest unless the header is already garbage
                    if plausible(bytes(buf[pos + 4:pos + 4 + min(length, 32)]), False):
                        self.skipped += pos - start
                        return pos, _WAIT
                elif plausible(bytes(buf[pos + 4:stop]), True):
                    self.synced = True
                    self.skipped += pos - start
                    if self.skipped:
                        self._note(f"resynchronized: skipped {self.skipped} bytes to the "
                                   "next plausible frame")
                        self.skipped = 0
                    return pos, _FOUND
            pos += 1
        self.skipped += pos - start
        return pos, _NOTHING


_FOUND, _WAIT, _NOTHING = 1, 2, 3
