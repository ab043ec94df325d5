"""Round trips: every request encoded by zkwarden, decoded by the test-side spec decoder;
and records that zkwarden can both write and read."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zkwarden.protocol import ops
from zkwarden.protocol.jute import Reader, Writer
from zkwarden.protocol.records import (
    ConnectRequest,
    ConnectResponse,
    MultiHeader,
    WatcherEvent,
    read_acl,
    read_stat,
    read_watcher_event,
    write_acl,
    write_stat,
)
from zkwarden.types import ACL, Id, Stat

from ._machine import connected
from ._wire import SpecReader, decode_request, split_frames

FAST = settings(max_examples=30, deadline=None, database=None)

I32 = st.integers(-(2**31), 2**31 - 1)
I64 = st.integers(-(2**63), 2**63 - 1)
TEXT = st.text(max_size=16)  # hypothesis text never holds lone surrogates
DATA = st.none() | st.binary(max_size=32)
ACLS = st.lists(st.builds(ACL, I32, st.builds(Id, TEXT, TEXT)), max_size=3)
PATHS = st.lists(TEXT, max_size=4)

WRITE_OPS = st.one_of(
    st.builds(ops.Create, TEXT, DATA, ACLS, I32),
    st.builds(ops.Create2, TEXT, DATA, ACLS, I32),
    st.builds(ops.CreateContainer, TEXT, DATA, ACLS, I32),
    st.builds(ops.CreateTTL, TEXT, DATA, ACLS, I32, I64),
    st.builds(ops.Delete, TEXT, I32),
    st.builds(ops.SetData, TEXT, DATA, I32),
    st.builds(ops.CheckVersion, TEXT, I32),
)
READ_OPS = st.one_of(
    st.builds(ops.GetData, TEXT, st.booleans()),
    st.builds(ops.GetChildren, TEXT, st.booleans()),
)

REQUESTS: dict[str, st.SearchStrategy[ops.Request]] = {
    "Create": st.builds(ops.Create, TEXT, DATA, ACLS, I32),
    "Create2": st.builds(ops.Create2, TEXT, DATA, ACLS, I32),
    "CreateContainer": st.builds(ops.CreateContainer, TEXT, DATA, ACLS, I32),
    "CreateTTL": st.builds(ops.CreateTTL, TEXT, DATA, ACLS, I32, I64),
    "Delete": st.builds(ops.Delete, TEXT, I32),
    "Exists": st.builds(ops.Exists, TEXT, st.booleans()),
    "GetData": st.builds(ops.GetData, TEXT, st.booleans()),
    "SetData": st.builds(ops.SetData, TEXT, DATA, I32),
    "GetACL": st.builds(ops.GetACL, TEXT),
    "SetACL": st.builds(ops.SetACL, TEXT, ACLS, I32),
    "GetChildren": st.builds(ops.GetChildren, TEXT, st.booleans()),
    "GetChildren2": st.builds(ops.GetChildren2, TEXT, st.booleans()),
    "Sync": st.builds(ops.Sync, TEXT),
    "Ping": st.just(ops.Ping()),
    "CheckVersion": st.builds(ops.CheckVersion, TEXT, I32),
    "Multi": st.builds(ops.Multi, st.lists(WRITE_OPS, max_size=5)),
    "MultiRead": st.builds(ops.MultiRead, st.lists(READ_OPS, max_size=5)),
    "CheckWatches": st.builds(ops.CheckWatches, TEXT, I32),
    "RemoveWatches": st.builds(ops.RemoveWatches, TEXT, I32),
    "Auth": st.builds(ops.Auth, TEXT, st.binary(max_size=32)),
    "SetWatches": st.builds(ops.SetWatches, I64, PATHS, PATHS, PATHS),
    "SetWatches2": st.builds(ops.SetWatches2, I64, PATHS, PATHS, PATHS, PATHS, PATHS),
    "GetEphemerals": st.builds(ops.GetEphemerals, TEXT),
    "GetAllChildrenNumber": st.builds(ops.GetAllChildrenNumber, TEXT),
    "AddWatch": st.builds(ops.AddWatch, TEXT, I32),
    "WhoAmI": st.just(ops.WhoAmI()),
    "CloseSession": st.just(ops.CloseSession()),
}


def _acl(acl: Sequence[ACL]) -> list[tuple[int, str, str]]:
    return [(a.perms, a.id.scheme, a.id.id) for a in acl]


def expected_fields(req: ops.Request) -> dict[str, Any]:
    """What the spec decoder must read back, from the request's own fields."""
    t = type(req)
    if t in (ops.Create, ops.Create2, ops.CreateContainer):
        r: Any = req
        return {"path": r.path, "data": r.data, "acl": _acl(r.acl), "flags": r.flags}
    if isinstance(req, ops.CreateTTL):
        return {
            "path": req.path, "data": req.data, "acl": _acl(req.acl), "flags": req.flags,
            "ttl": req.ttl_ms,
        }  # fmt: skip
    if isinstance(req, (ops.Delete, ops.CheckVersion)):
        return {"path": req.path, "version": req.version}
    if isinstance(req, (ops.Exists, ops.GetData, ops.GetChildren, ops.GetChildren2)):
        return {"path": req.path, "watch": req.watch}
    if isinstance(req, ops.SetData):
        return {"path": req.path, "data": req.data, "version": req.version}
    if isinstance(req, (ops.GetACL, ops.Sync, ops.GetEphemerals, ops.GetAllChildrenNumber)):
        return {"path": req.path}
    if isinstance(req, ops.SetACL):
        return {"path": req.path, "acl": _acl(req.acl), "version": req.version}
    if isinstance(req, (ops.CheckWatches, ops.RemoveWatches)):
        return {"path": req.path, "type": req.watcher_type}
    if isinstance(req, ops.Auth):
        return {"type": 0, "scheme": req.scheme, "auth": req.credentials}
    if isinstance(req, ops.SetWatches):
        return {
            "relative_zxid": req.relative_zxid, "data": list(req.data),
            "exist": list(req.exist), "child": list(req.child),
        }  # fmt: skip
    if isinstance(req, ops.SetWatches2):
        return {
            "relative_zxid": req.relative_zxid, "data": list(req.data),
            "exist": list(req.exist), "child": list(req.child),
            "persistent": list(req.persistent),
            "persistent_recursive": list(req.persistent_recursive),
        }  # fmt: skip
    if isinstance(req, ops.AddWatch):
        return {"path": req.path, "mode": req.mode}
    if isinstance(req, (ops.Ping, ops.WhoAmI, ops.CloseSession)):
        return {}
    if isinstance(req, ops.Multi):
        return {"ops": [(op.OPCODE, expected_fields(op)) for op in req.ops]}
    if isinstance(req, ops.MultiRead):
        # the watch flag inside multiRead is ignored by the server; zkwarden sends false
        return {"ops": [(op.OPCODE, {"path": op.path, "watch": False}) for op in req.ops]}
    raise AssertionError(f"no expectation for {t.__name__}")


