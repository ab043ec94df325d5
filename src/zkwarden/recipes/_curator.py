"""Curator 5.x's wire facts for recipes: protected names, child ordering, value encodings.

Facts, not code (see ``shared/reference/recipes_anchors.md``): Curator names a protected
node ``_c_<uuid4>-<name>``, sorts a recipe's children by the text after the LAST
occurrence of the recipe's marker (a child without the marker sorts by its whole name,
stable), and stores counters big-endian.
"""

from __future__ import annotations

import struct
import uuid

from ..errors import InvalidArgumentError

__all__ = (
    "PROTECTED_PREFIX",
    "LOCK_MARKER",
    "READ_MARKER",
    "WRITE_MARKER",
    "LEASE_MARKER",
    "LATCH_MARKER",
    "REVOKE",
    "new_protected_id",
    "protected_name",
    "protected_id_of",
    "sort_key",
    "sorted_children",
    "encode_int32",
    "decode_int32",
    "encode_int64",
    "decode_int64",
)

PROTECTED_PREFIX = "_c_"
LOCK_MARKER = "lock-"
READ_MARKER = "__READ__"
WRITE_MARKER = "__WRIT__"
LEASE_MARKER = "lease-"
LATCH_MARKER = "latch-"
#: Curator's revocation request: setData(node, b"__REVOKE__") on a lock node
REVOKE = b"__REVOKE__"

_UUID_LEN = 36
_INT32 = struct.Struct(">i")
_INT64 = struct.Struct(">q")


def new_protected_id() -> str:
    """A fresh uuid4 in Java's ``UUID.toString()`` form (36 lowercase characters)."""
    return str(uuid.uuid4())


def protected_name(protected_id: str, name: str) -> str:
    """``_c_<uuid>-<name>`` (the server appends the sequence number)."""
    return f"{PROTECTED_PREFIX}{protected_id}-{name}"


def protected_id_of(child: str) -> str | None:
    """The uuid of a protected child name, or None when it is not one (as Curator's
    ``isProtectedZNode``: longer than 40, ``_c_`` prefix, ``-`` at index 39, a uuid)."""
    if len(child) <= 40 or not child.startswith(PROTECTED_PREFIX) or child[39] != "-":
        return None
    candidate = child[3:39]
    try:
        uuid.UUID(candidate)
    except ValueError:
        return None
    return candidate


def sort_key(child: str, marker: str) -> str:
    """Curator's ``standardFixForSorting``: the text after the last ``marker``, or the whole
    name when the marker is absent."""
    index = child.rfind(marker)
    if index < 0:
        return child
    return child[index + len(marker):]


def sorted_children(children: list[str], marker: str) -> list[str]:
    """The children in Curator's order (a stable sort by :func:`sort_key`; nothing is
    filtered out, so both languages agree on who is first even with stray nodes)."""
    return sorted(children, key=lambda c: sort_key(c, marker))


def encode_int32(value: int) -> bytes:
    """SharedCount's value: 4 bytes, big-endian, signed.

    Raises:
        InvalidArgumentError: out of the int32 range.
    """
    try:
        return _INT32.pack(value)
    except struct.error:
        raise InvalidArgumentError(f"{value!r} does not fit in a signed 32-bit int") from None


def decode_int32(data: bytes) -> int:
    """Raises:
    InvalidArgumentError: not 4 bytes (empty data reads as 0, as Curator's does not)."""
    if not data:
        return 0
    if len(data) != 4:
        raise InvalidArgumentError(f"a 32-bit count is 4 bytes, got {len(data)}")
    value: int = _INT32.unpack(data)[0]
    return value


def encode_int64(value: int) -> bytes:
    """DistributedAtomicLong's value: 8 bytes, big-endian, signed.

    Raises:
        InvalidArgumentError: out of the int64 range.
    """
    try:
        return _INT64.pack(value)
    except struct.error:
        raise InvalidArgumentError(f"{value!r} does not fit in a signed 64-bit int") from None


def decode_int64(data: bytes) -> int:
    """Raises:
    InvalidArgumentError: not 8 bytes (empty or missing data is 0, as in Curator)."""
    if not data:
        return 0
    if len(data) != 8:
        raise InvalidArgumentError(f"a 64-bit counter is 8 bytes, got {len(data)}")
    value: int = _INT64.unpack(data)[0]
    return value
