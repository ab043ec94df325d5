"""The whole zkwarden exception tree.

Every error zkwarden raises is a subclass of :class:`ZooKeeperError`.  Server error codes
(the ``err`` field of a reply header) map to classes through :func:`error_for_code`; a code
this module does not know becomes :class:`UnknownServerError`, never a crash.
"""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from typing import Any, ClassVar

__all__ = (
    "ZooKeeperError",
    "RecipeError",
    "LockReentryError",
    "LeaseLostError",
    "CounterOutcomeUnknownError",
    "ClientError",
    "InvalidPathError",
    "ConfigurationError",
    "InvalidArgumentError",
    "ClientClosedError",
    "ForkedClientError",
    "DataTooLargeError",
    "ConnectionLossError",
    "RequestTimeoutError",
    "TimeoutError",
    "SessionExpiredError",
    "AuthFailedError",
    "ProtocolError",
    "ServerError",
    "UnknownServerError",
    "SystemZookeeperError",
    "RuntimeInconsistencyError",
    "DataInconsistencyError",
    "MarshallingError",
    "UnimplementedError",
    "OperationTimeoutError",
    "BadArgumentsError",
    "UnknownSessionError",
    "NewConfigNoQuorumError",
    "ReconfigInProgressError",
    "APIError",
    "NoNodeError",
    "NoAuthError",
    "BadVersionError",
    "NoChildrenForEphemeralsError",
    "NodeExistsError",
    "NotEmptyError",
    "InvalidCallbackError",
    "InvalidACLError",
    "SessionMovedError",
    "NotReadOnlyError",
    "EphemeralOnLocalSessionError",
    "NoWatcherError",
    "ReconfigDisabledError",
    "SessionClosedRequireSaslAuthError",
    "QuotaExceededError",
    "ThrottledOpError",
    "TransactionError",
    "DuplicateInstanceError",
    "NoInstancesError",
    "error_for_code",
)


class ZooKeeperError(Exception):
    """Base class of every error raised by zkwarden."""

    #: True when retrying the same operation (on the same or a resumed session) may succeed.
    retriable: ClassVar[bool] = False


# --- local errors ------------------------------------------------------------------------


class ClientError(ZooKeeperError):
    """Local misuse: bad arguments or a client in the wrong state. Never retried."""


class InvalidPathError(ClientError, ValueError):
    """A znode path that ZooKeeper would reject (checked before anything is sent)."""


class InvalidArgumentError(ClientError, TypeError, ValueError):
    """An argument of the wrong type or value (data not bytes, bad option combination)."""


class ConfigurationError(ClientError, ValueError):
    """A bad option: connect string, timeout, auth spec, config file key."""


class ClientClosedError(ClientError):
    """The client was closed with ``close()``; pending and later operations fail with this."""


class ForkedClientError(ClientError):
    """A client created before ``fork()`` was used in the child process."""


class DataTooLargeError(ClientError, ValueError):
    """A request would exceed the frame size the server accepts (``jute.maxbuffer``)."""


# --- connection and session --------------------------------------------------------------


class ConnectionLossError(ZooKeeperError):
    """The connection dropped while the operation was in flight; its outcome is unknown.

    The session may survive (the client is reconnecting).
    """

    retriable = True


class RequestTimeoutError(ConnectionLossError, builtins.TimeoutError):
    """A call did not finish within its ``timeout``."""


# Kept as a module-level alias so ``errors.TimeoutError`` reads naturally; it is the
# zkwarden class, a subclass of the builtin ``TimeoutError``.
TimeoutError = RequestTimeoutError  # noqa: A001


class SessionExpiredError(ZooKeeperError):
    """The session expired: its ephemeral nodes and watches are gone."""


class AuthFailedError(ZooKeeperError):
    """The server rejected the credentials given in ``auth``."""


class ProtocolError(ZooKeeperError):
    """A malformed frame or record, an out-of-order reply, or an oversized frame."""


# --- server error codes ------------------------------------------------------------------

_BY_CODE: dict[int, type[ServerError]] = {}


class ServerError(ZooKeeperError):
    """A non-zero ``err`` in a server reply. ``code`` holds the ZooKeeper error code."""

    code: ClassVar[int] = 0

    def __init__(self, message: str = "", *, path: str | None = None) -> None:
        self.path = path
        text = message or type(self).__name__
        if path is not None:
            text = f"{text}: {path}"
        super().__init__(text)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("code"):
            _BY_CODE[cls.code] = cls


class UnknownServerError(ServerError):
    """A server error code this version of zkwarden does not know."""

    def __init__(self, code: int, *, path: str | None = None) -> None:
        self.unknown_code = code
        super().__init__(f"unknown server error code {code}", path=path)


class SystemZookeeperError(ServerError):
    """Server system error (-1)."""

    code = -1


class RuntimeInconsistencyError(ServerError):
    """Multi: an operation after the failed one was not applied (-2)."""

    code = -2