def test_every_request_type_has_a_strategy() -> None:
    names = set(ops.__all__) - {"OpCode", "Request", "WatchKind"}
    assert names == set(REQUESTS)


@pytest.mark.parametrize("name", sorted(REQUESTS))
@FAST
@given(data=st.data())
def test_request_roundtrip_through_spec_decoder(name: str, data: st.DataObject) -> None:
    req = data.draw(REQUESTS[name])
    body = req.body()
    assert decode_request(req.OPCODE, body) == expected_fields(req)
    # and as a whole frame: length prefix, RequestHeader, the same body
    m = connected(10000, max_send=1 << 30)
    frame = m.submit(req, name, 0.0)
    assert split_frames(frame) == [(1, req.OPCODE, body)]  # the first xid of a session


# --- records with both write and read ---------------------------------------------------

STATS = st.builds(Stat, I64, I64, I64, I64, I32, I32, I32, I64, I32, I32, I64)


@FAST
@given(st.builds(ConnectRequest, I32, I64, I32, I64, st.binary(max_size=32), st.booleans()))
def test_connect_request_roundtrip(req: ConnectRequest) -> None:
    raw = req.encode()
    assert ConnectRequest.read(Reader(raw)) == req
    s = SpecReader(raw)  # section 2.1, independently
    fields = (s.int(), s.long(), s.int(), s.long(), s.buffer(), s.bool())
    assert s.at_end()
    assert fields == (
        req.protocol_version, req.last_zxid_seen, req.timeout_ms, req.session_id,
        req.password, req.read_only,
    )  # fmt: skip


