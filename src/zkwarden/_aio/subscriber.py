"""What the engine's watch tables hold: the interface of a watch subscriber.

Kept apart so that the engine (which fires watches) and the streams (which are
subscribers) depend on this small module, not on each other.
"""

from __future__ import annotations

from typing import Protocol

from ..errors import ZooKeeperError
from ..types import WatchEvent

__all__ = ("Subscriber",)


class Subscriber(Protocol):
    path: str
    one_shot: bool
    armed: bool

    def deliver(self, event: WatchEvent) -> None: ...

    def end(self, exc: ZooKeeperError) -> None: ...

    def reconnected(self) -> None: ...

    @property
    def ended(self) -> bool: ...
