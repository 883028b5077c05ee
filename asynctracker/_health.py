"""The delivery log: what the emitter tells the ``asynctracker`` logger, and how often.

The policy (README, "Logging"): one WARNING when delivery starts failing, with the
cause and the collector URL (never its credentials); while it keeps failing, one
WARNING per ``SUMMARY_INTERVAL`` with the count of failed attempts; one INFO when it
recovers; drops (overflow, non-retryable status, poison, ...) logged once when they
start, then summarised per reason once per interval instead of one line per drop; a
WARNING on close when events are left undelivered, saying how many and where they
wait. Retry timers and single request errors are DEBUG. ``%``-style arguments
throughout, and no handler is ever installed.
"""

from __future__ import annotations

import logging
import time
import urllib.request
from collections.abc import Callable

from ._wire import redact

__all__ = ["SUMMARY_INTERVAL", "DeliveryLog"]

logger = logging.getLogger("asynctracker")

#: Seconds between repeated WARNINGs about the same ongoing problem.
SUMMARY_INTERVAL = 60.0


class DeliveryLog:
    """Delivery state for one emitter, turned into few, informative log lines."""

    def __init__(
        self, url: str, *, hint: str = "", clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._url = url
        self._hint = hint
        self._clock = clock
        self._failing_since: float | None = None
        self._failed_attempts = 0
        self._failed_sends = 0
        self._unlogged_attempts = 0
        self._last_warning = 0.0
        self._cause = ""
        # reason -> [events dropped since the last line, time of the last line]
        self._drops: dict[str, list[float]] = {}

    def failed(self, cause: str, waiting: int, sends: int) -> None:
        """A send in which nothing was delivered: ``sends`` events failed (what
        ``stats().failed`` adds up), kept for retry with the rest of ``waiting``."""
        now = self._clock()
        self._cause = cause
        self._failed_attempts += 1
        self._failed_sends += sends
        if self._failing_since is None:
            self._failing_since = now
            self._last_warning = now
            self._unlogged_attempts = 0
            logger.warning(
                "delivery to %s is failing: %s; %d event(s) kept for retry%s",
                self._url,
                cause,
                waiting,
                self._hint,
            )
            return
        self._unlogged_attempts += 1
        if now - self._last_warning >= SUMMARY_INTERVAL:
            logger.warning(
                "delivery to %s still failing: %d more failed attempt(s) in %.0f s "
                "(%d attempts, %d failed event sends, since %.0f s ago; last cause: %s); "
                "%d event(s) waiting",
                self._url,
                self._unlogged_attempts,
                now - self._last_warning,
                self._failed_attempts,
                self._failed_sends,
                now - self._failing_since,
                cause,
                waiting,
            )
            self._last_warning = now
            self._unlogged_attempts = 0
        self._tick(now)

    def delivered(self) -> None:
        """A send in which the collector accepted events."""
        now = self._clock()
        if self._failing_since is not None:
            logger.info(
                "delivery to %s recovered after %d failed attempt(s) (%d failed event sends) "
                "over %.1f s (last cause: %s)",
                self._url,
                self._failed_attempts,
                self._failed_sends,
                now - self._failing_since,
                self._cause,
            )
            self._failing_since = None
            self._failed_attempts = 0
            self._failed_sends = 0
        self._tick(now)

    def dropped(self, count: int, reason: str) -> None:
        """Events were discarded undelivered: log the first drop of a reason at once,
        later ones as one summary line per reason and interval."""
        now = self._clock()
        entry = self._drops.get(reason)
        if entry is None or (now - entry[1] >= SUMMARY_INTERVAL and not entry[0]):
            self._drops[reason] = [0, now]
            logger.warning("dropped %d event(s) undelivered: %s", count, reason)
        else:
            entry[0] += count
        self._tick(now)

    def _tick(self, now: float) -> None:
        """Write the drop summaries whose interval is over."""
        for reason, entry in self._drops.items():
            if entry[0] and now - entry[1] >= SUMMARY_INTERVAL:
                self._summarise(reason, entry, now)

    def close(self, undelivered: int, where: str | None, *, lost: bool = False) -> None:
        """The emitter closes: flush the summaries, say what is left behind.

        ``where`` is the SQLite path (or storage) the events wait in; None means they
        are lost (MemoryStorage), and so does ``lost`` (the file was deleted).
        """
        now = self._clock()
        for reason, entry in self._drops.items():
            if entry[0]:
                self._summarise(reason, entry, now)
        if lost:
            logger.warning(
                "closing after %s was deleted or replaced while in use: the events it "
                "held that were not delivered are lost (collector %s)",
                where,
                self._url,
            )
            return
        if not undelivered:
            return
        if where is None:
            logger.warning(
                "closing with %d undelivered event%s, lost: MemoryStorage keeps nothing "
                "after close (collector %s)",
                undelivered,
                _plural(undelivered),
                self._url,
            )
        else:
            logger.warning(
                "closing with %d undelivered event%s; they wait in %s and are sent by "
                "the next emitter for collector %s opened on it",
                undelivered,
                _plural(undelivered),
                where,
                self._url,
            )

    @staticmethod
    def _summarise(reason: str, entry: list[float], now: float) -> None:
        logger.warning(
            "dropped %d more event(s) undelivered in the last %.0f s: %s",
            int(entry[0]),
            now - entry[1],
            reason,
        )
        entry[0] = 0
        entry[1] = now


def proxy_hint(url: str) -> str:
    """A note for the first failure when the environment routes ``url`` through a
    proxy (the owned client follows HTTP_PROXY and the like, as httpx does)."""
    proxies = urllib.request.getproxies()
    scheme = url.partition("://")[0]
    proxy = proxies.get(scheme) or proxies.get("all")
    host = url.partition("://")[2].split("/")[0].rsplit("@", 1)[-1].split(":")[0]
    if not proxy or urllib.request.proxy_bypass(host):
        return ""
    return (
        f" (sent through the proxy {redact(proxy)} from the environment; "
        "Emitter(trust_env=False) ignores it)"
    )


def _plural(count: int) -> str:
    return "" if count == 1 else "s"
