"""The work queue: dedup, one worker per key, delayed and rate-limited requeues, shutdown."""

from __future__ import annotations

import asyncio

import pytest
from kubetune.handlers.workqueue import ShutDown, WorkQueue, worker


def test_keys_are_deduplicated_and_dirty_keys_rerun() -> None:
    async def scenario() -> None:
        queue: WorkQueue[str] = WorkQueue()
        queue.add("a")
        queue.add("a")
        queue.add("b")
        assert len(queue) == 2
        key = await queue.get()
        assert key == "a"
        queue.add("a")  # while processing: not handed out twice, but remembered
        assert len(queue) == 1
        assert await queue.get() == "b"
        queue.done("a")
        assert await queue.get() == "a"

    asyncio.run(scenario())


def test_add_after_keeps_the_earliest_and_rate_limit_grows() -> None:
    async def scenario() -> None:
        queue: WorkQueue[str] = WorkQueue(base_delay=0.01, max_delay=0.04)
        queue.add_after("x", 10)
        queue.add_after("x", 0.02)
        queue.add_after("x", 5)
        assert len(queue) == 0
        assert await asyncio.wait_for(queue.get(), 1) == "x"
        queue.done("x")
        assert [queue.add_rate_limited("y") for _ in range(4)] == [0.01, 0.02, 0.04, 0.04]
        queue.forget("y")
        assert queue.add_rate_limited("y") == 0.01
        queue.discard("y")
        await asyncio.sleep(0.05)
        assert len(queue) == 0

    asyncio.run(scenario())


def test_worker_retries_errors_and_honours_requeue() -> None:
    async def scenario() -> None:
        queue: WorkQueue[str] = WorkQueue(base_delay=0.01)
        seen: list[str] = []

        async def reconcile(key: str) -> float | None:
            seen.append(key)
            if seen.count(key) == 1 and key == "boom":
                raise RuntimeError("transient")
            if key == "again" and seen.count(key) < 3:
                return 0.01
            return None

        task = asyncio.create_task(worker(queue, reconcile))
        queue.add("boom")
        queue.add("again")
        await asyncio.sleep(0.2)
        queue.shut_down()
        await asyncio.wait_for(task, 1)
        assert seen.count("boom") == 2 and seen.count("again") == 3

    asyncio.run(scenario())


def test_shutdown_stops_getters() -> None:
    async def scenario() -> None:
        queue: WorkQueue[str] = WorkQueue()
        getter = asyncio.create_task(queue.get())
        await asyncio.sleep(0)
        queue.add_after("late", 10)
        queue.shut_down()
        with pytest.raises(ShutDown):
            await asyncio.wait_for(getter, 1)
        queue.add("ignored")
        assert len(queue) == 0

    asyncio.run(scenario())
