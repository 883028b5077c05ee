"""What happens to each request's rows once its answer is in: a pure decision, no I/O.

2xx/3xx: delivered, delete. A non-retryable status, or a single event refused as too
large (413): drop, delete and report. Anything else, no response included: keep the
rows for another try, unless they ran out of ``max_attempts``. The emitter applies the
Settlement (storage deletes and releases, counters, callback, log).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeAlias

from ._retry import RetryPolicy
from ._sender import Outcome

__all__ = ["Callback", "CallbackResult", "EmitterStats", "Settlement", "settle"]


@dataclass(frozen=True, slots=True)
class CallbackResult:
    """The outcome of one request: how many events it carried and the HTTP status.

    ``status`` is -1 when no response came (connection refused, timeout) and 0 for
    events dropped without a request (queue overflow). ``dropped`` is True when the
    events were discarded rather than kept for another try.
    """

    count: int
    status: int
    dropped: bool = False


Callback: TypeAlias = Callable[
    [list[CallbackResult], list[CallbackResult]], "Awaitable[None] | None"
]


@dataclass(frozen=True, slots=True)
class EmitterStats:
    """Counters since the emitter was created, for metrics and health checks.

    ``queued`` is the number of events waiting in storage (as last known to this
    emitter); ``sent`` events were accepted by the collector; ``failed`` counts failed
    send attempts per event; ``retried`` the failed ones kept for another try;
    ``dropped`` events discarded undelivered (non-retryable status, too large, queue
    overflow, max_attempts). Each dropped event is also logged and reported to the
    callback.
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


def _drop_reason(outcome: Outcome, policy: RetryPolicy) -> str | None:
    if outcome.status in policy.non_retryable_statuses:
        return f"status {outcome.status} is not retryable"
    if outcome.status == 413:
        return "the collector refused a single event as too large (413)"
    return None


def settle(
    outcomes: Sequence[Outcome], policy: RetryPolicy, attempts: dict[int, int]
) -> Settlement:
    """Decide every row's fate. ``attempts`` (row id -> failed sends) is updated in
    place when ``policy.max_attempts`` is set; the caller forgets deleted rows."""
    result = Settlement()
    for outcome in outcomes:
        ids = [row.id for row in outcome.rows]
        if 200 <= outcome.status < 400:
            result.successes.append(CallbackResult(len(ids), outcome.status))
            result.delete += ids
            result.sent += len(ids)
            continue
        result.failed += len(ids)
        kept: list[int]
        reason = _drop_reason(outcome, policy)
        if reason is not None:
            kept, exhausted = [], ids
        else:
            kept, exhausted = _split_exhausted(ids, policy.max_attempts, attempts)
            reason = "max_attempts reached"
        if kept:
            result.release += kept
            result.failures.append(CallbackResult(len(kept), outcome.status))
            result.retry_hint = max(result.retry_hint or 0.0, outcome.retry_after or 0.0)
        if exhausted:
            result.delete += exhausted
            result.failures.append(CallbackResult(len(exhausted), outcome.status, dropped=True))
            result.drops.append((len(exhausted), reason))
    return result


def _split_exhausted(
    ids: list[int], limit: int | None, attempts: dict[int, int]
) -> tuple[list[int], list[int]]:
    """Split failed rows into (retry again, out of attempts)."""
    if limit is None:
        return ids, []
    kept: list[int] = []
    exhausted: list[int] = []
    for row_id in ids:
        attempts[row_id] = attempts.get(row_id, 0) + 1
        (exhausted if attempts[row_id] >= limit else kept).append(row_id)
    return kept, exhausted
