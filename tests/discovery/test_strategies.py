"""Strategies, down-marking and Provider: pure, with a fake clock (no sleeping)."""

from __future__ import annotations

import random
import threading
from collections import Counter

import pytest

from zkwarden.discovery import ErrorTracker, Provider, ServiceInstance, make_strategy
from zkwarden.discovery.strategies import (
    Random,
    RoundRobin,
    Sticky,
    Weighted,
    Zone,
    effective_weight,
    strategy_names,
)
from zkwarden.errors import ConfigurationError, NoInstancesError


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def inst(i: str, **kwargs: object) -> ServiceInstance:
    return ServiceInstance("web", id=i, address=f"10.0.0.{len(i)}", port=80, **kwargs)  # type: ignore[arg-type]


A, B, C = inst("a"), inst("b"), inst("c")


def test_round_robin_cycles_and_survives_list_changes() -> None:
    rr = RoundRobin()
    assert [rr.choose([A, B, C]).id for _ in range(7)] == list("abcabca")
    # The list shrinks: the position is taken modulo the new length.
    assert [rr.choose([A, B]).id for _ in range(3)] == list("bab")


def test_round_robin_position_stays_bounded() -> None:
    rr = RoundRobin()
    for _ in range(10_000):
        rr.choose([A, B, C])
    assert 0 <= rr._next < 3  # never grows (Curator's counter overflowed after 2**31)


def test_round_robin_is_thread_safe() -> None:
    rr = RoundRobin()
    seen: Counter[str] = Counter()
    lock = threading.Lock()

    def work() -> None:
        local = Counter(rr.choose([A, B, C]).id for _ in range(3000))
        with lock:
            seen.update(local)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen == {"a": 4000, "b": 4000, "c": 4000}


def test_random_uses_every_instance() -> None:
    strategy = Random(random.Random(1))
    assert {strategy.choose([A, B, C]).id for _ in range(200)} == {"a", "b", "c"}


def test_weighted_follows_weights() -> None:
    heavy, light, zero = inst("h", weight=9), inst("l"), inst("z", weight=0)
    strategy = Weighted(random.Random(7))
    counts = Counter(strategy.choose([heavy, light, zero]).id for _ in range(10_000))
    assert counts["z"] == 0
    assert 0.87 < counts["h"] / 10_000 < 0.93  # 9 / (9 + 1)
    assert effective_weight(light) == 1
    # All zero: uniform rather than nothing.
    zeros = [inst("x", weight=0), inst("y", weight=0)]
    assert {strategy.choose(zeros).id for _ in range(100)} == {"x", "y"}


def test_sticky_keeps_the_same_instance_while_present() -> None:
    sticky = Sticky()
    first = sticky.choose([A, B, C])
    assert all(sticky.choose([A, B, C]) is first for _ in range(10))
    # Updated data under the same id: the fresh object is returned, still sticky.
    updated = first.replace(payload={"v": 2})
    others = [i for i in (A, B, C) if i.id != first.id]
    assert sticky.choose([updated, *others]) is updated
    # Gone (or down/disabled, i.e. filtered out by the provider): a new one, then sticky.
    second = sticky.choose(others)
    assert second.id != first.id
    assert sticky.choose([A, B, C]).id == second.id
    assert sticky.switches == 2
    sticky.reset()
    sticky.choose([A, B, C])
    assert sticky.switches == 3


def test_zone_prefers_local_and_falls_back() -> None:
    a1, a2, b1 = inst("a1", zone="a"), inst("a2", zone="a"), inst("b1", zone="b")
    zone = Zone("a")
    assert {zone.choose([a1, a2, b1]).id for _ in range(10)} == {"a1", "a2"}
    assert zone.choose([b1]).id == "b1"
    with pytest.raises(ConfigurationError):
        Zone("")


def test_strategies_refuse_an_empty_list() -> None:
    for strategy in (RoundRobin(), Random(), Weighted(), Sticky(), Zone("a")):
        with pytest.raises(NoInstancesError):
            strategy.choose([])


def test_make_strategy() -> None:
    assert strategy_names() == ("random", "round_robin", "sticky", "weighted", "zone")
    assert isinstance(make_strategy("round_robin"), RoundRobin)
    assert isinstance(make_strategy("weighted"), Weighted)
    assert isinstance(make_strategy("zone", zone="a"), Zone)
    wrapped = make_strategy("weighted", zone="a")
    assert isinstance(wrapped, Zone) and isinstance(wrapped._inner, Weighted)
    with pytest.raises(ConfigurationError, match="zone"):
        make_strategy("zone")
    with pytest.raises(ConfigurationError, match="known strategies"):
        make_strategy("least_loaded")


