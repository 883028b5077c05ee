"""The exceptions asynctracker raises, all under one base class.

```
AsyncTrackerError
├── ConfigurationError (ValueError)   bad options; a tracker used by two running loops
├── InvalidEventError (ValueError)    bad arguments to a track_* call or SelfDescribingJson
├── ContextProviderError (RuntimeError) a tracker's context provider raised or returned junk
├── BeforeTrackError (RuntimeError)   a tracker's before_track hook raised or spoiled the event
├── StorageError (RuntimeError)       the storage could not store, read or delete events
│   └── QueueFullError                the queue is at max_events and the policy is "raise"
├── ClosedError (RuntimeError)        the tracker, emitter or storage was used after aclose()
└── BlockingCallError (RuntimeError)  asynctracker.sync called where it would block a loop
```

Delivery problems (collector down, timeouts, 5xx) are never raised from ``track_*``: they
are retried in the background and reported through the emitter's callback and stats.
Errors from httpx and sqlite3 are translated at the boundary (``raise ... from exc``), so
callers only ever need to catch these classes.
"""

from __future__ import annotations

__all__ = [
    "AsyncTrackerError",
    "BeforeTrackError",
    "ClosedError",
    "ConfigurationError",
    "ContextProviderError",
    "InvalidEventError",
    "QueueFullError",
    "StorageError",
]


class AsyncTrackerError(Exception):
    """Base class of every error asynctracker raises on purpose."""


class ConfigurationError(AsyncTrackerError, ValueError):
    """An option given to Emitter, Tracker, Subject or a storage is invalid.

    Raised by the constructor or setter that received it, before anything is opened or
    stored (a Subject's values are checked against Enrich's limits there); by
    ``flush()`` given a NaN or negative timeout; and by a call from one event loop
    while the tracker is in use on another, still running one (a tracker follows its
    loop from one ``asyncio.run`` to the next, but serves one loop at a time).
    """


class InvalidEventError(AsyncTrackerError, ValueError):
    """The arguments of a ``track_*`` call (or a SelfDescribingJson) cannot form a valid event.

    Raised before anything is stored: events already queued are untouched, and for an
    ecommerce transaction neither the transaction nor any of its items is stored.
    """


class ContextProviderError(AsyncTrackerError, RuntimeError):
    """One of a tracker's ``context_providers`` raised, or returned something other than a
    SelfDescribingJson, a sequence of them or None.

    Raised by the ``track_*`` call that asked it, with the provider's own exception as
    ``__cause__`` and the provider's name in the message; nothing was stored. A
    RuntimeError rather than a ValueError: the call's arguments were fine, the
    tracker's configuration code failed.
    """


class BeforeTrackError(AsyncTrackerError, RuntimeError):
    """One of a tracker's ``before_track`` hooks raised, returned something (a hook
    changes the event in place and returns None), or left the event unsendable.

    Raised by the ``track*`` call whose event it was handling, naming the hook, with
    the hook's own exception as ``__cause__``; nothing was stored, in any emitter.
    """


class StorageError(AsyncTrackerError, RuntimeError):
    """The storage failed: the SQLite file is locked, corrupt, unwritable or full.

    Raised by the call that needed the storage (``track_*``, ``flush``, opening), with
    the underlying ``sqlite3`` error as ``__cause__``. The event of a failed ``track_*``
    call was not stored; nothing already stored is removed.
    """


class QueueFullError(StorageError):
    """The emitter holds ``max_events`` events and its overflow policy is ``"raise"``.

    The rejected event was not stored; nothing queued was dropped.
    """


class ClosedError(AsyncTrackerError, RuntimeError):
    """A tracker, emitter or storage was used after ``aclose()``."""


class BlockingCallError(AsyncTrackerError, RuntimeError):
    """A blocking call of :mod:`asynctracker.sync` was made from a thread that runs an
    event loop: it would block that loop, or wait for itself when the loop is the
    engine's own (a callback). Raised at once, before anything is stored; use the async
    Tracker there.
    """
