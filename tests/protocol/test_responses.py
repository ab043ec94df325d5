"""Decoding hand-made server bytes: response records, multi results, ConnectResponse, CESU-8."""

from __future__ import annotations

import struct
from typing import Any

import pytest

from zkwarden import errors
from zkwarden.protocol import ops
from zkwarden.protocol.jute import Reader, decode_string
from zkwarden.protocol.records import (
    ClientInfo,
    ConnectResponse,
    MultiHeader,
    read_acl,
    read_reply_header,
    read_stat,
    read_watcher_event,
)
from zkwarden.types import ACL, OPEN_ACL_UNSAFE, Id

from ._golden import MULTI_END, PATH_A, PATH_B, STAT, STAT_HEX
from ._wire import hx

OPEN_ACL_ENTRY = "0000001f 00000005 776f726c64 00000006 616e796f6e65"  # ALL world:anyone


def _decode(request: ops.Request, body_hex: str) -> Any:
    r = Reader(hx(body_hex))
    result = request.read_response(r)
    assert r.remaining() == 0, "the response record must be consumed exactly"
    return result


# --- records --------------------------------------------------------------------------


def test_stat_68_bytes() -> None:
    raw = hx(STAT_HEX)
    assert len(raw) == 68
    r = Reader(raw)
    assert read_stat(r) == STAT
    assert r.remaining() == 0


def test_stat_negative_ephemeral_owner() -> None:
    # A session id whose high byte is >= 0x80 is negative as a signed long.
    raw = hx(STAT_HEX.replace("0100000434530000", "ff00000000000001"))
    stat = read_stat(Reader(raw))
    assert stat.ephemeral_owner == 0xFF00000000000001 - (1 << 64)


def test_stat_truncated_is_protocol_error() -> None:
    with pytest.raises(errors.ProtocolError):
        read_stat(Reader(hx(STAT_HEX)[:67]))


def test_reply_header() -> None:
    # xid 7, zxid 0x100000005, err -101
    h = read_reply_header(Reader(hx("00000007 0000000100000005 ffffff9b")))
    assert (h.xid, h.zxid, h.err) == (7, 0x100000005, -101)


def test_watcher_event() -> None:
    # type NodeChildrenChanged (4), state SyncConnected (3), path "/a/b"
    ev = read_watcher_event(Reader(hx("00000004 00000003 00000004 2f612f62")))
    assert (ev.type, ev.state, ev.path) == (4, 3, "/a/b")


def test_acl_record() -> None:
    acl = read_acl(Reader(hx(OPEN_ACL_ENTRY)))
    assert acl == OPEN_ACL_UNSAFE[0]


def test_multi_header_record() -> None:
    h = MultiHeader.read(Reader(hx("0000000f 00 00000000")))
    assert (h.type, h.done, h.err) == (15, False, 0)
    h = MultiHeader.read(Reader(hx(MULTI_END)))
    assert (h.type, h.done, h.err) == (-1, True, -1)


# --- ConnectResponse ------------------------------------------------------------------

CONNECT_RESPONSE_36 = (
    "00000000"  # protocolVersion
    " 00007530"  # timeOut 30000
    " 0100000434530000"  # sessionId
    " 00000010 00112233445566778899aabbccddeeff"  # passwd
)


def test_connect_response_with_read_only_byte() -> None:
    raw = hx(CONNECT_RESPONSE_36 + " 01")
    assert len(raw) == 37
    resp = ConnectResponse.read(Reader(raw))
    assert resp == ConnectResponse(
        0, 30000, 0x0100000434530000, hx("00112233445566778899aabbccddeeff"), True
    )


def test_connect_response_without_read_only_byte() -> None:
    raw = hx(CONNECT_RESPONSE_36)
    assert len(raw) == 36
    resp = ConnectResponse.read(Reader(raw))
    assert resp.timeout_ms == 30000
    assert resp.session_id == 0x0100000434530000
    assert resp.read_only is False


def test_connect_response_expired_means_timeout_zero() -> None:
    from zkwarden.protocol.session import HandshakeOutcome, SessionMachine

    # timeOut 0, sessionId 0, 16 zero bytes, readOnly false: the session is gone.
    raw = hx("00000000 00000000 0000000000000000 00000010" + " 00" * 16 + " 00")
    resp = ConnectResponse.read(Reader(raw))
    assert resp.timeout_ms == 0
    m: SessionMachine[object] = SessionMachine(requested_timeout=10.0)
    m.connect_request(0.0)
    outcome = m.handshake(raw, 0.0)
    assert outcome is HandshakeOutcome.EXPIRED
    assert outcome.usable is False
    assert m.session_id == 0


# --- per-operation responses ------------------------------------------------------------

