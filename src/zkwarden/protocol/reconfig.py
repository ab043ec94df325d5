"""The reconfig request (opcode 16) as the client sends it.

The record is the one :class:`zkwarden.protocol.decode_requests.Reconfig` decodes; the
client's version also reads the reply, a GetDataResponse: the new configuration's text
and the Stat of ``/zookeeper/config``. Sans-IO, like the rest of the package.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..types import Stat
from .decode_requests import Reconfig
from .jute import Reader
from .records import read_stat

__all__ = ("CONFIG_PATH", "ReconfigRequest")

#: the node holding the ensemble's dynamic configuration (never under a chroot)
from ..paths import CONFIG_PATH


@dataclass(frozen=True, slots=True)
class ReconfigRequest(Reconfig):
    """reconfig (16) → (config text, Stat of /zookeeper/config).

    ``joining``/``leaving`` are comma-separated server specs and ids (incremental),
    ``new_members`` the whole new list (non-incremental); unused ones are None.
    ``config_id`` is the expected current config version (-1: any).
    """

    def read_response(self, r: Reader) -> tuple[bytes, Stat]:
        data = r.buffer()
        return (data or b""), read_stat(r)
