"""Blocking transactions: the AsyncClient's Transaction, committed on the loop thread."""

from __future__ import annotations

from collections.abc import Coroutine, Sequence
from types import TracebackType
from typing import Any, Protocol, TypeVar

from .._aio.transaction import Transaction as _AsyncTransaction
from ..types import ACL

__all__ = ("Transaction",)

T = TypeVar("T")


class _Caller(Protocol):
    """What a Transaction needs of its client (the blocking Client): run a coroutine on
    the client's loop as an operation. Described here so this module need not import the
    client, which imports it."""

    def _call(self, coro: Coroutine[Any, Any, T], timeout: float | None, what: str) -> T: ...


class Transaction:
    """Operations committed atomically with one multi request.

    ``with zk.transaction() as t: t.create(...); t.set(...)`` commits when the block exits
    without an exception; ``t.commit()`` commits explicitly. Results, in order: created
    path for create, Stat for set, True for delete and check.
    """

    def __init__(self, client: _Caller, inner: _AsyncTransaction) -> None:
        self._client = client
        # Building the operations is pure (validation and encoding): it runs in the
        # caller's thread; only commit() goes to the loop.
        self._inner = inner

    @property
    def committed(self) -> bool:
        """True once commit() was called (successfully or not)."""
        return self._inner.committed

    @property
    def results(self) -> list[Any] | None:
        """The per-operation results after commit (also set when it failed)."""
        return self._inner.results

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
        """Add a create.

        Raises:
            InvalidPathError, InvalidArgumentError (at once, nothing is sent).
        """
        self._inner.create(path, data, ephemeral=ephemeral, sequence=sequence,
                           container=container, ttl=ttl, acl=acl)
        return self

    def set(self, path: str, data: bytes, version: int = -1) -> Transaction:
        """Add a setData.

        Raises:
            InvalidPathError, InvalidArgumentError (at once, nothing is sent).
        """
        self._inner.set(path, data, version)
        return self

    def delete(self, path: str, version: int = -1) -> Transaction:
        """Add a delete.

        Raises:
            InvalidPathError (at once, nothing is sent).
        """
        self._inner.delete(path, version)
        return self

    def check(self, path: str, version: int) -> Transaction:
        """Add a version check: the transaction fails unless the node has ``version``.

        Raises:
            InvalidPathError (at once, nothing is sent).
        """
        self._inner.check(path, version)
        return self

    def commit(self, *, timeout: float | None = None) -> list[Any]:
        """Send the transaction; return the per-operation results.

        Raises:
            TransactionError: nothing was applied; ``results`` per op, ``failed_index``.
            InvalidArgumentError: already committed.
            RequestTimeoutError: no answer within ``timeout`` seconds (outcome unknown).
            ConnectionLossError, SessionExpiredError, ClientClosedError,
            ForkedClientError.
        """
        return self._client._call(self._inner.commit(), timeout, "commit")

    def __enter__(self) -> Transaction:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None and not self.committed:
            self.commit()
