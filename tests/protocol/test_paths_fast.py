"""paths.validate's plain-ASCII fast path accepts only paths the full check accepts, and
validate's verdict on any path is the full check's, whatever the path's alphabet."""

from __future__ import annotations

import random

import pytest

from zkwarden import paths
from zkwarden.errors import InvalidPathError

# Every character class the full check treats differently, plus the separators.
_ALPHABET = ["/", "/", ".", "a", "Z", "-", " ", "~", "\x7f", "\x1f", "\x00", "é", "\x80",
             "\x9f", "\xa0", "\ud800", "\uf8ff", "\uf900", "\ufff0", "\uffff", "😀"]


def _verdict(path: str, sequential: bool) -> bool:
    try:
        paths.validate(path, sequential=sequential)
    except InvalidPathError:
        return False
    return True


@pytest.mark.parametrize("seed", range(4))
def test_validate_agrees_with_the_full_check(seed: int) -> None:
    rnd = random.Random(seed)
    fast = 0
    for _ in range(20_000):
        path = "".join(rnd.choice(_ALPHABET) for _ in range(rnd.randrange(9)))
        full_ok = {seq: paths._check(path, seq) is None for seq in (False, True)}
        if paths._PLAIN(path) is not None:
            fast += 1
            assert full_ok == {False: True, True: True}, path
        for seq in (False, True):
            assert _verdict(path, seq) == full_ok[seq], (path, seq)
    assert fast > 20  # the fast path was exercised


@pytest.mark.parametrize("path", [
    "/services/bench-svc/0f8fad5b-d9cb-469f-a165-70867728950e", "/a", "/a b/c~d", "/a../b.",
    "/x-0000000001",
])
def test_plain_paths_take_the_fast_path(path: str) -> None:
    assert paths._PLAIN(path) is not None
    assert paths.validate(path) == path


@pytest.mark.parametrize("path", [
    "/", "//", "/a//b", "/a/", "/.", "/..", "/a/./b", "/a/../b", "/.hidden", "a", "",
    "/a\x7f", "/a\x00", "/é", "/a/b/",
])
def test_other_paths_take_the_full_check(path: str) -> None:
    assert paths._PLAIN(path) is None


@pytest.mark.parametrize("path", ["//", "/a//b", "/a/", "/.", "/a/..", "/a\x7f", "a", "/\ud800"])
def test_invalid_paths_still_raise(path: str) -> None:
    with pytest.raises(InvalidPathError):
        paths.validate(path)
