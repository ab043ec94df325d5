"""Client metrics for Prometheus (``pip install zkwarden[prometheus]``).

    from prometheus_client import start_http_server
    from zkwarden.metrics_prometheus import PrometheusMetrics

    zk = AsyncClient(hosts, metrics=PrometheusMetrics())   # the default registry
    start_http_server(8000)

Metrics (``client`` label: the name given, "default" by default, so that several clients
can share a registry):

* ``zkwarden_client_request_duration_seconds`` histogram, labels ``op``, ``result``
  (``ok`` or ``error``): one observation per request
* ``zkwarden_client_requests_in_flight`` gauge
* ``zkwarden_client_connect_attempts_total`` counter
* ``zkwarden_client_state`` gauge, label ``state``: 1 for the current state, 0 for others
* ``zkwarden_client_state_transitions_total`` counter, label ``state`` (the state entered)
* ``zkwarden_client_state_duration_seconds`` histogram, label ``state``: time spent in a
  state, observed when it is left
* ``zkwarden_client_watches`` gauge: watches registered with the server
* ``zkwarden_client_queue_depth`` gauge, label ``queue``: events waiting in the consumer
  queue that last received one (``watch`` or ``state``)
* ``zkwarden_client_queue_overflows_total`` counter, label ``queue``
"""

from __future__ import annotations

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

from .types import ClientState

__all__ = ("PrometheusMetrics",)

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                    2.5, 5.0, 10.0)
_STATE_BUCKETS = (0.01, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0, 3600.0)


class PrometheusMetrics:
    """A :class:`zkwarden.metrics.ClientMetrics` that updates ``prometheus_client`` metrics
    in ``registry`` (default: the global one). ``prefix`` starts every metric name; two
    instances may share a registry only through :meth:`for_client` of the first."""

    def __init__(self, registry: CollectorRegistry | None = REGISTRY, *,
                 prefix: str = "zkwarden_client_", client: str = "default") -> None:
        r = registry
        labels = ["client"]
        self._requests = Histogram(prefix + "request_duration_seconds",
                                   "ZooKeeper request latency by opcode and result.",
                                   labels + ["op", "result"], buckets=_LATENCY_BUCKETS,
                                   registry=r)
        self._in_flight = Gauge(prefix + "requests_in_flight",
                                "Requests sent and not yet answered.", labels, registry=r)
        self._connects = Counter(prefix + "connect_attempts",
                                 "Attempts to open a connection to a server.", labels,
                                 registry=r)
        self._state = Gauge(prefix + "state", "1 for the client's current state.",
                            labels + ["state"], registry=r)
        self._transitions = Counter(prefix + "state_transitions",
                                    "State changes, by the state entered.", labels + ["state"],
                                    registry=r)
        self._state_time = Histogram(prefix + "state_duration_seconds",
                                     "Time spent in a state, observed when it is left.",
                                     labels + ["state"], buckets=_STATE_BUCKETS, registry=r)
        self._watches = Gauge(prefix + "watches", "Watches registered with the server.",
                              labels, registry=r)
        self._depth = Gauge(prefix + "queue_depth",
                            "Events waiting in the consumer queue that last got one.",
                            labels + ["queue"], registry=r)
        self._overflows = Counter(prefix + "queue_overflows",
                                  "Times a consumer fell behind and events were dropped.",
                                  labels + ["queue"], registry=r)
        self._client = client
        self._bind(client)

    def _bind(self, client: str) -> None:
        self._client = client
        # Children resolved once: labels() costs a lock and a dict lookup per call.
        self._ok: dict[str, Histogram] = {}
        self._err: dict[str, Histogram] = {}
        self._in_flight_c = self._in_flight.labels(client)
        self._connects_c = self._connects.labels(client)
        self._watches_c = self._watches.labels(client)
        self._previous: ClientState | None = None
        for state in ClientState:
            self._state.labels(client, state.value).set(0)

    def for_client(self, client: str) -> PrometheusMetrics:
        """The same metrics with another ``client`` label (for a second client)."""
        other = object.__new__(PrometheusMetrics)
        other.__dict__.update(self.__dict__)
        other._bind(client)
        return other

    def request_done(self, opcode_name: str, seconds: float, ok: bool) -> None:
        table = self._ok if ok else self._err
        child = table.get(opcode_name)
        if child is None:
            child = table[opcode_name] = self._requests.labels(
                self._client, opcode_name, "ok" if ok else "error")
        child.observe(seconds)

    def requests_in_flight(self, n: int) -> None:
        self._in_flight_c.set(n)

    def connect_attempt(self) -> None:
        self._connects_c.inc()

    def state_entered(self, state: ClientState, duration_of_previous: float) -> None:
        previous = self._previous
        if previous is not None:
            self._state.labels(self._client, previous.value).set(0)
            self._state_time.labels(self._client, previous.value).observe(duration_of_previous)
        self._previous = state
        self._state.labels(self._client, state.value).set(1)
        self._transitions.labels(self._client, state.value).inc()

    def watches(self, n: int) -> None:
        self._watches_c.set(n)

    def queue_depth(self, name: str, n: int) -> None:
        self._depth.labels(self._client, name).set(n)

    def queue_overflow(self, name: str) -> None:
        self._overflows.labels(self._client, name).inc()
