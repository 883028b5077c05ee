"""The same tracker for synchronous code: Django, Flask, Celery workers, scripts.

```python
from asynctracker import sync

tracker = sync.Tracker(sync.Emitter("https://collector.acme.com"), app_id="shop")
event_id = tracker.track_struct_event("shop", "add")   # returns once stored
tracker.close()                                       # flushes first (close_timeout)
```

Every ``track_*`` and ``track(event)`` is a plain method taking the async Tracker's
arguments: the event is built and checked in the calling thread (bad input raises
there, nothing stored), then stored before the call returns (committed, with SQLite: on
the calling thread, or with other threads' events in one transaction). Delivery runs in
the background on one event loop thread per process (``_home``), started on first use.

* Any number of threads may call at once; errors (InvalidEventError, QueueFullError,
  StorageError) raise in the calling thread.
* A forked child (gunicorn ``--preload``, Celery prefork, multiprocessing) starts its own
  loop thread and connections on first use.
* A program that never calls ``close()`` still exits: at exit each emitter flushes what
  it can within its ``close_timeout``, and what is left stays in its SQLite file.
* A call from a thread that runs an event loop (an ``async def`` view, the emitter's own
  callback) raises BlockingCallError at once instead of blocking that loop.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import Any, Concatenate, ParamSpec, TypeVar

from . import tracker as _async_tracker
from ._emitters import each
from ._home import Home, home, refuse_on_a_loop
from ._settle import EmitterStats
from .emitter import Emitter as _AsyncEmitter
from .exceptions import BlockingCallError, ClosedError, ConfigurationError
from .storage.base import Storage

__all__ = ["Emitter", "Tracker"]

_P = ParamSpec("_P")
_T = TypeVar("_T")


def _same_arguments(
    init: Callable[Concatenate[Any, _P], None],
) -> Callable[[Callable[..., None]], Callable[Concatenate[Any, _P], None]]:
    """Give a constructor the async one's parameters (for type checkers and ``help``)."""

    def decorate(function: Callable[..., None]) -> Callable[Concatenate[Any, _P], None]:
        function.__signature__ = inspect.signature(init)  # type: ignore[attr-defined]
        return function

    return decorate


def _tracker_arguments(
    init: Callable[Concatenate[Any, Any, _P], None],
) -> Callable[
    [Callable[..., None]], Callable[Concatenate[Any, Emitter | Sequence[Emitter], _P], None]
]:
    """The async Tracker's parameters after its first, ``emitters``, which are sync."""

    def decorate(
        function: Callable[..., None],
    ) -> Callable[Concatenate[Any, Emitter | Sequence[Emitter], _P], None]:
        function.__signature__ = inspect.signature(init)  # type: ignore[attr-defined]
        return function

    return decorate


class _ThreadEmitter(_AsyncEmitter):
    """The async Emitter, open on the process's home loop, storing from the calling
    thread (``add_blocking``) instead of awaiting."""

    async def add(self, payload: Mapping[str, str]) -> None:
        self._store_here([payload])

    async def add_many(self, payloads: Sequence[Mapping[str, str]]) -> None:
        self._store_here(payloads)

    def _store_here(self, payloads: Sequence[Mapping[str, str]]) -> None:
        try:
            self.add_blocking(payloads)
        except ClosedError:  # not open on this process's home loop yet: open, once
            self.open_at_home()
            self.add_blocking(payloads)

    def at_home(self) -> Home:
        """This process's home loop, whose exit flush now closes this emitter: every
        use of the loop for an emitter goes through here, so none is left out."""
        loop = home()
        loop.open.add(self)
        return loop

    def open_at_home(self) -> None:
        """Open on this process's home loop."""
        self.at_home().run(self.open())

    async def closing(self, timeout: float | None = None) -> None:
        """On the home loop: flush (for ``timeout``, default ``close_timeout``) when open
        there, then close."""
        await self._leave(self.close_timeout if timeout is None else timeout)


