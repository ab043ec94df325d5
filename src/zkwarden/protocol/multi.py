"""Reading the results of multi (14) and multiRead (22) replies.

A reply is a sequence of ``MultiHeader{int type, boolean done, int err}`` each followed by
the result record of its *returned* type, ended by a header with ``done`` set. multiRead
replies of thousands of getData results (``ServiceDiscovery.instances()``) are the hot
case: :func:`read_multi_results` decodes those inline (one header unpack, the buffer, the
Stat) with every bounds check kept, and hands every other result type to the general
per-type reader.
"""

from __future__ import annotations

import struct
from typing import Any

from ..errors import ProtocolError, error_for_code
from .jute import Reader
from .records import STAT_SIZE, make_stat, read_stat

__all__ = ("read_multi_results",)

# The wire op codes of the result types: the values of ops.OpCode, spelled out because
# ops imports this module (tests/protocol/test_multi_reader.py checks they agree).
_ERROR = -1
_CREATE = 1
_DELETE = 2
_GET_DATA = 4
_SET_DATA = 5
_GET_CHILDREN = 8
_CHECK = 13
_CREATE2 = 15
_CREATE_CONTAINER = 19
_CREATE_TTL = 21

_HEADER = struct.Struct(">ibi")  # MultiHeader: type, done, err
_HEADER_SIZE = _HEADER.size  # 9
_INT = struct.Struct(">i")
_STAT = struct.Struct(">qqqqiiiqiiq")


def read_multi_results(r: Reader) -> list[Any]:
    """Decode results by the *returned* MultiHeader.type (3.8.0 answers create2 as create).

    Per op: the result's value, ``None`` (an error result with code 0: an op before the
    one that failed a transaction), or the error as an exception instance.

    Raises:
        ProtocolError: truncated record, negative length, unknown result type.
    """
    data, end = r.data, r.end
    pos = r.offset
    results: list[Any] = []
    append = results.append
    unpack_header = _HEADER.unpack_from
    unpack_int = _INT.unpack_from
    unpack_stat = _STAT.unpack_from
    while True:
        if pos + _HEADER_SIZE > end:
            raise r._truncated(_HEADER_SIZE, pos)
        op_type, done, _ = unpack_header(data, pos)
        pos += _HEADER_SIZE
        if done:
            r.offset = pos
            return results
        if op_type != _GET_DATA:
            r.offset = pos
            append(_read_result(op_type, r))
            pos = r.offset
            continue
        # getData: buffer data, Stat stat (the body of Reader.buffer and read_stat inline:
        # a third of the cost of a result was the calls).
        if pos + 4 > end:
            raise r._truncated(4, pos)
        (length,) = unpack_int(data, pos)
        pos += 4
        if length >= 0:
            stop = pos + length
            if stop > end:
                raise r._truncated(length, pos)
            value = bytes(data[pos:stop])
            pos = stop
        elif length == -1:  # null data
            value = b""
        else:
            raise ProtocolError(f"negative buffer length {length}")
        if pos + STAT_SIZE > end:
            raise r._truncated(STAT_SIZE, pos)
        append((value, make_stat(unpack_stat(data, pos))))
        pos += STAT_SIZE


def _read_result(op_type: int, r: Reader) -> Any:
    """One result of any type but getData, read from ``r`` (the general path)."""
    if op_type == _ERROR:
        err = r.int()
        return error_for_code(err) if err else None
    if op_type == _CREATE:
        return r.string()
    if op_type in (_CREATE2, _CREATE_CONTAINER, _CREATE_TTL):
        path = r.string()
        read_stat(r)
        return path
    if op_type in (_DELETE, _CHECK):
        return True
    if op_type == _SET_DATA:
        return read_stat(r)
    if op_type == _GET_DATA:
        data = r.buffer()
        return (data or b""), read_stat(r)
    if op_type == _GET_CHILDREN:
        return r.ustrings()
    raise ProtocolError(f"unknown result type {op_type} in multi response")
