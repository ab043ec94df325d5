"""Real server-side session expiry for tests.

ZooKeeper has no "expire this session" command. What it does have: a second connection
may attach to a live session with its id and password, and closing the session from
there ends it on the server exactly as an expiry does (ephemerals deleted, watches
dropped, the original connection closed). The original client then learns on its next
handshake that its session is gone (negotiated timeout 0), as after a real expiry.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol

from .._aio.transport import close_session_blocking
from ..errors import ConfigurationError, ConnectionLossError
from ..hosts import HostPort, parse_connect_string

__all__ = ("expire_session", "expire_session_async")


class _HasSession(Protocol):
    @property
    def session_id(self) -> int | None: ...

    @property
    def session_password(self) -> bytes: ...

    @property
    def hosts(self) -> list[HostPort]: ...


def _resolve(
    target: _HasSession | int, password: bytes | None, hosts: str | None
) -> tuple[int, bytes, list[HostPort]]:
    if isinstance(target, int):
        if password is None or hosts is None:
            raise ConfigurationError("expire_session(session_id) needs password= and hosts=")
        return target, password, list(parse_connect_string(hosts).hosts)
    session_id = target.session_id
    if not session_id:
        raise ConfigurationError("the client has no session to expire")
    server_hosts = list(parse_connect_string(hosts).hosts) if hosts else target.hosts
    return session_id, password or target.session_password, server_hosts


def expire_session(
    target: _HasSession | int,
    password: bytes | None = None,
    *,
    hosts: str | None = None,
    timeout: float = 5.0,
) -> int:
    """Expire a session on the server, for real; return the session id that was expired.

    ``target`` is a client (``AsyncClient`` or ``Client``) or a session id; with a session
    id, ``password`` and ``hosts`` (a connect string) are required.

    Raises:
        ConfigurationError: no session, or missing password/hosts.
        ConnectionLossError: no server of ``hosts`` could be reached.
    """
    session_id, pw, server_hosts = _resolve(target, password, hosts)
    last: Exception | None = None
    # The session's owner may re-attach it at the moment we do (the server then drops our
    # connection): try again until a server confirms the close or says it is gone.
    for _ in range(5):
        for host in server_hosts:
            try:
                close_session_blocking(host, session_id, pw, timeout=timeout)
                return session_id
            except ConnectionLossError as exc:
                last = exc
        time.sleep(0.05)
    raise ConnectionLossError(f"could not expire session 0x{session_id:x}: {last}")


async def expire_session_async(
    target: _HasSession | int,
    password: bytes | None = None,
    *,
    hosts: str | None = None,
    timeout: float = 5.0,
) -> int:
    """:func:`expire_session` without blocking the event loop (runs in a worker thread)."""
    return await asyncio.to_thread(
        expire_session, target, password, hosts=hosts, timeout=timeout
    )