class DataInconsistencyError(ServerError):
    """Server data inconsistency (-3)."""

    code = -3


class MarshallingError(ServerError):
    """The server could not decode the request (-5)."""

    code = -5


class UnimplementedError(ServerError):
    """Operation not implemented by this server (-6); e.g. TTL without extended types."""

    code = -6


class OperationTimeoutError(ServerError):
    """Operation timeout (-7)."""

    code = -7
    retriable = True


class BadArgumentsError(ServerError):
    """Bad arguments: flags, ttl or path rejected by the server (-8)."""

    code = -8


class UnknownSessionError(ServerError):
    """Unknown session (-12)."""

    code = -12


class NewConfigNoQuorumError(ServerError):
    """Reconfig: no quorum for the new config (-13)."""

    code = -13


class ReconfigInProgressError(ServerError):
    """Reconfig already in progress (-14)."""

    code = -14


class APIError(ServerError):
    """Generic API error (-100)."""

    code = -100


class NoNodeError(ServerError):
    """The node does not exist (-101)."""

    code = -101


class NoAuthError(ServerError):
    """Not authorized for this operation on this node (-102)."""

    code = -102


class BadVersionError(ServerError):
    """The expected version did not match the node's (-103)."""

    code = -103


class NoChildrenForEphemeralsError(ServerError):
    """Ephemeral nodes cannot have children (-108)."""

    code = -108


class NodeExistsError(ServerError):
    """The node already exists (-110)."""

    code = -110


class NotEmptyError(ServerError):
    """The node has children (-111)."""

    code = -111


class InvalidCallbackError(ServerError):
    """Invalid callback (-113)."""

    code = -113


class InvalidACLError(ServerError):
    """The ACL is empty or invalid (-114)."""

    code = -114


class SessionMovedError(ServerError):
    """The session moved to another server (-118)."""

    code = -118
    retriable = True


class NotReadOnlyError(ServerError):
    """A write was sent to a read-only server (-119)."""

    code = -119


class EphemeralOnLocalSessionError(ServerError):
    """Ephemeral nodes cannot be created on a local session (-120)."""

    code = -120


class NoWatcherError(ServerError):
    """No such watch to check or remove (-121)."""

    code = -121


class ReconfigDisabledError(ServerError):
    """Reconfig is disabled (-123)."""

    code = -123


class SessionClosedRequireSaslAuthError(ServerError):
    """The server requires authentication on this session (-124)."""

    code = -124


class QuotaExceededError(ServerError):
    """A hard quota was exceeded (-125)."""

    code = -125


class ThrottledOpError(ServerError):
    """The server throttled the operation under load (-127)."""

    code = -127
    retriable = True


# Codes that arrive as server errors but are better expressed by the session-level classes.
_SESSION_CODES: dict[int, builtins.type[ZooKeeperError]] = {
    -4: ConnectionLossError,
    -112: SessionExpiredError,
    -115: AuthFailedError,
    -122: RequestTimeoutError,
}


def error_for_code(code: int, path: str | None = None) -> ZooKeeperError:
    """Return the exception instance for a ZooKeeper error ``code`` (never raises)."""
    cls = _BY_CODE.get(code)
    if cls is not None:
        return cls(path=path)
    session_cls = _SESSION_CODES.get(code)
    if session_cls is not None:
        suffix = f": {path}" if path else ""
        return session_cls(f"{session_cls.__name__} (code {code}){suffix}")
    return UnknownServerError(code, path=path)


# --- results of composite operations -----------------------------------------------------


class TransactionError(ZooKeeperError):
    """A transaction (multi) failed as a whole; nothing was applied.

    ``results`` holds one entry per operation: the result value for operations that would
    have succeeded, or the exception for the failing one and those after it.
    ``failed_index`` is the index of the operation that caused the failure.
    """

    def __init__(self, results: Sequence[object], failed_index: int) -> None:
        self.results = list(results)
        self.failed_index = failed_index
        cause = self.results[failed_index] if 0 <= failed_index < len(self.results) else None
        super().__init__(f"transaction failed at operation {failed_index}: {cause!r}")


# --- discovery ---------------------------------------------------------------------------


class DuplicateInstanceError(ZooKeeperError):
    """A service instance id is already registered by another live session."""


class NoInstancesError(ZooKeeperError):
    """A provider has no instance to give: none registered, enabled and up."""


class RecipeError(ZooKeeperError):
    """A coordination recipe (zkwarden.recipes) was used in a way it cannot serve."""


class LockReentryError(RecipeError):
    """The task already holds this lock (locks are not re-entrant: this would deadlock)."""


class LeaseLostError(RecipeError):
    """A lock, lease or leadership was lost (its session expired or its node vanished)."""


class CounterOutcomeUnknownError(RecipeError):
    """A counter write's reply was lost together with its session, and the node changed
    meanwhile: whether the write was applied cannot be known (it was not repeated)."""
