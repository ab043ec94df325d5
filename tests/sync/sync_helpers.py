"""Helpers shared by the sync-facade tests."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable


def wait_until(predicate: Callable[[], object], timeout: float, interval: float = 0.01) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` seconds passed; its last value."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return bool(predicate())
        time.sleep(interval)


def zk_threads() -> list[threading.Thread]:
    """The threads zkwarden's sync facade started (loop, callback and listener threads)."""
    return [t for t in threading.enumerate() if _OURS.match(t.name)]


_OURS = re.compile(r"^zkwarden-\d+-(loop|callbacks|listeners)")


def no_new_threads(before: set[threading.Thread], timeout: float = 2.0) -> bool:
    """Wait until no loop/callback thread beyond those in ``before`` is alive."""
    return wait_until(lambda: set(zk_threads()) <= before, timeout)


def call_in_thread(fn: Callable[[], object]) -> tuple[threading.Thread, list[object]]:
    """Run ``fn`` on a daemon thread; the list gets its result or exception."""
    outcome: list[object] = []

    def run() -> None:
        try:
            outcome.append(fn())
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome
