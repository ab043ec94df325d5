"""zkwarden.retry: what is retried, what is refused, and how a retried create/delete/set
recognises that its earlier attempt applied (against a real ZooKeeper)."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from zkwarden import AsyncClient, Client
from zkwarden.errors import (
    BadVersionError,
    ConfigurationError,
    ConnectionLossError,
    InvalidArgumentError,
    NodeExistsError,
    NoNodeError,
    OperationTimeoutError,
    SessionExpiredError,
)
from zkwarden.retry import RetryPolicy, retry, retrying
from zkwarden.testing import FaultProxy
from zkwarden.types import ACL, READ_ACL_UNSAFE, Id, Perms

FAST = RetryPolicy(deadline=10.0, max_attempts=10)
#: read and create children, nothing else (so a default ACL is visible and still usable)
READ_CREATE = (ACL(Perms.READ | Perms.CREATE, Id("world", "anyone")),)


class LossyClient(AsyncClient):
    """An AsyncClient whose next write applies on the server but whose reply is "lost"
    (ConnectionLossError raised after the real call), the case a retry must recognise."""

    lose_next = 0
    calls = 0

    async def _lossy(self, coro: Any) -> Any:
        self.calls += 1
        result = await coro
        if self.lose_next:
            self.lose_next -= 1
            raise ConnectionLossError("reply lost (simulated)")
        return result

    async def create(self, path: str, data: bytes = b"", **kw: Any) -> Any:  # type: ignore[override]
        return await self._lossy(super().create(path, data, **kw))

    async def delete(self, path: str, version: int = -1, recursive: bool = False) -> None:
        return await self._lossy(super().delete(path, version, recursive))  # type: ignore[func-returns-value]

    async def set(self, path: str, data: bytes, version: int = -1) -> Any:
        return await self._lossy(super().set(path, data, version))


@pytest.fixture
async def zk(zk_hosts: str) -> Any:
    client = LossyClient(zk_hosts, session_timeout=6.0)
    await client.start(timeout=10.0)
    try:
        yield client
    finally:
        await client.close()


def test_policy_validation() -> None:
    with pytest.raises(ConfigurationError):
        RetryPolicy(deadline=None, max_attempts=None)
    with pytest.raises(ConfigurationError):
        RetryPolicy(deadline=0)
    with pytest.raises(ConfigurationError):
        RetryPolicy(max_attempts=0)
    assert RetryPolicy(deadline=None, max_attempts=3).max_attempts == 3


async def test_user_function_retried_on_connection_loss_and_operation_timeout(zk: Any,
                                                                            zk_path: str) -> None:
    await zk.create(zk_path, b"v")
    errors = [ConnectionLossError("x"), OperationTimeoutError("y")]
    calls = 0

    async def read() -> bytes:
        nonlocal calls
        calls += 1
        if errors:
            raise errors.pop(0)
        data, _ = await zk.get(zk_path)
        return bytes(data)

    async with asyncio.timeout(10):
        assert await zk.retry(read, policy=FAST) == b"v"
    assert calls == 3


async def test_session_expired_and_server_answers_are_not_retried(zk: Any) -> None:
    calls = 0

    async def fn() -> None:
        nonlocal calls
        calls += 1
        raise SessionExpiredError("gone")

    with pytest.raises(SessionExpiredError):
        await retry(zk, fn, policy=FAST)
    assert calls == 1
    with pytest.raises(NoNodeError):
        await zk.retry(zk.get, "/no/such/node", policy=FAST)


async def test_attempts_and_deadline_bound_the_retrying(zk: Any) -> None:
    calls = 0

    async def always_lost() -> None:
        nonlocal calls
        calls += 1
        raise ConnectionLossError(f"lost {calls}")

    with pytest.raises(ConnectionLossError, match="lost 3"):
        await retry(zk, always_lost, policy=RetryPolicy(deadline=None, max_attempts=3))
    assert calls == 3
    calls = 0
    started = time.monotonic()
    policy = RetryPolicy(deadline=0.5, max_attempts=None)
    with pytest.raises(ConnectionLossError):
        async with asyncio.timeout(5):
            await retry(zk, always_lost, policy=policy)
    assert 0.4 <= time.monotonic() - started < 3.0
    assert calls >= 2


@pytest.mark.parametrize("call", [
    ("create", ("/x-seq-", b""), {"sequence": True}),
    ("delete", ("/x",), {}),
    ("set", ("/x", b"d"), {}),
    ("set_acl", ("/x", READ_ACL_UNSAFE), {}),
])
async def test_unsafe_operations_are_refused_before_anything_is_sent(zk: Any, call: Any) -> None:
    name, args, kwargs = call
    before = zk.calls
    with pytest.raises(InvalidArgumentError, match="not retried|never retried"):
        await zk.retry(getattr(zk, name), *args, policy=FAST, **kwargs)
    assert zk.calls == before
    assert await zk.exists("/x") is None


async def test_ephemeral_create_whose_reply_was_lost_is_ours(zk: Any, zk_path: str) -> None:
    zk.lose_next = 1
    assert await zk.retry(zk.create, zk_path, b"me", ephemeral=True, policy=FAST) == zk_path
    assert zk.calls == 2  # the first attempt applied, the retry met NodeExists: ours
    _, stat = await zk.get(zk_path)
    assert stat.ephemeral_owner == zk.session_id
    zk.lose_next = 1
    path, stat2 = await zk.retry(zk.create, zk_path + "-2", b"me", ephemeral=True,
                                 include_stat=True, policy=FAST)
    assert path == zk_path + "-2" and stat2.ephemeral_owner == zk.session_id


async def test_ephemeral_node_of_another_session_is_not_taken_for_ours(
    zk: Any, zk_hosts: str, zk_path: str
) -> None:
    async with AsyncClient(zk_hosts) as other:
        await other.create(zk_path, b"me", ephemeral=True)
        # Our first attempt "fails" before reaching the server; the retry meets their node.
        attempts = 0

        async def create_after_loss() -> str:
            nonlocal attempts
            attempts += 1
            if attempts == 1:
                raise ConnectionLossError("lost before sending")
            return str(await zk.create(zk_path, b"me", ephemeral=True))

        # A user function is retried as a whole; NodeExists from it is its own business.
        with pytest.raises(NodeExistsError):
            await retry(zk, create_after_loss, policy=FAST)
        # Through retry's own create handling: the node is not ours, so NodeExists stands.
        zk.lose_next = 0
        with pytest.raises(NodeExistsError):
            await zk.retry(zk.create, zk_path, b"me", ephemeral=True, policy=FAST)


async def test_persistent_create_ours_only_with_our_bytes_unchanged(zk: Any, zk_path: str) -> None:
    zk.lose_next = 1
    assert await zk.retry(zk.create, zk_path, b"payload", policy=FAST) == zk_path
    # The reply is lost, and meanwhile someone else changed the node: not provably ours.
    await zk.delete(zk_path)

    class Racing(AsyncClient):
        attempts = 0

        async def create(self, path: str, data: bytes = b"", **kw: Any) -> Any:  # type: ignore[override]
            self.attempts += 1
            result = await super().create(path, data, **kw)
            if self.attempts == 1:
                await self.set(path, b"changed by another")
                raise ConnectionLossError("reply lost (simulated)")
            return result

    racing = Racing(zk.connect_string)
    await racing.start(timeout=10)
    try:
        with pytest.raises(NodeExistsError):
            await racing.retry(racing.create, zk_path, b"payload", policy=FAST)
    finally:
        await racing.close()


async def test_versioned_delete_and_set_after_a_lost_reply(zk: Any, zk_path: str) -> None:
    await zk.create(zk_path, b"0")
    zk.lose_next = 1
    with pytest.raises(BadVersionError, match="earlier attempt"):
        await zk.retry(zk.set, zk_path, b"1", version=0, policy=FAST)
    data, st = await zk.get(zk_path)
    assert data == b"1" and st.version == 1  # applied exactly once
    zk.lose_next = 1
    assert await zk.retry(zk.delete, zk_path, version=1, policy=FAST) is None
    assert await zk.exists(zk_path) is None
    with pytest.raises(NoNodeError):  # NoNode on the FIRST attempt is the caller's
        await zk.retry(zk.delete, zk_path, version=1, policy=FAST)


async def test_real_connection_loss_during_create(fault_proxy: FaultProxy, zk_path: str) -> None:
    """The reply of an applied ephemeral create is lost on the wire (reset while the
    server->client direction is held): the retry finds the node and knows it is ours."""
    async with AsyncClient(fault_proxy.connect_string, session_timeout=8.0) as zk:
        await zk.ensure_path("/")
        fault_proxy.blackhole("downstream")
        task = asyncio.create_task(
            zk.retry(zk.create, zk_path, b"x", ephemeral=True, policy=FAST))
        await asyncio.sleep(0.5)  # the create reached the server; its reply is held
        fault_proxy.reset()
        fault_proxy.pass_through()
        async with asyncio.timeout(15):
            assert await task == zk_path
        _, stat = await zk.get(zk_path)
        assert stat.ephemeral_owner == zk.session_id


async def test_decorator_async(zk: Any, zk_path: str) -> None:
    calls = 0

    @retrying(FAST)
    async def publish(client: AsyncClient, path: str) -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionLossError("x")
        return str(await client.create(path, b"", ephemeral=True))

    assert await publish(zk, zk_path) == zk_path
    assert calls == 2


def test_blocking_retry_and_decorator(zk_hosts: str, zk_path: str) -> None:
    with Client(zk_hosts) as client:
        client.create(zk_path, b"v")
        failures = [ConnectionLossError("x")]

        @retrying(FAST)
        def read(c: Client) -> bytes:
            if failures:
                failures.pop()
                raise ConnectionLossError("y")
            return c.get(zk_path)[0]

        assert read(client) == b"v"
        assert client.retry(client.get, zk_path, policy=FAST)[0] == b"v"
        with pytest.raises(InvalidArgumentError):
            client.retry(client.create, zk_path + "-", sequence=True)
        with pytest.raises(InvalidArgumentError):
            client.retry(client.delete, zk_path)
        assert client.retry(client.delete, zk_path, version=0) is None
        thread_calls: list[str] = []

        def always_lost() -> None:
            thread_calls.append(threading.current_thread().name)
            raise ConnectionLossError("z")

        with pytest.raises(ConnectionLossError):
            client.retry(always_lost, policy=RetryPolicy(deadline=None, max_attempts=2))
        assert len(thread_calls) == 2
        started = time.monotonic()
        with pytest.raises(ConnectionLossError):
            client.retry(always_lost, policy=RetryPolicy(deadline=30.0, max_attempts=None),
                         timeout=0.4)
        assert time.monotonic() - started < 3.0


async def test_default_acl(zk_hosts: str, zk_path: str) -> None:
    with pytest.raises(InvalidArgumentError):
        AsyncClient(zk_hosts, default_acl=[])
    async with AsyncClient(zk_hosts, default_acl=READ_CREATE) as zk:
        await zk.create(zk_path + "/a/b", makepath=True)  # makepath: ensure_path too
        for path in (zk_path, zk_path + "/a", zk_path + "/a/b"):
            acl, _ = await zk.get_acl(path)
            assert tuple(acl) == READ_CREATE, path
        async with zk.transaction() as t:
            t.create(zk_path + "/t")
        assert tuple((await zk.get_acl(zk_path + "/t"))[0]) == READ_CREATE
        await zk.create(zk_path + "/explicit", acl=READ_ACL_UNSAFE)  # an explicit acl wins
        assert tuple((await zk.get_acl(zk_path + "/explicit"))[0]) == READ_ACL_UNSAFE
    async with AsyncClient(zk_hosts) as zk:  # the default stays open
        await zk.create(zk_path + "-open")
        acl, _ = await zk.get_acl(zk_path + "-open")
        assert [a.perms for a in acl] == [Perms.ALL]


def test_default_acl_blocking(zk_hosts: str, zk_path: str) -> None:
    with Client(zk_hosts, default_acl=READ_CREATE) as zk:
        zk.ensure_path(zk_path + "/x")
        assert tuple(zk.get_acl(zk_path + "/x")[0]) == READ_CREATE
