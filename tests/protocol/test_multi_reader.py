"""protocol.multi.read_multi_results (getData results decoded inline) returns exactly what
the plain record-by-record reader returns, and raises ProtocolError where it raises, on
well-formed replies, on every truncation, and on hostile lengths."""

from __future__ import annotations

import random
import struct
from typing import Any

import pytest

from zkwarden.errors import ProtocolError, ZooKeeperError, error_for_code
from zkwarden.protocol import multi, ops
from zkwarden.protocol.jute import Reader
from zkwarden.protocol.records import MultiHeader, read_stat

_STAT = struct.Struct(">qqqqiiiqiiq")


def _reference(r: Reader) -> list[Any]:
    """The reader before the inline path: MultiHeader.read, then one Reader call per field."""
    out: list[Any] = []
    while True:
        header = MultiHeader.read(r)
        if header.done:
            return out
        t = header.type
        if t == -1:
            err = r.int()
            out.append(error_for_code(err) if err else None)
        elif t == 1:
            out.append(r.string())
        elif t in (15, 19, 21):
            path = r.string()
            read_stat(r)
            out.append(path)
        elif t in (2, 13):
            out.append(True)
        elif t == 5:
            out.append(read_stat(r))
        elif t == 4:
            data = r.buffer()
            out.append((data or b"", read_stat(r)))
        elif t == 8:
            out.append(r.ustrings())
        else:
            raise ProtocolError(f"unknown result type {t}")


def _comparable(results: list[Any]) -> list[Any]:
    return [(type(x), x.code) if isinstance(x, ZooKeeperError) else x for x in results]


def _outcome(read: Any, buf: bytes | memoryview) -> tuple[str, Any]:
    r = Reader(buf, 0)
    try:
        results = read(r)
    except ProtocolError:
        return ("error", None)
    return ("ok", (_comparable(results), r.offset))


def _string(s: bytes) -> bytes:
    return struct.pack(">i", len(s)) + s


def _random_reply(rnd: random.Random, n: int) -> bytes:
    parts: list[bytes] = []
    for _ in range(n):
        stat = _STAT.pack(*(rnd.randrange(-(2**31), 2**31) for _ in range(11)))
        kind = rnd.choice(["data", "data", "data", "null", "error", "ok", "children",
                           "create", "create2", "delete", "set"])
        if kind == "data":
            body = _string(rnd.randbytes(rnd.choice([0, 1, 17, 300]))) + stat
            parts.append(struct.pack(">ibi", 4, 0, 0) + body)
        elif kind == "null":
            parts.append(struct.pack(">ibii", 4, 0, 0, -1) + stat)
        elif kind == "error":
            code = rnd.choice([-101, -102, -2, -103])
            parts.append(struct.pack(">ibii", -1, 0, code, code))
        elif kind == "ok":
            parts.append(struct.pack(">ibii", -1, 0, 0, 0))
        elif kind == "children":
            names = [f"c{i}".encode() for i in range(rnd.randrange(4))]
            parts.append(struct.pack(">ibii", 8, 0, 0, len(names))
                         + b"".join(_string(x) for x in names))
        elif kind == "create":
            parts.append(struct.pack(">ibi", 1, 0, 0) + _string(b"/a/b"))
        elif kind == "create2":
            parts.append(struct.pack(">ibi", 15, 0, 0) + _string(b"/a/b") + stat)
        elif kind == "delete":
            parts.append(struct.pack(">ibi", 2, 0, 0))
        else:
            parts.append(struct.pack(">ibi", 5, 0, 0) + stat)
    return b"".join(parts) + struct.pack(">ibi", -1, 1, -1)


def test_opcodes_agree_with_ops() -> None:
    assert (multi._ERROR, multi._CREATE, multi._DELETE, multi._GET_DATA, multi._SET_DATA,
            multi._GET_CHILDREN, multi._CHECK, multi._CREATE2, multi._CREATE_CONTAINER,
            multi._CREATE_TTL) == (
        ops.OpCode.ERROR, ops.OpCode.CREATE, ops.OpCode.DELETE, ops.OpCode.GET_DATA,
        ops.OpCode.SET_DATA, ops.OpCode.GET_CHILDREN, ops.OpCode.CHECK, ops.OpCode.CREATE2,
        ops.OpCode.CREATE_CONTAINER, ops.OpCode.CREATE_TTL)


@pytest.mark.parametrize("seed", range(6))
def test_agrees_with_the_reference_reader(seed: int) -> None:
    rnd = random.Random(seed)
    reply = _random_reply(rnd, rnd.randrange(1, 40)) + b"trailing"
    expected = _outcome(_reference, reply)
    assert expected[0] == "ok"
    assert _outcome(multi.read_multi_results, reply) == expected
    assert _outcome(multi.read_multi_results, memoryview(bytearray(reply))) == expected
    # Both requests that answer with multi results read through it.
    assert _comparable(ops.MultiRead([]).read_response(Reader(reply))) == expected[1][0]


@pytest.mark.parametrize("seed", range(3))
def test_every_truncation_is_a_protocol_error(seed: int) -> None:
    reply = _random_reply(random.Random(seed), 12)
    for cut in range(len(reply)):
        assert _outcome(multi.read_multi_results, reply[:cut]) == ("error", None), cut
        assert _outcome(_reference, reply[:cut]) == ("error", None), cut


@pytest.mark.parametrize("length", [-2, -(2**31), 2**31 - 1, 69])
def test_hostile_data_length_is_a_protocol_error(length: int) -> None:
    reply = struct.pack(">ibii", 4, 0, 0, length) + bytes(68) + struct.pack(">ibi", -1, 1, -1)
    assert _outcome(multi.read_multi_results, reply) == ("error", None)
    assert _outcome(_reference, reply) == ("error", None)


def test_getdata_results_of_ten_thousand_instances() -> None:
    stats = [_STAT.pack(i, i + 1, 3, 4, 5, 6, 7, 0, 300, 0, i) for i in range(10_000)]
    datas = [b'{"id": %d}' % i + b" " * (i % 50) for i in range(10_000)]
    reply = b"".join(struct.pack(">ibi", 4, 0, 0) + _string(d) + s
                     for d, s in zip(datas, stats, strict=True))
    reply += struct.pack(">ibi", -1, 1, -1)
    results = multi.read_multi_results(Reader(memoryview(reply)))
    assert [d for d, _ in results] == datas
    assert all(type(d) is bytes for d, _ in results)
    assert [s.pzxid for _, s in results] == list(range(10_000))
    assert results == _reference(Reader(reply))
