"""Client metrics for OpenTelemetry (``pip install zkwarden[otel]``).

    from opentelemetry import metrics
    from zkwarden.metrics_otel import OpenTelemetryMetrics

    zk = AsyncClient(hosts, metrics=OpenTelemetryMetrics(metrics.get_meter("my-app")))

Instruments (attribute ``zookeeper.client``: the name given, "default" by default):

* ``zkwarden.client.request.duration`` histogram (s), attributes ``zookeeper.op``,
  ``zookeeper.result`` (``ok``/``error``)
* ``zkwarden.client.requests.in_flight`` up-down counter
* ``zkwarden.client.connect.attempts`` counter
* ``zkwarden.client.state.transitions`` counter, attribute ``zookeeper.state`` (entered)
* ``zkwarden.client.state.duration`` histogram (s), attribute ``zookeeper.state`` (left)
* ``zkwarden.client.watches`` up-down counter
* ``zkwarden.client.queue.depth`` histogram, attribute ``zookeeper.queue``: the depth of a
  consumer queue each time it received an event
* ``zkwarden.client.queue.overflows`` counter, attribute ``zookeeper.queue``

Gauges are kept as up-down counters fed with the differences (the API's synchronous gauge
is recent; an up-down counter works with every SDK since 1.12).
"""

from __future__ import annotations

from opentelemetry.metrics import Meter, get_meter

from .types import ClientState

__all__ = ("OpenTelemetryMetrics",)


class OpenTelemetryMetrics:
    """A :class:`zkwarden.metrics.ClientMetrics` recording into an OpenTelemetry ``meter``
    (default: ``get_meter("zkwarden")`` of the global provider)."""

    def __init__(self, meter: Meter | None = None, *, client: str = "default") -> None:
        m = meter or get_meter("zkwarden")
        self._attrs = {"zookeeper.client": client}
        self._requests = m.create_histogram("zkwarden.client.request.duration", unit="s",
                                            description="ZooKeeper request latency")
        self._in_flight = m.create_up_down_counter("zkwarden.client.requests.in_flight",
                                                   description="Requests not yet answered")
        self._connects = m.create_counter("zkwarden.client.connect.attempts",
                                          description="Attempts to open a connection")
        self._transitions = m.create_counter("zkwarden.client.state.transitions",
                                             description="State changes (state entered)")
        self._state_time = m.create_histogram("zkwarden.client.state.duration", unit="s",
                                              description="Time spent in a state")
        self._watches = m.create_up_down_counter("zkwarden.client.watches",
                                                 description="Watches registered")
        self._depth = m.create_histogram("zkwarden.client.queue.depth",
                                         description="Consumer queue depth at each event")
        self._overflows = m.create_counter("zkwarden.client.queue.overflows",
                                           description="Consumer queue overflows")
        self._last_in_flight = 0
        self._last_watches = 0
        self._previous: ClientState | None = None
        self._op_attrs: dict[tuple[str, bool], dict[str, str]] = {}

    def request_done(self, opcode_name: str, seconds: float, ok: bool) -> None:
        attrs = self._op_attrs.get((opcode_name, ok))
        if attrs is None:
            attrs = self._op_attrs[(opcode_name, ok)] = {
                **self._attrs, "zookeeper.op": opcode_name,
                "zookeeper.result": "ok" if ok else "error"}
        self._requests.record(seconds, attrs)

    def requests_in_flight(self, n: int) -> None:
        self._in_flight.add(n - self._last_in_flight, self._attrs)
        self._last_in_flight = n

    def connect_attempt(self) -> None:
        self._connects.add(1, self._attrs)

    def state_entered(self, state: ClientState, duration_of_previous: float) -> None:
        if self._previous is not None:
            self._state_time.record(duration_of_previous,
                                    {**self._attrs, "zookeeper.state": self._previous.value})
        self._previous = state
        self._transitions.add(1, {**self._attrs, "zookeeper.state": state.value})

    def watches(self, n: int) -> None:
        self._watches.add(n - self._last_watches, self._attrs)
        self._last_watches = n

    def queue_depth(self, name: str, n: int) -> None:
        self._depth.record(n, {**self._attrs, "zookeeper.queue": name})

    def queue_overflow(self, name: str) -> None:
        self._overflows.add(1, {**self._attrs, "zookeeper.queue": name})