class Emitter:
    """An :class:`asynctracker.Emitter` for synchronous code; the same arguments.

    ``flush()`` and ``close()`` block the calling thread; ``with emitter:`` closes it
    on the way out (flushing first, within ``close_timeout``).
    """

    @_same_arguments(_AsyncEmitter.__init__)
    def __init__(self, *args: Any, **options: Any) -> None:
        self.emitter = _ThreadEmitter(*args, **options)

    def __repr__(self) -> str:
        return f"<sync.{repr(self.emitter)[1:]}"

    @property
    def closed(self) -> bool:
        """True once ``close()`` was called."""
        return self.emitter.closed

    @property
    def storage(self) -> Storage:
        """The storage events wait in."""
        return self.emitter.storage

    def stats(self) -> EmitterStats:
        """A snapshot of the emitter's counters (no I/O)."""
        return self.emitter.stats()

    def open(self) -> None:
        """Open storage and the HTTP client on the background loop (the first event
        does it too); events left by an earlier run start sending."""
        self.emitter.open_at_home()

    def flush(self, timeout: float | None = None) -> int:
        """Wait for delivery (see ``asynctracker.Emitter.flush``); return the number of
        events still stored."""
        return self.emitter.at_home().run(self.emitter.flush(timeout))

    def close(self, timeout: float | None = None) -> None:
        """Flush for up to ``timeout`` seconds (default ``close_timeout``), then close:
        what is not delivered stays in the storage. Idempotent."""
        if not self.emitter.closed:
            self.emitter.at_home().run(self.emitter.closing(timeout))

    def __enter__(self) -> Emitter:
        self.open()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _blocking(
    method: Callable[Concatenate[_async_tracker.Tracker, _P], Coroutine[Any, Any, _T]],
) -> Callable[Concatenate[Tracker, _P], _T]:
    """The async Tracker's ``method``, run in the calling thread (see ``Tracker._run``)."""

    def call(self: Tracker, /, *args: _P.args, **kwargs: _P.kwargs) -> _T:
        refuse_on_a_loop()
        return _run(method(self.tracker, *args, **kwargs))

    call.__name__ = method.__name__
    call.__qualname__ = f"Tracker.{method.__name__}"
    call.__doc__ = method.__doc__
    return call


def _run(coroutine: Coroutine[Any, Any, _T]) -> _T:
    """Run a track call's coroutine here, to its end. It never waits on the loop: it
    builds the event, then stores it through ``_ThreadEmitter``, which blocks instead
    of awaiting. Between steps of a large event it only yields (``sleep(0)``)."""
    try:
        while True:
            if coroutine.send(None) is not None:
                coroutine.close()
                raise BlockingCallError("a sync track call awaited the event loop")
    except StopIteration as done:
        result: _T = done.value
        return result


class Tracker:
    """An :class:`asynctracker.Tracker` for synchronous code: the same arguments, with
    ``sync.Emitter`` emitters (one, or a list) and context providers that are plain
    functions. ``with tracker:`` and ``close()`` flush (within each emitter's
    ``close_timeout``) and close its emitters."""

    @_tracker_arguments(_async_tracker.Tracker.__init__)
    def __init__(self, emitters: Any, *args: Any, **options: Any) -> None:
        given = [emitters] if isinstance(emitters, Emitter) else list(emitters)
        if not given or not all(isinstance(emitter, Emitter) for emitter in given):
            raise ConfigurationError("a sync.Tracker's emitters are asynctracker.sync.Emitter")
        for provider in options.get("context_providers") or ():
            if inspect.iscoroutinefunction(provider):
                raise ConfigurationError(
                    "a sync.Tracker's context providers must be plain functions, "
                    f"not the coroutine function {provider!r}"
                )
        self.emitters: tuple[Emitter, ...] = tuple(given)
        self.tracker = _async_tracker.Tracker([e.emitter for e in given], *args, **options)

    def __repr__(self) -> str:
        return f"<sync.{repr(self.tracker)[1:]}"

    track = _blocking(_async_tracker.Tracker.track)
    track_page_view = _blocking(_async_tracker.Tracker.track_page_view)
    track_struct_event = _blocking(_async_tracker.Tracker.track_struct_event)
    track_self_describing_event = _blocking(_async_tracker.Tracker.track_self_describing_event)
    track_screen_view = _blocking(_async_tracker.Tracker.track_screen_view)
    track_timing = _blocking(_async_tracker.Tracker.track_timing)
    track_ecommerce_transaction = _blocking(_async_tracker.Tracker.track_ecommerce_transaction)

    def _at_home(self) -> Home:
        for emitter in self.emitters:
            emitter.emitter.at_home()
        return home()

    def flush(self, timeout: float | None = None) -> int:
        """Wait for delivery (the emitters at once); the events still stored, in all."""
        return self._at_home().run(self.tracker.flush(timeout))

    def close(self, timeout: float | None = None) -> None:
        """Flush (each within ``timeout``, default its ``close_timeout``), then close
        every emitter, at once; the first error is raised once all are closed.
        Idempotent."""

        async def closing() -> None:
            await each([e.emitter.closing(timeout) for e in self.emitters])

        if not all(emitter.closed for emitter in self.emitters):
            self._at_home().run(closing())

    def __enter__(self) -> Tracker:
        """Open every emitter (when one fails, those opened are closed)."""
        self._at_home().run(self.tracker.__aenter__())
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
