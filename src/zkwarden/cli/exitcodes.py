"""Exit codes of the ``zkwarden`` command, and the one-line message for each error.

The table below is the contract scripts rely on; ``zkwarden --help`` prints it too.

====  ======================  ===========================================================
code  name                    meaning
====  ======================  ===========================================================
0     OK                      success (also: a command that runs until Ctrl-C was stopped)
1     ERROR                   any other error (server error, harness failure, I/O error)
2     USAGE                   bad usage or configuration (arguments, path, connect string,
                              Java/ZooKeeper missing for `server` and `demo`)
3     NO_NODE                 the node does not exist
4     NODE_EXISTS             the node already exists (or the instance is registered by
                              another live session)
5     NOT_EMPTY               the node has children
6     BAD_VERSION             the version did not match
7     NO_AUTH                 not authorized, or authentication failed
8     UNREACHABLE             no ZooKeeper server reachable / connection lost
9     SESSION_EXPIRED         the session expired
10    INVARIANT_FAILED        ``zkwarden demo``: an invariant did not hold
11    LOCK_TIMEOUT            ``zkwarden lock``: the lock was not acquired within --timeout
                              (the command did not run)
12    LOCK_LOST               ``zkwarden lock``: the lock was lost while the command ran
                              (session LOST or lock node gone); the command was terminated
13    NO_LEADER               ``zkwarden leader``: nobody takes part (no leader; also
                              when the path does not exist)
126   COMMAND_NOT_EXECUTABLE  ``zkwarden lock``: the command could not be executed
127   COMMAND_NOT_FOUND       ``zkwarden lock``: the command was not found
130   INTERRUPTED             interrupted (Ctrl-C) before the command finished
====  ======================  ===========================================================
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import (
    AuthFailedError,
    BadVersionError,
    ClientClosedError,
    ClientError,
    ConnectionLossError,
    DuplicateInstanceError,
    NoAuthError,
    NodeExistsError,
    NoNodeError,
    NotEmptyError,
    ServerError,
    SessionClosedRequireSaslAuthError,
    SessionExpiredError,
    UnimplementedError,
    ZooKeeperError,
)

__all__ = (
    "OK",
    "ERROR",
    "USAGE",
    "NO_NODE",
    "NODE_EXISTS",
    "NOT_EMPTY",
    "BAD_VERSION",
    "NO_AUTH",
    "UNREACHABLE",
    "SESSION_EXPIRED",
    "INVARIANT_FAILED",
    "LOCK_TIMEOUT",
    "LOCK_LOST",
    "NO_LEADER",
    "COMMAND_NOT_EXECUTABLE",
    "COMMAND_NOT_FOUND",
    "INTERRUPTED",
    "EXIT_CODES",
    "ExitCode",
    "exit_code_for",
    "describe_error",
    "epilog",
    "UnreachableError",
    "ChrootMissingError",
)

OK = 0
ERROR = 1
USAGE = 2
NO_NODE = 3
NODE_EXISTS = 4
NOT_EMPTY = 5
BAD_VERSION = 6
NO_AUTH = 7
UNREACHABLE = 8
SESSION_EXPIRED = 9
INVARIANT_FAILED = 10
LOCK_TIMEOUT = 11
LOCK_LOST = 12
NO_LEADER = 13
COMMAND_NOT_EXECUTABLE = 126
COMMAND_NOT_FOUND = 127
INTERRUPTED = 130


@dataclass(frozen=True, slots=True)
class ExitCode:
    """One row of the exit-code table."""

    code: int
    name: str
    meaning: str


#: Every exit code the command uses, in order.
EXIT_CODES: tuple[ExitCode, ...] = (
    ExitCode(OK, "OK", "success (also: a command that runs until Ctrl-C was stopped)"),
    ExitCode(ERROR, "ERROR", "any other error (server error, harness failure, I/O error)"),
    ExitCode(USAGE, "USAGE", "bad usage or configuration (arguments, path, connect string)"),
    ExitCode(NO_NODE, "NO_NODE", "the node does not exist"),
    ExitCode(NODE_EXISTS, "NODE_EXISTS",
             "the node already exists (register: another live session owns the id)"),
    ExitCode(NOT_EMPTY, "NOT_EMPTY", "the node has children"),
    ExitCode(BAD_VERSION, "BAD_VERSION", "the version did not match"),
    ExitCode(NO_AUTH, "NO_AUTH", "not authorized, or authentication failed"),
    ExitCode(UNREACHABLE, "UNREACHABLE", "no ZooKeeper server reachable / connection lost"),
    ExitCode(SESSION_EXPIRED, "SESSION_EXPIRED", "the session expired"),
    ExitCode(INVARIANT_FAILED, "INVARIANT_FAILED", "zkwarden demo: an invariant did not hold"),
    ExitCode(LOCK_TIMEOUT, "LOCK_TIMEOUT",
             "zkwarden lock: not acquired within --timeout (the command did not run)"),
    ExitCode(LOCK_LOST, "LOCK_LOST",
             "zkwarden lock: the lock was lost while the command ran (it was terminated)"),
    ExitCode(NO_LEADER, "NO_LEADER", "zkwarden leader: nobody takes part (no leader)"),
    ExitCode(COMMAND_NOT_EXECUTABLE, "NOT_EXECUTABLE",
             "zkwarden lock: the command could not be executed"),
    ExitCode(COMMAND_NOT_FOUND, "NOT_FOUND", "zkwarden lock: the command was not found"),
    ExitCode(INTERRUPTED, "INTERRUPTED", "interrupted (Ctrl-C) before the command finished"),
)


class UnreachableError(ConnectionLossError):
    """No server of the connect string answered within the time allowed."""


# Most specific first: the first class an error is an instance of decides.
_BY_CLASS: tuple[tuple[type[BaseException], int], ...] = (
    (NoNodeError, NO_NODE),
    (NodeExistsError, NODE_EXISTS),
    (DuplicateInstanceError, NODE_EXISTS),
    (NotEmptyError, NOT_EMPTY),
    (BadVersionError, BAD_VERSION),
    (NoAuthError, NO_AUTH),
    (AuthFailedError, NO_AUTH),
    (SessionClosedRequireSaslAuthError, NO_AUTH),
    (SessionExpiredError, SESSION_EXPIRED),
    (ConnectionLossError, UNREACHABLE),
    (ClientClosedError, ERROR),
    (ClientError, USAGE),  # InvalidPathError, ConfigurationError, InvalidArgumentError …
)


class ChrootMissingError(NoNodeError):
    """The connect string's chroot is not a node on the server."""

    def __init__(self, chroot: str) -> None:
        super().__init__("chroot does not exist", path=chroot)
        self.chroot = chroot


