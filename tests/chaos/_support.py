"""Helpers shared by the chaos tests: bounded waits, state/log recorders, figures."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from zkwarden import AsyncClient, ClientState, ClientStateChange


async def wait_for(
    predicate: Callable[[], bool], timeout: float, what: str = "condition", *,
    interval: float = 0.02,
) -> float:
    """Poll ``predicate`` until it holds; return the time it took. Fails after ``timeout``."""
    start = time.monotonic()
    deadline = start + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what}: not met within {timeout:.1f}s")
        await asyncio.sleep(interval)
    return time.monotonic() - start


@dataclass
class StateLog:
    """Every state change of one client, with the monotonic time it was reported."""

    changes: list[ClientStateChange] = field(default_factory=list)
    times: list[float] = field(default_factory=list)

    def __call__(self, change: ClientStateChange) -> None:
        self.changes.append(change)
        self.times.append(time.monotonic())

    def attach(self, client: AsyncClient) -> StateLog:
        client.add_listener(self)
        return self

    @property
    def states(self) -> list[ClientState]:
        return [c.state for c in self.changes]

    def timeline(self, since: float) -> list[tuple[str, float]]:
        """(state, seconds after ``since``) for each change, for failure messages."""
        return [(c.state.value, round(t - since, 3)) for c, t in zip(self.changes, self.times,
                                                                    strict=True)]

    def count(self, state: ClientState) -> int:
        return sum(1 for c in self.changes if c.state is state)

    def first_time(self, state: ClientState, after: float = 0.0) -> float | None:
        for change, t in zip(self.changes, self.times, strict=True):
            if change.state is state and t >= after:
                return t
        return None

    def reached(self, state: ClientState, after: float = 0.0) -> Callable[[], bool]:
        return lambda: self.first_time(state, after) is not None

    def connected_again(self, after: float) -> Callable[[], bool]:
        """True once CONNECTED has been *reported* after ``after`` and is still the latest
        state. (``client.connected`` turns True at the handshake, before the watches are
        restored and CONNECTED is reported: waiting on it races the listeners.)"""
        return lambda: (
            bool(self.changes)
            and self.changes[-1].state is ClientState.CONNECTED
            and self.times[-1] >= after
        )


class WarningLog(logging.Handler):
    """Collects WARNING+ records of the ``zkwarden`` loggers, with monotonic times."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[tuple[float, logging.LogRecord]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append((time.monotonic(), record))

    def between(self, start: float, end: float = float("inf")) -> list[str]:
        return [
            f"{r.levelname} {r.name}: {r.getMessage()}"
            for t, r in self.records
            if start <= t <= end
        ]

    def matching(self, text: str) -> list[str]:
        return [r.getMessage() for _, r in self.records if text in r.getMessage()]

    def errors(self) -> list[str]:
        return [r.getMessage() for _, r in self.records if r.levelno >= logging.ERROR]


@contextmanager
def capture_warnings() -> Iterator[WarningLog]:
    """Attach a :class:`WarningLog` to the ``zkwarden`` logger for the block."""
    logger = logging.getLogger("zkwarden")
    handler = WarningLog()
    old_level = logger.level
    if logger.getEffectiveLevel() > logging.WARNING:
        logger.setLevel(logging.WARNING)
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)


class LoopErrors:
    """Records what reaches the event loop's exception handler (unretrieved task errors,
    callback crashes): the "nothing crashes" half of an invariant."""

    def __init__(self) -> None:
        self.contexts: list[dict[str, Any]] = []

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        self.contexts.append(context)
        loop.default_exception_handler(context)

    def install(self) -> LoopErrors:
        asyncio.get_running_loop().set_exception_handler(self)
        return self

    def messages(self) -> list[str]:
        return [f"{c.get('message')}: {c.get('exception')!r}" for c in self.contexts]


class CpuMeter:
    """Process CPU seconds (all threads: client loop and the in-process fault proxy)."""

    def __init__(self) -> None:
        self.start = time.process_time()

    def elapsed(self) -> float:
        return time.process_time() - self.start


def report(case: str, **figures: Any) -> None:
    """One machine-readable line per measured case (shown with ``pytest -s``); appended to
    the file named by ``$ZKWARDEN_CHAOS_REPORT`` too, when set."""

    def _round(value: Any) -> Any:
        return round(value, 4) if isinstance(value, float) else value

    line = "CHAOS " + json.dumps(
        {"case": case, **{k: _round(v) for k, v in figures.items()}}, sort_keys=True
    )
    print(line, flush=True)
    path = os.environ.get("ZKWARDEN_CHAOS_REPORT")
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(line + "\n")


async def anext_within(stream: Any, timeout: float) -> Any:
    """The next item of an async iterator, or fail after ``timeout`` seconds."""
    return await asyncio.wait_for(stream.__anext__(), timeout)
