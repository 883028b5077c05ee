"""The Emitter: stores events, then delivers them from one background task.

``add`` awaits the storage insert and then makes sure the emitter's single send task is
running. That task loops: claim up to ``send_limit`` stored rows (oldest first), send
them as concurrent requests (one per POST chunk, or one per event for GET), delete the
rows the collector accepted, and go again. It exits when storage has nothing left for
it, or when every request of an iteration failed; then a backoff timer starts it again
(see RetryPolicy), so events never sit unsent waiting for another ``track_*`` call.

Only this module talks to httpx. Only the send task deletes rows, and a row is deleted
only after a 2xx answer (or when the policy drops it, which is reported).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import importlib
import inspect
import logging
import os
import time
import warnings
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from typing import Literal, TypeAlias, TypeVar

import httpx

from . import _process
from ._checks import flush_timeout
from ._encoded import plain
from ._headers import check_headers
from ._health import DeliveryLog
from ._loop_end import call_at_loop_end
from ._pacing import Pacing
from ._retry import RetryPolicy
from ._sender import Sender, no_cookies
from ._settle import Callback, CallbackResult, EmitterStats, settle
from ._wire import Endpoints, redact
from .exceptions import (
    AsyncTrackerError,
    ClosedError,
    ConfigurationError,
    QueueFullError,
    StorageError,
)
from .storage import _ops as ops
from .storage.base import EventRow, Storage
from .storage.memory import MemoryStorage
from .storage.sqlite import SQLiteStorage

_EmitterT = TypeVar("_EmitterT", bound="Emitter")

__all__ = ["Emitter"]

logger = logging.getLogger("asynctracker")

RequestType: TypeAlias = Literal["GET", "POST"]
HttpProtocol: TypeAlias = Literal["http", "https"]
OverflowPolicy: TypeAlias = Literal["drop_oldest", "drop_newest", "raise"]

#: CallbackResult.status of events dropped before any request (queue overflow).
NOT_SENT = 0

_DEFAULT_MAX_EVENTS_MEMORY = 100_000
# Seconds of adds one loop turn may run before a caller that loops on track_* sits out
# a turn (see _pacing).
_TURN_BUDGET = 0.0005
_DEFAULT_MAX_EVENTS_DURABLE = 1_000_000
# Seconds the send task waits for a full batch while events keep arriving, before it
# claims (Kafka's linger.ms): one claim and full requests instead of a wake-up per event.
_LINGER = 0.005
# Loop-end hooks copied from the parent by fork(); see _check_fork.
_INHERITED_HOOKS: list[object] = []


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class _State(enum.Enum):
    UNOPENED = "unopened"
    OPEN = "open"
    CLOSED = "closed"


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigurationError(f"{name} must be a positive integer, got {value!r}")
    return value


class Emitter:
    """Stores events and delivers them to a Snowplow collector in the background.

    Every option of the Go tracker's emitter is a keyword here (``OptionSendLimit`` is
    ``send_limit``, ...). Options are checked when the emitter is made: a bad one
    raises ConfigurationError before anything is opened. Beyond the Go options:
    ``timeout`` (seconds per request on the owned client), ``retry`` (a RetryPolicy),
    ``max_events`` and ``overflow`` (the queue bound and what to drop at it),
    ``close_timeout`` (how long leaving ``async with`` may flush) and
    ``max_concurrent_requests`` (requests in flight at once, and the owned client's
    connection pool).

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
        db_name: str | os.PathLike[str] = "events.db",
        storage: Storage | None = None,
        callback: Callback | None = None,
        http_client: httpx.AsyncClient | None = None,
        timeout: float = 5.0,
        retry: RetryPolicy | None = None,
        max_events: int | None = None,
        overflow: OverflowPolicy = "drop_oldest",
        close_timeout: float = 10.0,
        max_concurrent_requests: int = 16,
        headers: Mapping[str, str] | None = None,
        anonymous: bool = False,
        post_path: str | None = None,
        get_path: str | None = None,
    ) -> None:
        if request_type not in ("GET", "POST"):
            raise ConfigurationError(f"request_type must be 'GET' or 'POST', got {request_type!r}")
        if protocol not in ("http", "https"):
            raise ConfigurationError(f"protocol must be 'http' or 'https', got {protocol!r}")
        self._endpoints = Endpoints.parse(
            collector_uri, protocol, post_path=post_path, get_path=get_path
        )
        if not isinstance(anonymous, bool):
            raise ConfigurationError(f"anonymous must be True or False, got {anonymous!r}")
        self.headers = check_headers(headers, anonymous=anonymous)
        self.anonymous = anonymous
        self.collector_uri = collector_uri
        self.request_type: RequestType = request_type
        self.send_limit = _positive_int("send_limit", send_limit)
        self.byte_limit_get = _positive_int("byte_limit_get", byte_limit_get)
        self.byte_limit_post = _positive_int("byte_limit_post", byte_limit_post)
        if storage is not None and not isinstance(storage, Storage):
            raise ConfigurationError(
                "storage must implement the Storage protocol (add_event_row, "
                "delete_all_event_rows, delete_event_rows, get_all_event_rows, "
                "get_event_rows_within_range)"
            )
        if http_client is not None and not isinstance(http_client, httpx.AsyncClient):
            raise ConfigurationError("http_client must be an httpx.AsyncClient")
        if callback is not None and not callable(callback):
            raise ConfigurationError("callback must be callable")
        if not isinstance(timeout, (int, float)) or not timeout > 0:
            raise ConfigurationError(f"timeout must be positive seconds, got {timeout!r}")
        if not isinstance(close_timeout, (int, float)) or not close_timeout >= 0:
            raise ConfigurationError(f"close_timeout must be >= 0 seconds, got {close_timeout!r}")
        if overflow not in ("drop_oldest", "drop_newest", "raise"):
            raise ConfigurationError(
                f"overflow must be 'drop_oldest', 'drop_newest' or 'raise', got {overflow!r}"
            )
        self.storage: Storage = storage if storage is not None else SQLiteStorage(db_name)
        self._plain_payloads = not ops.takes_encoded(self.storage)
        # SQLiteStorage's inserts, unchanged by a subclass: awaited without a coroutine
        # (add() checks it is still self.storage, should someone replace that).
        self._group_commit = (
            self.storage
            if isinstance(self.storage, SQLiteStorage) and not self._plain_payloads
            else None
        )
        if max_events is None:
            max_events = (
                _DEFAULT_MAX_EVENTS_MEMORY
                if isinstance(self.storage, MemoryStorage)
                else _DEFAULT_MAX_EVENTS_DURABLE
            )
        self.max_events = _positive_int("max_events", max_events)
        self.overflow: OverflowPolicy = overflow
        self.max_concurrent_requests = _positive_int(
            "max_concurrent_requests", max_concurrent_requests
        )
        self.retry = retry if retry is not None else RetryPolicy()
        if not isinstance(self.retry, RetryPolicy):
            raise ConfigurationError("retry must be a RetryPolicy")
        self.callback = callback
        self.timeout = float(timeout)
        self.close_timeout = float(close_timeout)
        self._client = http_client
        self._owns_client = http_client is None

        self._state = _State.UNOPENED
        self._pid = os.getpid()
        self._forks = _process.forks
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_end: AsyncGenerator[None, None] | None = None
        self._open_lock: asyncio.Lock | None = None
        self._sender: Sender | None = None
        self._task: asyncio.Task[bool] | None = None
        self._retry_handle: asyncio.TimerHandle | None = None
        self._wakeup = False
        self._fresh = 0  # events stored since the send task last claimed
        self._batch_ready: asyncio.Future[None] | None = None
        self._hurry = False  # flush() waits: send without lingering
        self._failures_in_a_row = 0
        self._attempts: dict[int, int] = {}
        self._cut_off: list[EventRow] | None = None
        self._queued = 0
        self._pacing = self._new_pacing()
        self._sent = 0
        self._failed = 0
        self._retried = 0
        self._dropped = 0
        self._delivery_log = DeliveryLog(self._endpoints.shown)

    def __repr__(self) -> str:
        # The shown URL: a password in collector_uri never reaches a repr or a log.
        url = self._endpoints.post if self.request_type == "POST" else self._endpoints.get
        return f"<Emitter {self.request_type} {redact(url)} {self._state.value}>"

    # -- lifecycle -------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """True once ``aclose()`` was called."""
        return self._state is _State.CLOSED

    async def open(self) -> None:
        """Open storage and the HTTP client. Called for you by ``async with`` and the
        first event; events left in storage by an earlier run start sending now.

        Raises StorageError if the storage cannot be opened, ClosedError after aclose.
        """
        self._check_fork()
        self._check_loop()
        if self._state is _State.OPEN:
            return
        if self._state is _State.CLOSED:
            raise ClosedError("this emitter was closed; create a new one")
        if self._open_lock is None:
            self._open_lock = asyncio.Lock()
        async with self._open_lock:
            if self._state is not _State.UNOPENED:
                return
            await ops.open_storage(self.storage)
            if isinstance(self.storage, SQLiteStorage):
                await self._bind_destination(self.storage)
            self._queued = self._fresh = await ops.count_rows(self.storage)
            if self._owns_client:
                self._client = await asyncio.to_thread(self._new_client)
            assert self._client is not None
            self._sender = self._new_sender(self._client)
            self._state = _State.OPEN
            self._loop_end = await call_at_loop_end(self._loop_ended)
        if self._cut_off is not None:
            # Claimed by a send iteration the previous event loop stopped in mid-flight.
            rows, self._cut_off = self._cut_off, None
            await self._release_quietly(rows)
        if self._queued:
            self._wake()

    def _new_client(self) -> httpx.AsyncClient:
        """Build the owned client. Blocking: run it in a worker thread.

        Creating the client loads the CA bundle (tens of milliseconds of disk and CPU),
        and httpcore imports anyio's asyncio backend on its first request; both are
        done here, off the event loop, so the first track_* does not stall it.
        """
        with contextlib.suppress(ImportError):
            importlib.import_module("anyio._backends._asyncio")
        return httpx.AsyncClient(
            timeout=self.timeout,
            limits=httpx.Limits(
                max_connections=self.max_concurrent_requests,
                max_keepalive_connections=self.max_concurrent_requests,
            ),
            # Collectors set a network user id cookie; sent back, it would stitch
            # every user of this process into one. The Sender follows redirects.
            cookies=no_cookies(),
            follow_redirects=False,
        )

    def _new_sender(self, client: httpx.AsyncClient) -> Sender:
        """The Sender for this client: the owned one gets the whole-request deadline
        and follows redirects; a user's client keeps its own timeouts and redirect
        settings (a 3xx it returns is a retryable failure)."""
        return Sender(
            client,
            self._endpoints,
            request_type=self.request_type,
            byte_limit_post=self.byte_limit_post,
            byte_limit_get=self.byte_limit_get,
            max_concurrent=self.max_concurrent_requests,
            headers=self.headers,
            deadline=self.timeout if self._owns_client else None,
            follow_redirects=self._owns_client,
        )

    def _new_pacing(self) -> Pacing:
        # Every storage may now store without suspending (SQLiteStorage commits a lone
        # caller's insert inline), so every one gets the turn budget.
        return Pacing(_TURN_BUDGET)

    async def _bind_destination(self, storage: SQLiteStorage) -> None:
        """Rows record their collector: this emitter sends only its own from a file
        that programs for other collectors share (see SQLiteStorage.bind_destination)."""
        waiting = await storage.bind_destination(self._endpoints.shown)
        for collector, count in waiting.items():
            logger.warning(
                "%s holds %d event(s) for another collector, %s: this emitter (for %s) "
                "never sends them; an emitter for that collector opened on the file does",
                storage.path,
                count,
                collector,
                self._endpoints.shown,
            )

    async def _ensure_open(self) -> None:
        if (
            self._state is not _State.OPEN
            or self._forks != _process.forks
            or self._loop is not asyncio.get_running_loop()
        ):
            await self.open()

    def _check_loop(self) -> None:
        """Follow the event loop the emitter is used from.

        A tracker made at import time and used by two ``asyncio.run`` calls in a row
        finds the first loop's send task, timer and HTTP connections dead: start over
        on the new loop (rows a stopped send had claimed are released on opening).
        """
        loop = asyncio.get_running_loop()
        old, self._loop = self._loop, loop
        if old is None or old is loop:
            return
        if old.is_running():
            self._loop = old
            raise ConfigurationError(
                "this emitter is in use on another running event loop; "
                "use one tracker per event loop"
            )
        self._forget_tasks()
        if self._state is _State.OPEN:
            self._state = _State.UNOPENED
            if self._owns_client:
                self._client = None  # its connections belong to the stopped loop

    def _check_fork(self) -> None:
        """In a forked child, never reuse the parent's task, timer or connections."""
        self._forks = _process.forks
        if self._pid == os.getpid():
            return
        self._pid = os.getpid()
        if self._loop_end is not None:
            # Collected, it would schedule itself on the parent's loop, whose wake-up
            # socket this process shares with the parent: keep it.
            _INHERITED_HOOKS.append(self._loop_end)
        self._forget_tasks()
        self._cut_off = None  # the parent's rows, which the parent is still sending
        if self._state is _State.OPEN:
            # open() runs again in the child: a new owned client, a new connection.
            self._state = _State.UNOPENED
            if self._owns_client:
                self._client = None
            else:
                logger.warning(
                    "emitter used in a forked child with the parent's http_client; "
                    "create the client after fork"
                )

    async def _loop_ended(self) -> None:
        """The event loop is shutting down with this emitter open (``asyncio.run``
        returning without ``aclose()``; see ``_loop_end``): stop sending and close the
        owned HTTP client while the loop still runs. The next loop that uses the
        emitter opens it again; rows a cut-off send had claimed are released then."""
        if self._state is not _State.OPEN or self._loop is not asyncio.get_running_loop():
            return
        self._state = _State.UNOPENED
        self._loop = None
        task = self._task
        if self._retry_handle is not None:
            self._retry_handle.cancel()
        self._forget_tasks()
        if task is not None:
            task.cancel()
            await asyncio.wait([task])
        if self._owns_client and self._client is not None:
            client, self._client = self._client, None
            await client.aclose()

    def _forget_tasks(self) -> None:
        self._loop_end = None
        self._task = None
        self._retry_handle = None
        self._open_lock = None
        self._sender = None
        self._batch_ready = None
        self._hurry = False
        self._attempts.clear()
        self._pacing = self._new_pacing()

    async def aclose(self) -> None:
        """Stop sending, release claimed rows, close the storage and the owned client.

        Does not wait for delivery (use ``flush`` or ``async with``); what is not
        delivered stays in storage. Idempotent, and never hangs on a hung collector.
        """
        if self._state is _State.CLOSED:
            return
        self._check_loop()
        was_open = self._state is _State.OPEN
        self._state = _State.CLOSED
        loop_end, self._loop_end = self._loop_end, None
        if loop_end is not None:
            await loop_end.aclose()  # nothing left for it to do
        if self._retry_handle is not None:
            self._retry_handle.cancel()
            self._retry_handle = None
        task, self._task = self._task, None
        if (
            task is not None
            and self._pid == os.getpid()
            and task.get_loop() is asyncio.get_running_loop()
        ):
            task.cancel()
            await asyncio.wait([task])
        try:
            if was_open and self._owns_client and self._client is not None:
                await self._client.aclose()
        finally:
            if was_open:
                await self._warn_undelivered()
            await ops.close(self.storage)

    async def _warn_undelivered(self) -> None:
        """The closing WARNING about events left behind (see _health)."""
        try:
            left = await ops.count_rows(self.storage)
        except Exception:  # the storage's own error surfaces from close, if at all
            left = 0
        where: str | None = repr(self.storage)
        if isinstance(self.storage, MemoryStorage):
            where = None
        elif isinstance(self.storage, SQLiteStorage):
            where = str(self.storage.path)
        self._delivery_log.close(left, where)

    async def __aenter__(self: _EmitterT) -> _EmitterT:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        try:
            if self._state is _State.OPEN:
                await self.flush(timeout=self.close_timeout)
        finally:
            await self.aclose()

    def __del__(self, _warn: Callable[..., None] = warnings.warn) -> None:
        if getattr(self, "_state", None) is _State.OPEN:
            _warn(
                f"unclosed {self!r}: use 'async with' or await aclose()",
                ResourceWarning,
                stacklevel=1,
                source=self,
            )

    # -- adding events ----------------------------------------------------------------

    async def add(self, payload: Mapping[str, str]) -> None:
        """Store one event, then make sure the send task is running."""
        # The hot path of every track_* call: no extra awaits when the emitter is open
        # and the queue has room.
        if (
            self._state is not _State.OPEN
            or self._forks != _process.forks
            or self._loop is not asyncio.get_running_loop()
        ):
            await self.open()
        pacing = self._pacing
        started = pacing.started
        if started is not None and time.perf_counter() - started > pacing.budget:
            await pacing.take_turn(started)
        if self._queued >= self.max_events and not await self._make_room(1):
            return
        group_commit = self._group_commit
        try:
            if group_commit is not None and group_commit is self.storage:
                pending = group_commit._add_event_row_nowait(payload, self._loop)
                if pending is not None:
                    await pending
            else:
                await self.storage.add_event_row(
                    plain(payload) if self._plain_payloads else payload
                )
        except AsyncTrackerError:
            raise
        except Exception as exc:
            raise StorageError(f"storage {self.storage!r} failed to add an event: {exc}") from exc
        self._queued += 1
        self._fresh += 1
        if self._batch_ready is not None and self._fresh >= self.send_limit:
            _resolve(self._batch_ready)
        self._wake()
        if pacing.started is None:
            pacing.start_turn()

    async def add_many(self, payloads: Sequence[Mapping[str, str]]) -> None:
        """Store events together (all or none where the storage allows), then send."""
        await self._ensure_open()
        count = len(payloads)
        if not count or not await self._make_room(count):
            return
        try:
            await ops.add_rows(self.storage, payloads)
        except AsyncTrackerError:
            raise
        except Exception as exc:
            raise StorageError(f"storage {self.storage!r} failed to add events: {exc}") from exc
        self._queued += count
        self._fresh += count
        if self._batch_ready is not None and self._fresh >= self.send_limit:
            _resolve(self._batch_ready)
        self._wake()

    async def _make_room(self, count: int) -> bool:
        """Apply the overflow policy; False means the new events must not be stored.

        The queue never exceeds ``max_events``. ``drop_oldest`` drops the oldest events
        not being sent (a request in flight keeps its rows until its outcome); when
        too few such events are stored, it drops the new events instead.
        """
        excess = self._queued + count - self.max_events
        if excess <= 0:
            return True
        self._queued = await ops.count_rows(self.storage)  # others may have sent some
        excess = self._queued + count - self.max_events
        if excess <= 0:
            return True
        if self.overflow == "raise":
            raise QueueFullError(
                f"the queue holds {self._queued} events (max_events={self.max_events}); "
                "the event was not stored"
            )
        if self.overflow == "drop_newest" or count > self.max_events:
            await self._report_dropped(count, NOT_SENT, "queue full (drop_newest)")
            return False
        # Rows being sent cannot be dropped (their request is in flight): when too few
        # others are stored, the new events are dropped instead, so the queue never
        # holds more than max_events.
        dropped = await ops.delete_oldest_rows(self.storage, excess)
        self._queued -= dropped
        if dropped:
            await self._report_dropped(dropped, NOT_SENT, "queue full (drop_oldest)")
        if dropped < excess:
            await self._report_dropped(
                count, NOT_SENT, "queue full of events being sent (drop_oldest)"
            )
            return False
        return True

    # -- the send task ------------------------------------------------------------------

    def _wake(self) -> None:
        """Make sure the send task runs, unless a backoff timer will start it.

        Never two tasks: the task clears ``_task`` itself in the same step in which it
        decides to stop, and re-checks ``_wakeup`` first, so an event stored while
        the loop is finishing is still picked up (no lost wake-up).
        """
        self._wakeup = True
        if self._task is None and self._retry_handle is None and self._state is _State.OPEN:
            self._task = asyncio.get_running_loop().create_task(
                self._send_loop(), name="asynctracker-send"
            )

    def _retry_now(self) -> None:
        self._retry_handle = None
        if self._state is _State.OPEN:
            self._wake()

    def _schedule_retry(self, retry_after: float | None, *, failed: bool = True) -> None:
        """Start the send task again later: after a backoff if ``failed``, and never
        before the collector's Retry-After (as far as the policy honours it)."""
        if failed:
            self._failures_in_a_row += 1
        if not self.retry.auto_retry:
            return
        backoff = self.retry.backoff(self._failures_in_a_row) if failed else 0.0
        delay = max(backoff, self.retry.wait_for_retry_after(retry_after))
        logger.debug("retrying undelivered events in %.2fs", delay)
        self._retry_handle = asyncio.get_running_loop().call_later(delay, self._retry_now)

    async def _send_loop(self) -> bool:
        """Returns True when it stopped on empty storage, False when it stopped to wait
        (every request failed, or the collector sent Retry-After)."""
        try:
            while True:
                self._wakeup = False
                if self._fresh < self.send_limit and not self._hurry:
                    await self._linger()
                self._fresh = 0
                rows = await ops.claim_rows(self.storage, self.send_limit)
                if len(rows) >= self.send_limit:
                    self._fresh += len(rows)  # a full claim: more may wait, do not linger
                if not rows:
                    if self._wakeup:
                        continue
                    return True
                # Cleared unless the task is cancelled in mid-flight: if that was the
                # event loop stopping, the next loop's open() releases these rows.
                self._cut_off = rows
                try:
                    delivered, retry_after = await self._send_and_settle(rows)
                except Exception:
                    self._cut_off = None
                    await self._release_quietly(rows)
                    raise
                self._cut_off = None
                if delivered:
                    self._failures_in_a_row = 0
                if retry_after is not None and (not delivered or retry_after > 0):
                    self._schedule_retry(retry_after or None, failed=not delivered)
                    return False
        except Exception:
            logger.exception("asynctracker send loop failed; will retry")
            self._schedule_retry(None)
            return False
        finally:
            # RuntimeError: closed by the garbage collector after its loop was closed
            # by hand, outside any loop (nothing left to tidy then).
            with contextlib.suppress(RuntimeError):
                if self._task is asyncio.current_task():
                    self._task = None
                    self._hurry = False

    async def _linger(self) -> None:
        """Wait up to ``_LINGER`` seconds for a full batch (``send_limit`` events stored
        since the last claim), or for ``flush()``. A caller tracking one event at a time
        would otherwise wake the send task per event, and each wake-up costs a claim, a
        request and a delete in the very loop turns the caller's inserts wait in."""
        loop = asyncio.get_running_loop()
        ready = self._batch_ready = loop.create_future()
        timer = loop.call_later(_LINGER, _resolve, ready)
        try:
            await ready
        finally:
            timer.cancel()
            if self._batch_ready is ready:
                self._batch_ready = None

    async def _release_quietly(self, claimed: list[EventRow]) -> None:
        """Give claimed rows back after an unexpected error, so they are not stuck."""
        try:
            await ops.release_rows(self.storage, [row.id for row in claimed])
        except Exception:
            logger.exception("could not release claimed rows; their claim will expire")

    async def _send_and_settle(self, rows: list[EventRow]) -> tuple[bool, float | None]:
        """Send one iteration, then delete, drop or release each request's rows.

        Returns (anything delivered?, retry hint): the hint is None when nothing needs
        retrying, else the longest Retry-After seen (0.0 when there was none).
        """
        assert self._sender is not None
        outcomes = await self._sender.send(rows)
        result = settle(
            outcomes,
            self.retry,
            self._attempts,
            self._sender.isolation,
            detail=self.callback is not None,
        )
        self._sent += result.sent
        self._failed += result.failed
        self._retried += len(result.release)
        for count, reason in result.drops:
            self._log_drop(count, reason)
        if result.delete:
            await self.storage.delete_event_rows(result.delete)
            self._queued = max(self._queued - len(result.delete), 0)
            for row_id in result.delete:
                self._attempts.pop(row_id, None)
        await ops.release_rows(self.storage, result.release)
        if result.delivered:
            self._delivery_log.delivered()
        elif result.release:
            cause = next((o.error for o in outcomes if o.error), "unknown error")
            self._delivery_log.failed(cause, self._queued)
        await self._call_back(result.successes, result.failures)
        return result.delivered, result.retry_hint

    def _log_drop(self, count: int, reason: str) -> None:
        self._dropped += count
        self._delivery_log.dropped(count, reason)

    async def _report_dropped(self, count: int, status: int, reason: str) -> None:
        self._log_drop(count, reason)
        await self._call_back(
            [], [CallbackResult(count, status, dropped=True, reason="overflow", detail=reason)]
        )

    async def _call_back(
        self, successes: list[CallbackResult], failures: list[CallbackResult]
    ) -> None:
        if self.callback is None or not (successes or failures):
            return
        try:
            result = self.callback(successes, failures)
            if inspect.isawaitable(result):
                await result
        except Exception:
            logger.exception("asynctracker callback raised; delivery continues")

    # -- flushing and stats --------------------------------------------------------------

    async def flush(self, timeout: float | None = None) -> int:
        """Send what is stored now; return how many events are still stored.

        Returns when storage is empty, when an iteration failed completely (it does not
        wait out a backoff), or after ``timeout`` seconds, whichever comes first, even
        if the collector accepts connections and never answers. Sends at once even
        during a backoff. ``timeout`` is in seconds; None or infinity wait without
        limit; NaN and negative values raise ConfigurationError (a ValueError).
        """
        timeout = flush_timeout(timeout)
        await self._ensure_open()
        if self._retry_handle is not None:
            self._retry_handle.cancel()
            self._retry_handle = None
        self._wake()
        self._hurry = True
        if self._batch_ready is not None:
            _resolve(self._batch_ready)
        task = self._task
        if task is not None:
            # asyncio.wait neither raises the task's outcome nor cancels it on timeout.
            await asyncio.wait([task], timeout=timeout)
        self._queued = await ops.count_rows(self.storage)
        return self._queued

    def stats(self) -> EmitterStats:
        """A snapshot of the emitter's counters (cheap: no I/O)."""
        return EmitterStats(
            queued=self._queued,
            sent=self._sent,
            failed=self._failed,
            retried=self._retried,
            dropped=self._dropped,
        )