def exit_code_for(exc: BaseException) -> int:
    """The exit code for an exception (see the module table)."""
    if isinstance(exc, KeyboardInterrupt):
        return INTERRUPTED
    for cls, code in _BY_CLASS:
        if isinstance(exc, cls):
            return code
    return ERROR


def _first_line(text: str) -> str:
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return ""


def describe_error(exc: BaseException) -> str:
    """A one-line, human message for ``exc`` (never a traceback)."""
    path = getattr(exc, "path", None) if isinstance(exc, ServerError) else None
    where = f": {path}" if path else ""
    if isinstance(exc, ChrootMissingError):
        return (
            f"the chroot {exc.chroot} (in the connect string) does not exist on the server; "
            f"create it first (zkwarden --hosts HOST:PORT create -p {exc.chroot})"
        )
    if isinstance(exc, NoNodeError):
        return f"no such node{where}"
    if isinstance(exc, NodeExistsError):
        return f"node already exists{where}"
    if isinstance(exc, NotEmptyError):
        return f"node has children{where} (use -r to delete the whole subtree)"
    if isinstance(exc, BadVersionError):
        return f"version mismatch{where} (the node changed since that version)"
    if isinstance(exc, NoAuthError):
        return f"not authorized{where} (try --auth digest:USER:PASSWORD)"
    if isinstance(exc, AuthFailedError):
        return f"authentication failed: {_first_line(str(exc))}"
    if isinstance(exc, UnimplementedError):
        return f"the server does not support this operation{where}"
    if isinstance(exc, UnreachableError):
        return _first_line(str(exc))
    if isinstance(exc, SessionExpiredError):
        return f"session expired: {_first_line(str(exc))}"
    if isinstance(exc, ConnectionLossError):
        return f"connection to ZooKeeper lost: {_first_line(str(exc))}"
    if isinstance(exc, ServerError):
        return f"server error {type(exc).__name__}{where}"
    if isinstance(exc, ZooKeeperError):
        return _first_line(str(exc)) or type(exc).__name__
    if isinstance(exc, OSError):
        return _first_line(str(exc)) or type(exc).__name__
    text = _first_line(str(exc))
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def epilog() -> str:
    """The exit-code table as printed at the end of ``zkwarden --help``."""
    lines = ["exit codes:"]
    lines += [f"  {row.code:>3}  {row.name:<17} {row.meaning}" for row in EXIT_CODES]
    return "\n".join(lines)
