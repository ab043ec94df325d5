"""The records built without their dataclass __init__ (make_stat, MultiHeader) are exactly
the records the generated __init__ builds, and MultiHeader still writes jute's bytes."""

from __future__ import annotations

import dataclasses
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zkwarden.protocol.jute import Reader, Writer
from zkwarden.protocol.records import MultiHeader, make_stat
from zkwarden.types import Stat

_longs = st.integers(min_value=-(2**63), max_value=2**63 - 1)
_ints = st.integers(min_value=-(2**31), max_value=2**31 - 1)
_stat_tuples = st.tuples(_longs, _longs, _longs, _longs, _ints, _ints, _ints, _longs, _ints,
                         _ints, _longs)


@given(_stat_tuples)
def test_make_stat_is_the_stat_of_its_values(values: tuple[int, ...]) -> None:
    built = make_stat(values)
    expected = Stat(*values)
    assert type(built) is Stat
    assert built == expected and hash(built) == hash(expected)
    # Every field set, in wire order.
    assert tuple(getattr(built, f.name) for f in dataclasses.fields(Stat)) == values


@given(_ints, st.booleans(), _ints)
def test_multi_header_is_built_and_written_as_before(op: int, done: bool, err: int) -> None:
    header = MultiHeader(op, done, err)
    assert (header.type, header.done, header.err) == (op, done, err)
    assert header == MultiHeader(type=op, done=done, err=err)
    assert repr(header) == f"MultiHeader(type={op!r}, done={done!r}, err={err!r})"
    with pytest.raises(dataclasses.FrozenInstanceError):
        header.type = 0  # type: ignore[misc]
    w = Writer()
    header.write(w)
    assert bytes(w.buf) == struct.pack(">iBi", op, 1 if done else 0, err)
    assert MultiHeader.read(Reader(bytes(w.buf))) == header
