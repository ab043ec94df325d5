"""Group membership: :class:`Party` (Curator ``GroupMember`` layout, ``<path>/<id>``
ephemeral nodes), with a blocking twin in :mod:`zkwarden.groups.sync`."""

from __future__ import annotations

from .party import MemberJoined, MemberLeft, Party, PartyChange

__all__ = ("Party", "MemberJoined", "MemberLeft", "PartyChange")
