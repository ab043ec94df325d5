"""Operations made of several requests: ensure_path, recursive delete, pipelined reads."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from .. import paths as _paths
from ..errors import (
    ClientClosedError,
    ConnectionLossError,
    NodeExistsError,
    NoNodeError,
    NotEmptyError,
    SessionExpiredError,
    ZooKeeperError,
)
from ..protocol import ops
from ..types import ACL, Stat
from .engine import SessionEngine

__all__ = ("ensure_path", "delete_recursive", "read_many")


async def ensure_path(engine: SessionEngine, path: str, acl: tuple[ACL, ...]) -> None:
    """Create ``path`` (validated) and its missing parents, persistent and empty.

    Raises:
        NoAuthError, ConnectionLossError, SessionExpiredError, ClientClosedError.
    """
    current = ""
    for part in path.strip("/").split("/"):
        current = f"{current}/{part}"
        try:
            await engine.call(ops.Create(_paths.add_chroot(engine.chroot, current), b"", acl, 0),
                              current)
        except NodeExistsError:
            pass


async def delete_recursive(engine: SessionEngine, path: str, version: int) -> None:
    """Delete ``path`` (validated) and its subtree; no error if absent. A child created
    meanwhile is deleted too.

    Raises:
        BadVersionError, NoAuthError, ConnectionLossError, SessionExpiredError,
        ClientClosedError.
    """
    server_path = _paths.add_chroot(engine.chroot, path)
    while True:
        try:
            children: list[str] = await engine.call(ops.GetChildren(server_path), path)
        except NoNodeError:
            return
        if children:
            await asyncio.gather(*(
                delete_recursive(engine, _paths.join(path, c), -1) for c in children
            ))
        try:
            await engine.call(ops.Delete(server_path, version), path)
            return
        except NoNodeError:
            return
        except NotEmptyError:
            continue  # a child was created meanwhile: delete again


async def read_many(
    engine: SessionEngine, paths: Sequence[str], server_paths: Sequence[str]
) -> list[tuple[bytes, Stat] | ZooKeeperError]:
    """GetData for every path in one pipelined round: per path the result or its error
    (errors of the connection or session are raised instead).

    Raises:
        ConnectionLossError, SessionExpiredError, ClientClosedError.
    """
    futures = [engine.call(ops.GetData(sp), p) for sp, p in zip(server_paths, paths, strict=True)]
    results: list[Any] = await asyncio.gather(*futures, return_exceptions=True)
    out: list[tuple[bytes, Stat] | ZooKeeperError] = []
    for item in results:
        if not isinstance(item, BaseException):
            out.append(item)
        elif isinstance(item, ZooKeeperError) and not isinstance(
            item, (ConnectionLossError, SessionExpiredError, ClientClosedError)
        ):
            out.append(item)
        else:
            raise item
    return out
