"""Lock: Curator's ``InterProcessMutex`` on the wire, with leases that know when they end.

Layout (the same bytes as Curator 5.x, so Java and Python contend on one path):
``<path>/_c_<uuid4>-lock-<seq10>``, EPHEMERAL_SEQUENTIAL, data = the identifier as UTF-8
(``b""`` without one), missing parents created as containers. The holder is the first
child in Curator's order (the text after the last ``lock-``; a stray child sorts by its
whole name); each waiter watches only its immediate predecessor.

Compared with Curator's mutex:

* not re-entrant: a task acquiring a lock it holds gets :class:`LockReentryError`
  instead of a silent count (or kazoo's deadlock);
* a lease says when it ends (``lease.lost``) and when it is in doubt (``lease.uncertain``
  while SUSPENDED); Curator leaves both to the application;
* ``release`` keeps the lease held until the delete is confirmed (CURATOR-678);
* every node is revocable: ``setData(node, b"__REVOKE__")`` sets ``lease.revoked`` and
  calls ``on_revoke(lease)``; the holder decides whether to release.

Use::

    lock = Lock(zk, "/locks/orders", identifier="worker-1")
    async with lock as lease:
        await store.write(data, token=lease.fencing_token)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from .._aio.client import AsyncClient
from ..types import ACL
from ._curator import LOCK_MARKER
from ._lease import GuardedTransaction, Lease
from ._queue import QueueLock

__all__ = ("Lock", "Lease", "GuardedTransaction")


class Lock(QueueLock):
    """A Curator-compatible mutex (see the module docstring).

    ``identifier`` is written as the node's data (UTF-8) and read back by
    :meth:`contenders`; ``data`` is used instead when there is no identifier.
    ``on_revoke(lease)`` runs on the event loop when someone asks the holder to release.
    ``acl`` is the ACL of the lock's nodes and of the parents it creates (default: the
    client's ``default_acl``).

    Raises:
        InvalidPathError: ``path`` is not a valid absolute path.
    """

    def __init__(
        self,
        zk: AsyncClient,
        path: str,
        identifier: str | None = None,
        *,
        data: bytes | None = None,
        on_revoke: Callable[[Lease], object] | None = None,
        acl: Sequence[ACL] | None = None,
    ) -> None:
        super().__init__(zk, path, marker=LOCK_MARKER, identifier=identifier, data=data,
                         on_revoke=on_revoke, acl=acl)
