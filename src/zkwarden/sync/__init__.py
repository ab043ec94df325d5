"""The blocking client: ``Client``, a thin facade over AsyncClient on a loop thread.

User callbacks (watches, state listeners) run on dispatcher threads, never on the loop.
"""

from __future__ import annotations

from ._watch import WatchHandle
from .client import Client
from .transaction import Transaction

__all__ = ("Client", "Transaction", "WatchHandle")
