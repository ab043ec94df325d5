"""Reader.ustrings' ASCII fast path (split at NUL triples) decodes exactly what the checked
per-item loop decodes, and raises where it raises, on well-formed and hostile vectors."""

from __future__ import annotations

import random
import struct

import pytest

from zkwarden.errors import ProtocolError
from zkwarden.protocol import jute


def _decode(buf: bytes | bytearray | memoryview) -> tuple[list[str], int] | str:
    try:
        r = jute.Reader(buf)
        return r.ustrings(), r.offset
    except ProtocolError:
        return "error"


def _vector(names: list[str], trail: bytes = b"") -> bytes:
    enc = [n.encode("utf-8", "surrogatepass") for n in names]
    return struct.pack(">i", len(enc)) + b"".join(struct.pack(">i", len(e)) + e for e in enc) + trail


@pytest.mark.parametrize("width", ["uniform", "varied"])
def test_well_formed_children_take_the_fast_path_and_stop_at_the_vector_end(width: str) -> None:
    names = [f"child-{i:05d}" if width == "uniform" else f"child-{i}" for i in range(10_000)]
    stat = bytes(range(200, 256)) + b"\0" * 24  # what follows in a getChildren2 reply
    buf = _vector(names, stat)
    assert jute._ascii_ustrings(buf, 4, len(buf), len(names)) is not None
    assert _decode(memoryview(buf)) == (names, len(buf) - len(stat))


@pytest.mark.parametrize("seed", range(4))
def test_fast_path_agrees_with_the_checked_loop(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    rnd = random.Random(seed)
    odd = ["a", "\0", "é", "\x7f", "/", "😀", "\udc80"]
    for _ in range(1500):
        n = rnd.choice([32, 33, 57])
        names = []
        uniform = rnd.random() < 0.5  # every name equally long: the one-split path
        width = rnd.choice([1, 11, 36, 127, 128, 255])
        alphabet = "ab\0" if rnd.random() < 0.1 else "ab1"
        for _ in range(n):
            if uniform and rnd.random() < 0.98:
                names.append("".join(rnd.choice(alphabet) for _ in range(width)))
                continue
            k = rnd.choice([0, 1, 127, 128, 255, 256, 300]) if rnd.random() < 0.1 else (
                rnd.randint(1, 20))
            pool = odd if rnd.random() < 0.05 else ["a", "b", "1"]
            names.append("".join(rnd.choice(pool) for _ in range(k)))
        buf = _vector(names, bytes(rnd.randrange(256) for _ in range(rnd.choice([0, 3, 80]))))
        if rnd.random() < 0.15:  # one corrupted byte
            b = bytearray(buf)
            b[rnd.randrange(len(b))] = rnd.randrange(256)
            buf = bytes(b)
        if rnd.random() < 0.1:  # truncated
            buf = buf[: rnd.randrange(len(buf))]
        fast = _decode(buf)
        with monkeypatch.context() as m:
            m.setattr(jute, "_FAST_MIN", 1 << 30)
            slow = _decode(buf)
        assert fast == slow
