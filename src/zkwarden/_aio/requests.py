"""Requests whose options need checking before they are built (shared by the client's
operations and transactions), and what receives a request's outcome."""

from __future__ import annotations

from typing import Any, Protocol

from ..errors import InvalidArgumentError
from ..protocol import ops
from ..types import ACL, CreateMode

__all__ = ("create_request", "ReplySink")


class ReplySink(Protocol):
    """What receives a request's outcome: an ``asyncio.Future``, or the blocking facade's
    call, answered synchronously on the loop thread (no future callback, no task)."""

    def done(self) -> bool: ...

    def set_result(self, result: Any, /) -> None: ...

    def set_exception(self, exception: BaseException, /) -> None: ...


def create_request(
    server_path: str,
    data: bytes,
    *,
    ephemeral: bool,
    sequence: bool,
    container: bool,
    ttl: float | None,
    acl: tuple[ACL, ...],
    include_stat: bool = False,
) -> ops.Request:
    """The request for a create with its options checked (``server_path`` validated).

    Raises:
        InvalidArgumentError: options that do not go together, a bad ttl, an empty acl.
    """
    if container and (ephemeral or sequence or ttl is not None):
        raise InvalidArgumentError("container nodes cannot be ephemeral, sequential or TTL")
    if ttl is not None:
        if ephemeral:
            raise InvalidArgumentError("TTL nodes cannot be ephemeral")
        if not ttl > 0:
            raise InvalidArgumentError(f"ttl must be > 0 seconds, got {ttl!r}")
    if not acl:
        raise InvalidArgumentError("acl must not be empty")
    mode = CreateMode.from_options(
        ephemeral=ephemeral, sequence=sequence, container=container, ttl=ttl is not None
    )
    if ttl is not None:
        return ops.CreateTTL(server_path, data, acl, mode, max(1, int(ttl * 1000)))
    if container:
        return ops.CreateContainer(server_path, data, acl, mode)
    if include_stat:
        return ops.Create2(server_path, data, acl, mode)
    return ops.Create(server_path, data, acl, mode)
