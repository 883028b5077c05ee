"""Waiting that Ctrl-C can cut short: signal handling, interruptible awaits, blocking
reads that never hold up the interpreter's exit.

``send`` must stop reading at once on Ctrl-C, even while a read blocks on an idle pipe,
then drain within a bound that a second Ctrl-C cuts short. :class:`Interrupt` turns
SIGINT/SIGTERM into two events, :func:`unless` races an awaitable against one of them,
and :func:`in_daemon_thread` runs a blocking read on a thread that is simply abandoned
when the process ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Awaitable, Callable, Iterator
from typing import TypeVar

from .._threads import Worker

__all__ = ["Interrupt", "in_daemon_thread", "unless"]

_T = TypeVar("_T")


class Interrupt:
    """The SIGINT/SIGTERM handler: the first signal asks to stop reading, the second
    to stop draining as well."""

    def __init__(self) -> None:
        self.stop = asyncio.Event()
        self.now = asyncio.Event()

    def __call__(self) -> None:
        if self.stop.is_set():
            self.now.set()
        self.stop.set()

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        loop = asyncio.get_running_loop()
        installed = []
        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):  # Windows: KeyboardInterrupt
                loop.add_signal_handler(signum, self)
                installed.append(signum)
        try:
            yield
        finally:
            for signum in installed:
                loop.remove_signal_handler(signum)


async def unless(event: asyncio.Event, awaitable: Awaitable[_T]) -> _T | None:
    """The awaitable's result, or None if ``event`` is set first (it is then cancelled)."""
    task = asyncio.ensure_future(awaitable)
    waiter = asyncio.ensure_future(event.wait())
    try:
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    except BaseException:  # we were cancelled: take both along
        waiter.cancel()
        task.cancel()
        raise
    waiter.cancel()
    if not task.done():
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return None
    return task.result()


_READER = Worker("asynctracker-read")


async def in_daemon_thread(func: Callable[[], _T]) -> _T:
    """Run a blocking read off the event loop on a daemon thread, one at a time.

    Not ``run_in_executor``: executor threads are joined at interpreter exit, so a read
    blocked on an idle terminal would keep Ctrl-C from ending the process.
    """
    return await _READER.call(func)
