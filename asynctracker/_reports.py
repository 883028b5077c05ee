"""The emitter's callback, called from a task of its own, in order.

The send task never runs user code: it queues each iteration's results here and goes
on sending, and drops that happen outside a send (the queue bound) are queued from
wherever they happen. One reporter task per emitter calls the callback with them, one
report at a time, in the order they came. So a callback may do anything the emitter
allows, ``await tracker.flush()`` and ``await tracker.aclose()`` included: it never
waits for itself (the send task does not wait for it).

Memory stays bounded when a callback falls behind: past ``_MAX_WAITING`` reports,
the events' payloads are left out of new reports (counts, statuses and reasons stay),
with a WARNING once a minute.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import logging
import time
from collections import deque

from ._settle import Callback, CallbackResult

__all__ = ["Reporter"]

logger = logging.getLogger("asynctracker")

_MAX_WAITING = 100
_WARN_EVERY = 60.0

_Report = tuple[list[CallbackResult], list[CallbackResult]]


class Reporter:
    """Calls ``callback(successes, failures)`` for each report, from its own task."""

    def __init__(self, callback: Callback | None) -> None:
        self.callback = callback
        self._waiting: deque[_Report] = deque()
        self._task: asyncio.Task[None] | None = None
        self._warned = -_WARN_EVERY

    def report(self, successes: list[CallbackResult], failures: list[CallbackResult]) -> None:
        """Queue one report (nothing without a callback, or with nothing to say)."""
        if self.callback is None or not (successes or failures):
            return
        if len(self._waiting) >= _MAX_WAITING:
            failures = [dataclasses.replace(result, events=()) for result in failures]
            now = time.monotonic()
            if now - self._warned >= _WARN_EVERY:
                self._warned = now
                logger.warning(
                    "the asynctracker callback is falling behind (%d reports waiting); "
                    "new reports leave out the events' payloads until it catches up",
                    len(self._waiting),
                )
        self._waiting.append((successes, failures))
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name="asynctracker-callback"
            )

    async def _run(self) -> None:
        try:
            while self._waiting:
                successes, failures = self._waiting.popleft()
                try:
                    assert self.callback is not None
                    result = self.callback(successes, failures)
                    if inspect.isawaitable(result):
                        await result
                except Exception:
                    logger.exception("asynctracker callback raised; delivery continues")
        finally:
            if self._task is asyncio.current_task():
                self._task = None

    def in_callback(self) -> bool:
        """Is the running task the one calling the callback?"""
        return self._task is not None and self._task is asyncio.current_task()

    async def drain(self, timeout: float | None = None) -> None:
        """Wait until every report queued so far was handed to the callback (at once
        from inside the callback itself, which cannot wait for itself)."""
        task = self._task
        if task is None or task is asyncio.current_task():
            return
        await asyncio.wait([task], timeout=timeout)

    async def stop(self, timeout: float | None) -> None:
        """Deliver what is queued for up to ``timeout`` seconds, then stop."""
        await self.drain(timeout)
        task = self._task
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            await asyncio.wait([task])
        self.forget()

    def forget(self) -> None:
        """Drop the task untouched: it belongs to a loop that stopped, or the parent."""
        self._task = None
        self._waiting.clear()
