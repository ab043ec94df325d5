"""Issue 15: reconfig's errors, observers, and a connect string that names no member.

One dynamic 3+1 ensemble (three voters, one observer) serves every case of this module.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Iterator

import pytest
from chaos._support import wait_for

from zkwarden import AsyncClient, Client, WatcherType
from zkwarden._aio.ensemble import CONFIG_PATH, EnsembleConfig, parse_config
from zkwarden.errors import (
    BadVersionError,
    InvalidArgumentError,
    NoAuthError,
    ReconfigDisabledError,
)
from zkwarden.hosts import HostPort
from zkwarden.testing import FaultProxy, ZooKeeperEnsemble

SUPER = ("super", "reconfig-test")
SUPER_AUTH = [("digest", ":".join(SUPER))]


@pytest.fixture(scope="module")
def ensemble_3_1() -> Iterator[ZooKeeperEnsemble]:
    ensemble = ZooKeeperEnsemble(4, reconfig=True, observers=1, superuser=SUPER,
                                 max_session_timeout=20.0)
    ensemble.start()
    try:
        yield ensemble
    finally:
        ensemble.stop()


async def test_get_config_lists_members_roles_and_version(ensemble_3_1: ZooKeeperEnsemble) -> None:
    async with AsyncClient(ensemble_3_1.connect_string + "/some/chroot") as zk:
        cfg = await zk.get_config()  # the chroot does not apply to /zookeeper/config
    assert [m.id for m in cfg.participants] == [1, 2, 3]
    assert [m.id for m in cfg.observers] == [4]
    assert cfg.version >= 0x100000000
    assert cfg.client_addresses == [HostPort("127.0.0.1", m.port) for m in ensemble_3_1.members]
    assert ensemble_3_1.modes()[3] == "observer"


async def test_conditional_reconfig_with_a_stale_version_fails(
    ensemble_3_1: ZooKeeperEnsemble,
) -> None:
    async with AsyncClient(ensemble_3_1.connect_string, auth=SUPER_AUTH) as zk:
        current = await zk.get_config()
        line = ensemble_3_1.server_line(3)
        with pytest.raises(BadVersionError):
            await zk.reconfig(joining=[line], from_config=current.version - 1)
        # The same change against the current version goes through and makes a new one.
        changed = await zk.reconfig(joining=[line], from_config=current.version)
        assert changed.version > current.version
        assert (await zk.get_config()).version == changed.version
        with pytest.raises(BadVersionError):  # now that one is stale too
            await zk.reconfig(joining=[line], from_config=current.version)


async def test_reconfig_without_the_superuser_is_refused(ensemble_3_1: ZooKeeperEnsemble) -> None:
    async with AsyncClient(ensemble_3_1.connect_string) as zk:
        with pytest.raises(NoAuthError):
            await zk.reconfig(leaving=[4])
        assert ensemble_3_1.server_id(3) in {m.id for m in (await zk.get_config()).members}


async def test_reconfig_needs_a_change(ensemble_3_1: ZooKeeperEnsemble) -> None:
    async with AsyncClient(ensemble_3_1.connect_string) as zk:
        with pytest.raises(InvalidArgumentError):
            await zk.reconfig()
        with pytest.raises(InvalidArgumentError):
            await zk.reconfig(joining=["server.9=h:1:2"], new_members=["server.9=h:1:2"])


async def test_reconfig_while_disabled_fails_clearly(zk_hosts: str) -> None:
    # The shared test server is a plain one: reconfigEnabled is false.
    async with AsyncClient(zk_hosts) as zk:
        with pytest.raises(ReconfigDisabledError):
            await zk.reconfig(leaving=[1])


def test_blocking_twins(ensemble_3_1: ZooKeeperEnsemble) -> None:
    with Client(ensemble_3_1.connect_string, auth=SUPER_AUTH) as zk:
        cfg = zk.get_config(timeout=10)
        assert len(cfg.members) == 4
        with pytest.raises(BadVersionError):
            zk.reconfig(joining=[ensemble_3_1.server_line(3)], from_config=1, timeout=10)


async def test_an_observer_serves_reads_of_writes_made_through_the_leader(
    ensemble_3_1: ZooKeeperEnsemble,
) -> None:
    ens = ensemble_3_1
    leader = ens.leader()
    observer = next(i for i in range(4) if ens.is_observer(i))
    async with AsyncClient(ens.member_connect_string(leader)) as writer, \
            AsyncClient(ens.member_connect_string(observer), track_ensemble=False) as reader:
        assert reader.current_host == HostPort("127.0.0.1", ens.members[observer].port)
        stream = reader.watch("/obs/node", "data")
        first = await asyncio.wait_for(stream.__anext__(), 10)
        assert first.data is None  # absent yet
        await writer.create("/obs/node", b"v1", makepath=True)
        event = await asyncio.wait_for(stream.__anext__(), 10)
        assert event.data == b"v1"
        await reader.sync("/obs/node")  # after sync, a plain read sees the write too
        assert (await reader.get("/obs/node"))[0] == b"v1"
        # Writes through the observer are forwarded to the leader.
        await reader.set("/obs/node", b"v2")
        assert (await writer.get("/obs/node"))[0] == b"v2"
        await stream.aclose()
        await writer.delete("/obs", recursive=True)


async def test_a_connect_string_through_a_proxy_keeps_working_and_says_tracking_is_off(
    ensemble_3_1: ZooKeeperEnsemble, caplog: pytest.LogCaptureFixture,
) -> None:
    ens = ensemble_3_1
    caplog.set_level(logging.INFO, logger="zkwarden.ensemble")
    with FaultProxy(ens.member_connect_string(0)) as proxy:
        async with AsyncClient(proxy.connect_string, track_ensemble=True) as zk:
            def said() -> list[str]:
                return [r.getMessage() for r in caplog.records
                        if "names no member" in r.getMessage()]

            await wait_for(lambda: bool(said()), 10, "the tracking-off notice")
            assert len(said()) == 1 and "tracking is off" in said()[0]
            # A membership change later does not replace the proxy with the members.
            async with AsyncClient(ens.connect_string, auth=SUPER_AUTH, track_ensemble=False) as admin:
                await admin.reconfig(joining=[ens.server_line(3)])
            await asyncio.sleep(0.5)
            assert zk.hosts == [HostPort(proxy.host, proxy.port)]
            assert await zk.exists("/") is not None
            assert len(said()) == 1


async def test_a_chrooted_client_follows_the_membership_and_keeps_its_chroot(
    ensemble_3_1: ZooKeeperEnsemble,
) -> None:
    """/zookeeper/config is outside the chroot: the tracker of a chrooted client WATCHES it
    (no polling), so it follows a change within 3 s of the reconfig (measured: tens of ms; polling took up to 5 s), both ways."""
    ens = ensemble_3_1
    async with AsyncClient(ens.connect_string, auth=SUPER_AUTH, track_ensemble=False) as admin:
        await admin.ensure_path("/tenant")
        async with AsyncClient(ens.connect_string + "/tenant") as zk:
            assert len(zk.hosts) == 4
            await asyncio.sleep(0.3)  # the tracker's first read (and its watch) is done
            index = ens.add_member()
            await admin.reconfig(joining=[ens.server_line(index)])
            started = time.monotonic()
            try:
                await wait_for(lambda: len(zk.hosts) == 5, 3.0, "the chrooted client's hosts")
                joined = time.monotonic() - started
                assert HostPort("127.0.0.1", ens.members[index].port) in zk.hosts
                assert zk.chroot == "/tenant"
                await zk.create("/inside", b"x")
                assert (await admin.get("/tenant/inside"))[0] == b"x"
            finally:
                await admin.reconfig(leaving=[ens.server_id(index)])
                started = time.monotonic()
                ens.remove_member(index)
            await wait_for(lambda: len(zk.hosts) == 4, 3.0, "the member left the hosts")
            left = time.monotonic() - started
            print(f"chrooted client followed the join in {joined * 1000:.0f} ms, "
                  f"the leave in {left * 1000:.0f} ms")
            await zk.delete("/inside")


async def test_a_chrooted_watch_on_the_config_sees_the_real_node(
    ensemble_3_1: ZooKeeperEnsemble,
) -> None:
    """watch("/zookeeper/config") on a chrooted client arms the watch on the real node (not
    on <chroot>/zookeeper/config) and its events match it, with the path unchanged."""
    ens = ensemble_3_1
    async with AsyncClient(ens.connect_string, auth=SUPER_AUTH, track_ensemble=False) as admin:
        async with AsyncClient(ens.connect_string + "/tenant2", track_ensemble=False) as zk:
            stream = zk.watch(CONFIG_PATH)
            try:
                async with asyncio.timeout(10):
                    first = await anext(stream)
                    assert first.path == CONFIG_PATH
                    assert first.data is not None
                    before = parse_config(first.data)
                    assert len(before.members) == 4
                    index = ens.add_member()
                    try:
                        await admin.reconfig(joining=[ens.server_line(index)])
                        started = time.monotonic()
                        changed = await asyncio.wait_for(anext(stream), 3.0)
                        took = time.monotonic() - started
                    finally:
                        await admin.reconfig(leaving=[ens.server_id(index)])
                        ens.remove_member(index)
                assert changed.path == CONFIG_PATH
                assert changed.data is not None
                after = parse_config(changed.data)
                assert len(after.members) == 5 and after.version > before.version
                print(f"config change seen through the chroot in {took * 1000:.0f} ms")
            finally:
                await stream.aclose()


async def test_get_config_with_watch_follows_later_configs(
    ensemble_3_1: ZooKeeperEnsemble,
) -> None:
    """get_config(watch=fn) returns the config and calls fn with each later one (async on
    the loop, the blocking twin on a dispatcher thread), chroot or not; returning False
    stops it."""
    ens = ensemble_3_1
    seen: list[EnsembleConfig] = []
    seen_sync: list[EnsembleConfig] = []
    stopper: list[EnsembleConfig] = []
    threads: set[str] = set()

    def on_sync(config: EnsembleConfig) -> None:
        threads.add(threading.current_thread().name)
        seen_sync.append(config)

    def stop_after_one(config: EnsembleConfig) -> bool:
        stopper.append(config)
        return False

    sync_zk = Client(ens.connect_string + "/tenant3", track_ensemble=False)
    await asyncio.to_thread(sync_zk.start, 10)
    try:
        async with (AsyncClient(ens.connect_string, auth=SUPER_AUTH, track_ensemble=False) as admin,
                    AsyncClient(ens.connect_string + "/tenant3", track_ensemble=False) as zk):
            now = await zk.get_config(watch=seen.append)
            await zk.get_config(watch=stop_after_one)
            now_sync = await asyncio.to_thread(sync_zk.get_config, on_sync, timeout=10)
            assert len(now.members) == len(now_sync.members) == 4 and not seen
            index = ens.add_member()
            try:
                joined = await admin.reconfig(joining=[ens.server_line(index)])
                await wait_for(lambda: len(seen) == 1 and len(seen_sync) == 1, 3.0,
                               "the watch callbacks got the new config")
                assert seen[0].version == seen_sync[0].version == joined.version
                assert len(seen[0].members) == 5
            finally:
                left = await admin.reconfig(leaving=[ens.server_id(index)])
                ens.remove_member(index)
            await wait_for(lambda: len(seen) == 2 and len(seen_sync) == 2, 3.0,
                           "the callbacks followed a second change")
            assert seen[1].version == seen_sync[1].version == left.version
            assert len(seen[1].members) == 4
            assert len(stopper) == 1  # returned False: not called again
            assert threading.main_thread().name not in threads
    finally:
        await asyncio.to_thread(sync_zk.close)


async def test_tracking_is_on_by_default_even_for_one_host_and_can_be_turned_off(
    ensemble_3_1: ZooKeeperEnsemble,
) -> None:
    """A connect string naming one member is tracked by default (its host list becomes the
    membership) at the cost of one watch on /zookeeper/config; track_ensemble=False keeps
    the connect string."""
    ens = ensemble_3_1
    async with (AsyncClient(ens.member_connect_string(0)) as tracked,
                AsyncClient(ens.member_connect_string(0), track_ensemble=False) as fixed):
        await wait_for(lambda: len(tracked.hosts) == 4, 5, "the tracked client's hosts")
        await tracked.check_watches(CONFIG_PATH, WatcherType.DATA)
        await asyncio.sleep(0.5)
        assert fixed.hosts == [HostPort("127.0.0.1", ens.members[0].port)]
