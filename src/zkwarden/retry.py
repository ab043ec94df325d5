"""Operation retries: kazoo's ``KazooRetry`` and Curator's ``RetryPolicy``, made safe.

    from zkwarden.retry import RetryPolicy, retry, retrying

    data, stat = await zk.retry(zk.get, "/config")                 # AsyncClient.retry
    await retry(zk, zk.create, "/app/ready", b"1", ephemeral=True)  # the same
    policy = RetryPolicy(deadline=10.0, max_attempts=5)

    @retrying(policy)
    async def publish(zk, payload):        # your function is retried as a whole
        ...

What is retried: :class:`~zkwarden.errors.ConnectionLossError` (the connection dropped with
the request in flight, or none came back within the wait; ``RequestTimeoutError``
included) and :class:`~zkwarden.errors.OperationTimeoutError` (the server's -7), within the
policy's deadline and attempt count, waiting the client's kind of backoff (capped
exponential, full jitter: :func:`zkwarden._aio.retry.backoff_delay`) and then for a
connection. Never retried: SessionExpiredError (what the session held is gone: the caller
must redo its set-up), NodeExists, BadVersion and every other answer of the server.

Which operations are safe to repeat. A connection loss leaves the outcome of a request
unknown: it may have been applied. When a client method is passed as ``fn``, ``retry``
knows which one it is and applies these rules:

=========================================  =================================================
operation                                  retried?
=========================================  =================================================
get, exists, get_children, get_acl,        yes: reads have no effect to repeat
get_many, multi_read, sync,
get_ephemerals, get_all_children_number,
whoami, check_watches
ensure_path, add_auth                      yes: the result is the same however many times
delete(path, version=v) with v >= 0        yes: it cannot apply twice. NoNode on a retry
                                           counts as success: the node is gone, which is
                                           what the delete asked for (our earlier attempt
                                           or another client removed version v or later)
delete(recursive=True)                     yes: it already deletes whatever it finds
delete(path) (version -1)                  **no**: if the first attempt applied and another
                                           client re-created the node, a repeat deletes
                                           *their* node. Read the version and pass it
set(path, data, version=v) with v >= 0     yes: it cannot apply twice. BadVersion on a
set_acl(path, acl, version=v)              retry is raised with a note: our earlier attempt
                                           may be the one that moved the version. Re-read
set(path, data) (version -1), set_acl      **no**: a repeat can overwrite a write another
with version -1                            client made in between with a version check
                                           (a counter's increment is then lost), and
                                           watchers see our value twice. Pass the version
                                           you read
create, not sequential                     yes, with the rule below for NodeExists
create(..., sequence=True)                 **never**: a lost reply leaves a node whose name
                                           nobody knows; a repeat makes a second one. Put a
                                           unique token in the name and look for it, as
                                           :mod:`zkwarden.recipes` do (Curator's
                                           "protected" mode)
transaction / multi                        **no**: a multi mixes operations of every kind
remove_watches                             yes: NoWatcher on a retry counts as success
=========================================  =================================================

NodeExists after a retry of a non-sequential create is success **when the node is ours**:

* ephemeral: the node's ``ephemeral_owner`` is this client's session id. That is proof: only
  our session can own it.
* persistent (also container and TTL): its data are exactly the bytes we sent and it has
  never been changed (``version`` 0). That is not proof (another client may have created
  the same bytes) but such a node is the same for every reader; if you must know who made
  it, make it ephemeral or put a unique token in the data.

Otherwise the NodeExistsError is raised. On the first attempt NodeExists is raised as
usual. Any other callable (your own function, a lambda) is retried as a whole: by passing
it you assert it is safe to repeat; the table says how to write it so.

An attempt in flight is never cut short at the deadline (cancelling a write in flight makes
its outcome unknown): the deadline decides whether another attempt starts.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar, cast, runtime_checkable

from ._aio.retry import Backoff, backoff_delay
from .errors import (
    BadVersionError,
    ConfigurationError,
    ConnectionLossError,
    InvalidArgumentError,
    NodeExistsError,
    NoNodeError,
    NoWatcherError,
    OperationTimeoutError,
    ZooKeeperError,
)
from .types import Stat

__all__ = ("RetryPolicy", "DEFAULT_POLICY", "retry", "retry_blocking", "retrying",
           "IDEMPOTENT")

F = TypeVar("F", bound=Callable[..., Any])

#: Client methods that may be repeated as they are.
IDEMPOTENT = frozenset({
    "get", "exists", "get_children", "get_acl", "get_many", "multi_read", "sync",
    "get_ephemerals", "get_all_children_number", "whoami", "check_watches", "ensure_path",
    "add_auth",
})


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How long and how often to retry.

    ``deadline``: seconds from the first attempt after which no new attempt starts (None:
    no deadline). ``max_attempts``: attempts in all, the first included (None: no limit).
    At least one of the two must be set. ``backoff``: the delay before attempt n+1 is
    uniform in ``[0, min(maximum, initial * 2**(n-1))]`` (the first retry waits nothing;
    the client's own reconnect wait comes on top).

    Raises (constructor):
        ConfigurationError: a bound <= 0, or neither bound set.
    """

    deadline: float | None = 30.0
    max_attempts: int | None = 10
    backoff: Backoff = field(default_factory=lambda: Backoff(initial=0.1, maximum=5.0))
    #: the errors retried (a ConnectionLossError subclass is retried too)
    retry_on: tuple[type[ZooKeeperError], ...] = (ConnectionLossError, OperationTimeoutError)

    def __post_init__(self) -> None:
        if self.deadline is None and self.max_attempts is None:
            raise ConfigurationError("a retry policy needs a deadline or max_attempts")
        if self.deadline is not None and not (
            isinstance(self.deadline, (int, float)) and 0 < self.deadline < 1e9
        ):
            raise ConfigurationError(f"deadline must be > 0 seconds, got {self.deadline!r}")
        if self.max_attempts is not None and not (
            isinstance(self.max_attempts, int) and self.max_attempts >= 1
        ):
            raise ConfigurationError(f"max_attempts must be >= 1, got {self.max_attempts!r}")

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Seconds to wait before retry number ``attempt`` (1 = the first retry)."""
        return backoff_delay(attempt - 1, self.backoff.initial, self.backoff.maximum, rng)


DEFAULT_POLICY = RetryPolicy()


# --- what is being retried ------------------------------------------------------------------

@dataclass(slots=True)
class _Plan:
    #: "plain", "create", "delete", "set", "remove_watches"
    kind: str
    path: str = ""
    data: bytes = b""
    ephemeral: bool = False
    include_stat: bool = False


def _plan(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> _Plan:
    """How to retry ``fn(*args, **kwargs)``.

    Raises:
        InvalidArgumentError: ``fn`` is a client operation not safe to repeat.
    """
    owner = getattr(fn, "__self__", None)
    name = getattr(fn, "__name__", "")
    if owner is None or not _is_client(owner):
        return _Plan("plain")
    if name in IDEMPOTENT:
        return _Plan("plain")
    try:
        bound = inspect.signature(fn).bind(*args, **kwargs)
    except TypeError as exc:
        raise InvalidArgumentError(f"{name}: {exc}") from None
    bound.apply_defaults()
    a = dict(bound.arguments)
    for param in bound.signature.parameters.values():
        if param.kind is inspect.Parameter.VAR_KEYWORD:  # a wrapper's **kwargs
            a.update(a.pop(param.name, {}))
    if name == "create":
        if a.get("sequence"):
            raise InvalidArgumentError(
                "a sequential create is never retried: a lost reply leaves a node nobody "
                "can name and a repeat makes another; use a unique token in the name and "
                "look for it (see zkwarden.retry)"
            )
        data = a.get("data", b"")
        return _Plan("create", a["path"], bytes(data) if isinstance(
            data, (bytes, bytearray, memoryview)) else b"", bool(a.get("ephemeral")),
            bool(a.get("include_stat")))
    if name == "delete":
        if a.get("recursive"):
            return _Plan("plain")
        if a.get("version", -1) == -1:
            raise InvalidArgumentError(
                "delete without a version is not retried: a repeat could delete a node "
                "another client re-created meanwhile; pass the version you read"
            )
        return _Plan("delete", a["path"])
    if name in ("set", "set_acl"):
        if a.get("version", -1) == -1:
            raise InvalidArgumentError(
                f"{name} without a version is not retried: a repeat could overwrite another "
                "client's write made in between; pass the version you read"
            )
        return _Plan("set", a["path"])
    if name == "remove_watches":
        return _Plan("remove_watches", a["path"])
    raise InvalidArgumentError(f"{name} is not an operation retry() can repeat safely")


@runtime_checkable
class _ClientLike(Protocol):
    """What retry() needs to recognise a client (AsyncClient or Client) without importing
    either (they import this module: imports flow one way)."""

    @property
    def session_id(self) -> int | None: ...

    def wait_connected(self, timeout: float | None = None) -> Any: ...

    def exists(self, path: str) -> Any: ...


def _is_client(obj: object) -> bool:
    return isinstance(obj, _ClientLike)


def _retryable(exc: BaseException, policy: RetryPolicy) -> bool:
    return isinstance(exc, policy.retry_on)


def _ours(plan: _Plan, stat: Stat | None, data: bytes | None, session_id: int | None) -> bool:
    if stat is None:
        return False
    if plan.ephemeral:
        return bool(session_id) and stat.ephemeral_owner == session_id
    return stat.ephemeral_owner == 0 and stat.version == 0 and data == plan.data


def _bad_version(exc: BadVersionError) -> BadVersionError:
    out = BadVersionError(f"{exc} (after a connection loss: the earlier attempt may be the "
                          "one that changed the version; re-read)")
    out.__cause__ = exc
    return out


class _Budget:
    """Attempts and deadline of one retried call."""

    def __init__(self, policy: RetryPolicy, timeout: float | None = None) -> None:
        self.policy = policy
        self.start = time.monotonic()
        deadline = policy.deadline
        if timeout is not None:
            deadline = timeout if deadline is None else min(deadline, timeout)
        self.deadline = deadline
        self.attempt = 0
        self.rng = random.Random()

    def left(self) -> float | None:
        if self.deadline is None:
            return None
        return self.deadline - (time.monotonic() - self.start)

    def next_delay(self, exc: BaseException) -> float:
        """Before the next attempt: the delay to wait; raises ``exc`` when out of budget."""
        self.attempt += 1
        if self.policy.max_attempts is not None and self.attempt >= self.policy.max_attempts:
            raise exc
        left = self.left()
        delay = self.policy.delay(self.attempt, self.rng)
        if left is not None:
            if left <= 0:
                raise exc
            delay = min(delay, left)
        return delay


# --- asyncio ------------------------------------------------------------------------------

async def retry(
    zk: Any, fn: Callable[..., Awaitable[Any]], /, *args: Any,
    policy: RetryPolicy | None = None, **kwargs: Any,
) -> Any:
    """``await fn(*args, **kwargs)``, retried on connection loss (see the module doc).

    ``zk`` is the AsyncClient ``fn`` works with (between attempts ``retry`` waits for it to
    be connected, and checks whether a node is ours); None for a function that uses no
    client.

    Raises:
        InvalidArgumentError: ``fn`` is a client operation that is not safe to repeat.
        ConnectionLossError: still no answer when the deadline or the attempts ran out
            (the last error).
        ClientClosedError: the client was closed meanwhile.
        ZooKeeperError: anything else ``fn`` raises, at once.
    """
    policy = policy or DEFAULT_POLICY
    plan = _plan(fn, args, kwargs)
    budget = _Budget(policy)
    while True:
        try:
            return await fn(*args, **kwargs)
        except ZooKeeperError as exc:
            if budget.attempt > 0:
                recovered = await _recover_async(zk, plan, exc)
                if recovered is not _NOTHING:
                    return recovered
            if not _retryable(exc, policy):
                raise
            await asyncio.sleep(budget.next_delay(exc))
            if zk is not None:
                left = budget.left()
                try:
                    await zk.wait_connected(None if left is None else max(left, 0.001))
                except ConnectionLossError:  # not connected in time: the last error stands
                    raise exc from None


_NOTHING: Any = object()


async def _recover_async(zk: Any, plan: _Plan, exc: ZooKeeperError) -> Any:
    """After a retry: the result when ``exc`` means our earlier attempt applied."""
    if plan.kind == "create" and isinstance(exc, NodeExistsError):
        try:
            data, stat = await zk.get(plan.path)
        except NoNodeError:
            return _NOTHING
        if _ours(plan, stat, data, zk.session_id):
            return (plan.path, stat) if plan.include_stat else plan.path
        return _NOTHING
    if plan.kind in ("delete", "remove_watches") and isinstance(exc, (NoNodeError,
                                                                        NoWatcherError)):
        return None
    if plan.kind == "set" and isinstance(exc, BadVersionError):
        raise _bad_version(exc) from exc
    return _NOTHING


# --- blocking -----------------------------------------------------------------------------

def retry_blocking(
    client: Any, fn: Callable[..., Any], /, *args: Any,
    policy: RetryPolicy | None = None, timeout: float | None = None, **kwargs: Any,
) -> Any:
    """:func:`retry` for blocking code: ``fn(*args, **kwargs)`` in the calling thread.

    ``client`` is the :class:`~zkwarden.Client` ``fn`` works with (or None); ``timeout``
    bounds the whole retrying as a deadline (the smaller of it and the policy's).

    Raises:
        InvalidArgumentError: ``fn`` is a client operation that is not safe to repeat.
        ConnectionLossError: still no answer when the deadline or the attempts ran out.
        ClientClosedError: the client was closed meanwhile.
        ZooKeeperError: anything else ``fn`` raises, at once.
    """
    policy = policy or DEFAULT_POLICY
    plan = _plan(fn, args, kwargs)
    budget = _Budget(policy, timeout)
    while True:
        try:
            return fn(*args, **kwargs)
        except ZooKeeperError as exc:
            if budget.attempt > 0:
                recovered = _recover_blocking(client, plan, exc)
                if recovered is not _NOTHING:
                    return recovered
            if not _retryable(exc, policy):
                raise
            time.sleep(budget.next_delay(exc))
            if client is not None:
                left = budget.left()
                try:
                    client.wait_connected(None if left is None else max(left, 0.001))
                except ConnectionLossError:
                    raise exc from None


def _recover_blocking(client: Any, plan: _Plan, exc: ZooKeeperError) -> Any:
    if plan.kind == "create" and isinstance(exc, NodeExistsError):
        try:
            data, stat = client.get(plan.path)
        except NoNodeError:
            return _NOTHING
        if _ours(plan, stat, data, client.session_id):
            return (plan.path, stat) if plan.include_stat else plan.path
        return _NOTHING
    if plan.kind in ("delete", "remove_watches") and isinstance(exc, (NoNodeError,
                                                                        NoWatcherError)):
        return None
    if plan.kind == "set" and isinstance(exc, BadVersionError):
        raise _bad_version(exc) from exc
    return _NOTHING


# --- decorator ----------------------------------------------------------------------------

def retrying(policy: RetryPolicy | None = None) -> Callable[[F], F]:
    """Decorate a function (async or blocking) so each call is retried as a whole.

    When its first argument is an AsyncClient (or Client), retries wait for it to be
    connected. By decorating, you assert the function is safe to repeat (module doc).
    The decorated function raises what :func:`retry` raises.
    """
    def decorate(fn: F) -> F:
        if inspect.iscoroutinefunction(fn):
            @functools.wraps(fn)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                zk = args[0] if args and _is_client(args[0]) else None
                return await retry(zk, fn, *args, policy=policy, **kwargs)
            return cast(F, async_wrapper)

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            client = args[0] if args and _is_client(args[0]) else None
            return retry_blocking(client, fn, *args, policy=policy, **kwargs)
        return cast(F, wrapper)

    return decorate
