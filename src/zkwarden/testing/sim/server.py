"""A small model of a ZooKeeper server, for the simulation.

Enough of the server for the client's paths, not a reimplementation: sessions (negotiated
timeout, expiry on virtual time, the expired-session handshake), a tree with zxids and
versions, ephemeral nodes, one-shot and persistent watches with the SetWatches catch-up
rules, digest-style auth (credentials ending in ``:bad`` fail), ACL checks for READ,
WRITE, CREATE and DELETE, ping, closeSession. Replies go out in request order.

It also keeps what the checks need: every version each node ever had and every event it
fired. Layouts follow ``reference/zk_protocol.md`` sections 2-9.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import struct
from collections.abc import Callable
from dataclasses import dataclass, field

from ...errors import ProtocolError
from ...protocol.jute import Reader, Writer
from ...protocol.records import ConnectRequest, ConnectResponse, read_acl
from ...types import ACL, Id, Perms
from .network import SimConnection, SimNetwork

__all__ = ("ModelServer", "Node", "Session")

_HDR = struct.Struct(">iqi")
_STAT = struct.Struct(">qqqqiiiqiiq")
_INT = struct.Struct(">i")

# error codes (zk_protocol.md section 8)
OK, UNIMPLEMENTED, MARSHALLING, NONODE, NOAUTH, BADVERSION = 0, -6, -5, -101, -102, -103
NOCHILDRENFOREPHEMERALS, NODEEXISTS, NOTEMPTY, AUTHFAILED, NOWATCHER = -108, -110, -111, -115, -121
CREATED, DELETED, DATA_CHANGED, CHILDREN_CHANGED = 1, 2, 3, 4
OPEN_ACL = [ACL(int(Perms.ALL), Id("world", "anyone"))]


@dataclass
class Node:
    data: bytes
    acl: list[ACL]
    czxid: int
    mzxid: int
    pzxid: int
    ctime: int
    mtime: int
    version: int = 0
    cversion: int = 0
    aversion: int = 0
    ephemeral_owner: int = 0
    children: set[str] = field(default_factory=set)

    def stat(self) -> bytes:
        return _STAT.pack(
            self.czxid, self.mzxid, self.ctime, self.mtime, self.version, self.cversion,
            self.aversion, self.ephemeral_owner, len(self.data), len(self.children), self.pzxid,
        )


@dataclass
class Session:
    id: int
    password: bytes
    timeout: float
    last_heard: float
    conn: SimConnection | None = None
    ephemerals: set[str] = field(default_factory=set)


class _ConnState:
    def __init__(self) -> None:
        self.session: Session | None = None
        self.closed = False
        self.users: set[str] = set()  # digest user names authenticated on this connection
        self.auth: list[tuple[str, str]] = [("ip", "127.0.0.1")]
        self.watches: dict[str, set[str]] = {
            k: set() for k in ("data", "exist", "child", "persistent", "recursive")
        }


def _parent(path: str) -> str:
    i = path.rfind("/")
    return "/" if i <= 0 else path[:i]


class ModelServer:
    """The model. ``tick`` is the tickTime: sessions negotiate within [2, 20] ticks."""

    def __init__(self, loop: asyncio.AbstractEventLoop, *, tick: float = 0.25,
                 rng: random.Random | None = None) -> None:
        self.loop = loop
        self.tick = tick
        self.rng = rng or random.Random(0)
        self.zxid = 0
        self.sessions: dict[int, Session] = {}
        self._next_session = 0x100
        self._conns: list[SimConnection] = []
        root = Node(b"", list(OPEN_ACL), 0, 0, 0, 0, 0)
        self.nodes: dict[str, Node] = {"/": root}
        #: every (czxid, mzxid, data) each path ever had
        self.versions: dict[str, set[tuple[int, int, bytes]]] = {}
        #: every (event type, path) the server fired
        self.events: set[tuple[int, str]] = set()
        self.events_fired = 0
        #: opcodes before which a session is expired (one-shot hooks; see expire_when)
        self._expire_on: set[int] = set()
        self.requests_seen: list[tuple[int, int]] = []  # (session id, opcode)
        #: the network in front of the model (set by SimNetwork), for bursts
        self.network: SimNetwork | None = None
        self._ticker = loop.call_at(loop.time() + tick, self._on_tick)

    # --- direct access for tests ---------------------------------------------------------

    def live_sessions(self) -> list[int]:
        return sorted(self.sessions)

    def ephemerals(self, session_id: int) -> list[str]:
        s = self.sessions.get(session_id)
        return sorted(s.ephemerals) if s else []

    def stop(self) -> None:
        self._ticker.cancel()

    def expire(self, session_id: int) -> bool:
        """Expire a session now (its connection closes without a message)."""
        s = self.sessions.get(session_id)
        if s is None:
            return False
        self._end_session(s)
        return True

    def expire_when(self, opcode: int) -> None:
        """Expire the session of the next request with ``opcode``, before answering it."""
        self._expire_on.add(opcode)

    def kick(self, session_id: int | None = None) -> None:
        """Close the connection of a session (of every session when None)."""
        for s in list(self.sessions.values()):
            if (session_id is None or s.id == session_id) and s.conn is not None:
                s.conn.close()

    def close_session_direct(self, session_id: int, password: bytes) -> bool:
        s = self.sessions.get(session_id)
        if s is None or s.password != password:
            return False
        self._end_session(s)
        return True

    def write(self, op: str, path: str, data: bytes = b"", *, count: int = 1) -> None:
        """Another client's write ("create", "set", "delete"), applied at once (``count``
        times: the notifications of the burst reach each connection in one segment)."""
        bulk = getattr(self, "network", None)
        with bulk.bulk() if bulk is not None and count > 1 else contextlib.nullcontext():
            self._write(op, path, data, count)

    def _write(self, op: str, path: str, data: bytes, count: int) -> None:
        for _ in range(count):
            if op == "create" and path not in self.nodes and _parent(path) in self.nodes:
                self._create(path, data, list(OPEN_ACL), 0)
            elif op == "set" and path in self.nodes:
                self._set(path, data)
            elif op == "delete" and path in self.nodes and not self.nodes[path].children:
                self._delete(path)

    # --- sessions ------------------------------------------------------------------------

    def _on_tick(self) -> None:
        now = self.loop.time()
        for s in list(self.sessions.values()):
            if now - s.last_heard > s.timeout:
                self._end_session(s)
        self._ticker = self.loop.call_at(now + self.tick, self._on_tick)

    def _end_session(self, s: Session) -> None:
        self.sessions.pop(s.id, None)
        for path in sorted(s.ephemerals, key=len, reverse=True):
            if path in self.nodes:
                self._delete(path)
        s.ephemerals.clear()
        if s.conn is not None:
            s.conn.close()
            s.conn = None

    # --- the network side ----------------------------------------------------------------

    def accept(self, conn: SimConnection) -> None:
        conn.server_state = _ConnState()
        self._conns.append(conn)

    def on_closed(self, conn: SimConnection) -> None:
        st: _ConnState = conn.server_state
        if st is None or st.closed:
            return
        st.closed = True
        if st.session is not None and st.session.conn is conn:
            st.session.conn = None
        if conn in self._conns:
            self._conns.remove(conn)

    def on_frame(self, conn: SimConnection, payload: bytes) -> None:
        st: _ConnState = conn.server_state
        if st is None or st.closed:
            return
        try:
            if st.session is None:
                self._handshake(conn, st, payload)
            else:
                self._request(conn, st, payload)
        except (ProtocolError, struct.error, UnicodeError, ValueError):
            # A real server drops a connection that sends something it cannot read.
            self._drop(conn)

    def _drop(self, conn: SimConnection) -> None:
        conn.close()
        self.on_closed(conn)

    def _handshake(self, conn: SimConnection, st: _ConnState, payload: bytes) -> None:
        req = ConnectRequest.read(Reader(payload))
        now = self.loop.time()
        if req.session_id:
            s = self.sessions.get(req.session_id)
            if s is None or s.password != req.password:
                conn.send(ConnectResponse(0, 0, 0, b"\x00" * 16, False).encode())
                self._drop(conn)
                return
            if s.conn is not None and s.conn is not conn:
                old = s.conn
                s.conn = None
                self._drop(old)  # re-attaching from a new connection closes the old one
        else:
            lo, hi = 2 * self.tick, 20 * self.tick
            timeout = min(max(req.timeout_ms / 1000.0, lo), hi)
            sid = self._next_session
            self._next_session += 1
            password = bytes(self.rng.getrandbits(8) for _ in range(16))
            s = Session(sid, password, timeout, now)
            self.sessions[sid] = s
        s.conn = conn
        s.last_heard = now
        st.session = s
        conn.send(ConnectResponse(0, int(s.timeout * 1000), s.id, s.password, False).encode())

    def _reply(self, conn: SimConnection, xid: int, err: int, body: bytes = b"",
               zxid: int | None = None) -> None:
        conn.send(_HDR.pack(xid, self.zxid if zxid is None else zxid, err) + body)

    def _request(self, conn: SimConnection, st: _ConnState, payload: bytes) -> None:
        s = st.session
        assert s is not None
        if s.id not in self.sessions:
            self._drop(conn)
            return
        s.last_heard = self.loop.time()
        r = Reader(payload)
        xid, op = r.int(), r.int()
        self.requests_seen.append((s.id, op))
        if op in self._expire_on:
            self._expire_on.discard(op)
            self._end_session(s)
            return
        if op == 11:  # ping
            self._reply(conn, -2, OK)
            return
        if op == 100:  # auth
            r.int()
            scheme, cred = r.string(), r.buffer() or b""
            text = cred.decode("utf-8", "replace")
            if text.endswith(":bad"):
                self._reply(conn, xid, AUTHFAILED, zxid=0)
                self._drop(conn)
                return
            st.users.add(text.split(":", 1)[0])
            st.auth.append((scheme, text.split(":", 1)[0]))
            self._reply(conn, xid, OK, zxid=0)
            return
        if op == -11:  # closeSession
            self._reply(conn, xid, OK)
            s.conn = None
            self._end_session(s)
            self._drop(conn)
            return
        handler = _HANDLERS.get(op)
        if handler is None:
            self._reply(conn, xid, UNIMPLEMENTED, zxid=-1)
            return
        err, body = handler(self, conn, st, r)
        self._reply(conn, xid, err, body if err == OK or op == 106 else b"")

    # --- the tree ------------------------------------------------------------------------

    def _allowed(self, st: _ConnState, node: Node, perm: Perms) -> bool:
        for acl in node.acl:
            if not acl.perms & perm:
                continue
            if acl.id.scheme == "world" and acl.id.id == "anyone":
                return True
            if acl.id.scheme == "digest" and acl.id.id.split(":", 1)[0] in st.users:
                return True
        return False

    def _record(self, path: str, node: Node) -> None:
        self.versions.setdefault(path, set()).add((node.czxid, node.mzxid, node.data))

    def _create(self, path: str, data: bytes, acl: list[ACL], owner: int) -> Node:
        self.zxid += 1
        z, now = self.zxid, int(self.loop.time() * 1000)
        node = Node(data, acl, z, z, z, now, now, ephemeral_owner=owner)
        self.nodes[path] = node
        parent = self.nodes[_parent(path)]
        parent.children.add(path.rsplit("/", 1)[1])
        parent.cversion += 1
        parent.pzxid = z
        if owner and owner in self.sessions:
            self.sessions[owner].ephemerals.add(path)
        self._record(path, node)
        self._fire(CREATED, path)
        self._fire(CHILDREN_CHANGED, _parent(path))
        return node

    def _set(self, path: str, data: bytes) -> Node:
        self.zxid += 1
        node = self.nodes[path]
        node.data, node.mzxid, node.version = data, self.zxid, node.version + 1
        node.mtime = int(self.loop.time() * 1000)
        self._record(path, node)
        self._fire(DATA_CHANGED, path)
        return node

    def _delete(self, path: str) -> None:
        self.zxid += 1
        node = self.nodes.pop(path)
        parent = self.nodes[_parent(path)]
        parent.children.discard(path.rsplit("/", 1)[1])
        parent.cversion += 1
        parent.pzxid = self.zxid
        if node.ephemeral_owner in self.sessions:
            self.sessions[node.ephemeral_owner].ephemerals.discard(path)
        self._fire(DELETED, path)
        self._fire(CHILDREN_CHANGED, _parent(path))

    def _fire(self, etype: int, path: str) -> None:
        self.events.add((etype, path))
        for conn in list(self._conns):
            st: _ConnState = conn.server_state
            if st.session is None or st.closed:
                continue
            w = st.watches
            hit = False
            tables = {CREATED: ("data", "exist"), DATA_CHANGED: ("data", "exist"),
                      DELETED: ("data", "exist", "child"), CHILDREN_CHANGED: ("child",)}[etype]
            for table in tables:
                if path in w[table]:
                    w[table].discard(path)
                    hit = True
            if path in w["persistent"]:
                hit = True
            if etype != CHILDREN_CHANGED:
                p = path
                while True:
                    if p in w["recursive"]:
                        hit = True
                        break
                    if p == "/":
                        break
                    p = _parent(p)
            if hit:
                self._notify(conn, etype, path)

    def _notify(self, conn: SimConnection, etype: int, path: str) -> None:
        self.events_fired += 1
        w = Writer()
        w.int(etype)
        w.int(3)
        w.ustring(path)
        conn.send(_HDR.pack(-1, -1, 0) + w.getvalue())


Handler = Callable[[ModelServer, SimConnection, _ConnState, Reader], tuple[int, bytes]]


def _create(m: ModelServer, conn: SimConnection, st: _ConnState, r: Reader, op: int) -> tuple[int, bytes]:
    path, data = r.string(), r.buffer() or b""
    acl = r.vector(lambda: read_acl(r)) or []
    flags = r.int()
    if op == 21:
        r.long()
    parent_path = _parent(path)
    parent = m.nodes.get(parent_path)
    if parent is None:
        return NONODE, b""
    if not m._allowed(st, parent, Perms.CREATE):
        return NOAUTH, b""
    if parent.ephemeral_owner:
        return NOCHILDRENFOREPHEMERALS, b""
    if flags in (2, 3, 6):
        path = f"{path}{parent.cversion:010d}"
    if path in m.nodes:
        return NODEEXISTS, b""
    assert st.session is not None
    owner = st.session.id if flags in (1, 3) else 0
    node = m._create(path, data, list(acl) or list(OPEN_ACL), owner)
    w = Writer()
    w.ustring(path)
    body = w.getvalue()
    return OK, body if op == 1 else body + node.stat()


def _delete(m: ModelServer, conn: SimConnection, st: _ConnState, r: Reader) -> tuple[int, bytes]:
    path, version = r.string(), r.int()
    node = m.nodes.get(path)
    if node is None or path == "/":
        return NONODE, b""
    if not m._allowed(st, m.nodes[_parent(path)], Perms.DELETE):
        return NOAUTH, b""
    if version != -1 and version != node.version:
        return BADVERSION, b""
    if node.children:
        return NOTEMPTY, b""
    m._delete(path)
    return OK, b""


def _read(m: ModelServer, conn: SimConnection, st: _ConnState, r: Reader, op: int) -> tuple[int, bytes]:
    path, watch = r.string(), r.bool()
    node = m.nodes.get(path)
    if node is None:
        if op == 3 and watch:
            st.watches["exist"].add(path)
        return NONODE, b""
    if op != 3 and not m._allowed(st, node, Perms.READ):
        return NOAUTH, b""
    w = Writer()
    if op == 3:
        if watch:
            st.watches["data"].add(path)  # an exists watch on a node is a data watch
        return OK, node.stat()
    if op == 4:
        if watch:
            st.watches["data"].add(path)
        w.buffer(node.data)
        return OK, w.getvalue() + node.stat()
    if watch:
        st.watches["child"].add(path)
    w.ustrings(sorted(node.children))
    return OK, w.getvalue() + (node.stat() if op == 12 else b"")


def _set_data(m: ModelServer, conn: SimConnection, st: _ConnState, r: Reader) -> tuple[int, bytes]:
    path, data, version = r.string(), r.buffer() or b"", r.int()
    node = m.nodes.get(path)
    if node is None:
        return NONODE, b""
    if not m._allowed(st, node, Perms.WRITE):
        return NOAUTH, b""
    if version != -1 and version != node.version:
        return BADVERSION, b""
    return OK, m._set(path, data).stat()


def _sync(m: ModelServer, conn: SimConnection, st: _ConnState, r: Reader) -> tuple[int, bytes]:
    w = Writer()
    w.ustring(r.string())
    return OK, w.getvalue()


_WATCHER_TABLES = {1: ("child",), 2: ("data", "exist"),
                   3: ("data", "exist", "child", "persistent", "recursive"),
                   4: ("persistent",), 5: ("recursive",)}


def _watches(m: ModelServer, conn: SimConnection, st: _ConnState, r: Reader, op: int) -> tuple[int, bytes]:
    path, wtype = r.string(), r.int()
    tables = _WATCHER_TABLES.get(wtype)
    if tables is None:
        return MARSHALLING, b""
    found = [t for t in tables if path in st.watches[t]]
    if not found:
        return NOWATCHER, b""
    if op == 18:
        for t in found:
            st.watches[t].discard(path)
    return OK, b""


def _set_watches(m: ModelServer, conn: SimConnection, st: _ConnState, r: Reader, op: int) -> tuple[int, bytes]:
    rel = r.long()
    data, exist, child = r.ustrings(), r.ustrings(), r.ustrings()
    persistent, recursive = (r.ustrings(), r.ustrings()) if op == 105 else ([], [])
    for path in data:
        node = m.nodes.get(path)
        if node is None:
            m._notify(conn, DELETED, path)
        elif node.mzxid > rel:
            m._notify(conn, DATA_CHANGED, path)
        else:
            st.watches["data"].add(path)
    for path in exist:
        if path in m.nodes:
            m._notify(conn, CREATED, path)
        else:
            st.watches["exist"].add(path)
    for path in child:
        node = m.nodes.get(path)
        if node is None:
            m._notify(conn, DELETED, path)
        elif node.pzxid > rel:
            m._notify(conn, CHILDREN_CHANGED, path)
        else:
            st.watches["child"].add(path)
    st.watches["persistent"].update(persistent)
    st.watches["recursive"].update(recursive)
    return OK, b""


def _add_watch(m: ModelServer, conn: SimConnection, st: _ConnState, r: Reader) -> tuple[int, bytes]:
    path, mode = r.string(), r.int()
    st.watches["recursive" if mode == 1 else "persistent"].add(path)
    return OK, _INT.pack(0)


def _ephemerals(m: ModelServer, conn: SimConnection, st: _ConnState, r: Reader) -> tuple[int, bytes]:
    prefix = r.string()
    assert st.session is not None
    w = Writer()
    w.ustrings(sorted(p for p in st.session.ephemerals if p.startswith(prefix) or prefix == "/"))
    return OK, w.getvalue()


def _get_acl(m: ModelServer, conn: SimConnection, st: _ConnState, r: Reader) -> tuple[int, bytes]:
    node = m.nodes.get(r.string())
    if node is None:
        return NONODE, b""
    w = Writer()
    w.int(len(node.acl))
    for acl in node.acl:
        w.int(int(acl.perms))
        w.ustring(acl.id.scheme)
        w.ustring(acl.id.id)
    return OK, w.getvalue() + node.stat()


def _who_am_i(m: ModelServer, conn: SimConnection, st: _ConnState, r: Reader) -> tuple[int, bytes]:
    w = Writer()
    w.int(len(st.auth))
    for scheme, user in st.auth:
        w.ustring(scheme)
        w.ustring(user)
    return OK, w.getvalue()


def _bind(fn: Callable[..., tuple[int, bytes]], op: int) -> Handler:
    return lambda m, c, st, r: fn(m, c, st, r, op)


_HANDLERS: dict[int, Handler] = {
    1: _bind(_create, 1), 15: _bind(_create, 15), 19: _bind(_create, 19),
    21: _bind(_create, 21), 2: _delete, 3: _bind(_read, 3), 4: _bind(_read, 4),
    8: _bind(_read, 8), 12: _bind(_read, 12), 5: _set_data, 6: _get_acl, 9: _sync,
    17: _bind(_watches, 17), 18: _bind(_watches, 18), 101: _bind(_set_watches, 101),
    105: _bind(_set_watches, 105), 103: _ephemerals, 106: _add_watch, 107: _who_am_i,
}
