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
import contextvars
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
# The reporter whose callback the running code is in: set around each call, and copied
# into the tasks the callback starts (asyncio.gather's, say), so they know too.
_CALLING: contextvars.ContextVar[Reporter | None] = contextvars.ContextVar(
    "asynctracker_callback", default=None
)


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
                token = _CALLING.set(self)
                try:
                    assert self.callback is not None
                    result = self.callback(successes, failures)
                    if inspect.isawaitable(result):
                        await result
                except Exception:
                    logger.exception("asynctracker callback raised; delivery continues")
                finally:
                    _CALLING.reset(token)
        finally:
            if self._task is asyncio.current_task():
                self._task = None

    def in_callback(self) -> bool:
        """Is the running code inside this reporter's callback (or a task it started)?"""
        return _CALLING.get() is self

    async def drain(self, timeout: float | None = None) -> None:
        """Wait until every report queued so far was handed to the callback (at once
        from inside the callback itself, which cannot wait for itself)."""
        task = self._task
        if task is None or self.in_callback():
            return
        await asyncio.wait([task], timeout=timeout)

    async def stop(self, timeout: float | None) -> None:
        """Deliver what is queued for up to ``timeout`` seconds, then stop (from inside
        the callback: its task ends by itself once the callback returns)."""
        await self.drain(timeout)
        task = self._task
        if task is not None and not self.in_callback():
            task.cancel()
            await asyncio.wait([task])
        self.forget()

    def forget(self) -> None:
        """Drop the task untouched: it belongs to a loop that stopped, or the parent."""
        self._task = None
        self._waiting.clear()
