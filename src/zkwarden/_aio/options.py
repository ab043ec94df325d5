"""Client options and process facts shared by the async and blocking clients."""

from __future__ import annotations

import os
from collections.abc import Sequence

from ..errors import ConfigurationError

__all__ = ("forked_since", "auth_bytes", "check_engine_options")

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


def check_engine_options(
    *, session_timeout: float, connect_timeout: float | None, request_timeout: float | None,
    max_queued_events: int,
) -> None:
    """Check the client's timing and queue options.

    Raises:
        ConfigurationError: a timeout that is not a positive number of seconds (or does not
            fit the wire), a queue bound that is not a positive int.
    """
    for name, value in (("session_timeout", session_timeout),
                        ("connect_timeout", connect_timeout),
                        ("request_timeout", request_timeout)):
        if value is not None and not (isinstance(value, (int, float)) and value > 0
                                      and value < 1e9):
            raise ConfigurationError(f"{name} must be > 0 seconds, got {value!r}")
    # The wire carries the session timeout as int32 milliseconds: above that the connect
    # request cannot be encoded, and the client would only ever fail to connect.
    if session_timeout * 1000 > 2**31 - 1:
        raise ConfigurationError(
            f"session_timeout must be at most {(2**31 - 1) / 1000} seconds "
            f"(int32 milliseconds on the wire), got {session_timeout!r}"
        )
    if not (isinstance(max_queued_events, int) and max_queued_events > 0):
        raise ConfigurationError(f"max_queued_events must be > 0, got {max_queued_events!r}")
