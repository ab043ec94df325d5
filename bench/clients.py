"""The clients under test, connected once per run and shared by the in-process scenarios.

* ``zk``: zkwarden's AsyncClient, on its own event-loop thread (``zl``);
* ``zks``: zkwarden's blocking Client (its own loop thread, called from the main thread);
* ``kz``: kazoo's KazooClient (its own threads, called from the main thread);
* ``az``: aiozk's ZKClient, on its own event-loop thread (``al``);
* ``raw``: the raw-socket bound (:mod:`bench.raw`), a blocking socket in the main thread.

Every client gets the same session timeout and talks to the same server.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
from dataclasses import dataclass
from typing import Any

from ._common import SESSION_TIMEOUT, LoopThread
from .raw import RawClient

logging.getLogger("kazoo").setLevel(logging.WARNING)
logging.getLogger("aiozk").setLevel(logging.ERROR)


@dataclass
class Clients:
    hosts: str
    zl: LoopThread
    zk: Any  # zkwarden.AsyncClient
    zks: Any  # zkwarden.Client
    kz: Any  # kazoo.client.KazooClient
    al: LoopThread
    az: Any  # aiozk.ZKClient
    raw: RawClient
    host: str
    port: int
    available: set[str]

    def close(self) -> None:
        steps: list[Any] = [lambda: self.zl.run(self.zk.close(), timeout=15), self.zks.close]
        if self.az is not None:
            steps.append(lambda: self.al.run(self.az.close(), timeout=15))
        if self.kz is not None:
            steps += [self.kz.stop, self.kz.close]
        steps += [self.raw.close, self.zl.close, self.al.close]
        for step in steps:
            try:
                step()
            except Exception as exc:  # a failed close must not hide the results
                logging.getLogger("bench").warning("closing a client: %r", exc)


def installed(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def connect(host: str, port: int, clients: set[str], *, use_uvloop: bool = False) -> Clients:
    """Connect every client named in ``clients`` (raw and zkwarden always)."""
    from zkwarden import AsyncClient, Client

    hosts = f"{host}:{port}"
    zl = LoopThread("bench-zkwarden", use_uvloop=use_uvloop)

    async def make_zk() -> AsyncClient:
        zk = AsyncClient(hosts, session_timeout=SESSION_TIMEOUT)
        await zk.start()
        return zk

    zk = zl.run(make_zk())
    zks = Client(hosts, session_timeout=SESSION_TIMEOUT)
    zks.start()
    kz = None
    if "kazoo" in clients:
        from kazoo.client import KazooClient

        kz = KazooClient(hosts=hosts, timeout=SESSION_TIMEOUT)
        kz.start()
    al = LoopThread("bench-aiozk", use_uvloop=use_uvloop)
    az = None
    if "aiozk" in clients:
        import aiozk

        async def make_az() -> Any:
            az = aiozk.ZKClient(hosts, session_timeout=SESSION_TIMEOUT)
            await az.start()
            return az

        az = al.run(make_az())
    raw = RawClient(host, port, SESSION_TIMEOUT)
    available = {"raw", "zkwarden"} | (clients & {"kazoo", "aiozk"})
    return Clients(hosts, zl, zk, zks, kz, al, az, raw, host, port, available)


async def create_many(zk: Any, paths: list[str], data: bytes, chunk: int = 5000) -> None:
    """Create nodes with zkwarden, pipelined in chunks (setup, never timed)."""
    from zkwarden.errors import NodeExistsError

    for i in range(0, len(paths), chunk):
        results = await asyncio.gather(
            *(zk.create(p, data) for p in paths[i : i + chunk]), return_exceptions=True
        )
        for r in results:
            if isinstance(r, BaseException) and not isinstance(r, NodeExistsError):
                raise r


async def delete_tree(zk: Any, path: str) -> None:
    await zk.delete(path, recursive=True)
