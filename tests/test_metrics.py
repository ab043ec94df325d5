"""Client metrics (zkwarden.metrics and its Prometheus and OpenTelemetry adapters) against a
real ZooKeeper: what each hook is told, that a failing hook breaks nothing, and what the
adapters export."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from prometheus_client import CollectorRegistry

from zkwarden import AsyncClient, Client, ClientState, WatcherType
from zkwarden._aio.ensemble import CONFIG_PATH
from zkwarden.errors import ConfigurationError, NoNodeError
from zkwarden.metrics import METHODS, ClientMetrics, NoopMetrics, RecordingMetrics
from zkwarden.metrics_otel import OpenTelemetryMetrics
from zkwarden.metrics_prometheus import PrometheusMetrics
from zkwarden.testing import FaultProxy


async def wait_for(predicate: Any, timeout: float, what: str) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():  # noqa: ASYNC110 - polling what the hooks recorded
            await asyncio.sleep(0.02)


def test_recording_and_noop_implement_the_protocol() -> None:
    assert isinstance(RecordingMetrics(), ClientMetrics)
    assert isinstance(NoopMetrics(), ClientMetrics)
    assert isinstance(PrometheusMetrics(CollectorRegistry()), ClientMetrics)
    assert isinstance(OpenTelemetryMetrics(MeterProvider().get_meter("t")), ClientMetrics)
    for name in METHODS:
        assert callable(getattr(NoopMetrics, name))


def test_an_incomplete_hook_is_refused() -> None:
    class Partial:
        def request_done(self, opcode_name: str, seconds: float, ok: bool) -> None: ...

    with pytest.raises(ConfigurationError, match="lacks"):
        AsyncClient("127.0.0.1:2181", metrics=Partial())  # type: ignore[arg-type]


async def test_requests_states_and_connects_are_reported(zk_hosts: str, zk_path: str) -> None:
    m = RecordingMetrics()
    async with AsyncClient(zk_hosts, metrics=m) as zk:
        await zk.create(zk_path, b"x")
        await zk.get(zk_path)
        with pytest.raises(NoNodeError):
            await zk.get(zk_path + "/missing")
        assert await zk.exists(zk_path + "/missing") is None
        await asyncio.gather(*(zk.exists(zk_path) for _ in range(20)))
    ops = [(op, ok) for op, _s, ok in m.requests]
    assert ("Create", True) in ops and ("GetData", True) in ops
    assert ("GetData", False) in ops  # NoNode: answered with an error code
    exists_ok = [ok for op, _s, ok in m.requests if op == "Exists"]
    assert exists_ok and all(exists_ok)  # exists of an absent node is an answer
    assert sum(1 for op, ok in ops if op == "Exists" and ok) == 21
    assert all(0 <= s < 10 for _op, s, _ok in m.requests)
    assert max(m.in_flight) >= 2  # the gathered exists were in flight together
    assert m.in_flight[-1] == 0
    assert m.connect_attempts >= 1
    states = [s for s, _d in m.states]
    assert states[0] is ClientState.CONNECTED and states[-1] is ClientState.CLOSED
    assert all(d >= 0 for _s, d in m.states)


#: What the ensemble tracker (on by default) adds to a client's counts, exactly: one
#: GetData of /zookeeper/config (sent when the session starts, so answered before any
#: later request of the test) and the data watch it arms. The counts below are the
#: user's own plus these.
TRACKER_WATCHES = 1
TRACKER_GETS = 1


async def _tracker_watch_armed(zk: AsyncClient, m: RecordingMetrics) -> None:
    """Wait until the only watch is the tracker's, and check that it is on CONFIG_PATH."""
    await wait_for(lambda: bool(m.watch_counts) and m.watch_counts[-1] == TRACKER_WATCHES,
                   5, "the tracker's watch")
    await zk.check_watches(CONFIG_PATH, WatcherType.DATA)


async def test_watch_count_and_queue_depth_and_overflow(zk_hosts: str, zk_path: str) -> None:
    m = RecordingMetrics()
    async with AsyncClient(zk_hosts, metrics=m, max_queued_events=3) as zk:
        await _tracker_watch_armed(zk, m)
        await zk.create(zk_path)
        stream = await zk.add_watch(zk_path)
        await wait_for(lambda: m.watch_counts[-1] == TRACKER_WATCHES + 1, 5, "1 watch")
        for i in range(8):  # nobody consumes: the queue of 3 overflows
            await zk.create(f"{zk_path}/c{i}")
        await zk.sync(zk_path)
        await wait_for(lambda: m.overflows.get("watch", 0) >= 1, 5, "an overflow")
        assert max(m.depths["watch"]) <= 3 + 1
        one_shot = zk.watch(zk_path + "/c0")
        await one_shot.__anext__()
        assert m.watch_counts[-1] == TRACKER_WATCHES + 2
        await stream.aclose()
        await one_shot.aclose()
        await wait_for(lambda: m.watch_counts[-1] == TRACKER_WATCHES, 5, "no user watch left")
        await zk.check_watches(CONFIG_PATH, WatcherType.DATA)  # the one left is the tracker's


async def test_state_stream_queue_is_reported(zk_hosts: str) -> None:
    m = RecordingMetrics()
    zk = AsyncClient(zk_hosts, metrics=m, max_queued_events=1)
    stream = zk.state_changes()
    await zk.start()
    await zk.close()
    assert m.depths["state"]
    assert m.overflows.get("state", 0) >= 1  # CONNECTED then CLOSED into a queue of one
    assert [c.state async for c in stream] == [ClientState.CLOSED]


