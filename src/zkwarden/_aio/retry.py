"""Backoff (pure functions) and the retry policy for idempotent operations."""

from __future__ import annotations

import random
from dataclasses import dataclass

from ..errors import ConfigurationError

__all__ = ("Backoff", "backoff_delay")


def backoff_delay(attempt: int, base: float, cap: float, rng: random.Random) -> float:
    """Capped exponential backoff with full jitter.

    Attempt 0 (the first retry after a connection that had stayed up) is immediate, so a
    client whose server went away moves to the next host at once; attempt n ≥ 1 waits a
    uniform random time in ``[0, min(cap, base * 2**(n-1))]``. Full jitter spreads a fleet
    that lost its server at the same moment, which is what prevents reconnect storms.
    """
    if attempt <= 0:
        return 0.0
    ceiling = min(cap, base * (2 ** min(attempt - 1, 30)))
    return rng.uniform(0.0, ceiling)


@dataclass(frozen=True, slots=True)
class Backoff:
    """Reconnect timing options (seconds)."""

    #: the first non-zero backoff ceiling
    initial: float = 0.1
    #: the largest ceiling, whatever the attempt count
    maximum: float = 10.0

    def __post_init__(self) -> None:
        if not (0 < self.initial <= self.maximum):
            raise ConfigurationError(
                f"backoff needs 0 < initial <= maximum, got {self.initial}, {self.maximum}"
            )
