"""Sharing the event loop when the storage never suspends.

``await storage.add_event_row()`` on MemoryStorage (and on SQLiteStorage for a caller
alone on the loop) returns without suspending, so a task that loops on
``await tracker.track_*()`` would keep the event loop to itself: the send task, a health
check, every other request would wait until it stopped. The emitter
therefore gives each loop turn a budget of adding time:

* once a turn has spent ``budget`` seconds adding events, a task that already added one
  in that turn sits out the next loop turn before it adds another, and the waiting
  tasks then resume at most 25 per turn, first come first served;
* a task that adds once and moves on (a request handler, one call of a gather) never
  waits: it has nothing to give back.

Why sit out a whole turn rather than ``await asyncio.sleep(0)``: every task that yields
with sleep(0) runs again in the very next turn, so with many such tasks every turn holds
all their adds plus the send task's steps, and other tasks' timers fire late (measured
by ``benchmarks/loop_lag.py``). Sitting out leaves every other turn to the rest of the
application; resuming a crowd of them in one turn still makes that turn long, hence the
batches of 25.
"""

from __future__ import annotations

import asyncio
import time

__all__ = ["Pacing"]

# Waiting tasks resumed per loop turn: each adds an event before it waits again,
# so 25 of them take about as long as the turn budget.
_RESUMED_PER_TURN = 25
_Sitters = tuple[asyncio.AbstractEventLoop, list["asyncio.Future[None]"]]


class Pacing:
    """One emitter's adding budget per loop turn (see the module docstring).

    The emitter reads ``started`` on its hot path and calls ``take_turn`` only once a
    turn is over budget. Every storage gets the budget: SQLiteStorage, too, commits a
    lone caller's insert without suspending (``storage/_inline``).
    """

    __slots__ = ("_repeaters", "_sitters", "budget", "started")

    def __init__(self, budget: float) -> None:
        self.budget = budget
        #: ``perf_counter()`` at the first add of the current loop turn; None between turns.
        self.started: float | None = None
        self._repeaters: set[asyncio.Task[object] | None] = set()
        self._sitters: _Sitters | None = None

    def start_turn(self) -> None:
        """Call after the first add of a loop turn (``started`` is None): starts its clock."""
        self.started = time.perf_counter()
        asyncio.get_running_loop().call_soon(self._new_turn)

    async def take_turn(self, started: float) -> None:
        """This turn is over budget: a task that already added in it sits out a turn."""
        task = asyncio.current_task()
        if task in self._repeaters:
            await self._sit_out()
            if self.started == started:
                # _new_turn never ran: it was scheduled on a loop that has since closed
                # (or in the parent, before a fork). Start counting afresh.
                self._new_turn()
        self._repeaters.add(task)

    def _new_turn(self) -> None:
        self.started = None
        self._repeaters.clear()

    def _sit_out(self) -> asyncio.Future[None]:
        """A future done in the next loop turn or, behind more than 25 others, later:
        its task resumes in the turn after.

        One future per waiting task, not one shared: cancelling a task cancels the
        future it awaits, and must not cancel the others' wait.
        """
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        sitters = self._sitters
        if sitters is None or sitters[0] is not loop:
            # None, or left over from a loop that closed before releasing it.
            sitters = self._sitters = (loop, [])
            loop.call_soon(self._release, sitters)
        sitters[1].append(waiter)
        return waiter

    def _release(self, sitters: _Sitters) -> None:
        """Resume the oldest waiters; the rest wait for the next turn, with newcomers
        queued behind them."""
        loop, waiters = sitters
        resumed = waiters[:_RESUMED_PER_TURN]
        del waiters[:_RESUMED_PER_TURN]
        if waiters:
            loop.call_soon(self._release, sitters)
        elif self._sitters is sitters:
            self._sitters = None
        for waiter in resumed:
            if not waiter.done():
                waiter.set_result(None)
