"""Golden bytes for every request body and the records the client writes.

Every expected byte string is written by hand from the layouts in
reference/zk_protocol.md sections 1-5 (one comment per field), never produced by the
encoder under test.
"""

from __future__ import annotations

import struct

import pytest

from zkwarden.protocol import ops
from zkwarden.protocol.jute import Writer
from zkwarden.protocol.ops import OpCode
from zkwarden.protocol.records import (
    ConnectRequest,
    ConnectResponse,
    MultiHeader,
    WatcherEvent,
    request_header,
    write_acl,
    write_stat,
)
from zkwarden.protocol.session import SessionMachine
from zkwarden.protocol.watches import WatchRegistry
from zkwarden.types import ACL, OPEN_ACL_UNSAFE, Id

from ._golden import MULTI_END, OPEN_ACL, PATH_A, PATH_B, STAT, STAT_HEX
from ._wire import hx

# (request, opcode, expected body hex)
GOLDEN: list[tuple[ops.Request, int, str]] = [
    (
        ops.Create("/a", b"\x01\x02\x03", OPEN_ACL_UNSAFE, 1),
        1,
        PATH_A  # CreateRequest.path
        + " 00000003 010203"  # data: buffer of 3 bytes
        + " " + OPEN_ACL  # acl
        + " 00000001",  # flags: EPHEMERAL
    ),
    (
        ops.Create2("/a", None, OPEN_ACL_UNSAFE, 3),
        15,
        PATH_A
        + " ffffffff"  # data: null buffer (length -1, no bytes)
        + " " + OPEN_ACL
        + " 00000003",  # flags: EPHEMERAL_SEQUENTIAL
    ),
    (
        ops.CreateContainer("/c", b"", OPEN_ACL_UNSAFE, 4),
        19,
        "00000002 2f63"  # path "/c"
        " 00000000"  # data: empty buffer (length 0)
        " " + OPEN_ACL
        + " 00000004",  # flags: CONTAINER
    ),
    (
        ops.CreateTTL("/t", b"x", OPEN_ACL_UNSAFE, 5, 60000),
        21,
        "00000002 2f74"  # path "/t"
        " 00000001 78"  # data "x"
        " " + OPEN_ACL
        + " 00000005"  # flags: PERSISTENT_WITH_TTL
        " 000000000000ea60",  # ttl: long 60000
    ),
    (ops.Delete("/a", 7), 2, PATH_A + " 00000007"),  # path, version 7
    (ops.Delete("/a"), 2, PATH_A + " ffffffff"),  # path, version -1 (any)
    (ops.Exists("/a", watch=True), 3, PATH_A + " 01"),  # path, watch=true
    (ops.Exists("/a"), 3, PATH_A + " 00"),  # path, watch=false
    (ops.GetData("/a", watch=True), 4, PATH_A + " 01"),
    (ops.GetData("/a"), 4, PATH_A + " 00"),
    (
        ops.SetData("/a", b"hi", 3),
        5,
        PATH_A + " 00000002 6869"  # data "hi"
        " 00000003",  # version 3
    ),
    (ops.SetData("/a", None), 5, PATH_A + " ffffffff ffffffff"),  # null data, version -1
    (ops.GetACL("/a"), 6, PATH_A),  # path only
    (
        ops.SetACL("/a", [ACL(3, Id("digest", "u:h"))], 2),
        7,
        PATH_A
        + " 00000001"  # acl vector count 1
        " 00000003"  # perms READ|WRITE
        " 00000006 646967657374"  # scheme "digest"
        " 00000003 753a68"  # id "u:h"
        " 00000002",  # version (aversion) 2
    ),
    (ops.GetChildren("/a", watch=True), 8, PATH_A + " 01"),
    (ops.GetChildren2("/a"), 12, PATH_A + " 00"),
    (ops.Sync("/a"), 9, PATH_A),
    (ops.Ping(), 11, ""),  # no body
    (ops.CheckVersion("/a", 5), 13, PATH_A + " 00000005"),  # path, version
    (
        ops.Multi(
            [
                ops.Create("/a", b"", OPEN_ACL_UNSAFE, 0),
                ops.CheckVersion("/a", 5),
                ops.SetData("/a", b"x"),
                ops.Delete("/a", 0),
            ]
        ),
        14,
        "00000001 00 ffffffff"  # MultiHeader{type=create, done=false, err=-1}
        " " + PATH_A + " 00000000 " + OPEN_ACL + " 00000000"  # CreateRequest, flags 0
        + " 0000000d 00 ffffffff"  # MultiHeader{type=check(13)}
        " " + PATH_A + " 00000005"  # CheckVersionRequest: path, version 5
        " 00000005 00 ffffffff"  # MultiHeader{type=setData(5)}
        " " + PATH_A + " 00000001 78 ffffffff"  # SetDataRequest: path, "x", version -1
        " 00000002 00 ffffffff"  # MultiHeader{type=delete(2)}
        " " + PATH_A + " 00000000"  # DeleteRequest: path, version 0
        " " + MULTI_END,
    ),
    (
        ops.Multi(
            [
                ops.Create2("/b", None, OPEN_ACL_UNSAFE, 2),
                ops.CreateContainer("/a", b"", OPEN_ACL_UNSAFE, 4),
                ops.CreateTTL("/a", b"", OPEN_ACL_UNSAFE, 6, 1000),
            ]
        ),
        14,
        "0000000f 00 ffffffff"  # MultiHeader{type=create2(15)}
        " " + PATH_B + " ffffffff " + OPEN_ACL + " 00000002"  # null data, flags 2
        + " 00000013 00 ffffffff"  # MultiHeader{type=createContainer(19)}
        " " + PATH_A + " 00000000 " + OPEN_ACL + " 00000004"
        + " 00000015 00 ffffffff"  # MultiHeader{type=createTTL(21)}
        " " + PATH_A + " 00000000 " + OPEN_ACL + " 00000006"  # flags 6
        " 00000000000003e8"  # ttl 1000
        " " + MULTI_END,
    ),
    (ops.Multi([]), 14, MULTI_END),  # an empty multi is only the terminator
    (
        ops.MultiRead([ops.GetData("/a", watch=True), ops.GetChildren("/b")]),
        22,
        "00000004 00 ffffffff"  # MultiHeader{type=getData(4)}
        " " + PATH_A + " 00"  # GetDataRequest: path, watch=false (ignored by the server)
        " 00000008 00 ffffffff"  # MultiHeader{type=getChildren(8)}
        " " + PATH_B + " 00"  # GetChildrenRequest
        " " + MULTI_END,
    ),
    (ops.CheckWatches("/a", 2), 17, PATH_A + " 00000002"),  # path, WatcherType Data
    (ops.RemoveWatches("/a", 3), 18, PATH_A + " 00000003"),  # path, WatcherType Any
    (
        ops.Auth("digest", b"user:pw"),
        100,
        "00000000"  # AuthPacket.type 0
        " 00000006 646967657374"  # scheme "digest"
        " 00000007 757365723a7077",  # auth buffer "user:pw"
    ),
    (
        ops.SetWatches(0x1234, ["/d"], ["/e"], ["/c"]),
        101,
        "0000000000001234"  # relativeZxid
        " 00000001 00000002 2f64"  # dataWatches ["/d"]
        " 00000001 00000002 2f65"  # existWatches ["/e"]
        " 00000001 00000002 2f63",  # childWatches ["/c"]
    ),
    (
        ops.SetWatches(5, [], [], []),
        101,
        "0000000000000005 00000000 00000000 00000000",  # empty vectors are count 0, not -1
    ),
    (
        ops.SetWatches2(0x100000002, ["/d"], [], ["/c"], ["/p"], ["/r"]),
        105,
        "0000000100000002"  # relativeZxid
        " 00000001 00000002 2f64"  # dataWatches
        " 00000000"  # existWatches (empty)
        " 00000001 00000002 2f63"  # childWatches
        " 00000001 00000002 2f70"  # persistentWatches ["/p"]
        " 00000001 00000002 2f72",  # persistentRecursiveWatches ["/r"]
    ),
    (ops.GetEphemerals("/"), 103, "00000001 2f"),  # prefixPath "/"
    (ops.GetAllChildrenNumber("/a"), 104, PATH_A),
    (ops.AddWatch("/a", 0), 106, PATH_A + " 00000000"),  # mode PERSISTENT
    (ops.AddWatch("/a", 1), 106, PATH_A + " 00000001"),  # mode PERSISTENT_RECURSIVE
    (ops.WhoAmI(), 107, ""),
    (ops.CloseSession(), -11, ""),
]


