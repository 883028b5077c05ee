"""RetryPolicy: when and how often the emitter tries again after failed sends."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from .exceptions import ConfigurationError

__all__ = ["DEFAULT_NON_RETRYABLE", "RetryPolicy"]

#: Statuses that mean "this request will never succeed as it is": retrying would only
#: repeat the failure, so the events are dropped and reported instead.
DEFAULT_NON_RETRYABLE = frozenset({400, 401, 403, 410, 422})


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How the emitter retries events whose send failed.

    Attributes:
        auto_retry: after an iteration in which every request failed, retry on a timer
            (True, default). False is the Go tracker's behaviour: wait for the next
            ``track_*`` or ``flush()``.
        backoff_base: seconds; the n-th consecutive total failure waits a random time
            in ``[0, min(backoff_cap, backoff_base * 2**n)]`` ("full jitter", so many
            processes recovering together do not hit the collector in step).
        backoff_cap: the longest wait between automatic retries, in seconds.
        non_retryable_statuses: HTTP statuses whose events are dropped and reported
            instead of retried. 413 is handled separately: the batch is split, and a
            single event refused as too large is dropped.
        respect_retry_after: wait at least the ``Retry-After`` of a 429 or 503.
        max_retry_after: ignore Retry-After values longer than this (seconds) and
            wait this long instead, so a bad header cannot park delivery for days.
        max_attempts: drop an event after this many failed sends in this process
            (None: retry until delivered). ``max_attempts=1`` switches retrying off.
        poison_after: drop an event (reason "poison") once it has failed this many
            times alone in its request while other requests of the same send
            succeeded: the collector is up and fails on that event's content, which
            would otherwise be retried forever. A failing POST chunk is first split
            in halves until the event travels alone. None: never drop for this.
    """

    auto_retry: bool = True
    backoff_base: float = 0.5
    backoff_cap: float = 60.0
    non_retryable_statuses: frozenset[int] = field(default=DEFAULT_NON_RETRYABLE)
    respect_retry_after: bool = True
    max_retry_after: float = 300.0
    max_attempts: int | None = None
    poison_after: int | None = 10

    def __post_init__(self) -> None:
        if not self.backoff_base > 0 or not self.backoff_cap > 0:
            raise ConfigurationError("backoff_base and backoff_cap must be positive seconds")
        if self.backoff_cap < self.backoff_base:
            raise ConfigurationError("backoff_cap must be at least backoff_base")
        if not self.max_retry_after >= 0:
            raise ConfigurationError("max_retry_after must be zero or more seconds")
        if self.max_attempts is not None and (
            isinstance(self.max_attempts, bool)
            or not isinstance(self.max_attempts, int)
            or self.max_attempts < 1
        ):
            raise ConfigurationError("max_attempts must be a positive integer or None")
        if self.poison_after is not None and (
            isinstance(self.poison_after, bool)
            or not isinstance(self.poison_after, int)
            or self.poison_after < 1
        ):
            raise ConfigurationError("poison_after must be a positive integer or None")
        statuses = frozenset(self.non_retryable_statuses)
        if any(not isinstance(s, int) or not 100 <= s <= 599 for s in statuses):
            raise ConfigurationError("non_retryable_statuses must be HTTP status codes")
        if any(200 <= s < 300 for s in statuses):
            raise ConfigurationError("2xx statuses mean delivered; they cannot be dropped")
        object.__setattr__(self, "non_retryable_statuses", statuses)

    def backoff(self, failures: int) -> float:
        """Seconds to wait after ``failures`` consecutive total failures (1 or more)."""
        ceiling = min(self.backoff_cap, self.backoff_base * 2 ** min(failures - 1, 62))
        return random.uniform(0, ceiling)

    def wait_for_retry_after(self, retry_after: float | None) -> float:
        """The part of a Retry-After the policy honours, in seconds."""
        if retry_after is None or not self.respect_retry_after:
            return 0.0
        return min(retry_after, self.max_retry_after)