RESPONSES: list[tuple[str, ops.Request, str, Any]] = [
    ("create", ops.Create("/a", b"", OPEN_ACL_UNSAFE, 2), "0000000f 2f612f732d 30303030303030303031",
     ("/a/s-0000000001", None)),
    ("create2", ops.Create2("/a", b"", OPEN_ACL_UNSAFE, 0), PATH_A + " " + STAT_HEX,
     ("/a", STAT)),
    ("createContainer", ops.CreateContainer("/a", b"", OPEN_ACL_UNSAFE, 4),
     PATH_A + " " + STAT_HEX, ("/a", STAT)),
    ("createTTL", ops.CreateTTL("/a", b"", OPEN_ACL_UNSAFE, 5, 1000), PATH_A + " " + STAT_HEX,
     ("/a", STAT)),
    ("exists", ops.Exists("/a"), STAT_HEX, STAT),
    ("getData", ops.GetData("/a"), "00000003 616263 " + STAT_HEX, (b"abc", STAT)),
    ("getData-empty", ops.GetData("/a"), "00000000 " + STAT_HEX, (b"", STAT)),
    ("getData-null", ops.GetData("/a"), "ffffffff " + STAT_HEX, (b"", STAT)),
    ("setData", ops.SetData("/a", b"x"), STAT_HEX, STAT),
    ("getACL", ops.GetACL("/a"),
     "00000002 " + OPEN_ACL_ENTRY
     + " 00000003 00000006 646967657374 00000003 753a68"  # READ|WRITE digest:u:h
     + " " + STAT_HEX,
     ([OPEN_ACL_UNSAFE[0], ACL(3, Id("digest", "u:h"))], STAT)),
    ("setACL", ops.SetACL("/a", OPEN_ACL_UNSAFE), STAT_HEX, STAT),
    ("getChildren", ops.GetChildren("/a"), "00000002 00000001 61 00000002 6263", ["a", "bc"]),
    ("getChildren-leaf", ops.GetChildren("/a"), "00000000", []),
    ("getChildren2", ops.GetChildren2("/a"), "00000001 00000001 78 " + STAT_HEX, (["x"], STAT)),
    ("sync", ops.Sync("/a"), PATH_A, "/a"),
    ("getEphemerals", ops.GetEphemerals("/"), "00000002 " + PATH_A + " " + PATH_B,
     ["/a", "/b"]),
    ("getAllChildrenNumber", ops.GetAllChildrenNumber("/"), "0000002a", 42),
    ("addWatch", ops.AddWatch("/a", 1), "00000000", None),  # ErrorResponse{err=0}
    ("whoAmI", ops.WhoAmI(),
     "00000002"  # vector count
     " 00000006 646967657374 00000004 75736572"  # ("digest", "user")
     " 00000002 6970 00000009 3132372e302e302e31",  # ("ip", "127.0.0.1")
     [ClientInfo("digest", "user"), ClientInfo("ip", "127.0.0.1")]),
    ("whoAmI-empty", ops.WhoAmI(), "00000000", []),
    ("delete", ops.Delete("/a"), "", None),
    ("checkWatches", ops.CheckWatches("/a", 3), "", None),
    ("removeWatches", ops.RemoveWatches("/a", 3), "", None),
    ("closeSession", ops.CloseSession(), "", None),
]  # fmt: skip


@pytest.mark.parametrize(
    "request_, body, expected", [c[1:] for c in RESPONSES], ids=[c[0] for c in RESPONSES]
)
def test_response_decoding(request_: ops.Request, body: str, expected: Any) -> None:
    assert _decode(request_, body) == expected


def test_add_watch_consumes_its_four_byte_body_in_a_frame() -> None:
    from zkwarden.protocol.session import SessionMachine
    from zkwarden.protocol.watches import WatchRegistry

    m: SessionMachine[str] = SessionMachine(requested_timeout=6.0)
    m.connect_request(0.0)
    m.handshake(hx("00000000 00001770 0000000000000001 00000010" + " 00" * 16), 0.0)
    m.prime([], WatchRegistry(), 0.0)
    req = ops.AddWatch("/a", 0)
    xid = struct.unpack_from(">i", m.submit(req, "w", 0.0), 4)[0]
    reply = m.receive(hx(f"{xid:08x} 0000000000000010 00000000 00000000"), 0.1)
    assert reply.token == "w" and reply.err == 0  # type: ignore[union-attr]


# --- multi ------------------------------------------------------------------------------


def _multi() -> ops.Multi:
    return ops.Multi([ops.Create("/a", b"", OPEN_ACL_UNSAFE, 0)])


def test_multi_success_all_result_types() -> None:
    body = (
        "00000001 00 00000000 " + PATH_A  # create → CreateResponse
        + " 0000000f 00 00000000 " + PATH_B + " " + STAT_HEX  # create2 → Create2Response
        + " 00000005 00 00000000 " + STAT_HEX  # setData → SetDataResponse
        + " 00000002 00 00000000"  # delete → nothing
        + " 0000000d 00 00000000"  # check → nothing
        + " " + MULTI_END
    )
    results = _decode(_multi(), body)
    assert len(results) == 5
    assert results[0] == "/a"
    assert results[1] == "/b"
    assert results[2] == STAT
    assert results[3] is True
    assert results[4] is True


