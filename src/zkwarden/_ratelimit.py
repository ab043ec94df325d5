"""Rate-limited logging: during an outage a warning per backoff step, not per attempt."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

__all__ = ("RateLimitedLog",)


class RateLimitedLog:
    """Emit at most one record per ``interval`` seconds per key; count what was held back.

    The interval doubles after every emitted record for the same key (up to
    ``max_interval``) and resets with :meth:`reset`, so a long outage logs O(log t) lines.
    """

    def __init__(
        self,
        logger: logging.Logger,
        interval: float = 1.0,
        max_interval: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._interval = interval
        self._max_interval = max_interval
        self._clock = clock
        self._next: dict[str, float] = {}
        self._gap: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}
        self.emitted = 0

    def log(self, level: int, key: str, msg: str, *args: object) -> bool:
        now = self._clock()
        if now < self._next.get(key, 0.0):
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return False
        gap = self._gap.get(key, self._interval)
        self._next[key] = now + gap
        self._gap[key] = min(gap * 2, self._max_interval)
        held = self._suppressed.pop(key, 0)
        if held:
            msg = f"{msg} ({held} similar messages suppressed)"
        self._logger.log(level, msg, *args)
        self.emitted += 1
        return True

    def reset(self, key: str) -> None:
        self._next.pop(key, None)
        self._gap.pop(key, None)
        self._suppressed.pop(key, None)