async def test_disconnect_failed_requests_and_reconnect_attempts(
    fault_proxy: FaultProxy, zk_path: str
) -> None:
    m = RecordingMetrics()
    async with AsyncClient(fault_proxy.connect_string, metrics=m, session_timeout=6.0) as zk:
        await zk.ensure_path(zk_path)
        attempts = m.connect_attempts
        fault_proxy.blackhole()
        pending = asyncio.ensure_future(zk.get(zk_path))
        await asyncio.sleep(0.2)
        fault_proxy.reset()
        fault_proxy.pass_through()
        with pytest.raises(Exception):  # noqa: B017 - ConnectionLoss, whichever subclass
            await asyncio.wait_for(pending, 10)
        await zk.wait_connected(10)
        assert ("GetData", False) in [(op, ok) for op, _s, ok in m.requests]
        assert m.connect_attempts > attempts
        states = [s for s, _d in m.states]
        assert ClientState.SUSPENDED in states
        suspended_at = states.index(ClientState.SUSPENDED)
        assert states[suspended_at + 1] is ClientState.CONNECTED
        assert m.in_flight[-1] == 0


async def test_a_raising_hook_breaks_nothing(zk_hosts: str, zk_path: str,
                                           caplog: pytest.LogCaptureFixture) -> None:
    class Broken(NoopMetrics):
        def request_done(self, opcode_name: str, seconds: float, ok: bool) -> None:
            raise RuntimeError("boom")

        def state_entered(self, state: ClientState, duration_of_previous: float) -> None:
            raise RuntimeError("boom")

    with caplog.at_level(logging.WARNING, logger="zkwarden.metrics"):
        async with AsyncClient(zk_hosts, metrics=Broken()) as zk:
            await zk.create(zk_path, b"x")
            for _ in range(5):
                assert (await zk.get(zk_path))[0] == b"x"
    warnings = [r for r in caplog.records if r.name == "zkwarden.metrics"]
    assert len(warnings) == 2  # once per method, not once per call


async def test_prometheus_adapter(zk_hosts: str, zk_path: str) -> None:
    registry = CollectorRegistry()
    metrics = PrometheusMetrics(registry)
    second = metrics.for_client("second")
    async with AsyncClient(zk_hosts, metrics=metrics) as zk, \
            AsyncClient(zk_hosts, metrics=second) as zk2:
        await zk.create(zk_path)
        for _ in range(7):
            await zk.get(zk_path)
        await zk2.exists(zk_path)
        stream = await zk.add_watch(zk_path)
        get = registry.get_sample_value
        assert get("zkwarden_client_request_duration_seconds_count",
                   {"client": "default", "op": "GetData", "result": "ok"}) == 7 + TRACKER_GETS
        assert get("zkwarden_client_request_duration_seconds_count",
                   {"client": "second", "op": "Exists", "result": "ok"}) == 1
        assert get("zkwarden_client_state", {"client": "default", "state": "CONNECTED"}) == 1
        assert get("zkwarden_client_state", {"client": "default", "state": "SUSPENDED"}) == 0
        assert get("zkwarden_client_connect_attempts_total", {"client": "default"}) >= 1
        assert get("zkwarden_client_watches", {"client": "default"}) == 1 + TRACKER_WATCHES
        assert get("zkwarden_client_requests_in_flight", {"client": "default"}) == 0
        await stream.aclose()
    assert registry.get_sample_value("zkwarden_client_state",
                                     {"client": "default", "state": "CLOSED"}) == 1
    assert registry.get_sample_value("zkwarden_client_state_duration_seconds_count",
                                     {"client": "default", "state": "CONNECTED"}) == 1


async def test_opentelemetry_adapter(zk_hosts: str, zk_path: str) -> None:
    reader = InMemoryMetricReader()
    meter = MeterProvider(metric_readers=[reader]).get_meter("test")
    async with AsyncClient(zk_hosts, metrics=OpenTelemetryMetrics(meter)) as zk:
        await zk.create(zk_path)
        for _ in range(4):
            await zk.get(zk_path)
    data = reader.get_metrics_data()
    points: dict[str, list[Any]] = {}
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                points[metric.name] = list(metric.data.data_points)
    gets = [p for p in points["zkwarden.client.request.duration"]
            if p.attributes.get("zookeeper.op") == "GetData"]
    assert gets and gets[0].count == 4 + TRACKER_GETS
    assert points["zkwarden.client.connect.attempts"][0].value >= 1
    assert points["zkwarden.client.requests.in_flight"][0].value == 0
    entered = {p.attributes["zookeeper.state"] for p in points["zkwarden.client.state.transitions"]}
    assert {"CONNECTED", "CLOSED"} <= entered


def test_blocking_client_forwards_metrics(zk_hosts: str, zk_path: str) -> None:
    m = RecordingMetrics()
    with Client(zk_hosts, metrics=m) as zk:
        zk.create(zk_path)
        zk.get(zk_path)
    assert ("GetData", True) in [(op, ok) for op, _s, ok in m.requests]


async def test_agent_metrics_use_the_adapter_and_keep_their_names(zk_hosts: str,
                                                                  zk_path: str) -> None:
    from zkwarden.agent.metrics import AgentMetrics

    agent = AgentMetrics()
    async with AsyncClient(zk_hosts, metrics=agent.client) as zk:
        await zk.exists(zk_path)
        get = agent.registry.get_sample_value
        assert get("zkwarden_agent_client_request_duration_seconds_count",
                   {"client": "agent", "op": "Exists", "result": "ok"}) == 1
        # The agent's older names, now driven by the adapter's state reports.
        assert get("zkwarden_agent_zookeeper_connected") == 1
        assert get("zkwarden_agent_zookeeper_state", {"state": "CONNECTED"}) == 1
    assert agent.registry.get_sample_value("zkwarden_agent_zookeeper_connected") == 0
    assert b"zkwarden_agent_client_connect_attempts_total" in agent.render()
