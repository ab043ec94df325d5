"""Choosing an instance: strategies, down-marking after errors, and ``Provider``.

Everything here is pure: no ZooKeeper, no I/O, time only through the ``clock`` callable
(``time.monotonic`` by default) so tests never sleep. All classes are safe to share between
threads.

Instances are identified by ``(name, id)`` (:attr:`ServiceInstance.key`), never by full
equality: an instance whose payload changed is still the same instance for error counting
and stickiness (Curator's ``DownInstanceManager`` keyed on equality and forgot every error
on each update).
"""

from __future__ import annotations

import abc
import bisect
import itertools
import logging
import math
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import ClassVar

from ..errors import ConfigurationError, NoInstancesError
from .instance import ServiceInstance

__all__ = (
    "Strategy",
    "RoundRobin",
    "Random",
    "Weighted",
    "Sticky",
    "Zone",
    "make_strategy",
    "strategy_names",
    "effective_weight",
    "ErrorTracker",
    "Provider",
)

log = logging.getLogger("zkwarden.discovery")

Clock = Callable[[], float]


def effective_weight(instance: ServiceInstance) -> int:
    """The weight used for selection: the instance's weight, or 1 when it states none."""
    return 1 if instance.weight is None else instance.weight


class Strategy(abc.ABC):
    """Picks one instance from a non-empty list of available instances."""

    #: The name :func:`make_strategy` knows this strategy by.
    name: ClassVar[str]

    @abc.abstractmethod
    def choose(self, instances: Sequence[ServiceInstance]) -> ServiceInstance:
        """One of ``instances``.

        Raises:
            NoInstancesError: ``instances`` is empty.
        """


def _require(instances: Sequence[ServiceInstance]) -> None:
    if not instances:
        raise NoInstancesError("no instances to choose from")


class RoundRobin(Strategy):
    """Each instance in turn.

    The position is kept modulo the list length, so it never grows without bound (Curator's
    ``Math.abs(index++) % size`` went negative after 2**31 calls).
    """

    name: ClassVar[str] = "round_robin"

    def __init__(self) -> None:
        self._next = 0
        self._lock = threading.Lock()

    def choose(self, instances: Sequence[ServiceInstance]) -> ServiceInstance:
        """The next instance in turn (see :meth:`Strategy.choose`)."""
        _require(instances)
        with self._lock:
            count = len(instances)
            index = self._next % count
            self._next = (index + 1) % count
        return instances[index]


class Random(Strategy):
    """A uniformly random instance. ``rng`` makes it reproducible in tests."""

    name: ClassVar[str] = "random"

    def __init__(self, rng: random.Random | None = None) -> None:
        self._rng = rng if rng is not None else random.Random()
        self._lock = threading.Lock()

    def choose(self, instances: Sequence[ServiceInstance]) -> ServiceInstance:
        """A random instance (see :meth:`Strategy.choose`)."""
        _require(instances)
        with self._lock:
            return self._rng.choice(instances)


class Weighted(Strategy):
    """A random instance, each with probability proportional to its weight.

    Instances of weight 0 are never chosen while any instance has a positive weight; when
    all weigh 0 the choice is uniform (weights rank instances, they do not remove them).
    """

    name: ClassVar[str] = "weighted"

    def __init__(self, rng: random.Random | None = None) -> None:
        self._rng = rng if rng is not None else random.Random()
        self._lock = threading.Lock()

    def choose(self, instances: Sequence[ServiceInstance]) -> ServiceInstance:
        """A weighted random instance (see :meth:`Strategy.choose`)."""
        _require(instances)
        cumulative = list(itertools.accumulate(effective_weight(i) for i in instances))
        total = cumulative[-1]
        with self._lock:
            if total <= 0:
                return self._rng.choice(instances)
            point = self._rng.randrange(total)
        # The first instance whose cumulative weight exceeds the point.
        return instances[bisect.bisect_right(cumulative, point)]


class Sticky(Strategy):
    """Keeps returning the same instance while it is among the available ones.

    When it disappears (unregistered, disabled or marked down) ``inner`` (round robin by
    default) picks a new one. The returned object is always the current version of the
    sticky instance, so updates to its data are seen.
    """

    name: ClassVar[str] = "sticky"

    def __init__(self, inner: Strategy | None = None) -> None:
        self._inner = inner if inner is not None else RoundRobin()
        self._current: tuple[str, str] | None = None
        self._switches = 0
        self._lock = threading.Lock()

    @property
    def switches(self) -> int:
        """How many times a new instance was picked (the first pick counts)."""
        return self._switches

    def reset(self) -> None:
        """Forget the sticky instance; the next choice picks afresh."""
        with self._lock:
            self._current = None

    def choose(self, instances: Sequence[ServiceInstance]) -> ServiceInstance:
        """The sticky instance, or a new one (see :meth:`Strategy.choose`)."""
        _require(instances)
        with self._lock:
            if self._current is not None:
                for instance in instances:
                    if instance.key == self._current:
                        return instance
            chosen = self._inner.choose(instances)
            self._current = chosen.key
            self._switches += 1
            return chosen


