"""The send task: claim stored rows, send them, settle each request, go again.

One task per emitter and event loop. It loops: wait briefly for a full batch (linger),
claim up to ``send_limit`` stored rows (oldest first), send them as concurrent requests
through the Sender, delete the rows the collector accepted, release the others, and go
again. It exits when storage has nothing left for it, or when every request of an
iteration failed; then a backoff timer starts it again (see RetryPolicy), so events
never sit unsent waiting for another ``track_*`` call.

Only this task deletes rows, and a row is deleted only after a 2xx answer (or when the
policy drops it, which is reported). It owns the delivery counters the emitter's
``stats()`` reads and the memory of failed rows (``_isolate``); every insert's outcome
reaches it through :meth:`SendLoop.stored`, in the step that commits the rows, so a
cancelled ``track_*`` whose row was committed is counted and sent all the same.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from . import _process
from ._health import DeliveryLog
from ._isolate import RowMemory
from ._reports import Reporter
from ._retry import RetryPolicy
from ._rowstore import RowStore, Stored
from ._sender import NOT_SENT, Sender
from ._settle import CallbackResult, EmitterStats, settle
from ._threads import call_on_loop
from .storage.base import EventRow

__all__ = ["SendLoop"]

logger = logging.getLogger("asynctracker")

# Seconds the send task waits for a full batch while events keep arriving, before it
# claims (Kafka's linger.ms): one claim and full requests instead of a wake-up per event.
_LINGER = 0.005


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class SendLoop:
    """The emitter's background delivery: its task, backoff timer and counters.

    ``active`` is set by the emitter's lifecycle while the emitter is open on the
    running loop; the task is started only then. ``sender`` is set at each opening.
    """

    def __init__(
        self,
        store: RowStore,
        *,
        send_limit: int,
        retry: RetryPolicy,
        reporter: Reporter,
        delivery_log: DeliveryLog,
    ) -> None:
        self._store = store
        self._send_limit = send_limit
        self.retry = retry
        self.reporter = reporter
        self.delivery_log = delivery_log
        self.active = False
        self.sender: Sender | None = None
        self.queued = 0  # events stored, as far as this process knows
        self.fresh = 0  # events stored since the send task last claimed
        self.sent = 0
        self.failed = 0
        self.retried = 0
        self.dropped = 0
        # Claimed by a send iteration the event loop stopped in mid-flight: the next
        # opening releases them (see release_cut_off).
        self.cut_off: list[EventRow] | None = None
        self._task: asyncio.Task[bool] | None = None
        self._retry_handle: asyncio.TimerHandle | None = None
        self._wakeup = False
        self._batch_ready: asyncio.Future[None] | None = None
        self._hurry = False  # flush() waits: send without lingering
        self._failures_in_a_row = 0
        self.memory = RowMemory()
        self._elsewhere: list[Stored] = []  # see stored_elsewhere
        self._elsewhere_lock = _process.ForkSafeLock()

    def stored(self, outcome: Stored) -> None:
        """The listener of every insert (see ``_rowstore``): count what it
        did and send the new events, soon or with a full batch."""
        if outcome.stored:
            self.queued += outcome.stored
            self.fresh += outcome.stored
            if self._batch_ready is not None and self.fresh >= self._send_limit:
                _resolve(self._batch_ready)
            self.wake()
        if outcome.evicted:
            self.queued = max(self.queued - outcome.evicted, 0)
            self._report_overflow(outcome.evicted, "queue full (drop_oldest)")
        if outcome.refused and outcome.refused_by != "raise":  # "raise": the caller's error
            self._report_overflow(
                outcome.refused,
                "queue full (drop_newest)"
                if outcome.refused_by == "drop_newest"
                else "queue full of events being sent (drop_oldest)",
            )

    def stored_elsewhere(self, loop: asyncio.AbstractEventLoop, outcome: Stored) -> None:
        """The listener of inserts made on other threads (``Emitter.add_blocking``),
        ``loop`` being this send loop's: thread-safe, the outcomes counted on the loop,
        many in one wake-up (one per insert would cost the loop more than the inserts)."""
        with self._elsewhere_lock:
            self._elsewhere.append(outcome)
            if len(self._elsewhere) > 1:
                return  # a wake-up is on its way
        call_on_loop(loop, self._count_elsewhere)

    def _count_elsewhere(self) -> None:
        with self._elsewhere_lock:
            outcomes, self._elsewhere = self._elsewhere, []
        for outcome in outcomes:
            self.stored(outcome)

    def stats(self) -> EmitterStats:
        """A snapshot of the counters (no I/O)."""
        return EmitterStats(self.queued, self.sent, self.failed, self.retried, self.dropped)

    async def recount(self, *, opening: bool = False) -> int:
        """Count the stored events afresh (other processes send and store too); at
        opening, they all count as new for the linger."""
        self.queued = await self._store.count()
        if opening:
            self.fresh = self.queued
        return self.queued

    def wake(self) -> None:
        """Make sure the send task runs, unless a backoff timer will start it.

        Never two tasks: the task clears ``_task`` itself in the same step in which it
        decides to stop, and re-checks ``_wakeup`` first, so an event stored while
        the loop is finishing is still picked up (no lost wake-up).
        """
        self._wakeup = True
        if self._task is None and self._retry_handle is None and self.active:
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name="asynctracker-send"
            )

    def hurry(self) -> asyncio.Task[bool] | None:
        """Send now, even during a backoff, without lingering (``flush()``); returns
        the send task to wait for, if one runs."""
        if self._retry_handle is not None:
            self._retry_handle.cancel()
            self._retry_handle = None
        self.wake()
        self._hurry = True
        if self._batch_ready is not None:
            _resolve(self._batch_ready)
        return self._task

    async def stop(self) -> None:
        """Cancel the backoff timer and the task (waiting for it), then forget them.
        A task of another loop is left alone."""
        if self._retry_handle is not None:
            self._retry_handle.cancel()
        task = self._task
        self.forget()
        if task is not None and task.get_loop() is asyncio.get_running_loop():
            task.cancel()
            await asyncio.wait([task])

    def forget(self) -> None:
        """Drop the task, timer and per-loop state without touching them: they belong
        to a loop that stopped, or to the parent process."""
        self.active = False
        self._task = None
        self._retry_handle = None
        self.sender = None
        self._batch_ready = None
        self._hurry = False
        self.memory.clear()

    async def release_cut_off(self) -> None:
        """Give back the rows an iteration cut off by its loop stopping had claimed."""
        if self.cut_off is not None:
            rows, self.cut_off = self.cut_off, None
            await self.release_quietly(rows)

    def _retry_now(self) -> None:
        self._retry_handle = None
        if self.active:
            self.wake()

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

    async def _run(self) -> bool:
        """Returns True when it stopped on empty storage, False when it stopped to wait
        (every request failed, or the collector sent Retry-After)."""
        try:
            while True:
                self._wakeup = False
                if self.fresh < self._send_limit and not self._hurry:
                    await self._linger()
                self.fresh = 0
                rows = await self._store.claim_event_rows(self._send_limit)
                if len(rows) >= self._send_limit:
                    self.fresh += len(rows)  # a full claim: more may wait, do not linger
                if not rows:
                    if self._wakeup:
                        continue
                    return True
                # Cleared unless the task is cancelled in mid-flight: if that was the
                # event loop stopping, the next loop's open() releases these rows.
                self.cut_off = rows
                try:
                    delivered, retry_after = await self._send_and_settle(rows)
                except Exception:
                    self.cut_off = None
                    await self.release_quietly(rows)
                    raise
                self.cut_off = None
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

    async def release_quietly(self, claimed: list[EventRow]) -> None:
        """Give claimed rows back after an unexpected error, so they are not stuck."""
        try:
            await self._store.release_event_rows([row.id for row in claimed])
        except Exception:
            logger.exception("could not release claimed rows; their claim will expire")

    async def _send_and_settle(self, rows: list[EventRow]) -> tuple[bool, float | None]:
        """Send one iteration, then delete, drop or release each request's rows.

        Returns (anything delivered?, retry hint): the hint is None when nothing needs
        retrying, else the longest Retry-After seen (0.0 when there was none).
        """
        assert self.sender is not None
        if self.sender.request_type == "POST":
            outcomes = await self.sender.send_chunks(
                self.memory.chunks(rows, self.sender.byte_limit)
            )
        else:
            outcomes = await self.sender.send_each(rows)
        result = settle(
            outcomes, self.retry, self.memory, detail=self.reporter.callback is not None
        )
        self.sent += result.sent
        self.failed += result.failed
        self.retried += len(result.release)
        for count, reason in result.drops:
            self._log_drop(count, reason)
        if result.delete:
            deleted = await self._store.delete_claimed_rows(result.delete)
            self.queued = max(self.queued - deleted, 0)
        if result.release:
            await self._store.release_event_rows(result.release)
        if result.delivered:
            self.delivery_log.delivered()
        elif result.release:
            cause = next((o.error for o in outcomes if o.error), "unknown error")
            self.delivery_log.failed(cause, self.queued, result.failed)
        self.reporter.report(result.successes, result.failures)
        return result.delivered, result.retry_hint

    def _log_drop(self, count: int, reason: str) -> None:
        self.dropped += count
        self.delivery_log.dropped(count, reason)

    def _report_overflow(self, count: int, detail: str) -> None:
        """Count, log and report events dropped because the queue was full (no
        request was made for them)."""
        self._log_drop(count, detail)
        self.reporter.report(
            [], [CallbackResult(count, NOT_SENT, dropped=True, reason="overflow", detail=detail)]
        )
