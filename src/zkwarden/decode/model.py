"""What the decoder produces: frames, findings and connections (plain data, no logic)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ("Frame", "Finding", "Connection", "DecodeOptions", "FINDING_NAMES", "SECRET_KEYS")

#: The incident patterns, in the order the README explains them.
FINDING_NAMES = (
    "watch-gap",
    "reconnect-storm",
    "expired-reattach",
    "unfollowed-notification",
    "slow-ping",
    "out-of-order",
    "oversize",
)

#: Detail keys that hold credentials: redacted unless ``--show-secrets``.
SECRET_KEYS = frozenset({"password", "credentials", "token"})


@dataclass(slots=True)
class DecodeOptions:
    """Knobs of the decoder and its detectors."""

    server_ports: frozenset[int] = frozenset()  # empty: tell client from server by itself
    max_buffer: int = 0xFFFFF  # the server's jute.maxbuffer: larger requests are oversize
    slow_ping_ms: float = 500.0  # at least this, or a tenth of the session timeout
    follow_window: float = 1.0  # seconds a notification may go without a read
    storm_min: int = 5  # connections without a session (or regular pairs) from one host


@dataclass(slots=True)
class Frame:
    """One ZooKeeper frame (or a decoder note) in capture order.

    ``direction`` is ``request``, ``reply``, ``event`` (a watch notification) or ``note``
    (what the decoder has to say: a resync, a gap, bytes that are not ZooKeeper).
    """

    index: int
    time: float
    connection: int
    session: int | None
    direction: str
    xid: int | None
    op: str
    path: str | None = None
    err: int | None = None
    latency_ms: float | None = None
    size: int = 0
    zxid: int | None = None
    details: dict[str, Any] | None = None
    reply_to: int | None = None  # the request's frame index, on a paired reply


@dataclass(slots=True)
class Finding:
    """An incident pattern seen in the capture, with the frames that show it."""

    name: str
    time: float
    connection: int | None
    session: int | None
    message: str
    frames: list[int] = field(default_factory=list)


@dataclass(slots=True)
class Connection:
    """One TCP connection between a client and a server."""

    number: int
    client: str
    server: str
    start: float
    end: float | None = None
    session: int | None = None
    # True: a session was set up; False: the handshake failed or never happened;
    # None: unknown (the capture started after the handshake).
    established: bool | None = None
    saw_syn: bool = False
    four_letter_word: str | None = None
    frames: int = 0
    expired: bool = False
    timeout_ms: int | None = None  # negotiated session timeout