def _id(case: tuple[ops.Request, int, str]) -> str:
    return f"{type(case[0]).__name__}-{case[1]}"


@pytest.mark.parametrize("request_, opcode, expected", GOLDEN, ids=[_id(c) for c in GOLDEN])
def test_request_body_golden(request_: ops.Request, opcode: int, expected: str) -> None:
    assert request_.OPCODE == opcode
    assert request_.body() == hx(expected)


def test_every_request_class_has_a_golden_case() -> None:
    covered = {type(case[0]) for case in GOLDEN}
    expected = {getattr(ops, name) for name in ops.__all__} - {ops.OpCode, ops.Request, ops.WatchKind}
    assert expected <= covered


def test_opcode_table_matches_the_reference() -> None:
    # Section 4 of the reference.
    table = {
        "CREATE": 1, "DELETE": 2, "EXISTS": 3, "GET_DATA": 4, "SET_DATA": 5, "GET_ACL": 6,
        "SET_ACL": 7, "GET_CHILDREN": 8, "SYNC": 9, "PING": 11, "GET_CHILDREN2": 12,
        "CHECK": 13, "MULTI": 14, "CREATE2": 15, "RECONFIG": 16, "CHECK_WATCHES": 17,
        "REMOVE_WATCHES": 18, "CREATE_CONTAINER": 19, "CREATE_TTL": 21, "MULTI_READ": 22,
        "AUTH": 100, "SET_WATCHES": 101, "SASL": 102, "GET_EPHEMERALS": 103,
        "GET_ALL_CHILDREN_NUMBER": 104, "SET_WATCHES2": 105, "ADD_WATCH": 106,
        "WHO_AM_I": 107, "CLOSE_SESSION": -11, "ERROR": -1,
    }  # fmt: skip
    assert {op.name: op.value for op in OpCode} == table


