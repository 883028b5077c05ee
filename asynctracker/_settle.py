"""What happens to each request's rows once its answer is in: a pure decision, no I/O.

2xx: delivered, delete. A non-retryable status, a single event refused as too large
(413, 414, over ``byte_limit_get``), or one that cannot be encoded: drop, delete and
report. Anything else, a 3xx left at the end of the redirects and no response
included: keep the rows for another try, unless they ran out of ``max_attempts``, or
an event failing alone is found to be poison (see ``_isolate``). The send loop applies
the Settlement (storage deletes and releases, counters, callback, log); the only state
touched here is the send loop's RowMemory, which it hands in.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, TypeAlias

from ._isolate import RowMemory, row_key
from ._retry import RetryPolicy
from ._sender import Outcome
from .storage.base import EventRow

__all__ = [
    "Callback",
    "CallbackResult",
    "EmitterStats",
    "FailureReason",
    "Settlement",
    "settle",
]

#: Why events failed (``CallbackResult.reason``). Kept for another try: "failed".
#: Dropped: "rejected" (a non-retryable status such as 400/422), "too_large" (413/414
#: for a single event, or a GET over ``byte_limit_get``), "unsendable" (cannot be
#: encoded into a request), "overflow" (the queue was full), "max_attempts" (the
#: policy's limit), "poison" (failed alone, again and again, while the collector
#: accepted other events).
FailureReason: TypeAlias = Literal[
    "", "failed", "rejected", "too_large", "unsendable", "overflow", "max_attempts", "poison"
]


@dataclass(frozen=True, slots=True)
class CallbackResult:
    """The outcome of one request: how many events it carried and the HTTP status.

    ``status`` is -1 when no response came (connection refused, timeout) and 0 for
    events dropped without a request (queue overflow, an event that cannot be sent).
    ``dropped`` is True when the events were discarded rather than kept for another
    try. For failures, ``reason`` says why (see FailureReason), ``detail`` says it in
    words (the exception or status), and ``events`` holds the stored payloads (as the
    tracker made them, without ``stm``) of events that went through the send path, so
    dropped events can be written to a dead-letter file and replayed with
    ``Emitter.add_many``. Overflow drops carry no payloads (``events`` is empty: the
    queue drops them without reading them). The three are left out of ``==``, so results compare as
    before.
    """

    count: int
    status: int
    dropped: bool = False
    reason: FailureReason = field(default="", compare=False)
    detail: str = field(default="", compare=False)
    events: tuple[Mapping[str, str], ...] = field(default=(), compare=False, repr=False)

    @property
    def will_retry(self) -> bool:
        """True when the events are kept in storage and will be sent again."""
        return not self.dropped and not 200 <= self.status < 300

    @property
    def event_ids(self) -> tuple[str, ...]:
        """The ``eid`` of each event in ``events``."""
        return tuple(event.get("eid", "") for event in self.events)


Callback: TypeAlias = Callable[
    [list[CallbackResult], list[CallbackResult]], "Awaitable[None] | None"
]


@dataclass(frozen=True, slots=True)
class EmitterStats:
    """Counters since the emitter was created, for metrics and health checks.

    ``queued`` is the number of events waiting in storage (as last known to this
    emitter); ``sent`` events were accepted by the collector; ``failed`` counts failed
    event sends (120 events failing in 5 attempts count 600; the log says both);
    ``retried`` the failed ones kept for another try;
    ``dropped`` events discarded undelivered (non-retryable status, too large,
    unsendable, queue overflow, max_attempts, poison). Each dropped event is also logged
    and reported to the callback, with its reason.
    """

    queued: int
    sent: int
    failed: int
    retried: int
    dropped: int


@dataclass(slots=True)
class Settlement:
    """The decision for one iteration's outcomes."""

    successes: list[CallbackResult] = field(default_factory=list)
    failures: list[CallbackResult] = field(default_factory=list)
    delete: list[int] = field(default_factory=list)  # delivered or dropped
    release: list[int] = field(default_factory=list)  # kept for another try
    drops: list[tuple[int, str]] = field(default_factory=list)  # (count, reason)
    sent: int = 0
    failed: int = 0
    #: None when nothing is kept for retrying, else the longest Retry-After (0.0: none).
    retry_hint: float | None = None

    @property
    def delivered(self) -> bool:
        return bool(self.successes)


