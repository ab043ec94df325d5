"""Scripted workloads for the exhaustive fault-point sweep (and the named regressions).

Each one drives the client through one path of the session lifecycle; the sweep runs it
once to count frames, then once per frame index with each fault injected there.
"""

from __future__ import annotations

import asyncio

from zkwarden import ClientState, errors

from ._harness import BOUND, OUTAGE, SESSION_TIMEOUT, Sim, Workload

AUTH = [("digest", "user:pw")]


async def basic(sim: Sim) -> None:
    """start -> create ephemeral -> watch -> set -> close."""
    zk = sim.client()
    await sim.op("start", zk.start())
    await sim.op("create /e", zk.create("/e", b"1", ephemeral=True))
    sim.watch("/e", "data")
    await sim.sleep(0.2)
    await sim.op("set /e", zk.set("/e", b"2"))
    await sim.settle()
    await sim.close()


async def auth_watches_reconnect(sim: Sim) -> None:
    """auth + one-shot and persistent watches, a reconnect, changes after it."""
    zk = sim.client(auth=AUTH)
    await sim.op("start", zk.start())
    await sim.op("create /a", zk.create("/a", b"1"))
    await sim.op("create /p", zk.create("/p", b""))
    sim.watch("/a", "data")
    sim.watch("/p", "children")
    sim.watch("/p", "persistent")
    await sim.sleep(0.2)
    sim.log("server closes the connection")
    sim.server.kick()
    await sim.sleep(0.5)
    await sim.op("set /a", zk.set("/a", b"2"))
    await sim.op("create /p/c", zk.create("/p/c", b""))
    await sim.settle()
    await sim.close()


async def close_while_reconnecting(sim: Sim) -> None:
    """close() while the client reconnects: the session must still go from the server."""
    zk = sim.client()
    await sim.op("start", zk.start())
    await sim.op("create /e", zk.create("/e", b"", ephemeral=True))
    sim.watch("/e", "exists")
    await sim.sleep(0.1)
    sim.log("network blip: connection reset, connects refused 0.5s")
    sim.net.refuse_for(0.5)
    sim.net.reset_all()
    await asyncio.sleep(0.05)
    await sim.close()


async def expiry_during_restore(sim: Sim) -> None:
    """The session expires while the client restores (auth + SetWatches in flight)."""
    zk = sim.client(auth=AUTH)
    await sim.op("start", zk.start())
    await sim.op("create /e", zk.create("/e", b"", ephemeral=True))
    await sim.op("create /x", zk.create("/x", b"1"))
    sim.watch("/x", "data")
    await sim.sleep(0.2)
    sim.server.expire_when(101)  # SetWatches
    sim.server.expire_when(105)
    sim.log("server closes the connection; the session expires at SetWatches")
    sim.server.kick()
    await sim.sleep(2.0)
    sw = sim.watch("/x", "data")
    await sim.op("set /x", zk.set("/x", b"2"))
    await sim.settle()
    del sw
    await sim.close()


async def new_session_setup_drop(sim: Sim) -> None:
    """The session expires; the first connections of the new one may drop during set-up
    (auth in flight): the application must still hear new_session=True, once."""
    zk = sim.client(auth=AUTH)
    await sim.op("start", zk.start())
    await sim.op("create /e", zk.create("/e", b"", ephemeral=True))
    await sim.sleep(0.2)
    if zk.session_id is not None:  # a fault may have cost the session already
        sim.log("the session expires on the server, which closes the connection")
        sim.server.expire(zk.session_id)
    await sim.sleep(2.0)
    await sim.op("create /f", zk.create("/f", b"", ephemeral=True))
    await sim.settle()
    await sim.close()


async def cancelled_close(sim: Sim) -> None:
    """close() cancelled by its caller must still reach CLOSED."""
    zk = sim.client()
    await sim.op("start", zk.start())
    await sim.op("create /e", zk.create("/e", b"", ephemeral=True))
    sim.watch("/e", "data")
    sim.watch("/", "persistent")
    await sim.sleep(0.2)
    await sim.close(cancel_after=0.0005)