class Zone(Strategy):
    """Prefers instances in ``zone``; uses all of them when none is available in the zone.

    ``inner`` (round robin by default) chooses within the preferred set.
    """

    name: ClassVar[str] = "zone"

    def __init__(self, zone: str, inner: Strategy | None = None) -> None:
        if not isinstance(zone, str) or not zone:
            raise ConfigurationError(f"zone must be a non-empty str, not {zone!r}")
        self.zone = zone
        self._inner = inner if inner is not None else RoundRobin()

    def choose(self, instances: Sequence[ServiceInstance]) -> ServiceInstance:
        """An instance in the zone if there is one (see :meth:`Strategy.choose`)."""
        _require(instances)
        local = [instance for instance in instances if instance.zone == self.zone]
        return self._inner.choose(local or instances)


_BASIC: dict[str, Callable[[random.Random | None], Strategy]] = {
    RoundRobin.name: lambda rng: RoundRobin(),
    Random.name: Random,
    Weighted.name: Weighted,
    Sticky.name: lambda rng: Sticky(),
}


def strategy_names() -> tuple[str, ...]:
    """The names :func:`make_strategy` accepts."""
    return (*sorted(_BASIC), Zone.name)


def make_strategy(
    name: str, *, zone: str | None = None, rng: random.Random | None = None
) -> Strategy:
    """A new strategy by name: ``round_robin``, ``random``, ``weighted``, ``sticky``, ``zone``.

    ``zone`` is the caller's zone: required by ``zone`` (round robin within the zone), and
    for any other name it adds the zone preference in front of that strategy.

    Raises:
        ConfigurationError: an unknown name, or ``zone`` strategy without a zone.
    """
    if name == Zone.name:
        if zone is None:
            raise ConfigurationError("the zone strategy needs the caller's zone")
        return Zone(zone)
    factory = _BASIC.get(name)
    if factory is None:
        raise ConfigurationError(
            f"unknown strategy {name!r}; known strategies: {', '.join(strategy_names())}"
        )
    strategy = factory(rng)
    return Zone(zone, strategy) if zone is not None else strategy


class _Health:
    __slots__ = ("errors", "down_until")

    def __init__(self) -> None:
        self.errors: deque[float] = deque()
        self.down_until: float | None = None