def test_multi_rejects_read_ops_and_multi_read_rejects_writes() -> None:
    from zkwarden.errors import ProtocolError

    with pytest.raises(ProtocolError):
        ops.Multi([ops.GetData("/a")]).body()
    with pytest.raises(ProtocolError):
        ops.MultiRead([ops.Delete("/a")]).body()


# --- records --------------------------------------------------------------------------


def _written(fn: object, *args: object) -> bytes:
    w = Writer()
    fn(w, *args)  # type: ignore[operator]
    return w.getvalue()


def test_request_header_golden() -> None:
    assert request_header(5, 4) == hx("00000005 00000004")  # xid 5, type getData
    assert request_header(-2, 11) == hx("fffffffe 0000000b")  # ping


def test_multi_header_golden() -> None:
    w = Writer()
    MultiHeader(1, False, -1).write(w)
    MultiHeader(-1, True, -1).write(w)
    assert w.getvalue() == hx("00000001 00 ffffffff" + " " + MULTI_END)


def test_watcher_event_golden() -> None:
    w = Writer()
    WatcherEvent(3, 3, "/a").write(w)
    # type NodeDataChanged, state SyncConnected, path "/a"
    assert w.getvalue() == hx("00000003 00000003 " + PATH_A)


def test_acl_golden() -> None:
    assert _written(write_acl, OPEN_ACL_UNSAFE[0]) == hx(OPEN_ACL)[4:]  # without count


def test_stat_golden() -> None:
    raw = _written(write_stat, STAT)
    assert len(raw) == 68
    assert raw == hx(STAT_HEX)


def test_connect_request_record_golden() -> None:
    req = ConnectRequest(0, 0x97, 4000, 0x0100000434530000, bytes(range(1, 17)), True)
    assert req.encode() == hx(
        "00000000"  # protocolVersion
        " 0000000000000097"  # lastZxidSeen
        " 00000fa0"  # timeOut 4000
        " 0100000434530000"  # sessionId
        " 00000010 0102030405060708090a0b0c0d0e0f10"  # passwd, 16 bytes
        " 01"  # readOnly
    )


def test_connect_response_record_golden() -> None:
    resp = ConnectResponse(0, 30000, 0x0100000434530000, b"\xaa" * 16, False)
    raw = resp.encode()
    assert len(raw) == 37
    assert raw == hx(
        "00000000"  # protocolVersion
        " 00007530"  # timeOut 30000
        " 0100000434530000"  # sessionId
        " 00000010" + " aa" * 16  # passwd
        + " 00"  # readOnly
    )


# --- whole frames through SessionMachine ---------------------------------------------

