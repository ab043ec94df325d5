"""The blocking client: ``Client``, a thin facade over AsyncClient on a loop thread.

User callbacks (watches, state listeners) run on dispatcher threads, never on the loop.
``FOREVER`` is the ``timeout`` that waits for a connection as long as it takes.
"""

from __future__ import annotations

from ._watch import WatchHandle
from .client import FOREVER, Client
from .transaction import Transaction

__all__ = ("FOREVER", "Client", "Transaction", "WatchHandle")
