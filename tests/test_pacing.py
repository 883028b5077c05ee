"""How the emitter shares the event loop when its storage never suspends (``_pacing``).

Turns are counted by a callback that reschedules itself with ``call_soon``: it runs
once in every loop turn, so its count says how many turns a wait spanned.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from asynctracker._pacing import Pacing


class TurnCounter:
    """Counts loop turns while started."""

    def __init__(self) -> None:
        self.turns = 0
        self._running = False

    def start(self) -> None:
        self._running = True
        asyncio.get_running_loop().call_soon(self._tick)

    def stop(self) -> None:
        self._running = False

    def _tick(self) -> None:
        if self._running:
            self.turns += 1
            asyncio.get_running_loop().call_soon(self._tick)


async def _add(pacing: Pacing) -> None:
    """What Emitter.add does around its insert."""
    started = pacing.started
    if started is not None and time.perf_counter() - started > pacing.budget:
        await pacing.take_turn(started)
    if pacing.started is None:
        pacing.start_turn()


async def test_a_task_adding_again_in_a_turn_over_budget_sits_out_a_whole_turn() -> None:
    pacing = Pacing(budget=0.0)
    counter = TurnCounter()
    counter.start()
    await _add(pacing)
    await _add(pacing)  # over budget, first time for this task in the turn: no wait
    assert counter.turns == 0
    await _add(pacing)  # a repeat: waits
    # Resumed two turns on: one turn left entirely to other tasks, then its own.
    assert counter.turns >= 2
    counter.stop()


async def test_tasks_adding_once_per_turn_never_wait() -> None:
    pacing = Pacing(budget=0.0)
    counter = TurnCounter()
    await _add(pacing)  # starts the turn; with no budget, it is over budget from now on
    counter.start()

    async def handler() -> int:
        await _add(pacing)
        return counter.turns

    # Each handler adds once; none of them may wait for a later turn.
    seen = await asyncio.gather(*(handler() for _ in range(20)))
    counter.stop()
    assert set(seen) == {seen[0]}


async def test_cancelling_one_sitting_task_does_not_cancel_the_others() -> None:
    pacing = Pacing(budget=0.0)
    done: list[str] = []

    async def loop_adding(name: str) -> None:
        for _ in range(5):
            await _add(pacing)
        done.append(name)

    tasks = {name: asyncio.create_task(loop_adding(name)) for name in ("a", "b", "c")}
    await asyncio.sleep(0)  # every task has added and is now sitting out
    tasks["b"].cancel()
    results = await asyncio.gather(*tasks.values(), return_exceptions=True)
    assert isinstance(results[1], asyncio.CancelledError)
    assert sorted(done) == ["a", "c"]


async def test_many_sitting_tasks_resume_in_batches_first_come_first_served() -> None:
    pacing = Pacing(budget=0.0)
    counter = TurnCounter()
    counter.start()
    sat: list[int] = []
    resumed: list[int] = []
    waits: list[tuple[int, int]] = []  # (turn it sat out in, turn it resumed in)

    async def add_twice(index: int) -> None:
        await _add(pacing)
        sat.append(index)
        before = counter.turns
        await _add(pacing)  # a repeat in this turn: sits out
        resumed.append(index)
        waits.append((before, counter.turns))

    await asyncio.gather(*(add_twice(k) for k in range(61)))
    counter.stop()
    assert resumed == sat
    # The task that started the turn's clock is not yet a repeat adder: it never waits.
    later = [end for start, end in waits if end > start]
    assert sorted(later.count(turn) for turn in set(later)) == [10, 25, 25]


def test_a_wait_left_behind_by_a_closed_loop_does_not_hang_the_next_loop() -> None:
    pacing = Pacing(budget=0.0)

    async def start_a_turn_and_a_wait_then_stop_the_loop() -> None:
        await _add(pacing)
        pacing._sit_out()  # as a repeat adder would, but without staying to wait
        asyncio.get_running_loop().stop()  # ends after this turn: nothing is released

    first = asyncio.new_event_loop()
    task = first.create_task(start_a_turn_and_a_wait_then_stop_the_loop())
    first.run_forever()
    first.close()
    assert task.done()
    assert pacing.started is not None  # the turn never ended on the closed loop

    async def loop_adding() -> int:
        for _ in range(5):
            await _add(pacing)
        return 5

    assert asyncio.run(asyncio.wait_for(loop_adding(), timeout=10)) == 5


@pytest.mark.parametrize("budget", [0.0, 0.0005])
async def test_every_looping_task_gets_to_add(budget: float) -> None:
    pacing = Pacing(budget=budget)
    counts = [0] * 10

    async def loop_adding(index: int) -> None:
        for _ in range(200):
            await _add(pacing)
            counts[index] += 1

    await asyncio.gather(*(loop_adding(k) for k in range(10)))
    assert counts == [200] * 10
