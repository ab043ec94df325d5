"""Establishing one connection for a session: handshake, SASL, auth, SetWatches.

The supervisor calls :func:`establish` for every attempt; the session machine decides what
each reply means, the engine owns the connection once it is made.
"""

from __future__ import annotations

import asyncio
import logging

from ..errors import ClientClosedError, ConnectionLossError, ZooKeeperError
from ..hosts import HostPort
from ..protocol.sasl import SaslMechanism
from ..protocol.session import HandshakeOutcome
from . import transport as _transport
from .connection import Connection
from .engine import SessionEngine

__all__ = ("establish",)

log = logging.getLogger("zkwarden.client")


class _FirstTokenReady:
    """A mechanism whose first token was computed already (in a thread)."""

    def __init__(self, mechanism: SaslMechanism, first: bytes) -> None:
        self._mechanism = mechanism
        self._first = first
        self.name = mechanism.name

    def initial_response(self) -> bytes:
        return self._first

    def evaluate(self, challenge: bytes) -> bytes | None:
        return self._mechanism.evaluate(challenge)

    @property
    def complete(self) -> bool:
        return self._mechanism.complete


async def establish(engine: SessionEngine, host: HostPort, timeout: float) -> Connection | None:
    """Open, handshake and restore one connection. None when the old session expired.

    Raises:
        ConnectionLossError, ProtocolError, AuthFailedError, DataTooLargeError,
        ClientClosedError.
    """
    loop = asyncio.get_running_loop()
    transport, conn = await _transport.open_connection(
        host, lambda: Connection(engine, host, engine.max_response), timeout=timeout,
        tls=engine.tls,
    )
    if engine.machine.closing:
        conn.abort()
        raise ClientClosedError("client closed while connecting")
    engine.conn = conn
    try:
        transport.write(engine.machine.connect_request(loop.time()))
        engine.handshaking = conn
        try:
            payload = await conn.first_frame(timeout)
        finally:
            engine.handshaking = None
        if conn is not engine.conn:
            raise ConnectionLossError(f"connection to {host} lost during the handshake")
        outcome = engine.machine.handshake(payload, loop.time())
    except BaseException as exc:
        engine.drop(conn, exc)
        raise
    finally:
        engine.flush_changes()
    if outcome is HandshakeOutcome.EXPIRED:
        engine.drop(conn, ConnectionLossError("session expired"))
        return None
    waiter: asyncio.Future[None] = loop.create_future()
    engine.restore_waiter = waiter
    conn.activate()  # early frames, or the loss that happened meanwhile
    if conn is not engine.conn:
        raise ConnectionLossError(f"connection to {host} lost during set-up")
    try:
        mechanism = await _start_sasl(engine, host) if engine.sasl is not None else None
        if conn is not engine.conn:
            raise ConnectionLossError(f"connection to {host} lost during set-up")
        primed = engine.machine.prime(engine.auth, engine.watches, loop.time(), sasl=mechanism)
    except ZooKeeperError as exc:
        engine.drop(conn, exc)
        raise
    if primed:
        conn.write_now(primed)
    conn.schedule_timer(engine.machine.next_deadline())
    engine.flush_changes()
    try:
        async with asyncio.timeout(timeout):
            await waiter
    except TimeoutError:
        engine.drop(conn, ConnectionLossError("no reply while restoring the session"))
        raise ConnectionLossError(f"no reply from {host} while restoring") from None
    finally:
        if engine.restore_waiter is waiter:
            engine.restore_waiter = None
    log.info(
        "connected to %s, session 0x%x (%s), timeout %.1fs",
        host, engine.machine.session_id, outcome.name.lower(),
        engine.machine.negotiated_timeout or 0.0,
    )
    return conn

async def _start_sasl(engine: SessionEngine, host: HostPort) -> SaslMechanism:
    """The connection's SASL mechanism with its first token computed off the loop
    (a Kerberos mechanism may ask the KDC for a ticket first: a network round trip).

    Raises:
        AuthFailedError: the credentials cannot be used (no ticket, bad keytab, ...).
    """
    assert engine.sasl is not None
    mechanism = engine.sasl(host.host)
    first = await asyncio.to_thread(mechanism.initial_response)
    return _FirstTokenReady(mechanism, first)