# Failures that say nothing about the events' content: the collector was reached and
# shed load, or asked for a later retry.
_LOAD_STATUSES = frozenset({408, 429, 502, 503, 504})


def _drop_reason(outcome: Outcome, policy: RetryPolicy) -> tuple[FailureReason, str] | None:
    if outcome.drop is not None:
        reason: FailureReason = "too_large" if outcome.drop == "too_large" else "unsendable"
        return reason, outcome.error or outcome.drop
    if outcome.status in policy.non_retryable_statuses:
        return "rejected", f"status {outcome.status} is not retryable"
    if outcome.status in (413, 414) and len(outcome.rows) == 1:
        return "too_large", f"the collector refused a single event as too large ({outcome.status})"
    return None


def settle(
    outcomes: Sequence[Outcome],
    policy: RetryPolicy,
    memory: RowMemory,
    *,
    detail: bool = False,
) -> Settlement:
    """Decide every row's fate, recording failures in ``memory`` (the send loop's)
    and forgetting the rows deleted. With ``detail``, failures carry their events'
    payloads (for the callback)."""
    result = Settlement()
    succeeded = sum(1 for o in outcomes if 200 <= o.status < 300)
    for outcome in outcomes:
        rows = outcome.rows
        if 200 <= outcome.status < 300:
            result.successes.append(CallbackResult(len(rows), outcome.status))
            _deleted(result, rows, memory)
            result.sent += len(rows)
            continue
        result.failed += len(rows)
        kept: Sequence[EventRow]
        exhausted: Sequence[EventRow]
        dropped = _drop_reason(outcome, policy)
        if dropped is not None:
            kept, exhausted = [], rows
            reason, text = dropped
        else:
            kept, exhausted = _split_exhausted(rows, policy.max_attempts, memory)
            reason, text = "max_attempts", "max_attempts reached"
            if (
                kept
                and _about_content(outcome)
                and memory.failed(
                    [row_key(row) for row in kept],
                    successes=succeeded,
                    failures=len(outcomes) - succeeded - 1,
                    poison_after=policy.poison_after,
                )
            ):
                kept, exhausted = [], rows
                reason = "poison"
                text = (
                    "failed alone, again and again, while the collector accepted other "
                    f"requests: not explained by random failures ({outcome.error})"
                )
        if kept:
            result.release += [row.id for row in kept]
            result.failures.append(
                CallbackResult(
                    len(kept),
                    outcome.status,
                    reason="failed",
                    detail=outcome.error,
                    events=tuple(row.event for row in kept) if detail else (),
                )
            )
            result.retry_hint = max(result.retry_hint or 0.0, outcome.retry_after or 0.0)
        if exhausted:
            _deleted(result, exhausted, memory)
            result.failures.append(
                CallbackResult(
                    len(exhausted),
                    outcome.status,
                    dropped=True,
                    reason=reason,
                    detail=text,
                    events=tuple(row.event for row in exhausted) if detail else (),
                )
            )
            result.drops.append((len(exhausted), text))
    return result


def _deleted(result: Settlement, rows: Sequence[EventRow], memory: RowMemory) -> None:
    """These rows are to be deleted: forget what was remembered about them."""
    result.delete += [row.id for row in rows]
    memory.forget([row_key(row) for row in rows] if memory.suspects or memory.attempts else ())


def _about_content(outcome: Outcome) -> bool:
    """Could this failure be caused by what the request carried?"""
    return outcome.reached and outcome.status not in _LOAD_STATUSES


def _split_exhausted(
    rows: Sequence[EventRow], limit: int | None, memory: RowMemory
) -> tuple[Sequence[EventRow], Sequence[EventRow]]:
    """Split failed rows into (retry again, out of attempts)."""
    if limit is None:
        return rows, []
    kept: list[EventRow] = []
    exhausted: list[EventRow] = []
    for row in rows:
        (exhausted if memory.attempt_failed(row_key(row), limit) else kept).append(row)
    return kept, exhausted