SESSION_ID_HEX = "0100000434530000"
PASSWORD = bytes(range(1, 17))
PASSWORD_HEX = "0102030405060708090a0b0c0d0e0f10"


def _connect_response(timeout_ms: int = 6000, read_only: bool = False) -> bytes:
    return hx(
        f"00000000 {timeout_ms:08x} {SESSION_ID_HEX} 00000010 {PASSWORD_HEX}"
        f" {'01' if read_only else '00'}"
    )


def test_connect_request_frame_new_session() -> None:
    m: SessionMachine[object] = SessionMachine(requested_timeout=10.0)
    frame = m.connect_request(now=0.0)
    assert len(frame) == 49
    assert frame == hx(
        "0000002d"  # frame length 45 (no RequestHeader)
        " 00000000"  # protocolVersion 0
        " 0000000000000000"  # lastZxidSeen 0
        " 00002710"  # timeOut 10000 ms
        " 0000000000000000"  # sessionId 0: new session
        " 00000010" + " 00" * 16  # passwd: 16 zero bytes
        + " 00"  # readOnly false
    )


def test_connect_request_frame_resume() -> None:
    m: SessionMachine[object] = SessionMachine(requested_timeout=10.0, read_only_allowed=True)
    m.connect_request(now=0.0)
    m.handshake(_connect_response(), now=0.0)
    m.prime([], WatchRegistry(), now=0.0)
    frame = m.submit(ops.Sync("/a"), "tok", now=0.0)
    xid = struct.unpack_from(">i", frame, 4)[0]
    # ReplyHeader{xid, zxid=0x97, err=0} + SyncResponse "/a"
    m.receive(hx(f"{xid:08x} 0000000000000097 00000000 " + PATH_A), now=0.1)
    m.connection_lost()
    frame = m.connect_request(now=1.0)
    assert frame == hx(
        "0000002d"  # length 45
        " 00000000"  # protocolVersion
        " 0000000000000097"  # lastZxidSeen from the reply
        " 00002710"  # the requested timeout again
        f" {SESSION_ID_HEX}"  # the session to resume
        f" 00000010 {PASSWORD_HEX}"  # its password
        " 01"  # readOnly allowed
    )


def test_get_data_frame_via_submit() -> None:
    m: SessionMachine[object] = SessionMachine(requested_timeout=6.0)
    m.connect_request(now=0.0)
    m.handshake(_connect_response(), now=0.0)
    m.prime([], WatchRegistry(), now=0.0)
    frame = m.submit(ops.GetData("/a", watch=True), "a", now=0.0)
    assert frame == hx(
        "0000000f"  # frame length 15 = 8 header + 7 body
        " 00000001"  # RequestHeader.xid 1
        " 00000004"  # RequestHeader.type getData
        " " + PATH_A  # GetDataRequest.path
        + " 01"  # watch
    )
    frame2 = m.submit(ops.GetData("/b"), "b", now=0.0)
    assert frame2 == hx("0000000f 00000002 00000004 " + PATH_B + " 00")


def test_ping_frame() -> None:
    m: SessionMachine[object] = SessionMachine(requested_timeout=6.0)
    m.connect_request(now=0.0)
    m.handshake(_connect_response(6000), now=0.0)
    ping = m.on_timer(now=2.0)  # 1/3 of 6 s idle
    # length 8, xid -2, opcode 11, no body
    assert ping == hx("00000008 fffffffe 0000000b")


def test_close_session_frame() -> None:
    m: SessionMachine[str] = SessionMachine(requested_timeout=6.0)
    m.connect_request(now=0.0)
    m.handshake(_connect_response(), now=0.0)
    frame = m.close_session_frame("bye", now=1.0)
    assert frame == hx("00000008 00000001 fffffff5")  # length 8, xid 1, opcode -11
    assert m.pending_count == 1


def test_prime_auth_frame() -> None:
    m: SessionMachine[object] = SessionMachine(requested_timeout=6.0)
    m.connect_request(now=0.0)
    m.handshake(_connect_response(), now=0.0)
    out = m.prime([("digest", b"user:pw")], WatchRegistry(), now=0.0)
    assert out == hx(
        "00000021"  # length 33 = 8 + 4 + 10 + 11
        " fffffffc"  # xid -4
        " 00000064"  # opcode 100 (auth)
        " 00000000"  # AuthPacket.type
        " 00000006 646967657374"  # scheme "digest"
        " 00000007 757365723a7077"  # auth "user:pw"
    )
