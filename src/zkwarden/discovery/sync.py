"""The blocking form of discovery, for code that uses :class:`zkwarden.Client`.

Same classes and names as the asyncio ones, taking a ``Client``: each call runs the
asyncio implementation on the client's loop thread (there is one implementation of the
registry and the cache, not two), and cache change callbacks run on the client's
dispatcher thread, like watch callbacks, in order.

    from zkwarden import Client
    from zkwarden.discovery.sync import ServiceDiscovery, ServiceRegistry
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from ..sync._watch import WatchHandle
from ..sync.client import Client
from . import cache as _cache
from . import discovery as _discovery
from . import registry as _registry
from .formats import RegistryFormat
from .instance import ServiceInstance
from .strategies import Provider, Strategy

__all__ = ("ServiceRegistry", "ServiceDiscovery", "ServiceCache")

T = TypeVar("T")


async def _build(factory: Callable[[], T]) -> T:
    # Built on the loop thread: the asyncio objects belong to that loop.
    return factory()


class ServiceRegistry:
    """Blocking :class:`zkwarden.discovery.ServiceRegistry` (same rules, same options)."""

    def __init__(
        self,
        client: Client,
        base_path: str | None = None,
        format: str | RegistryFormat = "curator",
        **options: Any,
    ) -> None:
        self._client = client
        aio = client.async_client
        self._registry = client.run_coroutine(
            _build(lambda: _registry.ServiceRegistry(aio, base_path, format, **options))
        )

    def _run(self, coro: Coroutine[Any, Any, T], timeout: float | None) -> T:
        return self._client.run_coroutine(coro, timeout=timeout)

    @property
    def base_path(self) -> str:
        return self._registry.base_path

    def register(self, instance: ServiceInstance, *, timeout: float | None = None) -> None:
        """Register and keep registered. Raises as the asyncio form, plus RequestTimeoutError."""
        self._run(self._registry.register(instance), timeout)

    def update(self, instance: ServiceInstance, *, timeout: float | None = None) -> None:
        """Change a registered instance in place. Raises as the asyncio form."""
        self._run(self._registry.update(instance), timeout)

    def unregister(self, instance: ServiceInstance, *, timeout: float | None = None) -> None:
        """Unregister and delete the node. Raises as the asyncio form."""
        self._run(self._registry.unregister(instance), timeout)

    def registrations(self) -> list[ServiceInstance]:
        """The instances this registry owns."""
        return self._run(_build(self._registry.registrations), None)

    def close(self, *, timeout: float | None = None) -> None:
        """Unregister everything. Never raises (a closed client has nothing left)."""
        if self._client.closed:
            return
        self._run(self._registry.close(), timeout)

    def __enter__(self) -> ServiceRegistry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ServiceCache:
    """Blocking view of a :class:`zkwarden.discovery.ServiceCache`."""

    def __init__(self, client: Client, cache: _cache.ServiceCache) -> None:
        self._client = client
        self._cache = cache

    @property
    def name(self) -> str | None:
        return self._cache.name

    @property
    def stale(self) -> bool:
        """True when the view may be out of date (no session, or from a snapshot)."""
        return self._cache.stale

    def instances(self, name: str | None = None) -> list[ServiceInstance]:
        """The current instances (read on the loop thread, so never half-updated)."""
        return self._client.run_coroutine(_build(lambda: self._cache.instances(name)))

    def names(self) -> list[str]:
        """The services in the view."""
        return self._client.run_coroutine(_build(self._cache.names))

    def subscribe(
        self,
        callback: Callable[[_cache.CacheChange], object],
        *,
        on_error: Callable[[Exception], object] | None = None,
        timeout: float | None = None,
    ) -> WatchHandle:
        """Call ``callback(change)``: first ``Resynced`` (the view now), then every change.

        Runs on the client's dispatcher thread, in order; ``handle.cancel()`` stops it.
        When the cache or client closes, ``on_error(ClientClosedError)`` is called once.

        Raises:
            RequestTimeoutError, ClientClosedError.
        """
        handle = WatchHandle(self._client, self._client._dispatcher, self._cache.name or "*",
                             "cache", callback, on_error)  # type: ignore[arg-type]

        async def subscribe() -> None:
            await handle.subscribe(self._cache.changes())  # type: ignore[arg-type]

        self._client.run_coroutine(subscribe(), timeout=timeout)
        return handle

    def close(self) -> None:
        """Stop the cache. Never raises."""
        if not self._client.closed:
            self._client.run_coroutine(self._cache.close())


class ServiceDiscovery:
    """Blocking :class:`zkwarden.discovery.ServiceDiscovery` (same options)."""

    def __init__(
        self,
        client: Client,
        base_path: str | None = None,
        format: str | RegistryFormat = "curator",
        **options: Any,
    ) -> None:
        self._client = client
        aio = client.async_client
        self._discovery = client.run_coroutine(
            _build(lambda: _discovery.ServiceDiscovery(aio, base_path, format, **options))
        )

    def names(self, *, timeout: float | None = None) -> list[str]:
        """Registered service names. Raises as the asyncio form."""
        return self._client.run_coroutine(self._discovery.names(), timeout=timeout)

    def instances(self, name: str, *, timeout: float | None = None) -> list[ServiceInstance]:
        """The instances of ``name`` in one pipelined round. Raises as the asyncio form."""
        return self._client.run_coroutine(self._discovery.instances(name), timeout=timeout)

    def cache(self, name: str | None = None, *, timeout: float | None = None) -> ServiceCache:
        """A started cache (shared per name). Raises as the asyncio form."""
        aio_cache = self._client.run_coroutine(self._discovery.cache(name), timeout=timeout)
        return ServiceCache(self._client, aio_cache)

    def provider(
        self, name: str, strategy: str | Strategy = "round_robin", **options: Any
    ) -> Provider:
        """A provider over a (started) cache of ``name``.

        Raises:
            ConfigurationError: unknown strategy or bad options.
        """
        cache = self.cache(name)
        return Provider(lambda: cache.instances(name), strategy, name=name, **options)

    def close(self) -> None:
        """Close every cache. Never raises."""
        if not self._client.closed:
            self._client.run_coroutine(self._discovery.close())

    def __enter__(self) -> ServiceDiscovery:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
