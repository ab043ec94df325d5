"""Client metrics: the hook interface the client reports to (standard library only).

Pass an object with these methods as ``AsyncClient(metrics=...)`` (or ``Client(metrics=...)``)
and the client calls them as things happen, on its event loop thread:

=====================================  ==========================================================
``request_done(op, seconds, ok)``      a request got its reply (``ok``: no error code; an
                                       ``exists`` of an absent node is ok too) or failed
                                       with the connection (``ok=False``); ``op`` is the
                                       opcode's name (``"GetData"``, ``"Create"``, ``"Multi"``)
``requests_in_flight(n)``              requests sent and not yet answered, after each change
``connect_attempt()``                  one attempt to open a connection (each host tried)
``state_entered(state, previous_for)`` the client entered ``state`` (a :class:`ClientState`);
                                       ``previous_for``: seconds spent in the previous state
``watches(n)``                         watches registered with the server (one per path and
                                       kind), after each change
``queue_depth(name, n)``               an event was queued for a consumer: ``n`` events now
                                       wait in that queue (``name``: ``"watch"`` for
                                       persistent watch streams, ``"state"`` for
                                       ``state_changes()`` streams)
``queue_overflow(name)``               a consumer fell more than ``max_queued_events`` behind
                                       and events were dropped (it gets a marker event)
=====================================  ==========================================================

Every method must return quickly and must not block: it runs on the loop that serves the
connection. An exception raised by a hook is logged (once per method) and ignored: metrics
never break the client.

The cost when no ``metrics`` is given is one attribute test per request and reply; with a
hook, one clock read per request plus the hook's own calls. Adapters:
:mod:`zkwarden.metrics_prometheus` (``pip install zkwarden[prometheus]``) and
:mod:`zkwarden.metrics_otel` (``pip install zkwarden[otel]``).
"""

from __future__ import annotations

import logging
from typing import Protocol, runtime_checkable

from .types import ClientState

__all__ = ("ClientMetrics", "NoopMetrics", "RecordingMetrics", "METHODS")

log = logging.getLogger("zkwarden.metrics")

#: The hook methods, in the order of the table above.
METHODS = ("request_done", "requests_in_flight", "connect_attempt", "state_entered",
           "watches", "queue_depth", "queue_overflow")


@runtime_checkable
class ClientMetrics(Protocol):
    """What a client reports to. Implement every method (subclass :class:`NoopMetrics` to
    implement only some)."""

    def request_done(self, opcode_name: str, seconds: float, ok: bool) -> None: ...

    def requests_in_flight(self, n: int) -> None: ...

    def connect_attempt(self) -> None: ...

    def state_entered(self, state: ClientState, duration_of_previous: float) -> None: ...

    def watches(self, n: int) -> None: ...

    def queue_depth(self, name: str, n: int) -> None: ...

    def queue_overflow(self, name: str) -> None: ...


class NoopMetrics:
    """Every hook, doing nothing: the base class for a hook that needs only some."""

    def request_done(self, opcode_name: str, seconds: float, ok: bool) -> None:
        """A request ended (see the module table)."""

    def requests_in_flight(self, n: int) -> None:
        """Requests sent and not yet answered."""

    def connect_attempt(self) -> None:
        """One attempt to open a connection."""

    def state_entered(self, state: ClientState, duration_of_previous: float) -> None:
        """The client entered ``state`` after ``duration_of_previous`` seconds in the last."""

    def watches(self, n: int) -> None:
        """Watches registered with the server."""

    def queue_depth(self, name: str, n: int) -> None:
        """Events waiting in a consumer's queue of kind ``name``."""

    def queue_overflow(self, name: str) -> None:
        """A consumer's queue of kind ``name`` overflowed (events dropped)."""


class RecordingMetrics(NoopMetrics):
    """Keeps what it is told, in memory (for tests and for a quick look in a REPL)."""

    def __init__(self) -> None:
        #: (opcode name, seconds, ok) per request, in order
        self.requests: list[tuple[str, float, bool]] = []
        self.in_flight: list[int] = []
        self.connect_attempts = 0
        #: (state, seconds in the previous state) per change, in order
        self.states: list[tuple[ClientState, float]] = []
        self.watch_counts: list[int] = []
        self.depths: dict[str, list[int]] = {}
        self.overflows: dict[str, int] = {}

    def request_done(self, opcode_name: str, seconds: float, ok: bool) -> None:
        self.requests.append((opcode_name, seconds, ok))

    def requests_in_flight(self, n: int) -> None:
        self.in_flight.append(n)

    def connect_attempt(self) -> None:
        self.connect_attempts += 1

    def state_entered(self, state: ClientState, duration_of_previous: float) -> None:
        self.states.append((state, duration_of_previous))

    def watches(self, n: int) -> None:
        self.watch_counts.append(n)

    def queue_depth(self, name: str, n: int) -> None:
        self.depths.setdefault(name, []).append(n)

    def queue_overflow(self, name: str) -> None:
        self.overflows[name] = self.overflows.get(name, 0) + 1


class _Safe:
    """Wraps a user's hook object: an exception from a hook is logged (once per method)
    and ignored, so the engine calls it without a ``try`` of its own."""

    __slots__ = ("_inner", "_warned")

    def __init__(self, inner: ClientMetrics) -> None:
        self._inner = inner
        self._warned: set[str] = set()

    def _failed(self, method: str, exc: Exception) -> None:
        if method not in self._warned:
            self._warned.add(method)
            log.warning("metrics hook %s of %r raised %r; ignored (logged once)", method,
                        self._inner, exc, exc_info=(type(exc), exc, exc.__traceback__))

    def request_done(self, opcode_name: str, seconds: float, ok: bool) -> None:
        try:
            self._inner.request_done(opcode_name, seconds, ok)
        except Exception as exc:
            self._failed("request_done", exc)

    def requests_in_flight(self, n: int) -> None:
        try:
            self._inner.requests_in_flight(n)
        except Exception as exc:
            self._failed("requests_in_flight", exc)

    def connect_attempt(self) -> None:
        try:
            self._inner.connect_attempt()
        except Exception as exc:
            self._failed("connect_attempt", exc)

    def state_entered(self, state: ClientState, duration_of_previous: float) -> None:
        try:
            self._inner.state_entered(state, duration_of_previous)
        except Exception as exc:
            self._failed("state_entered", exc)

    def watches(self, n: int) -> None:
        try:
            self._inner.watches(n)
        except Exception as exc:
            self._failed("watches", exc)

    def queue_depth(self, name: str, n: int) -> None:
        try:
            self._inner.queue_depth(name, n)
        except Exception as exc:
            self._failed("queue_depth", exc)

    def queue_overflow(self, name: str) -> None:
        try:
            self._inner.queue_overflow(name)
        except Exception as exc:
            self._failed("queue_overflow", exc)


def check_metrics(metrics: object) -> ClientMetrics | None:
    """The hook object the client calls (exceptions contained), or None for "no metrics"
    (None, or a plain :class:`NoopMetrics`, costs nothing).

    Raises:
        ConfigurationError: ``metrics`` lacks one of the hook methods.
    """
    from .errors import ConfigurationError

    if metrics is None or type(metrics) is NoopMetrics:
        return None
    missing = [m for m in METHODS if not callable(getattr(metrics, m, None))]
    if missing:
        raise ConfigurationError(
            f"metrics object {metrics!r} lacks {', '.join(missing)} (see zkwarden.metrics)"
        )
    return _Safe(metrics)  # type: ignore[arg-type]
