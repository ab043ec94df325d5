"""Counters with Curator 5.x's encodings: :class:`SharedCount` (4-byte big-endian int32,
Curator SharedCount) and :class:`AtomicCounter` (8-byte big-endian int64, Curator
DistributedAtomicLong; empty or missing data is 0). Both nodes are PERSISTENT with
container parents.

A write whose reply is lost (ConnectionLoss) may or may not have been applied; retrying it
blindly is how Curator's DistributedAtomicLong can count an increment twice (its client
retries the ``setData``, the retry fails with BadVersion because the first one was applied,
and the optimistic loop then increments again from the new value). How zkwarden decides:

* ``SharedCount.try_set(value, version)``: after the connection is back, the node is read
  (after a ``sync``). Still at ``version``: not applied (the request is dead: a session's
  requests are applied in order, and a dead session's never), so it is sent again. At
  ``version + 1`` holding our bytes: applied (if another client wrote the same bytes at
  that version the outcome is the same node, so the answer is right either way).
  Anything else: reported False (the caller re-reads and decides; it is an absolute value,
  so doing so never adds twice).
* ``AtomicCounter``: an increment's bytes do not say whose they are (two clients adding 1
  to 5 both write 6 at the same version), so the version alone cannot decide. Every write is
  a transaction that also stores a fresh operation id in an EPHEMERAL marker node of this
  counter object, ``<path>/zkwarden-cas-<uuid>`` (Curator ignores children of a counter
  node). After a lost reply, on the same session, the marker says exactly whether our
  transaction was applied. If the session was lost meanwhile (the marker died with it), an
  unchanged node version proves it was not; a changed one leaves the outcome unknown and
  :class:`CounterOutcomeUnknownError` is raised instead of guessing.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import random
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import aclosing
from dataclasses import dataclass

from .. import paths as _paths
from .._aio.client import AsyncClient
from .._tasks import TaskOwner
from ..errors import (
    BadVersionError,
    ClientClosedError,
    ConnectionLossError,
    CounterOutcomeUnknownError,
    InvalidArgumentError,
    NodeExistsError,
    NoNodeError,
    RecipeError,
    SessionExpiredError,
    TransactionError,
    ZooKeeperError,
)
from ..types import ACL, Stat
from ._curator import decode_int32, decode_int64, encode_int32, encode_int64
from ._nodes import _wait_for_connection, ensure_containers
from .barrier import _retrying

__all__ = ("SharedCount", "VersionedValue", "AtomicCounter", "AtomicValue",
           "CounterOutcomeUnknownError")

log = logging.getLogger("zkwarden.recipes")

_PAUSE = 0.05
#: values kept for a ``changes()`` consumer that falls behind (the oldest are dropped)
_MAX_QUEUED = 1000


@dataclass(frozen=True, slots=True)
class VersionedValue:
    """A count and the node version it was read at (Curator's ``VersionedValue``)."""

    value: int
    version: int


class SharedCount:
    """Curator's SharedCount: a 32-bit count in ``<path>`` that every participant sees.

    :meth:`start` creates the node with ``default`` if it is missing and follows it with a
    watch, so :attr:`count` is the latest value seen (ordered by mzxid, as Curator 5.7+).
    ``acl`` is the ACL of the node and of the parents it creates (default: the client's).

    Raises:
        InvalidPathError, InvalidArgumentError: ``default`` is not an int32.
    """

    def __init__(self, zk: AsyncClient, path: str, default: int = 0, *,
                 acl: Sequence[ACL] | None = None) -> None:
        self._zk = zk
        self.path = _paths.validate(path)
        self.acl = tuple(acl) if acl is not None else None
        self._seed = encode_int32(default)
        self._value = default
        self._version = -1
        self._mzxid = -1
        self._tasks = TaskOwner(f"shared count {path}")
        self._queues: set[asyncio.Queue[int | None]] = set()
        self._started = False

    @property
    def count(self) -> int:
        """The latest value seen (``default`` before :meth:`start`)."""
        return self._value

    @property
    def version(self) -> int:
        """The node version of :attr:`count` (-1 before :meth:`start`)."""
        return self._version

    @property
    def versioned(self) -> VersionedValue:
        """:attr:`count` with its version, for :meth:`try_set`."""
        return VersionedValue(self._value, self._version)

    async def start(self) -> None:
        """Create the node with the default value unless it exists (parents as
        containers), read it and follow its changes.

        Raises:
            RecipeError: already started or closed.
            InvalidArgumentError: the node holds something else than 4 bytes.
            NoAuthError, ClientClosedError.
        """
        if self._started or self._tasks.closed:
            raise RecipeError(f"shared count {self.path}: start() called twice or after close")
        self._started = True

        async def create() -> None:
            try:
                await self._zk.create(self.path, self._seed, acl=self.acl)
            except NodeExistsError:
                pass
            except NoNodeError:
                await ensure_containers(self._zk, _paths.parent(self.path), self.acl)
                await create()

        await _retrying(self._zk, create)
        await self.get()
        self._tasks.spawn(self._follow(), name=f"follow {self.path}")

    async def get(self) -> int:
        """Read the count from the server (and update :attr:`count`).

        Raises:
            NoNodeError: the node was deleted.
            InvalidArgumentError: the node does not hold 4 bytes.
            NoAuthError, ClientClosedError.
        """
        return (await self.get_versioned()).value

    async def get_versioned(self) -> VersionedValue:
        """Read the count and its version from the server.

        Raises:
            as :meth:`get`.
        """
        data, stat = await _retrying(self._zk, lambda: self._zk.get(self.path))
        value = decode_int32(data)
        self._update(value, stat)
        return VersionedValue(value, stat.version)

    async def set(self, value: int) -> None:
        """Set the count unconditionally (Curator's ``setCount``); re-created if missing.
        After a lost reply it is sent again (setting an absolute value twice is harmless).

        Raises:
            InvalidArgumentError: not an int32.
            NoAuthError, ClientClosedError.
        """
        data = encode_int32(value)

        async def write() -> None:
            try:
                stat = await self._zk.set(self.path, data)
            except NoNodeError:
                try:
                    await self._zk.create(self.path, data, acl=self.acl)
                except NoNodeError:
                    await ensure_containers(self._zk, _paths.parent(self.path), self.acl)
                except NodeExistsError:
                    pass
                await write()
                return
            self._update(value, stat)

        await _retrying(self._zk, write)

    async def try_set(self, value: int, expected_version: int) -> bool:
        """Set the count only if the node is still at ``expected_version`` (Curator's
        ``trySetCount(VersionedValue, n)``): True if set, False if someone changed it.
        A lost reply is resolved by reading the version (see the module docstring).

        Raises:
            InvalidArgumentError: not an int32.
            NoNodeError: the node was deleted.
            NoAuthError, ClientClosedError.
        """
        data = encode_int32(value)
        while True:
            try:
                stat = await self._zk.set(self.path, data, version=expected_version)
            except (ConnectionLossError, SessionExpiredError):
                current, stat = await _retrying(self._zk, self._synced_read)
                self._update(decode_int32(current), stat)
                if stat.version == expected_version:
                    continue  # not applied, and can no longer be: send it again
                return stat.version == expected_version + 1 and current == data
            except BadVersionError:
                return False
            self._update(value, stat)
            return True

    async def _synced_read(self) -> tuple[bytes, Stat]:
        await self._zk.sync(self.path)
        result: tuple[bytes, Stat] = await self._zk.get(self.path)
        return result

    def changes(self) -> AsyncIterator[int]:
        """Each new value from now on (every newer version, also one setting the same
        value), until :meth:`close`. A consumer more than 1000 values behind loses the
        oldest ones."""
        queue: asyncio.Queue[int | None] = asyncio.Queue()
        self._queues.add(queue)
        return self._iterate(queue)

    async def _iterate(self, queue: asyncio.Queue[int | None]) -> AsyncIterator[int]:
        try:
            while not self._tasks.closed or not queue.empty():
                value = await queue.get()
                if value is None:
                    return
                yield value
        finally:
            self._queues.discard(queue)

    def _update(self, value: int, stat: Stat) -> None:
        if stat.mzxid <= self._mzxid:
            return  # an older read arriving late (ordered by mzxid: CURATOR-688)
        self._value, self._version, self._mzxid = value, stat.version, stat.mzxid
        for queue in self._queues:
            if queue.qsize() >= _MAX_QUEUED:
                queue.get_nowait()
            queue.put_nowait(value)

    async def _follow(self) -> None:
        """Follow the node's data; the watch survives reconnects, and a new session
        watches again (re-reading the value)."""
        while True:
            try:
                async with aclosing(self._zk.watch(self.path, "data")) as stream:
                    async for event in stream:
                        if event.stat is None or event.data is None:
                            continue  # deleted: keep the last value until it comes back
                        try:
                            self._update(decode_int32(event.data), event.stat)
                        except InvalidArgumentError as exc:
                            log.warning("shared count %s: %s", self.path, exc)
            except SessionExpiredError:
                pass
            except ClientClosedError:
                return
            except ZooKeeperError as exc:
                log.warning("shared count %s: watch failed: %r", self.path, exc)
            await asyncio.sleep(_PAUSE)

    async def close(self) -> None:
        """Stop following the node and end every :meth:`changes` iterator. Idempotent;
        never raises (except CancelledError)."""
        await self._tasks.aclose()
        for queue in self._queues:
            queue.put_nowait(None)


# --- DistributedAtomicLong ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AtomicValue:
    """The outcome of an AtomicCounter operation (Curator's ``AtomicValue<Long>``): check
    ``succeeded``. ``pre_value`` is the value the operation saw, ``post_value`` the one it
    wrote (equal to ``pre_value`` when it did not succeed); ``attempts`` how many
    optimistic tries it took."""

    succeeded: bool
    pre_value: int
    post_value: int
    attempts: int = 1


class _Outcome(enum.Enum):
    APPLIED = "applied"
    CONFLICT = "conflict"  # someone else changed the node: read again (counts as a retry)
    AGAIN = "again"  # our own bookkeeping (parents, marker) was off: try again, free


#: Curator's DistributedAtomicLong has no default retry policy (its constructor takes one;
#: its tests use RetryOneTime(1)); ours: this many retries after a conflict, with full
#: jitter over an exponential backoff (see AtomicCounter).
DEFAULT_MAX_RETRIES = 30
DEFAULT_BACKOFF = (0.002, 0.1)


class AtomicCounter:
    """Curator's DistributedAtomicLong: a 64-bit counter in ``<path>`` (8 bytes,
    big-endian; empty or missing is 0), changed with optimistic compare-and-set on the node
    version.

    Each operation retries after a conflict (another writer got in between its read and its
    write) at most ``max_retries`` times, sleeping a random time up to
    ``min(backoff[1], backoff[0] * 2**retry)`` before each retry; then it gives up with
    ``succeeded=False`` (nothing was written). Writes whose reply is lost are resolved
    exactly, never repeated blindly (see the module docstring): an increment is never
    counted twice. :meth:`close` removes the marker node early (it is ephemeral anyway).
    ``acl`` is the ACL of the counter and marker nodes and of the parents it creates
    (default: the client's).

    Raises:
        InvalidPathError, InvalidArgumentError: a negative ``max_retries``.
    """

    def __init__(
        self, zk: AsyncClient, path: str, *, max_retries: int = DEFAULT_MAX_RETRIES,
        backoff: tuple[float, float] = DEFAULT_BACKOFF, acl: Sequence[ACL] | None = None,
    ) -> None:
        if max_retries < 0:
            raise InvalidArgumentError(f"max_retries must be >= 0, got {max_retries!r}")
        self._zk = zk
        self.path = _paths.validate(path)
        self.acl = tuple(acl) if acl is not None else None
        self.max_retries = max_retries
        self._backoff = backoff
        self.marker_path = _paths.join(path, f"zkwarden-cas-{uuid.uuid4()}")
        #: the session in which our marker node exists (None: not created yet)
        self._marker_session: int | None = None

    async def get(self) -> AtomicValue:
        """The current value (``succeeded`` is True; pre and post are the value).

        Raises:
            InvalidArgumentError: the node holds something else than 0 or 8 bytes.
            NoAuthError, ClientClosedError.
        """
        value = decode_int64((await self._read())[0])
        return AtomicValue(True, value, value)

    async def increment(self) -> AtomicValue:
        """Add 1. Raises: as :meth:`add`."""
        return await self.add(1)

    async def decrement(self) -> AtomicValue:
        """Subtract 1. Raises: as :meth:`add`."""
        return await self.add(-1)

    async def subtract(self, delta: int) -> AtomicValue:
        """Subtract ``delta``. Raises: as :meth:`add`."""
        return await self.add(-delta)

    async def add(self, delta: int) -> AtomicValue:
        """Add ``delta`` (an optimistic loop: read, write at the version read).

        Raises:
            InvalidArgumentError: the result does not fit in an int64 (Java wraps around;
                we refuse), or the node holds something else than 0 or 8 bytes.
            CounterOutcomeUnknownError: see the class docstring.
            NoAuthError, ClientClosedError.
        """
        if isinstance(delta, bool) or not isinstance(delta, int):
            raise InvalidArgumentError(f"delta must be an int, got {delta!r}")
        return await self._optimistic(lambda pre: pre + delta, self.max_retries)

    async def try_set(self, value: int) -> AtomicValue:
        """Set ``value`` whatever the current one (optimistically, as Curator's trySet).

        Raises:
            as :meth:`add`.
        """
        encode_int64(value)
        return await self._optimistic(lambda _pre: value, self.max_retries)

    async def compare_and_set(self, expected: int, new: int) -> AtomicValue:
        """Set ``new`` if the value is ``expected`` (one try, as Curator's compareAndSet;
        unlike Curator a missing node counts as 0, so ``compare_and_set(0, n)`` creates it).

        Raises:
            as :meth:`add`.
        """
        encode_int64(new)
        return await self._optimistic(lambda _pre: new, 0, expected=expected)

    async def initialize(self, value: int) -> bool:
        """Create the node with ``value`` unless it exists: True if created.

        Raises:
            as :meth:`add`.
        """
        data = encode_int64(value)
        while True:
            outcome = await self._write(None, data)
            if outcome is _Outcome.APPLIED:
                return True
            if outcome is _Outcome.CONFLICT:
                return False

    async def close(self) -> None:
        """Delete this object's marker node (it is ephemeral: it also goes with the
        session). Never raises (except CancelledError)."""
        if self._marker_session is None or self._zk.session_id != self._marker_session:
            return
        try:
            await self._zk.delete(self.marker_path)
        except ZooKeeperError:
            pass
        self._marker_session = None

    # --- the loop ----------------------------------------------------------------------

    async def _read(self) -> tuple[bytes, Stat | None]:
        async def read() -> tuple[bytes, Stat | None]:
            try:
                data, stat = await self._zk.get(self.path)
            except NoNodeError:
                return b"", None
            return data, stat

        return await _retrying(self._zk, read)

    async def _optimistic(
        self, make: Callable[[int], int], retries: int, *, expected: int | None = None,
    ) -> AtomicValue:
        attempts = 0
        free = 0  # tries that were not conflicts (bookkeeping), bounded separately
        pre = 0
        while True:
            data, stat = await self._read()
            pre = decode_int64(data)
            if expected is not None and pre != expected:
                return AtomicValue(False, pre, pre, attempts + 1)
            post = make(pre)
            attempts += 1
            outcome = await self._write(stat, encode_int64(post))
            if outcome is _Outcome.APPLIED:
                return AtomicValue(True, pre, post, attempts)
            if outcome is _Outcome.AGAIN:
                attempts -= 1
                free += 1
                if free > 10:
                    raise RecipeError(f"counter {self.path}: cannot write (node layout?)")
                continue
            if attempts > retries:
                return AtomicValue(False, pre, pre, attempts)
            low, high = self._backoff
            await asyncio.sleep(random.uniform(0, min(high, low * 2 ** (attempts - 1))))

    async def _write(self, stat: Stat | None, data: bytes) -> _Outcome:
        """One transaction: the counter write at the version read (a create if missing)
        plus our marker's new operation id; a lost reply is resolved by the marker."""
        zk = self._zk
        op_id = uuid.uuid4().bytes
        session = zk.session_id
        txn = zk.transaction()
        if stat is None:
            txn.create(self.path, data, acl=self.acl)
        else:
            txn.set(self.path, data, version=stat.version)
        if session is not None and self._marker_session == session:
            txn.set(self.marker_path, op_id)
        else:
            txn.create(self.marker_path, op_id, ephemeral=True, acl=self.acl)
        try:
            await txn.commit()
        except TransactionError as exc:
            cause = exc.results[exc.failed_index]
            if exc.failed_index == 0:
                if stat is None and isinstance(cause, NoNodeError):
                    await _retrying(
                        zk, lambda: ensure_containers(zk, _paths.parent(self.path), self.acl))
                    return _Outcome.AGAIN
                return _Outcome.CONFLICT  # BadVersion, NodeExists, NoNode: someone else
            # our marker was not where we thought: created (NodeExists) or gone (NoNode)
            self._marker_session = session if isinstance(cause, NodeExistsError) else None
            return _Outcome.AGAIN
        except (ConnectionLossError, SessionExpiredError):
            return await self._resolve(op_id, session, stat)
        self._marker_session = session
        return _Outcome.APPLIED

    async def _resolve(self, op_id: bytes, session: int | None, stat: Stat | None) -> _Outcome:
        """Was the transaction whose reply was lost applied? Our marker says so exactly
        while the session lives; after the session ended, only "no" can be proven."""
        zk = self._zk
        while True:
            if session is not None and zk.session_id == session:
                try:
                    await zk.sync(self.marker_path)
                    marker, _ = await zk.get(self.marker_path)
                except NoNodeError:
                    self._marker_session = None
                    return _Outcome.CONFLICT  # never created: nothing of ours was applied
                except ConnectionLossError:
                    await _wait_for_connection(zk)
                    continue
                except SessionExpiredError:
                    await asyncio.sleep(_PAUSE)
                    continue
                self._marker_session = session
                return _Outcome.APPLIED if marker == op_id else _Outcome.CONFLICT
            # A new session: ours is closed, so nothing it sent can be applied any more.
            self._marker_session = None
            _, now = await self._read()
            unchanged = (now is None and stat is None) or (
                now is not None and stat is not None
                and (now.czxid, now.version) == (stat.czxid, stat.version))
            if unchanged:
                return _Outcome.CONFLICT
            raise CounterOutcomeUnknownError(
                f"counter {self.path}: a write's reply was lost with session "
                f"0x{session or 0:x} and the node changed since; not repeated")

