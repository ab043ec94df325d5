"""Client options and process facts shared by the async and blocking clients."""

from __future__ import annotations

import os
from collections.abc import Sequence

from ..errors import ConfigurationError

__all__ = ("forked_since", "auth_bytes")

_forked = False


def _after_fork_in_child() -> None:
    global _forked
    _forked = True


os.register_at_fork(after_in_child=_after_fork_in_child)


def forked_since(pid: int) -> bool:
    """True in a child process forked after ``pid`` created a client (the flag saves a
    getpid() per call in the common, unforked case)."""
    return _forked and pid != os.getpid()


def auth_bytes(auth: Sequence[tuple[str, str | bytes]] | None) -> list[tuple[str, bytes]]:
    """Normalize ``[(scheme, credentials)]``.

    Raises:
        ConfigurationError: an entry is not a (str, str | bytes) pair.
    """
    result: list[tuple[str, bytes]] = []
    for item in auth or ():
        if not (isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str)
                and isinstance(item[1], (str, bytes, bytearray))):
            raise ConfigurationError("auth entries are (scheme, credentials) pairs of str/bytes")
        scheme, cred = item
        result.append((scheme, cred.encode() if isinstance(cred, str) else bytes(cred)))
    return result
