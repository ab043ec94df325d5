"""What the session machine hands back for each server frame after the handshake."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from .ops import Request
from .records import WatcherEvent

__all__ = ("Reply", "Notification", "AuthReply", "PingReply", "Outgoing", "new_reply",
           "new_notification")

T = TypeVar("T")

@dataclass(frozen=True, slots=True)
class Reply(Generic[T]):
    """A reply matched to its request. ``err`` is the server code (0 = success)."""

    token: T
    request: Request
    err: int
    result: Any
    zxid: int


_new = object.__new__
_reply_token, _reply_request, _reply_err, _reply_result, _reply_zxid = (
    getattr(Reply, f.name).__set__ for f in dataclasses.fields(Reply)
)


@dataclass(frozen=True, slots=True)
class Notification:
    """A watch notification (server path; the client strips its chroot)."""

    event: WatcherEvent
    zxid: int


_note_event, _note_zxid = (
    getattr(Notification, f.name).__set__ for f in dataclasses.fields(Notification)
)


@dataclass(frozen=True, slots=True)
class AuthReply(Generic[T]):
    """The reply to an auth packet. ``token`` is None for the auth sent by :meth:`prime`."""

    err: int
    token: T | None = None
    #: why a SASL exchange failed on our side (never a secret)
    reason: str = ""


@dataclass(frozen=True, slots=True)
class PingReply:
    pass


@dataclass(frozen=True, slots=True)
class Outgoing:
    """Frames the machine needs sent now (the next SASL step, or what follows SASL)."""

    frame: bytes


def new_reply(token: Any, request: Request, err: int, result: Any, zxid: int) -> Reply[Any]:
    """``Reply(...)`` without its ``__init__`` (which costs about 1 µs per reply)."""
    reply: Reply[Any] = _new(Reply)
    _reply_token(reply, token)
    _reply_request(reply, request)
    _reply_err(reply, err)
    _reply_result(reply, result)
    _reply_zxid(reply, zxid)
    return reply


def new_notification(event: WatcherEvent, zxid: int) -> Notification:
    """``Notification(event, zxid)`` without its ``__init__``."""
    note: Notification = _new(Notification)
    _note_event(note, event)
    _note_zxid(note, zxid)
    return note
