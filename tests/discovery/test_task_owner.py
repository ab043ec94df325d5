"""TaskOwner (zkwarden._tasks), the owner the registry, cache, agent and views use.

No server needed: these pin the owner's own contract (named tasks, failures logged at
once, close cancels and awaits within its bound, nothing accepted after close).
"""

from __future__ import annotations

import asyncio
import logging

import pytest

from zkwarden._tasks import TaskOwner
from zkwarden.errors import ClientClosedError

pytestmark = pytest.mark.asyncio


class Boom(RuntimeError):
    pass


async def test_failure_is_logged_when_the_task_dies(caplog: pytest.LogCaptureFixture) -> None:
    owner = TaskOwner("thing", logging.getLogger("zkwarden.test"))

    async def fail() -> None:
        raise Boom("bug")

    caplog.set_level(logging.ERROR, logger="zkwarden.test")
    task = owner.spawn(fail(), name="worker")
    assert task.get_name() == "thing: worker"
    await asyncio.wait([task], timeout=5)
    await asyncio.sleep(0)  # done callbacks run on the next loop iteration
    (record,) = [r for r in caplog.records if r.name == "zkwarden.test"]
    assert record.levelno == logging.ERROR and "thing: worker" in record.getMessage()
    assert record.exc_info is not None and isinstance(record.exc_info[1], Boom)
    assert len(owner) == 0  # a finished task is not kept
    await owner.aclose()


async def test_aclose_cancels_and_awaits_everything(caplog: pytest.LogCaptureFixture) -> None:
    owner = TaskOwner("thing")
    cleaned: list[str] = []

    async def forever(name: str) -> None:
        try:
            await asyncio.Event().wait()
        finally:
            await asyncio.sleep(0.01)  # a cleanup that itself awaits
            cleaned.append(name)

    tasks = [owner.spawn(forever(str(n))) for n in range(3)]
    await asyncio.sleep(0)
    async with asyncio.timeout(5):
        await owner.aclose()
    assert all(t.cancelled() for t in tasks)
    assert sorted(cleaned) == ["0", "1", "2"]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]  # cancel is no failure
    await owner.aclose()  # idempotent


async def test_aclose_is_bounded_and_says_what_is_stuck(
    caplog: pytest.LogCaptureFixture,
) -> None:
    owner = TaskOwner("thing", logging.getLogger("zkwarden.test"))
    release = asyncio.Event()

    async def stubborn() -> None:
        while not release.is_set():
            try:
                await release.wait()
            except asyncio.CancelledError:
                continue  # ignores cancellation (a bug the bound must survive)

    task = owner.spawn(stubborn(), name="stubborn")
    await asyncio.sleep(0)
    caplog.set_level(logging.WARNING, logger="zkwarden.test")
    loop = asyncio.get_running_loop()
    started = loop.time()
    await owner.aclose(timeout=0.2)
    assert loop.time() - started < 1.0
    assert any("thing: stubborn" in r.getMessage() for r in caplog.records)
    release.set()
    await asyncio.wait_for(task, 5)


async def test_spawn_after_close_is_refused() -> None:
    owner = TaskOwner("thing")
    await owner.aclose()
    ran = False

    async def work() -> None:
        nonlocal ran
        ran = True

    coro = work()
    with pytest.raises(ClientClosedError):
        owner.spawn(coro)
    assert coro.cr_frame is None  # closed, so no "never awaited" warning either
    await asyncio.sleep(0)
    assert not ran
