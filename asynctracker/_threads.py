"""The package's one worker-thread helper: a daemon thread running queued functions.

Written the way ``aiosqlite/core.py`` runs its connection: one thread, one queue of
(reply, function), run in order. Three things differ, and are why the package does not
use ``asyncio.to_thread`` (or aiosqlite) for what it owns:

* the thread is a daemon: a program that never closes its tracker still exits (the
  interpreter joins every other thread, and the default executor's, before ``atexit``);
* a reply goes to the event loop of the future that waits for it, or into a
  ``concurrent.futures.Future`` (the home loop's executor), and a reply to a loop that
  has closed is dropped instead of killing the thread;
* a fork leaves the thread in the parent: a Worker used in a forked child starts a
  new thread with a new queue (the parent's queued jobs are the parent's).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import logging
import threading
from collections.abc import Callable
from queue import SimpleQueue
from typing import Any, TypeVar

from . import _process

__all__ = ["Worker", "call_on_loop", "run_and_reply"]

logger = logging.getLogger("asynctracker")

_T = TypeVar("_T")
_Job = tuple[Any, Callable[[], Any]]


def _set_result(future: asyncio.Future[Any], result: object) -> None:
    if not future.done():
        future.set_result(result)


def _set_exception(future: asyncio.Future[Any], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)


def run_and_reply(future: asyncio.Future[_T], function: Callable[[], _T]) -> None:
    """On a worker thread: run ``function``, then settle ``future`` with its outcome on
    the future's loop, unless someone settled it meanwhile (a cancelled waiter) or that
    loop has closed (nobody waits any more)."""
    try:
        result = function()
    except BaseException as exc:  # handed to the awaiting task, never lost
        call_on_loop(future.get_loop(), _set_exception, future, exc)
    else:
        call_on_loop(future.get_loop(), _set_result, future, result)


def call_on_loop(
    loop: asyncio.AbstractEventLoop, function: Callable[..., None], *args: Any
) -> None:
    """From another thread: run ``function(*args)`` on ``loop``; dropped if it closed."""
    try:
        loop.call_soon_threadsafe(function, *args)
    except RuntimeError:  # the loop closed: nobody waits for this reply any more
        logger.debug("a worker thread's reply to a closed event loop was dropped")


def _run(reply: Any, function: Callable[[], Any]) -> None:
    if isinstance(reply, asyncio.Future):
        run_and_reply(reply, function)
    elif reply is not None:  # a concurrent.futures.Future: a thread blocks on it
        if reply.set_running_or_notify_cancel():
            try:
                reply.set_result(function())
            except BaseException as exc:
                reply.set_exception(exc)
    else:
        try:
            function()
        except BaseException:
            logger.exception("asynctracker worker job failed")


def _work(jobs: SimpleQueue[_Job | None]) -> None:
    """The thread: run each job in order; None ends it. A function over the queue
    alone, so the Worker object can be collected while its thread waits."""
    while True:
        job = jobs.get()
        if job is None:
            return
        _run(*job)


class Worker:
    """A daemon thread that runs functions in the order they are queued (see the module).

    Started on first use, in each process. Thread-safe: any thread may queue work.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._lock = _process.ForkSafeLock()
        self._jobs: SimpleQueue[_Job | None] | None = None
        self._forks = -1

    def _queue(self) -> SimpleQueue[_Job | None]:
        jobs = self._jobs
        if jobs is not None and self._forks == _process.forks:
            return jobs
        with self._lock:
            if self._jobs is None or self._forks != _process.forks:
                self._jobs = SimpleQueue()
                self._forks = _process.forks
                threading.Thread(
                    target=_work, args=(self._jobs,), name=self.name, daemon=True
                ).start()
            return self._jobs

    def call(self, function: Callable[..., _T], *args: object) -> asyncio.Future[_T]:
        """Run ``function(*args)`` on the thread; await the future for its outcome."""
        future: asyncio.Future[_T] = asyncio.get_running_loop().create_future()
        self._queue().put((future, functools.partial(function, *args)))
        return future

    def future(self, function: Callable[..., _T], *args: object) -> concurrent.futures.Future[_T]:
        """Run ``function(*args)`` on the thread; its outcome in a future another thread
        may block on (``concurrent.futures``, as an executor returns)."""
        future: concurrent.futures.Future[_T] = concurrent.futures.Future()
        self._queue().put((future, functools.partial(function, *args)))
        return future

    def submit(self, function: Callable[..., object], *args: object) -> None:
        """Run ``function(*args)`` on the thread; nobody waits (failures are logged)."""
        self._queue().put((None, functools.partial(function, *args)))

    def stop(self) -> None:
        """End the thread after the work queued before (idempotent; a later call to
        ``call`` or ``submit`` starts a new one)."""
        with self._lock:
            jobs, self._jobs = self._jobs, None
        if jobs is not None and self._forks == _process.forks:
            jobs.put(None)
