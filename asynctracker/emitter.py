"""The Emitter: stores events, then delivers them from one background task.

``add`` hands the payload to the storage's bounded insert (the queue bound is applied
in the step that stores it, see ``_rowstore``), and the insert's outcome
reaches the send loop in that same step, which makes sure the emitter's single send
task is running. The parts live beside it:

* ``_lifecycle``: opening, closing, and starting over on a new event loop or after fork;
* ``_send_loop``: the send task (claim, send, settle, retry later) and its counters;
* ``_reports``: the callback, called from a task of its own;
* ``_rowstore``: the one interface the emitter calls a storage through; a
  user's five-method Storage is adapted to it once (``_adapter``).

Data flows one way: emitter -> lifecycle -> send loop -> sender / storage.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Literal, TypeAlias, TypeVar

import httpx

from ._adapter import row_store
from ._checks import flush_timeout
from ._health import DeliveryLog, proxy_hint
from ._lifecycle import Destination, Lifecycle, State, new_client
from ._options import Options, positive_int
from ._reports import Reporter
from ._retry import RetryPolicy
from ._rowstore import Bound, Overflow, Stored
from ._send_loop import SendLoop
from ._sender import Sender
from ._settle import Callback, EmitterStats
from ._wire import redact
from .exceptions import ClosedError, ConfigurationError, QueueFullError
from .storage.base import Storage
from .storage.sqlite import SQLiteStorage

_EmitterT = TypeVar("_EmitterT", bound="Emitter")

__all__ = ["Emitter"]

logger = logging.getLogger("asynctracker")

RequestType: TypeAlias = Literal["GET", "POST"]
HttpProtocol: TypeAlias = Literal["http", "https"]
OverflowPolicy: TypeAlias = Overflow

#: Where an emitter made without ``db_name`` or ``storage`` keeps its SQLite file.
DB_PATH_VARIABLE = "ASYNCTRACKER_DB_PATH"
_DEFAULT_MAX_EVENTS_MEMORY = 100_000
_DEFAULT_MAX_EVENTS_DURABLE = 1_000_000


class Emitter:
    """Stores events and delivers them to a Snowplow collector in the background.

    Every option of the Go tracker's emitter is a keyword here (``OptionSendLimit`` is
    ``send_limit``, ...). Options are checked when the emitter is made: a bad one
    raises ConfigurationError before anything is opened. Beyond the Go options:
    ``timeout`` (seconds per request on the owned client), ``retry`` (a RetryPolicy),
    ``max_events`` and ``overflow`` (the queue bound and what to drop at it),
    ``close_timeout`` (how long leaving ``async with`` may flush),
    ``max_concurrent_requests`` (requests in flight at once, and the owned client's
    connection pool; by default 16 for POST and 8 for GET, whose one request per event
    costs httpx more CPU with every connection in flight) and ``trust_env`` (the owned
    client follows ``HTTP_PROXY``/``HTTPS_PROXY``/``ALL_PROXY``/``NO_PROXY`` and
    ``SSL_CERT_FILE`` from the environment, as httpx does; False ignores them).

    Without ``db_name`` or ``storage``, events wait in the SQLite file that the
    ``ASYNCTRACKER_DB_PATH`` environment variable names, else ``./events.db``.

    Use ``async with emitter:`` (or ``async with tracker:``), or call ``aclose()``:
    closing flushes nothing by itself; leaving ``async with`` flushes for up to
    ``close_timeout`` seconds first. Undelivered events stay in the storage, and an
    emitter opened later on the same SQLite file sends them.
    """

    def __init__(
        self,
        collector_uri: str,
        *,
        request_type: RequestType = "POST",
        protocol: HttpProtocol = "https",
        send_limit: int = 500,
        byte_limit_get: int = 40_000,
        byte_limit_post: int = 40_000,
        db_name: str | os.PathLike[str] | None = None,
        storage: Storage | None = None,
        callback: Callback | None = None,
        http_client: httpx.AsyncClient | None = None,
        timeout: float = 5.0,
        retry: RetryPolicy | None = None,
        max_events: int | None = None,
        overflow: OverflowPolicy = "drop_oldest",
        close_timeout: float = 10.0,
        max_concurrent_requests: int | None = None,
        headers: Mapping[str, str] | None = None,
        anonymous: bool = False,
        post_path: str | None = None,
        get_path: str | None = None,
        trust_env: bool = True,
    ) -> None:
        options = Options.check(
            collector_uri,
            request_type=request_type,
            protocol=protocol,
            send_limit=send_limit,
            byte_limit_get=byte_limit_get,
            byte_limit_post=byte_limit_post,
            storage=storage,
            callback=callback,
            http_client=http_client,
            timeout=timeout,
            retry=retry,
            overflow=overflow,
            close_timeout=close_timeout,
            max_concurrent_requests=max_concurrent_requests,
            headers=headers,
            anonymous=anonymous,
            post_path=post_path,
            get_path=get_path,
            trust_env=trust_env,
        )
        self._endpoints = endpoints = options.endpoints
        self.collector_uri = collector_uri
        self.request_type: RequestType = request_type
        self.headers = options.headers
        self.anonymous = anonymous
        self.send_limit = options.send_limit
        self.byte_limit_get = options.byte_limit_get
        self.byte_limit_post = options.byte_limit_post
        self.max_concurrent_requests = options.max_concurrent_requests
        self.timeout = options.timeout
        self.close_timeout = options.close_timeout
        if storage is None:  # the pytest plugin sets the variable to each test's own file
            storage = SQLiteStorage(db_name or os.environ.get(DB_PATH_VARIABLE) or "events.db")
        self._storage: Storage = storage
        self._store = row_store(storage)
        if max_events is None:
            durable = self._store.location is not None
            max_events = _DEFAULT_MAX_EVENTS_DURABLE if durable else _DEFAULT_MAX_EVENTS_MEMORY
        self._bound = Bound(positive_int("max_events", max_events), overflow)
        self._send = SendLoop(
            self._store,
            send_limit=self.send_limit,
            retry=options.retry,
            reporter=Reporter(callback),
            delivery_log=DeliveryLog(
                endpoints.shown, hint=proxy_hint(endpoints.post) if http_client is None else ""
            ),
        )
        self._stored = self._send.stored  # the insert listener, made once
        # The owned client gets the whole-request deadline and follows redirects; a
        # user's client keeps its own timeouts and redirect settings (a 3xx it returns
        # is a retryable failure).
        owned = http_client is None
        new_sender = functools.partial(
            Sender,
            endpoints=endpoints,
            request_type=request_type,
            byte_limit_post=self.byte_limit_post,
            byte_limit_get=self.byte_limit_get,
            max_concurrent=self.max_concurrent_requests,
            headers=self.headers,
            deadline=self.timeout if owned else None,
            follow_redirects=owned,
        )
        self._life = Lifecycle(
            self._store,
            self._send,
            client=http_client,
            new_client=functools.partial(
                new_client, self.timeout, self.max_concurrent_requests, options.trust_env
            ),
            new_sender=new_sender,
            destination=Destination(
                endpoints.identity(request_type, self.headers),
                endpoints.shown,
                legacy="***@" not in endpoints.shown and not headers,
            ),
            close_timeout=self.close_timeout,
        )

    def __repr__(self) -> str:
        # The shown URL: a password in collector_uri never reaches a repr or a log.
        url = self._endpoints.post if self.request_type == "POST" else self._endpoints.get
        return f"<Emitter {self.request_type} {redact(url)} {self._life.state.value}>"

    @property
    def storage(self) -> Storage:
        """The storage events wait in (the one given, or the SQLite file)."""
        return self._storage

    @property
    def max_events(self) -> int:
        """The queue bound: at most this many events stored."""
        return self._bound.max_events

    @max_events.setter
    def max_events(self, value: int) -> None:
        self._bound = Bound(positive_int("max_events", value), self._bound.overflow)

    @property
    def overflow(self) -> OverflowPolicy:
        """What gives way at the bound: ``drop_oldest``, ``drop_newest`` or ``raise``."""
        return self._bound.overflow

    @overflow.setter
    def overflow(self, value: OverflowPolicy) -> None:
        if value not in ("drop_oldest", "drop_newest", "raise"):
            raise ConfigurationError("overflow must be 'drop_oldest', 'drop_newest' or 'raise'")
        self._bound = Bound(self._bound.max_events, value)

    @property
    def retry(self) -> RetryPolicy:
        """When undelivered events are sent again, and when they are dropped."""
        return self._send.retry

    @retry.setter
    def retry(self, policy: RetryPolicy) -> None:
        self._send.retry = policy

    @property
    def callback(self) -> Callback | None:
        """Called with each iteration's successes and failures (see CallbackResult),
        from a task of its own: it may await ``flush()`` or ``aclose()``."""
        return self._send.reporter.callback

    @callback.setter
    def callback(self, callback: Callback | None) -> None:
        self._send.reporter.callback = callback

    # -- lifecycle (see _lifecycle) -----------------------------------------------------

    @property
    def closed(self) -> bool:
        """True once ``aclose()`` was called."""
        return self._life.state is State.CLOSED

    async def open(self) -> None:
        """Open storage and the HTTP client. Called for you by ``async with`` and the
        first event; events left in storage by an earlier run start sending now.

        Raises StorageError if the storage cannot be opened, ClosedError after aclose.
        """
        await self._life.open()

    async def _ensure_open(self) -> None:
        if not self._life.open_here(asyncio.get_running_loop()):
            await self._life.open()

    async def aclose(self) -> None:
        """Stop sending, release claimed rows, close the storage and the owned client.

        Does not wait for delivery (use ``flush`` or ``async with``); what is not
        delivered stays in storage. Idempotent, and never hangs on a hung collector.
        """
        await self._life.close()

    async def __aenter__(self: _EmitterT) -> _EmitterT:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._leave(self.close_timeout)

    async def _leave(self, timeout: float) -> None:
        """Flush for up to ``timeout`` seconds when open here (never opening to close,
        nor reopening a parent's or a stopped loop's state), then close."""
        try:
            if self._life.open_here(asyncio.get_running_loop()):
                await self.flush(timeout=timeout)
        finally:
            await self.aclose()

    def __del__(self, _warn: Callable[..., None] = warnings.warn) -> None:
        life = getattr(self, "_life", None)
        if life is not None and life.state is State.OPEN:
            _warn(
                f"unclosed {self!r}: use 'async with' or await aclose()",
                ResourceWarning,
                stacklevel=1,
                source=self,
            )

    # -- adding events ----------------------------------------------------------------

    async def add(self, payload: Mapping[str, str]) -> None:
        """Store one event under the queue bound, then make sure the send task runs.

        Raises QueueFullError when the queue is full and ``overflow="raise"``,
        StorageError when the storage fails; other overflow policies report the drop.
        """
        # The hot path of every track_* call: no extra awaits when the emitter is open.
        life = self._life
        if not life.open_here(asyncio.get_running_loop()):
            await life.open()
        pacing = life.pacing
        started = pacing.started
        if started is not None and time.perf_counter() - started > pacing.budget:
            await pacing.take_turn(started)
        done = self._store.insert((payload,), self._bound, self._stored)
        if not isinstance(done, Stored):
            done = await done
        if done.refused_by is not None:
            self._check(done)
        if pacing.started is None:
            pacing.start_turn()

    async def add_many(self, payloads: Sequence[Mapping[str, str]]) -> None:
        """Store events together, all or none (under the queue bound), then send."""
        await self._ensure_open()
        if not payloads:
            return
        done = self._store.insert(payloads, self._bound, self._stored)
        if not isinstance(done, Stored):
            done = await done
        self._check(done)

    def add_blocking(self, payloads: Sequence[Mapping[str, str]]) -> None:
        """``add_many`` from a thread that runs no loop, the emitter being open on another
        thread's (``asynctracker.sync``); returns once stored. SQLite commits on this
        thread, any other storage through the loop. ClosedError when not open here."""
        life = self._life
        loop = life.affinity.loop
        if life.state is not State.OPEN or loop is None or not life.affinity.home_process():
            raise ClosedError("this emitter is not open on an event loop of this process")
        if not payloads:
            return
        store = self._store
        if isinstance(store, SQLiteStorage):
            done = store.insert_blocking(
                payloads, self._bound, functools.partial(self._send.stored_elsewhere, loop)
            )
            self._check(done)
        else:
            # This class's add_many: asynctracker.sync's subclass makes its own block.
            adding = Emitter.add_many(self, payloads)
            asyncio.run_coroutine_threadsafe(adding, loop).result()

    def _check(self, done: Stored) -> None:
        """Raise QueueFullError for events the bound refused under ``overflow="raise"``."""
        if done.refused_by == "raise":
            raise QueueFullError(
                f"the queue holds max_events={self.max_events} events (overflow='raise'); "
                "the event was not stored"
            )

    async def adopt_events(self, destination: int) -> int:
        """Make the events waiting in this emitter's SQLite file for another destination
        (``destination``, the number the opening WARNING and ``asynctracker queue``
        show) this emitter's own, and send them; return how many moved.

        For events tracked for a collector URL that has since changed, or written
        another way. Raises ConfigurationError for a storage other than SQLiteStorage.
        """
        if not isinstance(self._storage, SQLiteStorage):
            raise ConfigurationError("only an SQLiteStorage keeps events for other destinations")
        await self._ensure_open()
        moved = await self._storage.adopt_events(destination)
        if moved:
            self._send.stored(Stored(moved))
        return moved

    # -- flushing and stats --------------------------------------------------------------

    async def flush(self, timeout: float | None = None) -> int:
        """Send what is stored now; return how many events are still stored.

        Returns when storage is empty, when an iteration failed completely (it does not
        wait out a backoff), or after ``timeout`` seconds, whichever comes first, even
        if the collector accepts connections and never answers. Sends at once even
        during a backoff, and waits for the callback to have been handed every report
        so far (except from inside the callback). ``timeout`` is in seconds; None or
        infinity wait without limit; NaN and negative values raise ConfigurationError.
        """
        timeout = flush_timeout(timeout)
        await self._ensure_open()
        deadline = None if timeout is None else time.monotonic() + timeout
        task = self._send.hurry()
        if task is not None:
            # asyncio.wait neither raises the task's outcome nor cancels it on timeout.
            await asyncio.wait([task], timeout=timeout)
        await self._send.reporter.drain(
            None if deadline is None else max(deadline - time.monotonic(), 0)
        )
        return await self._send.recount()

    def stats(self) -> EmitterStats:
        """A snapshot of the emitter's counters (cheap: no I/O)."""
        return self._send.stats()