async def stream_after_lost(sim: Sim) -> None:
    """A stream created after LOST must live on in the new session."""
    zk = sim.client()
    await sim.op("start", zk.start())
    await sim.op("create /x", zk.create("/x", b"1"))
    await sim.op("create /e", zk.create("/e", b"", ephemeral=True))
    sim.log(f"outage of {OUTAGE + 1.0}s: connection reset, connects refused")
    sim.net.refuse_for(OUTAGE + 1.0)
    sim.net.reset_all()
    await sim.until(lambda: zk.state is ClientState.LOST, 2 * SESSION_TIMEOUT)
    sim.watch("/x", "data")
    sim.watch("/x", "exists")
    await sim.sleep(2.0)
    sim.server.write("set", "/x", b"2")
    await sim.settle()
    await sim.close()


async def exists_watch_reconnect(sim: Sim) -> None:
    """An exists watch on an existing node, across a reconnect: no invented NodeCreated."""
    zk = sim.client()
    await sim.op("start", zk.start())
    await sim.op("create /n", zk.create("/n", b"1"))
    sim.watch("/n", "exists")
    await sim.sleep(0.2)
    sim.log("server closes the connection")
    sim.server.kick()
    await sim.sleep(1.0)
    await sim.settle()
    await sim.close()


async def slow_persistent_consumer(sim: Sim) -> None:
    """A persistent stream nobody reads while 10,500 events arrive: bounded, and said."""
    zk = sim.client()
    await sim.op("start", zk.start())
    await sim.op("create /s", zk.create("/s", b""))
    stream = await sim.op("add_watch /s", zk.add_watch("/s", recursive=True).arm())
    if stream is None:
        await sim.close()
        return
    burst = 10_500
    sim.log(f"another client sets /s {burst} times")
    sim.server.write("set", "/s", b"x", count=burst)
    await sim.sleep(1.0)
    got = []
    try:
        while True:
            got.append(await asyncio.wait_for(anext(stream), 0.01))
    except (TimeoutError, StopAsyncIteration, errors.ZooKeeperError):
        pass
    sim.log(f"{len(got)} events were queued")
    if zk.state is ClientState.CONNECTED and not sim.net.fired:
        if len(got) > 10_001:
            sim.violate("queue-bound", f"a persistent stream queued {len(got)} events "
                        "(bound 10,000 + one overflow event)")
        elif len(got) < burst + 1:
            # Events were lost: the stream must say so before the events it kept (an
            # event of type NONE, the kind a reconnect yields, is what it yields first),
            # and it keeps the changes that came after the overflow.
            data = [e for e in got if e.type.name != "NONE"]
            if got[0].type.name != "NONE":
                sim.violate("queue-bound", f"{burst} events fired, {len(got)} queued, and no "
                            "event said that some were lost")
            elif not data:
                sim.violate("queue-bound", "after an overflow the stream dropped new changes")
    await sim.op("aclose", stream.aclose())
    await sim.close()


async def watch_noauth(sim: Sim) -> None:
    """A watch() stream that hits NoAuth must not block on its next read."""
    zk = sim.client()
    await sim.op("start", zk.start())
    from zkwarden.types import ACL, Id, Perms

    acl = [ACL(int(Perms.READ | Perms.WRITE), Id("digest", "admin:x"))]
    sim.server._create("/secret", b"s", acl, 0)
    sim.watch("/secret", "data")
    await sim.sleep(BOUND + 1.0)
    await sim.close()


async def calls_during_presumed_loss(sim: Sim) -> None:
    """Calls made while a presumed-lost session is closed and replaced."""
    zk = sim.client()
    await sim.op("start", zk.start())
    await sim.op("create /e", zk.create("/e", b"", ephemeral=True))
    sim.log("server's replies blackholed; connects hang for the outage")
    for conn in sim.net.live_connections():
        conn.s2c.blackholed = True
    sim.net.hang_for(OUTAGE)
    for i in range(20):
        sim.call(f"exists /e #{i}", zk.exists("/e"))
        await sim.sleep(0.3)
    await sim.settle()
    await sim.close()


WORKLOADS: dict[str, Workload] = {
    "basic": basic,
    "auth_watches_reconnect": auth_watches_reconnect,
    "close_while_reconnecting": close_while_reconnecting,
    "expiry_during_restore": expiry_during_restore,
    "cancelled_close": cancelled_close,
    "stream_after_lost": stream_after_lost,
    "exists_watch_reconnect": exists_watch_reconnect,
    "slow_persistent_consumer": slow_persistent_consumer,
    "new_session_setup_drop": new_session_setup_drop,
    "watch_noauth": watch_noauth,
    "calls_during_presumed_loss": calls_during_presumed_loss,
}
