"""ServiceDiscovery: names, one-round instance reads, caches and providers."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from .. import paths as _paths
from .._aio.client import AsyncClient
from ..caches import DEFAULT_MAX_NODES, WatchMode
from ..errors import ConfigurationError, ConnectionLossError, NoNodeError, UnimplementedError
from .cache import ServiceCache
from .formats import RegistryFormat, get_format
from .instance import ServiceInstance
from .strategies import Provider, Strategy

__all__ = ("ServiceDiscovery",)

log = logging.getLogger("zkwarden.discovery")

# Below this many instances pipelined reads are as fast; batches keep each request and
# reply frame around a megabyte for instance nodes of typical (sub-KiB) size.
_MULTI_READ_MIN = 64
_MULTI_READ_BATCH = 250


class ServiceDiscovery:
    """Finds service instances registered in ``format`` under ``base_path``.

    ``snapshot_dir`` makes every cache keep a disk snapshot of its view and start from
    it when ZooKeeper is unreachable. ``protect_threshold`` (0–1) keeps a cache's old
    view when a full re-read finds fewer than that fraction of the instances it had.
    ``watch_mode`` ("auto": persistent watches, one-shot ones on servers without them;
    "persistent"; "one-shot"), ``sync_on_reconnect`` and ``max_nodes`` (the nodes a cache
    may hold: a service's instances plus its own node; raise it above 100,000 for bigger
    services) go to every cache (see :class:`zkwarden.caches.TreeCache`).

    Raises (constructor):
        ConfigurationError: unknown format or watch_mode, max_nodes not an int >= 1.
        InvalidPathError: bad base path.
    """

    def __init__(
        self,
        client: AsyncClient,
        base_path: str | None = None,
        format: str | RegistryFormat = "curator",
        *,
        snapshot_dir: str | None = None,
        protect_threshold: float | None = None,
        watch_mode: WatchMode = "auto",
        sync_on_reconnect: bool = False,
        max_nodes: int = DEFAULT_MAX_NODES,
    ) -> None:
        if watch_mode not in ("auto", "persistent", "one-shot"):
            raise ConfigurationError(f"unknown watch_mode {watch_mode!r}")
        if type(max_nodes) is not int or max_nodes < 1:
            raise ConfigurationError(f"max_nodes must be an int >= 1, not {max_nodes!r}")
        self._max_nodes = max_nodes
        self._watch_mode: WatchMode = watch_mode
        self._sync_on_reconnect = sync_on_reconnect
        self._client = client
        self._format = get_format(format)
        self._base = _paths.validate(base_path or self._format.default_base_path)
        self._snapshot_dir = snapshot_dir
        self._protect = protect_threshold
        self._caches: dict[str | None, ServiceCache] = {}
        self._multi_read: bool | None = None  # unknown until the first large read
        self._providers: list[Provider] = []

    @property
    def format(self) -> RegistryFormat:
        return self._format

    @property
    def base_path(self) -> str:
        return self._base

    async def names(self) -> list[str]:
        """The registered service names (sorted).

        Raises:
            ConnectionLossError, SessionExpiredError, ClientClosedError.
        """
        try:
            nodes = await self._client.get_children(self._base)
        except NoNodeError:
            return []
        names = (self._format.service_name(n) for n in nodes)
        return sorted(n for n in names if n is not None)

    async def instances(self, name: str) -> list[ServiceInstance]:
        """The instances of ``name``: the children and all their data in one pipelined round.

        Raises:
            ConnectionLossError, SessionExpiredError, ClientClosedError,
            ConfigurationError (a name this format cannot express).
        """
        service_path = self._format.service_path(self._base, name)
        try:
            children = await self._client.get_children(service_path)
        except NoNodeError:
            return []
        fmt = self._format

        def decode(names: list[str], results: list[Any]) -> list[ServiceInstance]:
            found: list[ServiceInstance] = []
            for child, result in zip(names, results, strict=True):
                if isinstance(result, tuple):
                    inst = fmt.decode(name, child, result[0])
                    if inst is not None:
                        found.append(inst)
            return found

        # The children are node names from the server (never empty, never holding '/'), so
        # this is paths.join's result without its per-name strip; the reads still check
        # every path as a path.
        prefix = service_path + "/"

        async def read_and_decode(names: list[str]) -> list[ServiceInstance]:
            # Decoding a batch overlaps with the server answering the next ones.
            return decode(names, await self._read_all([prefix + c for c in names]))

        batches = [children[i : i + _MULTI_READ_BATCH]
                   for i in range(0, len(children), _MULTI_READ_BATCH)]
        found = [inst for part in await asyncio.gather(*map(read_and_decode, batches))
                 for inst in part]
        return sorted(found, key=lambda i: i.id)

    async def _read_all(self, paths: list[str]) -> list[Any]:
        """Data and Stat of every path: one multiRead where the server has it (>= 3.6; it
        answers the batch in one go), else pipelined getData."""
        client = self._client
        if len(paths) >= _MULTI_READ_MIN and self._multi_read is not False:
            try:
                results = await client.multi_read(paths)
                self._multi_read = True
                return results
            except UnimplementedError:
                # ZooKeeper < 3.6: it answers "unimplemented", then drops the connection.
                log.info("server has no multiRead; reading instances one request each")
                self._multi_read = False
                await client.wait_connected()
            except ConnectionLossError:
                await client.wait_connected()
        return await client.get_many(paths)

    async def cache(self, name: str | None = None, *, wait: bool = True) -> ServiceCache:
        """A started cache of service ``name`` (None: every service), shared per name.

        With ``wait`` return once the view is loaded (live, or from the snapshot).

        Raises:
            ClientClosedError: the client is closed.
        """
        cache = self._caches.get(name)
        if cache is None:
            cache = ServiceCache(
                self._client, self._format, self._base, name,
                snapshot_dir=self._snapshot_dir, protect_threshold=self._protect,
                on_close=self._forget, watch_mode=self._watch_mode,
                sync_on_reconnect=self._sync_on_reconnect, max_nodes=self._max_nodes,
            )
            self._caches[name] = cache
        await cache.start(wait=wait)
        return cache

    def _forget(self, cache: ServiceCache) -> None:
        if self._caches.get(cache.name) is cache:
            del self._caches[cache.name]

    def provider(
        self, name: str, strategy: str | Strategy = "round_robin", **options: Any
    ) -> Provider:
        """A provider over a cache of ``name`` (started in the background if needed).

        ``options`` go to :class:`Provider` (zone, error_threshold, error_window,
        down_cooldown). Until the cache is loaded ``get()`` raises NoInstancesError;
        ``await disc.cache(name)`` first to wait for it.

        Raises:
            ConfigurationError: unknown strategy or bad options.
        """
        cache = self._caches.get(name)
        if cache is None:
            cache = ServiceCache(
                self._client, self._format, self._base, name,
                snapshot_dir=self._snapshot_dir, protect_threshold=self._protect,
                on_close=self._forget, watch_mode=self._watch_mode,
                sync_on_reconnect=self._sync_on_reconnect, max_nodes=self._max_nodes,
            )
            self._caches[name] = cache
            # The cache owns its watch task (close() ends it); nothing to await here.
            cache.start_soon()
        bound = cache

        def current() -> Sequence[ServiceInstance]:
            return bound.instances(name)

        provider = Provider(current, strategy, name=name, **options)
        self._providers.append(provider)
        return provider

    async def close(self) -> None:
        """Close every cache this discovery made. Never raises."""
        caches = list(self._caches.values())
        self._caches.clear()
        await asyncio.gather(*(c.close() for c in caches), return_exceptions=True)

    async def __aenter__(self) -> ServiceDiscovery:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
