"""Transactions (multi): collect operations, commit atomically, report per-op results."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from .. import paths as _paths
from ..errors import (
    ClientClosedError,
    InvalidArgumentError,
    RuntimeInconsistencyError,
    TransactionError,
    ZooKeeperError,
)
from ..protocol import ops
from ..types import ACL


class TransactionOwner(Protocol):
    """What a transaction needs of its client (AsyncClient has it)."""

    @property
    def closed(self) -> bool: ...

    @property
    def chroot(self) -> str: ...

    def _server_path(self, path: str, *, sequential: bool = False) -> str: ...

    def _check_data(self, data: object) -> bytes: ...

    def _create_request(
        self, path: str, data: bytes, *, ephemeral: bool, sequence: bool, container: bool,
        ttl: float | None, acl: Sequence[ACL] | None, include_stat: bool = False,
    ) -> ops.Request: ...

    async def _multi(self, requests: Sequence[ops.Request], first_path: str) -> list[Any]: ...

__all__ = ("Transaction",)


class Transaction:
    """Operations committed atomically with one multi request.

    Results, in order: created path for create, Stat for set, True for delete and check.
    """

    def __init__(self, client: TransactionOwner) -> None:
        self._client = client
        self._requests: list[ops.Request] = []
        self._paths: list[str] = []
        self.committed = False
        self.results: list[Any] | None = None

    def _add(self, request: ops.Request, path: str) -> Transaction:
        if self.committed:
            raise InvalidArgumentError("transaction already committed")
        self._requests.append(request)
        self._paths.append(path)
        return self

    def create(
        self,
        path: str,
        data: bytes = b"",
        *,
        ephemeral: bool = False,
        sequence: bool = False,
        container: bool = False,
        ttl: float | None = None,
        acl: Sequence[ACL] | None = None,
    ) -> Transaction:
        """Add a create. Raises InvalidPathError / InvalidArgumentError at once."""
        request = self._client._create_request(
            path, data, ephemeral=ephemeral, sequence=sequence, container=container, ttl=ttl,
            acl=acl,
        )
        return self._add(request, path)

    def set(self, path: str, data: bytes, version: int = -1) -> Transaction:
        """Add a setData. Raises InvalidPathError / InvalidArgumentError at once."""
        data = self._client._check_data(data)
        return self._add(ops.SetData(self._client._server_path(path), data, version), path)

    def delete(self, path: str, version: int = -1) -> Transaction:
        """Add a delete. Raises InvalidPathError at once."""
        return self._add(ops.Delete(self._client._server_path(path), version), path)

    def check(self, path: str, version: int) -> Transaction:
        """Add a version check: the transaction fails unless the node has ``version``."""
        return self._add(ops.CheckVersion(self._client._server_path(path), version), path)

    async def commit(self) -> list[Any]:
        """Send the transaction; return the per-operation results.

        Raises:
            TransactionError: nothing was applied; ``results`` per op, ``failed_index``.
            ConnectionLossError, SessionExpiredError, ClientClosedError.
        """
        if self.committed:
            raise InvalidArgumentError("transaction already committed")
        self.committed = True
        if self._client.closed:
            raise ClientClosedError("client is closed")
        raw = await self._client._multi(self._requests, self._paths[0] if self._paths else "/")
        chroot = self._client.chroot
        results: list[Any] = []
        failed = -1
        for i, item in enumerate(raw):
            if isinstance(item, ZooKeeperError):
                if hasattr(item, "path") and item.path is None:
                    item.path = self._paths[i] if i < len(self._paths) else None
                if failed < 0 and not isinstance(item, RuntimeInconsistencyError):
                    failed = i
                results.append(item)
            elif isinstance(item, str):
                results.append(_paths.strip_chroot(chroot, item))
            else:
                results.append(item)
        self.results = results
        if failed >= 0:
            raise TransactionError(results, failed)
        return results

    async def __aenter__(self) -> Transaction:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, *rest: object) -> None:
        if exc_type is None and not self.committed:
            await self.commit()