def test_multi_create_container_and_ttl_results_are_create2_type() -> None:
    body = (
        "00000013 00 00000000 " + PATH_A + " " + STAT_HEX  # createContainer → path + Stat
        + " 00000015 00 00000000 " + PATH_B + " " + STAT_HEX  # createTTL → path + Stat
        + " " + MULTI_END
    )
    assert _decode(_multi(), body) == ["/a", "/b"]


def test_multi_empty() -> None:
    assert _decode(ops.Multi([]), MULTI_END) == []


def test_failed_multi() -> None:
    # Outer err is 0; results [(-1, 0), (-1, -103), (-1, -2)], each with ErrorResponse{err}.
    body = (
        "ffffffff 00 00000000 00000000"  # error type, err 0, ErrorResponse{0}
        " ffffffff 00 ffffff99 ffffff99"  # error type, err -103, ErrorResponse{-103}
        " ffffffff 00 fffffffe fffffffe"  # error type, err -2, ErrorResponse{-2}
        " " + MULTI_END
    )
    results = _decode(_multi(), body)
    assert len(results) == 3
    assert results[0] is None
    assert isinstance(results[1], errors.BadVersionError)
    assert results[1].code == -103
    assert isinstance(results[2], errors.RuntimeInconsistencyError)
    assert results[2].code == -2
    assert [ops.is_error(x) for x in results] == [False, True, True]


def test_multi_read_with_per_op_error() -> None:
    req = ops.MultiRead([ops.GetData("/a"), ops.GetData("/missing"), ops.GetChildren("/b")])
    body = (
        "00000004 00 00000000 00000002 6869 " + STAT_HEX  # getData → ("hi", Stat)
        + " ffffffff 00 ffffff9b ffffff9b"  # error -101 (NoNode) for the missing node
        + " 00000008 00 00000000 00000002 00000001 63 00000001 64"  # children ["c", "d"]
        + " " + MULTI_END
    )
    results = _decode(req, body)
    assert results[0] == (b"hi", STAT)
    assert isinstance(results[1], errors.NoNodeError)
    assert results[2] == ["c", "d"]


def test_multi_read_null_data() -> None:
    req = ops.MultiRead([ops.GetData("/a")])
    body = "00000004 00 00000000 ffffffff " + STAT_HEX + " " + MULTI_END
    assert _decode(req, body) == [(b"", STAT)]


def test_create2_in_multi_answered_as_create_type_380_quirk() -> None:
    # 3.8.0/3.8.1 answer a create2 inside multi with type 1 and the path only (no Stat).
    req = ops.Multi([ops.Create2("/a", b"", OPEN_ACL_UNSAFE, 0), ops.SetData("/b", b"")])
    body = (
        "00000001 00 00000000 " + PATH_A  # type create: CreateResponse only
        + " 00000005 00 00000000 " + STAT_HEX
        + " " + MULTI_END
    )
    assert _decode(req, body) == ["/a", STAT]


def test_multi_unknown_result_type_is_protocol_error() -> None:
    with pytest.raises(errors.ProtocolError):
        _decode(_multi(), "00000063 00 00000000 " + MULTI_END)


def test_multi_truncated_is_protocol_error() -> None:
    with pytest.raises(errors.ProtocolError):
        _decode(_multi(), "00000001 00 00000000 " + PATH_A)  # no terminator


# --- CESU-8 -----------------------------------------------------------------------------

CESU8_X_GRIN_Y = "78 eda0bd edb880 79"  # "x😀y" as Java writes it: x, surrogate pair, y


def test_cesu8_decode_string() -> None:
    assert decode_string(hx(CESU8_X_GRIN_Y)) == "x\U0001f600y"


def test_cesu8_reader_ustring() -> None:
    r = Reader(hx("00000008 " + CESU8_X_GRIN_Y))
    assert r.ustring() == "x\U0001f600y"
    assert r.remaining() == 0


def test_cesu8_in_acl_id_from_get_acl() -> None:
    body = "00000001 0000001f 00000006 646967657374 00000008 " + CESU8_X_GRIN_Y + " " + STAT_HEX
    acl, stat = _decode(ops.GetACL("/a"), body)
    assert acl == [ACL(31, Id("digest", "x\U0001f600y"))]
    assert stat == STAT


def test_plain_utf8_still_decodes() -> None:
    assert decode_string("x\U0001f600y é".encode()) == "x\U0001f600y é"


@pytest.mark.parametrize(
    "raw",
    [
        "eda0bd",  # a lone high surrogate
        "edb880",  # a lone low surrogate
        "ff",  # never valid in UTF-8
        "c3",  # truncated sequence
    ],
)
def test_undecodable_string_is_protocol_error(raw: str) -> None:
    with pytest.raises(errors.ProtocolError):
        decode_string(hx(raw))

