"""Loopback captures with Debian's tcpdump, and the raw-socket scripted client.

``Capture(port)`` runs ``tcpdump -i lo -w FILE -U 'tcp port N'`` for the duration of a
``with`` block; on exit it stops tcpdump with SIGINT and waits for it to flush, so the file
holds every packet of the block. ``RawClient`` speaks the wire by hand (with the
protocol core's encoders) to script what no well-behaved client does: re-list without a
watch, ignore a notification, send a request above jute.maxbuffer.
"""

from __future__ import annotations

import shutil
import signal
import socket
import struct
import subprocess
import time
from pathlib import Path
from types import TracebackType

from zkwarden.decode import DecodeResult
from zkwarden.protocol import ops
from zkwarden.protocol.records import ConnectRequest, request_header

TCPDUMP = shutil.which("tcpdump")


def assert_all_decoded_and_paired(result: DecodeResult) -> None:
    """No decoder note (resync, gap, not ZooKeeper), no undecodable frame, and every
    request (but multi's ``check`` and four-letter words) answered by a paired reply."""
    notes = [f.details for f in result.frames if f.direction == "note"]
    assert not notes, notes
    undecodable = [f for f in result.frames if f.details and "undecodable" in f.details]
    assert not undecodable, undecodable
    unpaired = [f for f in result.frames if f.direction == "reply" and f.reply_to is None]
    assert not unpaired, unpaired
    requests = {f.index for f in result.frames if f.direction == "request"
                and f.op not in ("check",) and not f.op.startswith("4lw")}
    answered = {f.reply_to for f in result.frames if f.direction == "reply"}
    assert requests <= answered, f"unpaired requests: {requests - answered}"


class Capture:
    """tcpdump on the loopback interface, filtered to one or more TCP ports."""

    def __init__(self, path: Path, *ports: int) -> None:
        self.path = path
        self.ports = ports
        self._proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Capture:
        assert TCPDUMP, "tcpdump is not installed (make test installs it)"
        expr = " or ".join(f"tcp port {p}" for p in self.ports) or "tcp"
        self._proc = subprocess.Popen(
            # A 64 MiB kernel buffer: with the default 2 MiB, a loaded machine (three JVMs
            # and the test workers) dropped packets, and the decoder rightly saw gaps.
            [TCPDUMP, "-i", "lo", "-w", str(self.path), "-U", "--immediate-mode",
             "-B", "65536", expr],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        # tcpdump says "listening on lo" once the capture is armed
        assert self._proc.stderr is not None
        deadline = time.monotonic() + 10
        line = b""
        while b"listening on" not in line:
            if time.monotonic() > deadline or self._proc.poll() is not None:
                raise RuntimeError(f"tcpdump did not start: {line!r}")
            line = self._proc.stderr.readline()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        proc = self._proc
        assert proc is not None
        time.sleep(0.3)  # let the last packets reach the capture buffer
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        if proc.stderr is not None:
            self.report = proc.stderr.read().decode(errors="replace")
            proc.stderr.close()


class RawClient:
    """A scripted client over a plain socket (one frame at a time, blocking)."""

    def __init__(self, host: str, port: int, timeout_ms: int = 10000) -> None:
        self.sock = socket.create_connection((host, port), timeout=10)
        self.sock.sendall(self._frame(ConnectRequest(0, 0, timeout_ms, 0, bytes(16),
                                                     False).encode()))
        reply = self.read_frame()
        self.session_id = struct.unpack_from(">q", reply, 8)[0]
        self.xid = 0

    @staticmethod
    def _frame(payload: bytes) -> bytes:
        return struct.pack(">i", len(payload)) + payload

    def _recv(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError("server closed the connection")
            data += chunk
        return data

    def read_frame(self) -> bytes:
        (length,) = struct.unpack(">i", self._recv(4))
        return self._recv(length)

    def send(self, request: ops.Request) -> int:
        """Send a request; return its xid (read the reply with :meth:`reply_for`)."""
        self.xid += 1
        xid = -2 if request.OPCODE == 11 else self.xid
        self.sock.sendall(self._frame(request_header(xid, request.OPCODE) + request.body()))
        return xid

    def call(self, request: ops.Request) -> tuple[int, bytes]:
        """Send and wait for the reply; notifications met on the way are kept."""
        xid = self.send(request)
        return self.reply_for(xid)

    def reply_for(self, xid: int) -> tuple[int, bytes]:
        while True:
            frame = self.read_frame()
            rxid, _zxid, err = struct.unpack_from(">iqi", frame)
            if rxid == -1:
                self.events.append(frame)
                continue
            if rxid == xid:
                return err, frame[16:]

    def wait_event(self, timeout: float = 10.0) -> bytes:
        if self.events:
            return self.events.pop(0)
        self.sock.settimeout(timeout)
        try:
            frame = self.read_frame()
        finally:
            self.sock.settimeout(10)
        assert struct.unpack_from(">i", frame)[0] == -1, "expected a notification"
        return frame

    events: list[bytes] = []

    def close(self) -> None:
        try:
            self.call(ops.CloseSession())
        except (ConnectionError, OSError):
            pass
        self.sock.close()
