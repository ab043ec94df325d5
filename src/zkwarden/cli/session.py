"""Connection options and the async plumbing every verb shares.

:class:`Options` holds the global options once resolved (``--hosts`` or
``$ZOOKEEPER_HOSTS``, ``--session-timeout``, ``--timeout``, ``--auth``, ``--sasl-*``,
``--json``);
:func:`connected` opens a client and reports an unreachable ensemble in one clear line;
:class:`Interrupt` turns Ctrl-C/SIGTERM into an event for the verbs that run until
interrupted, so they can clean up (unregister, close) before exiting.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import os
import signal
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from .._aio.client import AsyncClient
from ..errors import ConfigurationError, ConnectionLossError
from ..hosts import parse_connect_string
from ..sasl import SASLOptions
from .exitcodes import ChrootMissingError, UnreachableError

__all__ = (
    "DEFAULT_HOSTS",
    "Options",
    "options_from_args",
    "parse_auth",
    "sasl_from_args",
    "SASL_PASSWORD_ENV",
    "connected",
    "Interrupt",
    "run_until_interrupted",
)

T = TypeVar("T")

#: The connect string used when neither --hosts nor $ZOOKEEPER_HOSTS is given.
DEFAULT_HOSTS = "127.0.0.1:2181"
DEFAULT_SESSION_TIMEOUT = 10.0
DEFAULT_TIMEOUT = 10.0
#: The environment variable a SASL password is read from when no --sasl-password-file is
#: given (a password is never taken on the command line: it would show in ``ps``).
SASL_PASSWORD_ENV = "ZKWARDEN_SASL_PASSWORD"


@dataclass(frozen=True, slots=True)
class Options:
    """The resolved global options."""

    hosts: str = DEFAULT_HOSTS
    session_timeout: float = DEFAULT_SESSION_TIMEOUT
    timeout: float = DEFAULT_TIMEOUT
    auth: tuple[tuple[str, str], ...] = field(default=())
    json: bool = False
    verbose: int = 0
    #: ``--sasl-*``: its repr hides the password.
    sasl: SASLOptions | None = None


def parse_auth(spec: str) -> tuple[str, str]:
    """``digest:user:password`` → ``("digest", "user:password")``.

    Raises:
        ConfigurationError: no scheme or no credentials.
    """
    scheme, sep, credentials = spec.partition(":")
    if not sep or not scheme or not credentials:
        raise ConfigurationError(
            f"--auth takes SCHEME:CREDENTIALS (e.g. digest:user:password), got {spec!r}"
        )
    return scheme, credentials


def sasl_from_args(args: argparse.Namespace) -> SASLOptions | None:
    """``--sasl-mechanism``/``--sasl-user``/``--sasl-password-file`` (else
    ``$ZKWARDEN_SASL_PASSWORD``) as options; None when no ``--sasl-*`` option is given.

    DIGEST-MD5 (the default mechanism) needs ``--sasl-user`` and a password; GSSAPI takes
    ``--sasl-user`` as the Kerberos principal (optional: the credential cache's).

    Raises:
        ConfigurationError: an incomplete or contradictory combination.
    """
    if getattr(args, "sasl_password_given", None) is not None:
        raise ConfigurationError(
            "--sasl-password is not accepted: a password on the command line is visible to "
            f"every local user; use --sasl-password-file FILE or ${SASL_PASSWORD_ENV}"
        )
    mechanism = getattr(args, "sasl_mechanism", None)
    user = getattr(args, "sasl_user", None)
    password_file = getattr(args, "sasl_password_file", None)
    if mechanism is None and user is None and password_file is None:
        return None
    mechanism = (mechanism or "DIGEST-MD5").upper()
    if mechanism == "GSSAPI":
        if password_file is not None:
            raise ConfigurationError(
                "--sasl-password-file is for DIGEST-MD5; GSSAPI uses kinit or a keytab"
            )
        return SASLOptions(mechanism="GSSAPI", principal=user)
    if user is None:
        raise ConfigurationError(f"--sasl-mechanism {mechanism} needs --sasl-user")
    if password_file is not None:
        return SASLOptions(mechanism=mechanism, username=user, password_file=password_file)
    if os.environ.get(SASL_PASSWORD_ENV):
        return SASLOptions(mechanism=mechanism, username=user, password_env=SASL_PASSWORD_ENV)
    raise ConfigurationError(
        f"--sasl-user needs a password: --sasl-password-file FILE or ${SASL_PASSWORD_ENV}"
    )


def options_from_args(args: argparse.Namespace) -> Options:
    """Resolve the global options (command line, then environment, then defaults).

    Raises:
        ConfigurationError: a bad --auth value, an incomplete --sasl-* set, or a
            non-positive timeout.
    """
    hosts = getattr(args, "hosts", None) or os.environ.get("ZOOKEEPER_HOSTS") or DEFAULT_HOSTS
    session_timeout = getattr(args, "session_timeout", None) or DEFAULT_SESSION_TIMEOUT
    timeout = getattr(args, "timeout", None) or DEFAULT_TIMEOUT
    auth = tuple(parse_auth(a) for a in (getattr(args, "auth", None) or ()))
    return Options(
        hosts=hosts.strip(),
        session_timeout=float(session_timeout),
        timeout=float(timeout),
        auth=auth,
        json=bool(getattr(args, "json", False)),
        verbose=int(getattr(args, "verbose", 0) or 0),
        sasl=sasl_from_args(args),
    )


def make_client(opts: Options) -> AsyncClient:
    """A client for ``opts`` (not started).

    Raises:
        ConfigurationError: bad connect string or timeout; the SASL password file cannot
            be read (the message names the file, never its content).
    """
    return AsyncClient(
        opts.hosts,
        session_timeout=opts.session_timeout,
        auth=list(opts.auth) or None,
        sasl=opts.sasl,
        request_timeout=opts.timeout,
    )


@contextlib.asynccontextmanager
async def connected(opts: Options) -> AsyncIterator[AsyncClient]:
    """A started client, closed on exit (its session closed on the server).

    Raises:
        UnreachableError: no server answered within ``opts.timeout``.
        AuthFailedError: the server rejected ``--auth`` or the SASL login.
        ConfigurationError: bad connect string or timeout.
    """
    client = make_client(opts)
    try:
        await client.start(timeout=opts.timeout)
    except ConnectionLossError as exc:
        await client.close()
        unresolved = await unresolvable_hosts(opts.hosts)
        hint = (
            f"cannot resolve host name {', '.join(map(repr, unresolved))}"
            if unresolved
            else "is it running? `zkwarden server` starts one for development"
        )
        raise UnreachableError(
            f"cannot reach ZooKeeper at {opts.hosts} within {opts.timeout:g}s ({hint})"
        ) from exc
    except BaseException:
        await client.close()
        raise
    try:
        await _check_chroot(client, opts.hosts)
    except BaseException:
        await client.close()
        raise
    try:
        yield client
    finally:
        await client.close()


def chroot_of(hosts: str) -> str:
    """The chroot of a connect string ("" when none or unparsable). Never raises."""
    try:
        return parse_connect_string(hosts).chroot
    except ConfigurationError:
        return ""


async def _check_chroot(client: AsyncClient, hosts: str) -> None:
    """Every path of a client with a chroot lives under it: when the chroot node is
    missing, say so, instead of a "no such node: /" that names no chroot.

    Raises:
        ChrootMissingError: the chroot node does not exist.
        ZooKeeperError: the check itself failed.
    """
    chroot = chroot_of(hosts)
    if chroot and await client.exists("/") is None:
        raise ChrootMissingError(chroot)


async def unresolvable_hosts(hosts: str, timeout: float = 2.0) -> list[str]:
    """The host names in ``hosts`` that do not resolve (IP literals never count).

    Asked only after a connection failed, so the one-line error can say "cannot resolve"
    instead of blaming an unreachable server. A lookup that takes longer than
    ``timeout`` is not reported (a slow resolver is not proof of a wrong name).
    Never raises.
    """
    try:
        names = {h.host for h in parse_connect_string(hosts).hosts}
    except ConfigurationError:
        return []
    loop = asyncio.get_running_loop()

    async def fails(name: str) -> bool:
        try:
            ipaddress.ip_address(name.partition("%")[0])
            return False
        except ValueError:
            pass
        try:
            async with asyncio.timeout(timeout):
                await loop.getaddrinfo(name, None, type=socket.SOCK_STREAM)
        except socket.gaierror:
            return True
        except (TimeoutError, OSError, UnicodeError):
            return False
        return False

    ordered = sorted(names)
    results = await asyncio.gather(*(fails(n) for n in ordered))
    return [n for n, bad in zip(ordered, results, strict=True) if bad]


class Interrupt:
    """Ctrl-C (SIGINT) and SIGTERM as an asyncio event, while installed.

    The first signal sets :attr:`event`; a second one cancels the task that installed the
    handler (the verb gives up cleaning up). Outside the main thread, where signal
    handlers cannot be installed, the event can only be set by code.
    """

    def __init__(self) -> None:
        self.event = asyncio.Event()
        self.signals = 0
        self._installed: list[int] = []
        self._task: asyncio.Task[object] | None = None

    def _on_signal(self) -> None:
        self.signals += 1
        if self.signals == 1:
            self.event.set()
        elif self._task is not None:
            self._task.cancel()

    def __enter__(self) -> Interrupt:
        loop = asyncio.get_running_loop()
        self._task = asyncio.current_task()
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, self._on_signal)
            except (ValueError, RuntimeError, NotImplementedError):
                continue  # not the main thread, or no signals on this platform
            self._installed.append(sig)
        return self

    def __exit__(self, *exc: object) -> None:
        loop = asyncio.get_running_loop()
        for sig in self._installed:
            with contextlib.suppress(ValueError, RuntimeError):
                loop.remove_signal_handler(sig)
        self._installed.clear()

    async def wait(self, timeout: float | None = None) -> bool:
        """Wait for an interrupt; True if one came within ``timeout``."""
        try:
            async with asyncio.timeout(timeout):
                await self.event.wait()
        except TimeoutError:
            return False
        return True


async def run_until_interrupted(
    work: Callable[[], Awaitable[T]], interrupt: Interrupt, *, duration: float | None = None
) -> T | None:
    """Run ``work()`` until it returns, an interrupt comes, or ``duration`` passes.

    Returns the work's result, or None when it was stopped (then it was cancelled and
    awaited). Exceptions of the work propagate.
    """
    task: asyncio.Task[T] = asyncio.ensure_future(work())
    waiter = asyncio.ensure_future(interrupt.wait(duration))
    try:
        done, _ = await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
        if not task.done():
            task.cancel()
        await asyncio.gather(task, waiter, return_exceptions=True)
    if task in done and not task.cancelled():
        return task.result()
    return None
