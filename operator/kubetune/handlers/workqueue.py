"""A work queue of object keys with client-go's guarantees, for asyncio.

Watch events only say "look at this FineTuneJob again". Many events for one job (its status
patches, its Jobs' pods starting and finishing) collapse into one pending key; a key is never
processed by two workers at once (an event during processing marks it dirty and it runs again
after); and a key can be scheduled for later (a retry's back-off, a deadline, a TTL) or retried
with exponential back-off after an error. This is what makes per-job reconciles serial without
one task per job.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

K = TypeVar("K", bound=Hashable)


class ShutDown(Exception):  # noqa: N818 - a signal, like queue.ShutDown
    """The queue was shut down; workers stop."""


class WorkQueue(Generic[K]):
    """Deduplicating, delay-capable queue of keys.

    Args:
        base_delay: first retry delay after an error (seconds).
        max_delay: cap of the exponential error back-off (seconds).
    """

    def __init__(self, base_delay: float = 0.05, max_delay: float = 60.0) -> None:
        self._queue: deque[K] = deque()
        self._queued: set[K] = set()
        self._processing: set[K] = set()
        self._dirty: set[K] = set()
        self._timers: dict[K, tuple[float, asyncio.TimerHandle]] = {}
        self._failures: dict[K, int] = {}
        self._ready = asyncio.Event()
        self._shut_down = False
        self.base_delay = base_delay
        self.max_delay = max_delay

    def __len__(self) -> int:
        """Keys waiting to be processed (not counting delayed ones)."""
        return len(self._queue)

    def add(self, key: K) -> None:
        """Ask for ``key`` to be processed (once, however often it is added before that)."""
        if self._shut_down:
            return
        if key in self._processing:
            self._dirty.add(key)
            return
        if key in self._queued:
            return
        self._queued.add(key)
        self._queue.append(key)
        self._ready.set()

    def add_after(self, key: K, delay: float) -> None:
        """Add ``key`` in ``delay`` seconds (the earliest pending request wins)."""
        if self._shut_down:
            return
        if delay <= 0:
            self.add(key)
            return
        loop = asyncio.get_running_loop()
        due = loop.time() + delay
        pending = self._timers.get(key)
        if pending is not None:
            if pending[0] <= due:
                return
            pending[1].cancel()
        self._timers[key] = (due, loop.call_at(due, self._fire, key))

    def _fire(self, key: K) -> None:
        self._timers.pop(key, None)
        self.add(key)

    def add_rate_limited(self, key: K) -> float:
        """Add ``key`` after an exponential back-off that grows with its consecutive failures.

        Returns:
            The delay used.
        """
        failures = self._failures.get(key, 0)
        self._failures[key] = failures + 1
        delay = min(self.max_delay, self.base_delay * 2**failures)
        self.add_after(key, delay)
        return delay

    def forget(self, key: K) -> None:
        """Reset ``key``'s error back-off (after a successful run)."""
        self._failures.pop(key, None)

    def discard(self, key: K) -> None:
        """Drop any scheduled run of ``key`` (the object was deleted)."""
        pending = self._timers.pop(key, None)
        if pending is not None:
            pending[1].cancel()
        self._failures.pop(key, None)

    async def get(self) -> K:
        """Wait for the next key and mark it as being processed.

        Raises:
            ShutDown: the queue was shut down.
        """
        while not self._queue:
            if self._shut_down:
                raise ShutDown
            self._ready.clear()
            await self._ready.wait()
        key = self._queue.popleft()
        self._queued.discard(key)
        self._processing.add(key)
        return key

    def done(self, key: K) -> None:
        """Mark ``key`` processed; if it was added meanwhile, queue it again."""
        self._processing.discard(key)
        if key in self._dirty:
            self._dirty.discard(key)
            self.add(key)

    def shut_down(self) -> None:
        """Stop handing out keys and cancel every timer."""
        self._shut_down = True
        for _, handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
        self._ready.set()


#: Reconciles a key; returns seconds until it must run again, or None.
Reconciler = Callable[[K], Awaitable[float | None]]


async def worker(queue: WorkQueue[K], reconcile: Reconciler[K]) -> None:
    """Process keys until the queue shuts down.

    A reconcile that raises is retried with the queue's error back-off; one that returns a
    delay is scheduled again after it.

    Args:
        queue: the queue.
        reconcile: the function to run per key.
    """
    while True:
        try:
            key = await queue.get()
        except ShutDown:
            return
        try:
            requeue_after = await reconcile(key)
        except asyncio.CancelledError:
            raise
        except Exception:
            delay = queue.add_rate_limited(key)
            log.exception("reconciling %s failed; retrying in %.2fs", key, delay)
        else:
            queue.forget(key)
            if requeue_after is not None:
                queue.add_after(key, requeue_after)
        finally:
            queue.done(key)
