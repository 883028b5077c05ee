"""The background event loop that ``asynctracker.sync`` runs the engine on.

One loop thread per process, started on first use. It is a daemon thread, so a program
that never closes its tracker still exits; at exit, every sync emitter still open is
flushed (each within its ``close_timeout``, all at once) and closed, and what is not
delivered stays in its SQLite file. A forked child (gunicorn ``--preload``, Celery
prefork) starts a loop of its own on first use: the parent's thread does not exist there.

Blocking work the loop hands to a thread (resolving a host name) runs on daemon threads
of its own rather than the default executor, which refuses work once the interpreter
has begun to exit, exactly when the exit flush needs it.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import functools
import threading
import weakref
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Protocol, TypeVar

from . import _process
from ._threads import Worker
from .exceptions import BlockingCallError

__all__ = ["Home", "home"]

_T = TypeVar("_T")


class _Closing(Protocol):
    close_timeout: float

    def closing(self) -> Awaitable[None]: ...


class _DaemonExecutor(concurrent.futures.ThreadPoolExecutor):
    """``run_in_executor``'s default for the home loop: daemon worker threads (a
    ThreadPoolExecutor, as asyncio insists, whose own threads are never started)."""

    def __init__(self) -> None:
        super().__init__(max_workers=1)
        self._workers = [Worker(f"asynctracker-io-{n}") for n in range(4)]
        self._next = 0

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        for worker in self._workers:
            worker.stop()

    def submit(
        self, fn: Callable[..., _T], /, *args: Any, **kwargs: Any
    ) -> concurrent.futures.Future[_T]:
        self._next = (self._next + 1) % len(self._workers)
        return self._workers[self._next].future(functools.partial(fn, *args, **kwargs))


class Home:
    """A running event loop on a daemon thread of this process."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.loop.set_default_executor(_DaemonExecutor())
        self.forks = _process.forks
        started = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(self.loop)
            self.loop.call_soon(started.set)
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, name="asynctracker-loop", daemon=True)
        self.thread.start()
        started.wait()
        #: What the exit flush closes: the sync emitters used in this process.
        self.open: weakref.WeakSet[_Closing] = weakref.WeakSet()

    def run(self, coroutine: Coroutine[Any, Any, _T]) -> _T:
        """Run ``coroutine`` on the home loop and wait for its outcome here.

        Raises BlockingCallError when called from a thread that runs an event loop
        (the home loop's own included): it would block that loop, or wait for itself.
        """
        try:
            refuse_on_a_loop()
        except BlockingCallError:
            coroutine.close()  # never started
            raise
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result()

    def close_all(self) -> None:
        """At exit: flush and close every sync emitter still open, each within its
        ``close_timeout``, all at once (a hung close is given up on, the thread being
        a daemon)."""
        emitters = list(self.open)
        if not emitters:
            return
        bound = max(emitter.close_timeout for emitter in emitters) + 0.5

        async def closing() -> None:
            await asyncio.gather(*(e.closing() for e in emitters), return_exceptions=True)

        concurrent.futures.wait([asyncio.run_coroutine_threadsafe(closing(), self.loop)], bound)


def refuse_on_a_loop() -> None:
    """Raise BlockingCallError when this thread runs an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    raise BlockingCallError(
        "asynctracker.sync was called from a thread that runs an event loop: it would "
        "block that loop (or wait for itself, on the tracker's own). Use the async "
        "Tracker (await tracker.track_*()) there"
    )


_lock = _process.ForkSafeLock()
_home: Home | None = None


def home() -> Home:
    """This process's home loop, started on first use (again in a forked child)."""
    global _home
    current = _home
    if current is not None and current.forks == _process.forks:
        return current
    with _lock:
        if _home is None or _home.forks != _process.forks:
            _home = Home()
        return _home


def _close_at_exit() -> None:
    current = _home
    if current is not None and current.forks == _process.forks:
        current.close_all()


atexit.register(_close_at_exit)