class ErrorTracker:
    """Marks an instance down after ``threshold`` errors within ``window`` seconds.

    A down instance is back after ``cooldown`` seconds, with its error count cleared (the
    cool-down is counted from the error that marked it down; errors reported while it is
    down do not extend it). Memory is bounded by the instances with recent errors: entries
    are swept once per window.

    Raises:
        ConfigurationError: from the constructor, for ``threshold < 1``, ``window <= 0`` or
            ``cooldown < 0``.
    """

    def __init__(
        self,
        *,
        threshold: int = 3,
        window: float = 30.0,
        cooldown: float = 30.0,
        clock: Clock = time.monotonic,
    ) -> None:
        if isinstance(threshold, bool) or not isinstance(threshold, int) or threshold < 1:
            raise ConfigurationError(f"error threshold must be an int >= 1, not {threshold!r}")
        if not _positive(window):
            raise ConfigurationError(f"error window must be > 0 seconds, not {window!r}")
        if not _positive(cooldown) and cooldown != 0:
            raise ConfigurationError(f"down cool-down must be >= 0 seconds, not {cooldown!r}")
        self.threshold = threshold
        self.window = float(window)
        self.cooldown = float(cooldown)
        self._clock = clock
        self._health: dict[tuple[str, str], _Health] = {}
        self._last_sweep = clock()
        self._lock = threading.Lock()

    def note_error(self, instance: ServiceInstance) -> bool:
        """Count an error of ``instance``; True if this error marked it down."""
        now = self._clock()
        key = instance.key
        with self._lock:
            self._sweep(now)
            health = self._health.get(key)
            if health is None:
                health = self._health[key] = _Health()
            elif health.down_until is not None:
                if now < health.down_until:
                    return False
                health.down_until = None
                health.errors.clear()
            health.errors.append(now)
            self._trim(health, now)
            if len(health.errors) < self.threshold:
                return False
            health.errors.clear()
            health.down_until = now + self.cooldown
        log.info(
            "instance %s/%s marked down for %.1fs after %d errors in %.1fs",
            key[0],
            key[1],
            self.cooldown,
            self.threshold,
            self.window,
        )
        return True

    def note_success(self, instance: ServiceInstance) -> None:
        """Forget the errors of ``instance`` (it is not brought back if it is down)."""
        with self._lock:
            health = self._health.get(instance.key)
            if health is not None and health.down_until is None:
                del self._health[instance.key]

    def is_down(self, instance: ServiceInstance) -> bool:
        """True while ``instance`` is marked down."""
        now = self._clock()
        key = instance.key
        with self._lock:
            health = self._health.get(key)
            if health is None or health.down_until is None:
                return False
            if now < health.down_until:
                return True
            del self._health[key]
        log.info("instance %s/%s is back after its cool-down", key[0], key[1])
        return False

    def error_count(self, instance: ServiceInstance) -> int:
        """Errors of ``instance`` within the window (0 while it is down)."""
        now = self._clock()
        with self._lock:
            health = self._health.get(instance.key)
            if health is None or health.down_until is not None:
                return 0
            self._trim(health, now)
            return len(health.errors)

    def clear(self) -> None:
        """Forget all errors and bring every instance back."""
        with self._lock:
            self._health.clear()

    def _trim(self, health: _Health, now: float) -> None:
        horizon = now - self.window
        while health.errors and health.errors[0] <= horizon:
            health.errors.popleft()

    def _sweep(self, now: float) -> None:
        # Called with the lock held; drops entries of instances that stopped failing (or
        # vanished) so the map does not grow with every instance that ever failed once.
        if now - self._last_sweep < self.window:
            return
        self._last_sweep = now
        for key in list(self._health):
            health = self._health[key]
            if health.down_until is not None:
                if now >= health.down_until:
                    del self._health[key]
                continue
            self._trim(health, now)
            if not health.errors:
                del self._health[key]


def _positive(value: object) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value > 0
    )


class Provider:
    """Hands out instances of one service: filters, down-marking and a strategy.

    ``get_instances`` returns the current instances (typically a cache's ``instances``).
    Disabled instances are never returned, nor instances marked down by
    :meth:`note_error` (see :class:`ErrorTracker`). The rest are ordered by id, so round
    robin is stable however the source orders them, and handed to ``strategy`` (a name
    for :func:`make_strategy`, or a :class:`Strategy`). ``zone`` is the caller's zone (see
    :func:`make_strategy`). ``name`` only labels error messages.

    Raises:
        ConfigurationError: from the constructor, for an unknown strategy or bad
            error-tracking options.
    """

    def __init__(
        self,
        get_instances: Callable[[], Sequence[ServiceInstance]],
        strategy: str | Strategy = "round_robin",
        *,
        zone: str | None = None,
        error_threshold: int = 3,
        error_window: float = 30.0,
        down_cooldown: float = 30.0,
        clock: Clock = time.monotonic,
        rng: random.Random | None = None,
        name: str | None = None,
    ) -> None:
        self._get_instances = get_instances
        if isinstance(strategy, Strategy):
            self.strategy = Zone(zone, strategy) if zone is not None else strategy
        else:
            self.strategy = make_strategy(strategy, zone=zone, rng=rng)
        self.errors = ErrorTracker(
            threshold=error_threshold, window=error_window, cooldown=down_cooldown, clock=clock
        )
        self.name = name

    def get_all(self) -> list[ServiceInstance]:
        """The available instances: enabled, not marked down, ordered by id."""
        instances = [
            instance
            for instance in self._get_instances()
            if instance.enabled and not self.errors.is_down(instance)
        ]
        instances.sort(key=lambda instance: instance.key)
        return instances

    def get(self) -> ServiceInstance:
        """One available instance, chosen by the strategy.

        Raises:
            NoInstancesError: no instance is registered, enabled and up.
        """
        instances = self.get_all()
        if not instances:
            label = f"service {self.name!r}" if self.name else "the service"
            raise NoInstancesError(f"no available instance of {label}")
        return self.strategy.choose(instances)

    def note_error(self, instance: ServiceInstance) -> None:
        """Report that a call to ``instance`` failed (see :class:`ErrorTracker`)."""
        self.errors.note_error(instance)

    def note_success(self, instance: ServiceInstance) -> None:
        """Report that a call to ``instance`` worked; its error count starts over."""
        self.errors.note_success(instance)
