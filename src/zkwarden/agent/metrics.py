"""Prometheus metrics of the agent, in a registry of its own (one per agent).

Counters move when things happen (check results, session changes, reconnects, requests,
registrations); gauges that describe the current state (connection, registrations by
state, cache sizes and staleness) are set just before each scrape by the agent.

The ZooKeeper client's own metrics come from the client metrics adapter
(:mod:`zkwarden.metrics_prometheus`, passed to the agent's client as ``metrics=``) under
``zkwarden_agent_client_*``: request latency per opcode, requests in flight, connection
attempts, state durations, watches, queue depths and overflows. The connection state
gauges the agent had before (``zkwarden_agent_zookeeper_connected`` and
``zkwarden_agent_zookeeper_state``) keep their names and are driven by that adapter too.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from ..metrics_prometheus import PrometheusMetrics
from ..types import ClientState

__all__ = ("AgentMetrics", "CONTENT_TYPE_LATEST", "REGISTRATION_STATES")

#: The values of the ``state`` label of ``zkwarden_agent_registrations``.
REGISTRATION_STATES = ("registered", "pending", "deregistered", "conflict")

_P = "zkwarden_agent_"


class _ClientMetrics(PrometheusMetrics):
    """The client adapter, also driving the agent's older connection-state gauges."""

    def __init__(self, registry: CollectorRegistry, agent: AgentMetrics) -> None:
        super().__init__(registry, prefix=_P + "client_", client="agent")
        self._agent = agent

    def state_entered(self, state: ClientState, duration_of_previous: float) -> None:
        super().state_entered(state, duration_of_previous)
        self._agent.set_client_state(state)


class AgentMetrics:
    """Every metric the agent exports."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.info = Gauge(_P + "info", "Agent build information (always 1).", ["version"],
                          registry=r)
        self.zk_connected = Gauge(
            _P + "zookeeper_connected", "1 while a ZooKeeper session is connected.", registry=r
        )
        self.zk_state = Gauge(
            _P + "zookeeper_state", "1 for the client's current connection state.", ["state"],
            registry=r,
        )
        self.session_changes = Counter(
            _P + "zookeeper_session_changes", "New ZooKeeper session ids (first one included).",
            registry=r,
        )
        self.reconnects = Counter(
            _P + "zookeeper_reconnects", "Connections re-established after a disconnect.",
            registry=r,
        )
        self.disconnects = Counter(
            _P + "zookeeper_disconnects", "Connections to ZooKeeper lost.", registry=r
        )
        self.registrations = Gauge(
            _P + "registrations", "Local service instances by registration state.", ["state"],
            registry=r,
        )
        self.registration_changes = Counter(
            _P + "registration_changes",
            "Registrations and deregistrations the agent made.", ["service", "action"],
            registry=r,
        )
        self.check_results = Counter(
            _P + "check_results", "Health check results.", ["service", "id", "result"],
            registry=r,
        )
        self.check_passing = Gauge(
            _P + "check_passing", "1 passing, 0 failing, -1 not yet known.", ["service", "id"],
            registry=r,
        )
        self.check_duration = Histogram(
            _P + "check_duration_seconds", "Health check duration.", ["service", "id"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
            registry=r,
        )
        self.cache_instances = Gauge(
            _P + "cache_instances", "Instances in the agent's view of a service.", ["service"],
            registry=r,
        )
        self.cache_stale = Gauge(
            _P + "cache_stale", "1 when the view of a service may be out of date.", ["service"],
            registry=r,
        )
        self.cache_age = Gauge(
            _P + "cache_age_seconds", "Seconds since the view was last known current.",
            ["service"], registry=r,
        )
        self.http_requests = Counter(
            _P + "http_requests", "HTTP API requests.", ["route", "method", "code"], registry=r
        )
        self.reloads = Counter(
            _P + "config_reloads", "Configuration reloads (SIGHUP).", ["result"], registry=r
        )
        #: pass as ``AsyncClient(metrics=...)``: the client's metrics, in this registry
        self.client: PrometheusMetrics = _ClientMetrics(r, self)

    def set_client_state(self, state: ClientState) -> None:
        for s in ClientState:
            self.zk_state.labels(state=s.value).set(1 if s is state else 0)
        self.zk_connected.set(1 if state in (ClientState.CONNECTED, ClientState.READ_ONLY) else 0)

    def forget_service(self, service: str, instance_id: str) -> None:
        """Drop the per-instance series of a service no longer configured."""
        for metric in (self.check_passing, self.check_duration):
            try:
                metric.remove(service, instance_id)
            except KeyError:
                pass
        for result in ("pass", "fail"):
            try:
                self.check_results.remove(service, instance_id, result)
            except KeyError:
                pass

    def forget_view(self, service: str) -> None:
        """Drop the series of a view no longer kept."""
        for metric in (self.cache_instances, self.cache_stale, self.cache_age):
            try:
                metric.remove(service)
            except KeyError:
                pass

    def render(self) -> bytes:
        """The text exposition of every metric."""
        return generate_latest(self.registry)