def test_error_tracker_marks_down_after_threshold_within_window() -> None:
    clock = FakeClock()
    tracker = ErrorTracker(threshold=3, window=10.0, cooldown=30.0, clock=clock)
    assert tracker.note_error(A) is False
    clock.advance(6)
    assert tracker.note_error(A) is False
    clock.advance(6)  # the first error is now outside the window
    assert tracker.note_error(A) is False
    assert tracker.error_count(A) == 2
    assert not tracker.is_down(A)
    assert tracker.note_error(A) is True
    assert tracker.is_down(A) and not tracker.is_down(B)
    # Errors while down neither extend the cool-down nor count.
    clock.advance(29)
    assert tracker.note_error(A) is False
    assert tracker.is_down(A)
    clock.advance(1)
    assert not tracker.is_down(A)
    assert tracker.error_count(A) == 0


def test_error_tracker_keys_by_identity_not_equality() -> None:
    tracker = ErrorTracker(threshold=2, clock=FakeClock())
    tracker.note_error(A)
    tracker.note_error(A.replace(payload={"changed": True}))
    assert tracker.is_down(A)


def test_error_tracker_success_resets_and_memory_is_swept() -> None:
    clock = FakeClock()
    tracker = ErrorTracker(threshold=2, window=5.0, cooldown=5.0, clock=clock)
    tracker.note_error(A)
    tracker.note_success(A)
    tracker.note_error(A)
    assert not tracker.is_down(A)
    for i in range(100):
        tracker.note_error(inst(f"gone-{i}"))
    assert len(tracker._health) == 101
    clock.advance(6)
    tracker.note_error(B)  # triggers the periodic sweep
    assert set(tracker._health) == {B.key}
    tracker.clear()
    assert not tracker._health


@pytest.mark.parametrize(
    "kwargs",
    [
        {"threshold": 0},
        {"threshold": True},
        {"window": 0},
        {"cooldown": -1},
        {"window": float("nan")},
    ],
)
def test_error_tracker_validates(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigurationError):
        ErrorTracker(**kwargs)  # type: ignore[arg-type]


def test_provider_filters_disabled_and_down_and_orders_by_id() -> None:
    clock = FakeClock()
    disabled = inst("d", enabled=False)
    current = [C, disabled, A, B]
    provider = Provider(lambda: current, error_threshold=1, down_cooldown=10.0, clock=clock)
    assert [i.id for i in provider.get_all()] == ["a", "b", "c"]
    assert [provider.get().id for _ in range(4)] == ["a", "b", "c", "a"]
    provider.note_error(B)
    assert [i.id for i in provider.get_all()] == ["a", "c"]
    assert {provider.get().id for _ in range(6)} == {"a", "c"}
    clock.advance(10)
    assert [i.id for i in provider.get_all()] == ["a", "b", "c"]


def test_provider_raises_when_nothing_is_available() -> None:
    clock = FakeClock()
    current: list[ServiceInstance] = []
    provider = Provider(lambda: current, "random", clock=clock, name="web")
    with pytest.raises(NoInstancesError, match="'web'"):
        provider.get()
    current.append(inst("d", enabled=False))
    with pytest.raises(NoInstancesError):
        provider.get()
    current.append(A)
    assert provider.get() is A
    for _ in range(3):
        provider.note_error(A)
    with pytest.raises(NoInstancesError):
        provider.get()
    clock.advance(30)
    assert provider.get() is A


def test_provider_sees_source_changes_and_note_success() -> None:
    current = [A]
    provider = Provider(lambda: current, "sticky", error_threshold=2, clock=FakeClock())
    assert provider.get() is A
    provider.note_error(A)
    provider.note_success(A)
    provider.note_error(A)
    assert provider.get() is A  # the success reset the count
    current = [B]
    assert provider.get() is B


def test_provider_zone_and_strategy_objects() -> None:
    a1, b1 = inst("a1", zone="a"), inst("b1", zone="b")
    provider = Provider(lambda: [a1, b1], "random", zone="b", rng=random.Random(3))
    assert {provider.get().id for _ in range(20)} == {"b1"}
    custom = Provider(lambda: [a1, b1], Sticky(), zone="a")
    assert custom.get() is a1
    with pytest.raises(ConfigurationError):
        Provider(lambda: [], "nope")
    with pytest.raises(ConfigurationError):
        Provider(lambda: [], error_threshold=0)
