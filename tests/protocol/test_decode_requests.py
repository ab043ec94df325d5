"""Golden bytes for the request decoders: the inverse of the encoders in ``ops``.

Every case of ``test_golden_requests.GOLDEN`` (hand-written bytes, one per request class
and variant) is decoded and must give back the request that encodes it; the records that
``ops`` does not encode (sasl, reconfig, the ConnectRequest read direction) have their own
hand-written bytes here. Malformed bodies raise ProtocolError only (hypothesis).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zkwarden.errors import ProtocolError
from zkwarden.protocol import ops
from zkwarden.protocol.decode_requests import (
    OPCODE_NAMES,
    REQUEST_OPCODES,
    Reconfig,
    Sasl,
    decode_connect_request,
    decode_request,
    opcode_name,
)
from zkwarden.protocol.jute import Reader
from zkwarden.protocol.records import ConnectRequest

from ._golden import PATH_A, STAT, STAT_HEX
from ._wire import hx
from .test_golden_requests import GOLDEN, _id


def _fields(value: Any) -> Any:
    """A comparable form of a request: sequences as tuples, nested requests recursively."""
    if isinstance(value, ops.Request) and dataclasses.is_dataclass(value):
        return (type(value).__name__,) + tuple(
            _fields(getattr(value, f.name)) for f in dataclasses.fields(value)
        )
    if isinstance(value, (list, tuple)):
        return tuple(_fields(v) for v in value)
    return value


def _expected(request: ops.Request) -> Any:
    # multiRead never sends a watch flag (the server ignores it): decoding gives watch=False.
    if isinstance(request, ops.MultiRead):
        request = ops.MultiRead([dataclasses.replace(op, watch=False) for op in request.ops])
    return _fields(request)


@pytest.mark.parametrize("request_, opcode, body_hex", GOLDEN, ids=[_id(c) for c in GOLDEN])
def test_decode_every_golden_request(request_: ops.Request, opcode: int, body_hex: str) -> None:
    body = hx(body_hex)
    decoded = decode_request(opcode, body)
    assert type(decoded) is type(request_)
    assert _fields(decoded) == _expected(request_)
    # and back: the decoded request encodes to the very same bytes
    assert decoded.body() == body


def test_every_client_opcode_decodes() -> None:
    covered = {opcode for _, opcode, _ in GOLDEN} | {Sasl.OPCODE, Reconfig.OPCODE}
    assert covered == set(REQUEST_OPCODES)


SASL_CASES = [
    (Sasl(b""), "00000000"),  # DIGEST-MD5's first step: an empty token
    (Sasl(None), "ffffffff"),  # a null token
    (Sasl(b"rsp"), "00000003 727370"),  # token "rsp"
]


@pytest.mark.parametrize("request_, body_hex", SASL_CASES)
def test_sasl_golden(request_: Sasl, body_hex: str) -> None:
    assert request_.OPCODE == 102
    assert request_.body() == hx(body_hex)
    assert decode_request(102, hx(body_hex)) == request_


def test_sasl_response_reads_the_token() -> None:
    assert Sasl(b"").read_response(Reader(hx("00000002 6869"))) == b"hi"
    assert Sasl(b"").read_response(Reader(hx("ffffffff"))) is None


def test_reconfig_golden() -> None:
    request = Reconfig("server.4=h:1:2;3", None, None, 0x100000000)
    body = hx(
        "00000010 7365727665722e343d683a313a323b33"  # joiningServers "server.4=h:1:2;3"
        " ffffffff"  # leavingServers: null
        " ffffffff"  # newMembers: null
        " 0000000100000000"  # curConfigId
    )
    assert request.OPCODE == 16
    assert request.body() == body
    assert decode_request(16, body) == request
    # the reply is a GetDataResponse: the new config, then the Stat
    assert request.read_response(Reader(hx("00000001 78 " + STAT_HEX))) == (b"x", STAT)


CONNECT_HEX = (
    "00000000"  # protocolVersion
    " 0000000000000097"  # lastZxidSeen
    " 00000fa0"  # timeOut 4000
    " 0100000434530000"  # sessionId
    " 00000010 0102030405060708090a0b0c0d0e0f10"  # passwd, 16 bytes
)


def test_connect_request_decodes_with_and_without_the_read_only_byte() -> None:
    with_byte = decode_connect_request(hx(CONNECT_HEX + " 01"))
    assert with_byte == ConnectRequest(0, 0x97, 4000, 0x0100000434530000,
                                       bytes(range(1, 17)), True)
    assert with_byte.encode() == hx(CONNECT_HEX + " 01")
    without = decode_connect_request(hx(CONNECT_HEX))
    assert without.read_only is False and without.session_id == 0x0100000434530000


def test_connect_request_rejects_trailing_bytes() -> None:
    with pytest.raises(ProtocolError, match="trailing"):
        decode_connect_request(hx(CONNECT_HEX + " 00 00"))


@pytest.mark.parametrize(
    ("opcode", "body_hex", "message"),
    [
        (10, "", "no client request has opcode 10"),
        (0, "", "no client request has opcode 0"),
        (4, PATH_A, "truncated"),  # the watch byte is missing
        (4, PATH_A + " 00 00", "trailing"),
        (14, "00000004 00 ffffffff " + PATH_A + " 00 ffffffff 01 ffffffff",
         "getData cannot be part of multi"),
        (22, "00000002 00 ffffffff " + PATH_A + " ffffffff ffffffff 01 ffffffff",
         "delete cannot be part of multiRead"),
    ],
)
def test_malformed_bodies_raise_protocol_error(opcode: int, body_hex: str, message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        decode_request(opcode, hx(body_hex))


def test_opcode_names_are_zookeepers() -> None:
    assert opcode_name(12) == "getChildren2"
    assert opcode_name(101) == "setWatches"
    assert opcode_name(-11) == "closeSession"
    assert opcode_name(42) == "op42"
    assert all(opcode_name(op) == OPCODE_NAMES[op] for op in REQUEST_OPCODES)


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(sorted(REQUEST_OPCODES | {0, 10, 20, -10})), st.binary(max_size=64))
def test_any_body_decodes_or_raises_protocol_error(opcode: int, body: bytes) -> None:
    try:
        decoded = decode_request(opcode, body)
    except ProtocolError:
        return
    # what decodes re-encodes to as many bytes (the decoders consume exactly the body; a
    # null vector or a non-canonical boolean byte re-encodes to the same size). Non-ASCII
    # bodies may hold lone surrogates, which the encoders cannot write back.
    if body.isascii():
        assert len(decoded.body()) == len(body)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=60))
def test_any_connect_request_decodes_or_raises_protocol_error(payload: bytes) -> None:
    try:
        decode_connect_request(payload)
    except ProtocolError:
        pass
