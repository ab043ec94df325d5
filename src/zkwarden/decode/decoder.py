"""From TCP segments to decoded, paired ZooKeeper frames, connection by connection.

The :class:`Decoder` keeps one :class:`_Conn` per TCP connection (both directions, the
session, the requests awaiting a reply) and decodes each frame with the protocol core:
:mod:`zkwarden.protocol.decode_requests` for what clients send, the ``read_response`` of
the paired request for replies, the records module for the handshake and notifications.
Every frame becomes a :class:`~zkwarden.decode.model.Frame`; the detectors in
:mod:`zkwarden.decode.findings` watch them go by.
"""

from __future__ import annotations

import ipaddress
import struct
from collections import deque
from collections.abc import Callable
from typing import Any

from ..errors import ProtocolError
from ..protocol import ops
from ..protocol.decode_requests import REQUEST_OPCODES, decode_request, opcode_name
from ..protocol.jute import Reader
from ..protocol.records import ConnectResponse, read_watcher_event
from ..types import EventType
from .capture import Segment
from .findings import Detectors
from .model import Connection, DecodeOptions, Finding, Frame
from .stream import HalfStream

__all__ = ("Decoder",)

_HEADER = struct.Struct(">ii")
_REPLY = struct.Struct(">iqi")
_CONNECT_REQ = struct.Struct(">iqiqi")  # version, zxid, timeout, session, password length
_CONNECT_RESP = struct.Struct(">iiqi")  # version, timeout, session, password length
_SYN, _FIN, _RST, _ACK = 0x02, 0x01, 0x04, 0x10
_FOUR_LETTER_WORDS = frozenset(
    "conf cons crst dirs dump envi gtmk ruok stmk srvr srst stat wchc wchp wchs mntr isro "
    "hash".split()
)
# Known ZooKeeper error codes: 0 and -1 .. -8 (system), -100 .. -127 (API), and -13, -14
_ERRORS = frozenset([0, *range(-14, 0), *range(-130, -99)])
_OUT_OF_BAND = frozenset({100, 102})  # auth, sasl: answered outside the request pipeline
_EVENT_NAMES = {e.value: "".join(w.title() for w in e.name.split("_")) for e in EventType}


def _addr(raw: bytes, port: int) -> str:
    ip = ipaddress.ip_address(raw)
    return f"[{ip}]:{port}" if ip.version == 6 else f"{ip}:{port}"


def _request_details(req: ops.Request) -> dict[str, Any] | None:
    """The fields of a request worth showing (besides op and path)."""
    if isinstance(req, (ops.GetData, ops.Exists, ops.GetChildren, ops.GetChildren2)):
        return {"watch": req.watch}
    if isinstance(req, (ops.Create, ops.Create2, ops.CreateContainer, ops.CreateTTL)):
        d: dict[str, Any] = {"flags": req.flags, "data_len": len(req.data or b""),
                             "acl": [f"{a.id.scheme}:{a.id.id}:{int(a.perms)}" for a in req.acl]}
        if isinstance(req, ops.CreateTTL):
            d["ttl_ms"] = req.ttl_ms
        return d
    if isinstance(req, ops.SetData):
        return {"data_len": len(req.data or b""), "version": req.version}
    if isinstance(req, (ops.Delete, ops.CheckVersion, ops.SetACL)):
        return {"version": req.version}
    if isinstance(req, ops.SetWatches2):
        return {"relative_zxid": req.relative_zxid, "data": list(req.data),
                "exist": list(req.exist), "child": list(req.child),
                "persistent": list(req.persistent),
                "persistent_recursive": list(req.persistent_recursive)}
    if isinstance(req, ops.SetWatches):
        return {"relative_zxid": req.relative_zxid, "data": list(req.data),
                "exist": list(req.exist), "child": list(req.child)}
    if isinstance(req, ops.Auth):
        return {"scheme": req.scheme, "credentials": req.credentials}
    if isinstance(req, ops.AddWatch):
        return {"mode": "persistentRecursive" if req.mode == 1 else "persistent"}
    if isinstance(req, (ops.CheckWatches, ops.RemoveWatches)):
        return {"watcher_type": req.watcher_type}
    if isinstance(req, (ops.Multi, ops.MultiRead)):
        return {"ops": [f"{opcode_name(o.OPCODE)} {o.path}" for o in req.ops]}
    token = getattr(req, "token", None)
    if req.OPCODE == 102:
        return {"token": token}
    return None


