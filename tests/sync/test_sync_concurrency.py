"""Rule 3 through the blocking facade: many threads reading, writing, watching at once."""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field

from sync_helpers import wait_until

from zkwarden import Client, ClientState, WatchEvent
from zkwarden.sync import WatchHandle

THREADS = 50
DURATION = 10.0
HOT_NODES = 4


@dataclass
class Kept:
    """A watch that is never cancelled: it must see its node's last value."""

    path: str
    handle: WatchHandle
    seen: list[bytes | None] = field(default_factory=list)


def test_fifty_threads_hammering(zk_hosts: str, zk_path: str, observer: Client) -> None:
    # the ensemble tracker's own watch stays out of the subscriber count below
    zk = Client(zk_hosts, session_timeout=4.0, track_ensemble=False)
    zk.start()
    try:
        session = zk.session_id
        hot = [f"{zk_path}/hot{i}" for i in range(HOT_NODES)]
        for path in hot:
            zk.create(path, b"init", makepath=True)
        kept: list[Kept] = []
        kept_lock = threading.Lock()
        failures: list[BaseException] = []
        ops = [0] * THREADS
        cancelled = [0] * THREADS
        deadline = time.monotonic() + DURATION
        start = threading.Barrier(THREADS)

        def keep(path: str) -> Kept:
            entry = Kept(path, None)  # type: ignore[arg-type]

            def callback(event: WatchEvent) -> None:
                entry.seen.append(event.data)

            entry.handle = zk.watch(path, "data", callback)
            with kept_lock:
                kept.append(entry)
            return entry

        def worker(n: int) -> None:
            rng = random.Random(n)
            own = f"{zk_path}/own{n}"
            try:
                zk.create(own, b"")
                start.wait()
                version = 0
                while time.monotonic() < deadline:
                    op = rng.randrange(10)
                    if op < 3:
                        zk.get(rng.choice(hot))
                    elif op == 3:
                        zk.exists(rng.choice(hot))
                    elif op == 4:
                        zk.get_children(zk_path)
                    elif op == 5:
                        zk.set(rng.choice(hot), f"{n}-{ops[n]}".encode())
                    elif op == 6:
                        version += 1
                        zk.set(own, str(version).encode())
                    elif op == 7:
                        # Add and cancel at once, from this thread or another one.
                        kind = rng.choice(["data", "exists", "children"])
                        handle = zk.watch(rng.choice(hot), kind, lambda ev: None)  # type: ignore[arg-type]
                        if rng.random() < 0.5:
                            handle.cancel()
                        else:
                            threading.Thread(target=handle.cancel).start()
                        cancelled[n] += 1
                    elif op == 8:
                        handle = zk.add_watch(rng.choice(hot), lambda ev: None, recursive=False)
                        handle.cancel()
                        cancelled[n] += 1
                    elif rng.random() < 0.1 and sum(1 for k in kept if k.path == own) < 3:
                        keep(rng.choice([own, *hot]))
                    ops[n] += 1
                # The final write to our own node after every watch on it was armed.
                zk.set(own, b"final")
            except BaseException as exc:  # noqa: BLE001 - reported by the test
                failures.append(exc)

        threads = [threading.Thread(target=worker, args=(n,)) for n in range(THREADS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(DURATION + 30.0)
        assert not [t for t in threads if t.is_alive()], "deadlock: workers still running"
        assert not failures, failures[:3]
        for path in hot:
            observer.set(path, b"final")
        # Every watch that was not cancelled saw the last value of its node.
        assert kept, "no watch was kept"
        assert wait_until(lambda: all(k.seen and k.seen[-1] == b"final" for k in kept), 5.0), [
            (k.path, k.seen[-3:]) for k in kept if not k.seen or k.seen[-1] != b"final"][:5]
        assert all(k.handle.active for k in kept)
        assert zk.session_id == session and zk.state is ClientState.CONNECTED
        total = sum(ops)
        print(f"{total} operations, {sum(cancelled)} watches added and cancelled, "
              f"{len(kept)} kept, {total / DURATION:.0f} ops/s")
        assert total > THREADS * 10
        # Cancelled watches are gone from the client (cancel() finishes in the background).
        assert wait_until(lambda: len(zk.async_client._subs.subscribers) == len(kept), 2.0)
    finally:
        zk.close()
