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