def _reply_details(req: ops.Request, value: Any) -> dict[str, Any] | None:
    if isinstance(req, (ops.GetData,)):
        data, stat = value
        return {"data_len": len(data), "version": stat.version}
    if isinstance(req, (ops.GetChildren,)):
        return {"children": len(value)}
    if isinstance(req, ops.GetChildren2):
        return {"children": len(value[0])}
    if isinstance(req, (ops.Create, ops.Create2, ops.CreateContainer, ops.CreateTTL)):
        return {"created": value[0]}
    if isinstance(req, (ops.SetData, ops.Exists)):
        return {"version": value.version}
    if isinstance(req, (ops.Multi, ops.MultiRead)):
        return {"results": len(value)}
    if req.OPCODE == 102:
        return {"token": value}
    return None


class _Conn:
    """One TCP connection: both directions, the session, and requests awaiting replies."""

    __slots__ = ("info", "client", "server", "pending", "pipeline", "pings",
                 "awaiting_connect", "connect_frame", "decoder", "key_client")

    def __init__(self, decoder: Decoder, info: Connection, key_client: tuple[bytes, int]
                 ) -> None:
        self.info = info
        self.decoder = decoder
        self.key_client = key_client
        self.client = HalfStream(self._client_frame, self._client_plausible, self._note)
        self.server = HalfStream(self._server_frame, self._server_plausible, self._note)
        self.client.first = self._four_letter_word
        self.client.big_limit = decoder.options.max_buffer
        self.client.on_big = self._big_request
        self.pending: dict[int, tuple[Frame, ops.Request]] = {}
        self.pipeline: deque[int] = deque()
        self.pings: deque[Frame] = deque()
        self.awaiting_connect = False  # a ConnectRequest went out, no response yet
        self.connect_frame: Frame | None = None

    # -- plausibility (resynchronisation) ---------------------------------------------

    def _client_plausible(self, payload: bytes, complete: bool) -> bool:
        n = len(payload)
        if n >= 28:
            version, _zxid, timeout, _session, pw_len = _CONNECT_REQ.unpack_from(payload)
            if version == 0 and 0 < timeout < 10_000_000 and pw_len in (0, 16) and (
                not complete or n in (28 + pw_len, 29 + pw_len)
            ):
                return True
        if n < 8:
            return False
        xid, opcode = _HEADER.unpack_from(payload)
        if opcode not in REQUEST_OPCODES or not (xid > 0 or xid in (-2, -4, -8)):
            return False
        if not complete:
            return True
        try:
            decode_request(opcode, memoryview(payload)[8:])
        except ProtocolError:
            return False
        return True

    def _server_plausible(self, payload: bytes, complete: bool) -> bool:
        n = len(payload)
        if n in (36, 37) and complete:
            version, timeout, _session, pw_len = _CONNECT_RESP.unpack_from(payload)
            if version == 0 and timeout >= 0 and pw_len == 16:
                return True
        if n < 16:
            return False
        xid, zxid, err = _REPLY.unpack_from(payload)
        if err not in _ERRORS:
            return False
        if not complete:
            return xid in self.pending or xid in (-1, -2, -4, -8)
        if xid == -1:
            try:
                r = Reader(payload, 16)
                event = read_watcher_event(r)
                r.expect_end("notification")
            except ProtocolError:
                return False
            return 1 <= event.type <= 4 and event.path.startswith("/")
        if xid == -2:
            return n == 16 and err == 0
        entry = self.pending.get(xid)
        if entry is not None:
            if err or entry[1].OPCODE == 102:
                return True
            try:
                r = Reader(payload, 16)
                entry[1].read_response(r)
                r.expect_end("reply")
            except ProtocolError:
                return False
            return True
        # a reply to a request we did not see: only an error-only header is convincing
        return n == 16 and err != 0 and xid > 0 and zxid >= -1

    def _four_letter_word(self, head: bytes) -> bool:
        word = head.decode("latin-1")
        if word in _FOUR_LETTER_WORDS:
            self.info.four_letter_word = word
            self.server.raw = True
            self.decoder._add(self, "request", None, f"4lw:{word}", 4)
            return True
        return False

    def _big_request(self, length: int, head: bytes) -> None:
        """A request frame above jute.maxbuffer: report it from its header alone."""
        xid, opcode = _HEADER.unpack_from(head) if len(head) >= 8 else (None, -1)
        path = None
        if len(head) >= 12:
            try:
                path = Reader(head, 8).string() or None
            except ProtocolError:
                path = None
        self.decoder._add(self, "request", xid, opcode_name(opcode), length, path=path,
                          details={"incomplete": True})

    def _note(self, message: str) -> None:
        self.decoder._add(self, "note", None, "note", 0, details={"message": message})

    # -- client frames ----------------------------------------------------------------

    def _client_frame(self, payload: bytes, time: float) -> None:
        dec = self.decoder
        n = len(payload)
        if n >= 28 and (self.info.frames == 0 or self.awaiting_connect or n in (44, 45)):
            version, zxid, timeout, session, pw_len = _CONNECT_REQ.unpack_from(payload)
            if version == 0 and pw_len in (0, 16) and n in (28 + pw_len, 29 + pw_len):
                password = payload[28:28 + pw_len]
                read_only = n == 29 + pw_len and payload[-1] != 0
                if session:
                    self.info.session = session
                self.awaiting_connect = True
                self.connect_frame = dec._add(
                    self, "request", None, "connect", n,
                    details={"session_id": session, "timeout_ms": timeout,
                             "last_zxid": zxid, "read_only": read_only,
                             "password_reused": session != 0 and any(password),
                             "password": password})
                return
        if n < 8:
            dec._add(self, "note", None, "note", n,
                     details={"message": f"client frame of {n} bytes is too short"})
            return
        xid, opcode = _HEADER.unpack_from(payload)
        try:
            req = decode_request(opcode, memoryview(payload)[8:])
        except ProtocolError as exc:
            dec._add(self, "request", xid, opcode_name(opcode), n,
                     details={"undecodable": str(exc)})
            return
        frame = dec._add(self, "request", xid, opcode_name(opcode), n, path=req.path or None,
                         details=_request_details(req))
        if opcode == 11:
            self.pings.append(frame)
            self.pipeline.append(-2)
            return
        self.pending[xid] = (frame, req)
        if opcode not in _OUT_OF_BAND:
            self.pipeline.append(xid)
        dec.detectors.on_request(frame, req, self.info)

    # -- server frames ----------------------------------------------------------------

    def _server_frame(self, payload: bytes, time: float) -> None:
        dec = self.decoder
        n = len(payload)
        if (self.awaiting_connect or self.info.frames <= 1 and self.info.saw_syn) and n in (36, 37):
            try:
                resp = ConnectResponse.read(Reader(payload))
            except ProtocolError:
                resp = None
            if resp is not None and resp.protocol_version == 0:
                self._connected(resp, n)
                return
        if n < 16:
            dec._add(self, "note", None, "note", n,
                     details={"message": f"server frame of {n} bytes is too short"})
            return
        xid, zxid, err = _REPLY.unpack_from(payload)
        if xid == -1:
            try:
                event = read_watcher_event(Reader(payload, 16))
            except ProtocolError as exc:
                dec._add(self, "event", -1, "notification", n, zxid=zxid,
                         details={"undecodable": str(exc)})
                return
            frame = dec._add(self, "event", -1, "notification", n, path=event.path, zxid=zxid,
                             details={"type": _EVENT_NAMES.get(event.type, str(event.type)),
                                      "state": event.state})
            dec.detectors.on_event(frame, event.type, self.info)
            return
        if xid == -2:
            ping = self.pings.popleft() if self.pings else None
            disorder = self._in_order(-2, ping)
            frame = dec._add(self, "reply", -2, "ping", n, err=err, zxid=zxid,
                             request=ping)
            if ping is not None:
                dec.detectors.on_ping_reply(frame, self.info)
            if disorder is not None:
                dec.detectors.out_of_order(frame, disorder, self.info)
            return
        entry = self.pending.pop(xid, None)
        if entry is None:
            dec._add(self, "reply", xid, "unknown", n, err=err, zxid=zxid,
                     details={"unpaired": True})
            return
        req_frame, req = entry
        disorder = None if req.OPCODE in _OUT_OF_BAND else self._in_order(xid, req_frame)
        details = None
        if err == 0 or req.OPCODE == 102:
            try:
                r = Reader(payload, 16)
                details = _reply_details(req, req.read_response(r))
            except ProtocolError as exc:
                details = {"undecodable": str(exc)}
        frame = dec._add(self, "reply", xid, req_frame.op, n, path=req_frame.path, err=err,
                         zxid=zxid, details=details, request=req_frame)
        dec.detectors.on_reply(frame, req, self.info)
        if disorder is not None:
            dec.detectors.out_of_order(frame, disorder, self.info)

    def _in_order(self, xid: int, request: Frame | None) -> Frame | None:
        """Check that this reply answers the oldest pipelined request (FIFO); if not,
        return the request that should have been answered first."""
        pipeline = self.pipeline
        if not pipeline or request is None:
            return None
        if pipeline[0] == xid:
            pipeline.popleft()
            return None
        expected = pipeline[0]
        try:
            pipeline.remove(xid)
        except ValueError:
            return None
        if expected == -2:
            return self.pings[0] if self.pings else None
        waiting = self.pending.get(expected)
        return waiting[0] if waiting else None

    def _connected(self, resp: ConnectResponse, size: int) -> None:
        dec = self.decoder
        self.awaiting_connect = False
        info = self.info
        info.established = resp.timeout_ms > 0
        request = self.connect_frame
        asked = request.details.get("session_id", 0) if request and request.details else 0
        if resp.timeout_ms > 0:
            info.session = resp.session_id
            info.timeout_ms = resp.timeout_ms
        else:
            info.expired = True
        frame = dec._add(self, "reply", None, "connect", size, request=request,
                         details={"session_id": resp.session_id, "timeout_ms": resp.timeout_ms,
                                  "read_only": resp.read_only, "expired": resp.timeout_ms <= 0,
                                  "password": resp.password})
        dec.detectors.on_connected(frame, request, asked, resp.timeout_ms, info)


class Decoder:
    """Feed TCP segments in capture order; collect frames and findings through ``sink``.

    ``sink`` receives each :class:`Frame` and :class:`Finding` as soon as it is known
    (findings that need the whole capture come from :meth:`finish`).
    """

    def __init__(self, options: DecodeOptions | None = None,
                 sink: Callable[[Frame | Finding], None] | None = None) -> None:
        self.options = options or DecodeOptions()
        self.connections: list[Connection] = []
        self._conns: dict[tuple[bytes, int, bytes, int], tuple[_Conn, bool]] = {}
        self._sink = sink or (lambda item: None)
        self.detectors = Detectors(self.options, self._sink)
        self.frames = 0
        self.time = 0.0
        self.first_time: float | None = None

    def _add(self, conn: _Conn, direction: str, xid: int | None, op: str, size: int, *,
             path: str | None = None, err: int | None = None, zxid: int | None = None,
             details: dict[str, Any] | None = None, request: Frame | None = None) -> Frame:
        info = conn.info
        latency = None
        reply_to = None
        if request is not None:
            latency = round((self.time - request.time) * 1000.0, 3)
            reply_to = request.index
        if direction != "note":
            info.frames += 1
            self.frames += 1
        frame = Frame(self.frames if direction != "note" else 0, self.time, info.number,
                      info.session, direction, xid, op, path, err, latency, size, zxid,
                      details, reply_to)
        self._sink(frame)
        if direction == "request" and size > self.options.max_buffer:
            self.detectors.oversize(frame)
        return frame

    def _side(self, seg: Segment) -> tuple[_Conn, bool]:
        """The connection of a segment and whether the segment comes from the client."""
        _t, src, sport, dst, dport, _seq, flags, payload, _n = seg
        key = (src, sport, dst, dport)
        found = self._conns.get(key)
        if found is not None:
            return found
        rkey = (dst, dport, src, sport)
        found = self._conns.get(rkey)
        if found is not None:
            return found[0], not found[1]
        ports = self.options.server_ports
        if flags & _SYN:
            from_client = not flags & _ACK
        elif ports and (dport in ports or sport in ports):
            from_client = dport in ports
        elif payload:
            from_client = self._looks_like_client(payload)
        else:
            from_client = dport < sport
        ckey = key if from_client else rkey
        client = _addr(src, sport) if from_client else _addr(dst, dport)
        server = _addr(dst, dport) if from_client else _addr(src, sport)
        info = Connection(len(self.connections) + 1, client, server, seg[0])
        self.connections.append(info)
        conn = _Conn(self, info, (ckey[0], ckey[1]))
        self._conns[ckey] = (conn, True)
        return conn, from_client

    @staticmethod
    def _looks_like_client(payload: bytes) -> bool:
        if len(payload) >= 12:
            _len, xid, opcode = struct.unpack_from(">iii", payload)
            if opcode in REQUEST_OPCODES and (xid > 0 or xid in (-2, -4, -8)):
                return True
            if len(payload) >= 20:
                err = struct.unpack_from(">i", payload, 16)[0]
                if err in _ERRORS:
                    return False
        return payload[:4] in (b"\x00\x00\x00\x2c", b"\x00\x00\x00\x2d")

    def feed(self, seg: Segment) -> None:
        """Decode one TCP segment (from :func:`~zkwarden.decode.capture.parse_tcp`)."""
        time, _src, _sport, _dst, _dport, seq, flags, payload, wire_len = seg
        self.time = time
        if self.first_time is None:
            self.first_time = time
        conn, from_client = self._side(seg)
        half = conn.client if from_client else conn.server
        if flags & _SYN:
            half.syn(seq)
            if from_client and not flags & _ACK:
                conn.info.saw_syn = True
                if conn.info.established is None:
                    conn.info.established = False
        if wire_len:
            half.segment(time, seq, payload, wire_len)
        if flags & (_FIN | _RST) and conn.info.end is None:
            conn.info.end = time
            self.detectors.on_close(conn.info, time)

    def finish(self) -> None:
        """End of capture: flush held segments and run the whole-capture detectors."""
        for conn, _ in list(self._conns.values()):
            conn.client.finish()
            conn.server.finish()
        self.detectors.finish(self.connections, self.time)
