"""The blocking discovery form through zkwarden.Client, against a real ZooKeeper."""

from __future__ import annotations

import threading
import time

from zkwarden import Client
from zkwarden.discovery import Added, Removed, Resynced, ServiceInstance
from zkwarden.discovery.sync import ServiceDiscovery, ServiceRegistry


def test_blocking_register_discover_and_subscribe(zk_hosts: str, zk_path: str) -> None:
    base = f"{zk_path}/services"
    with Client(zk_hosts, session_timeout=2.0) as a, Client(zk_hosts, session_timeout=2.0) as b:
        reg = ServiceRegistry(a, base)
        disc = ServiceDiscovery(b, base)
        cache = disc.cache("web")
        seen: list[object] = []
        got_added = threading.Event()
        callback_threads: set[str] = set()

        def on_change(change: object) -> None:
            callback_threads.add(threading.current_thread().name)
            seen.append(change)
            if isinstance(change, Added):
                got_added.set()

        handle = cache.subscribe(on_change)
        inst = ServiceInstance(name="web", address="10.9.9.9", port=8000)
        reg.register(inst)
        assert got_added.wait(5)
        assert [i.id for i in disc.instances("web")] == [inst.id]
        assert [i.id for i in cache.instances()] == [inst.id]
        provider = disc.provider("web")
        assert provider.get().id == inst.id
        reg.unregister(inst)
        deadline = time.monotonic() + 5
        while not any(isinstance(c, Removed) for c in seen):
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert isinstance(seen[0], Resynced)
        assert threading.main_thread().name not in callback_threads
        handle.cancel()
        reg.close()
        disc.close()
