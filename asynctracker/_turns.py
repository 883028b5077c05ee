"""TurnBudget: how much tracking one event-loop turn may run.

Every ready task runs once per loop turn, so a turn lasts as long as all the tracking
its tasks do, and every other coroutine in the application (a request, a health check)
waits that long. A task's first add in a turn is never held back: a request handler, a
gather of track calls, or callers a SQLite group commit just woke add once and move
on. But with MemoryStorage ``await track_*()`` never suspends, so a task looping on it
would run on, and a hundred such tasks would each add in every turn.

So a turn has a budget of ``BUDGET`` seconds from its first add. A task that adds
again in the same turn once the budget is spent (or while others wait for a turn)
joins a first-in, first-out queue, and is no longer ready at all. Each turn lets the
queue's head through, and that task adds until the budget is spent (cheap: no task
switch per event), then queues again at the back. Turns stay near the budget; looping
tasks take turns in arrival order.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque

__all__ = ["BUDGET", "TurnBudget"]

#: Seconds of adds one loop turn may run.
BUDGET = 0.001

_Task = asyncio.Task[object] | None


class TurnBudget:
    """Per emitter: the current turn's adds, and the tasks waiting for a turn."""

    __slots__ = (
        "_adders",
        "_first",
        "_let_through",
        "_loop",
        "_returning",
        "_room",
        "_running",
        "_scheduled",
        "_served",
        "_waiters",
    )

    def __init__(self) -> None:
        self._first: float | None = None  # when this turn's first add ended
        # Tasks that added in this turn while the budget was spent or others waited.
        self._adders: set[_Task] = set()
        self._waiters: deque[asyncio.Future[None]] = deque()
        # Let through, but the budget was gone when they ran: first in line next turn.
        self._returning: deque[asyncio.Future[None]] = deque()
        self._let_through = 0  # let through, not yet resumed
        self._running: _Task = None  # the task let through that is using this turn
        self._served = 0  # tasks let through that got to add, this turn
        self._room = 1  # how many to let through next turn
        self._scheduled = False
        self._loop: asyncio.AbstractEventLoop | None = None

    def must_wait(self) -> bool:
        """True when the calling task must ``wait()`` before adding."""
        first = self._first
        if first is None:
            return False
        spent = time.perf_counter() - first > BUDGET
        task = asyncio.current_task()
        if task is self._running:
            return spent
        if not spent and not (self._waiters or self._returning or self._let_through):
            return False
        if task in self._adders:
            return True
        self._adders.add(task)  # its first add in this turn goes ahead, not the next
        return False

    async def wait(self) -> None:
        """Wait, in arrival order, for a turn of one's own."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            # The turn was counted on a loop that has closed since (or in the parent,
            # before a fork): its next turn will never come. Start afresh here.
            self._forget(loop)
            return
        queue = self._waiters
        self._schedule(loop)
        while True:
            waiter = loop.create_future()
            queue.append(waiter)
            try:
                await waiter
            finally:
                if not waiter.cancelled():  # it was let through (and maybe cancelled since)
                    self._let_through -= 1
            first = self._first
            if first is None or time.perf_counter() - first <= BUDGET:
                self._running = asyncio.current_task()
                self._served += 1
                return
            queue = self._returning

    def counted(self) -> None:
        """Record an add that just ended."""
        if self._first is None:
            self._first = time.perf_counter()
            self._schedule(asyncio.get_running_loop())

    def _schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        if not self._scheduled:
            self._scheduled = True
            self._loop = loop
            loop.call_soon(self._next_turn)

    def _next_turn(self) -> None:
        """Once per turn while there are adds or waiters: a fresh budget, and the next
        waiters let through (they run in the following turn, after this runs again)."""
        self._scheduled = False
        self._first = None
        self._adders.clear()
        self._running = None
        served, self._served = self._served, 0
        if not (self._returning or self._waiters):
            return
        assert self._loop is not None
        self._schedule(self._loop)  # first, so that it runs before those let through
        # Grow while every task let through got to add; else one more than were served.
        self._room = min(self._room * 2, 64) if served >= self._room else served + 1
        room = self._room
        for queue in (self._returning, self._waiters):
            while queue and room:
                waiter = queue.popleft()
                if not waiter.done():  # a cancelled caller gives its place up
                    waiter.set_result(None)
                    self._let_through += 1
                    room -= 1

    def _forget(self, loop: asyncio.AbstractEventLoop) -> None:
        self._first = None
        self._adders.clear()
        self._waiters.clear()
        self._returning.clear()
        self._let_through = 0
        self._running = None
        self._served = 0
        self._room = 1
        self._scheduled = False
        self._loop = loop