@FAST
@given(st.builds(ConnectResponse, I32, I32, I64, st.binary(max_size=32), st.booleans()))
def test_connect_response_roundtrip(resp: ConnectResponse) -> None:
    raw = resp.encode()
    assert ConnectResponse.read(Reader(raw)) == resp
    s = SpecReader(raw)  # section 2.2
    fields = (s.int(), s.int(), s.long(), s.buffer(), s.bool())
    assert s.at_end()
    assert fields == (
        resp.protocol_version, resp.timeout_ms, resp.session_id, resp.password, resp.read_only
    )
    # without the trailing readOnly byte (a client that did not send one)
    short = ConnectResponse.read(Reader(raw[:-1]))
    assert short.read_only is False
    assert short.session_id == resp.session_id


@FAST
@given(st.builds(MultiHeader, I32, st.booleans(), I32))
def test_multi_header_roundtrip(header: MultiHeader) -> None:
    w = Writer()
    header.write(w)
    raw = w.getvalue()
    assert len(raw) == 9
    assert MultiHeader.read(Reader(raw)) == header
    s = SpecReader(raw)
    assert (s.int(), s.bool(), s.int()) == (header.type, header.done, header.err)


@FAST
@given(st.builds(WatcherEvent, I32, I32, TEXT))
def test_watcher_event_roundtrip(event: WatcherEvent) -> None:
    w = Writer()
    event.write(w)
    raw = w.getvalue()
    assert read_watcher_event(Reader(raw)) == event
    s = SpecReader(raw)
    assert (s.int(), s.int(), s.ustring()) == (event.type, event.state, event.path)
    assert s.at_end()


@FAST
@given(STATS)
def test_stat_roundtrip(stat: Stat) -> None:
    w = Writer()
    write_stat(w, stat)
    raw = w.getvalue()
    assert len(raw) == 68
    assert read_stat(Reader(raw)) == stat
    s = SpecReader(raw)
    fields = (
        s.long(), s.long(), s.long(), s.long(), s.int(), s.int(), s.int(), s.long(), s.int(),
        s.int(), s.long(),
    )  # fmt: skip
    assert fields == (
        stat.czxid, stat.mzxid, stat.ctime, stat.mtime, stat.version, stat.cversion,
        stat.aversion, stat.ephemeral_owner, stat.data_length, stat.num_children, stat.pzxid,
    )  # fmt: skip


@FAST
@given(st.builds(ACL, I32, st.builds(Id, TEXT, TEXT)))
def test_acl_roundtrip(acl: ACL) -> None:
    w = Writer()
    write_acl(w, acl)
    raw = w.getvalue()
    assert read_acl(Reader(raw)) == acl
    assert SpecReader(raw).acl() == (acl.perms, acl.id.scheme, acl.id.id)


@FAST
@given(
    I32, I64, st.booleans(), DATA, st.none() | TEXT, st.none() | st.lists(TEXT, max_size=5)
)
def test_jute_primitives_roundtrip(
    i: int, q: int, b: bool, buf: bytes | None, s: str | None, v: list[str] | None
) -> None:
    w = Writer()
    w.int(i)
    w.long(q)
    w.bool(b)
    w.buffer(buf)
    w.ustring(s)
    w.ustrings(v)
    r = Reader(w.getvalue())
    assert r.int() == i
    assert r.long() == q
    assert r.bool() is b
    assert r.buffer() == buf
    assert r.ustring() == s
    assert r.ustrings() == (v or [])
    assert r.remaining() == 0
    spec = SpecReader(w.getvalue())
    assert (spec.int(), spec.long(), spec.bool(), spec.buffer(), spec.ustring()) == (
        i, q, b, buf, s,
    )  # fmt: skip
    assert spec.vector(spec.ustring) == v
