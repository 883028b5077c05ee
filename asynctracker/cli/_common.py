"""Pieces shared by the command-line tools and the demo.

The CLI must say *whether the collector accepted the events*, not merely that they were
queued, so every command counts the emitter's callback reports in a :class:`Tally` and
drains with :func:`deliver`. :func:`describe` turns a received event into the one-line
summary printed by ``asynctracker collector`` and ``asynctracker demo``.
"""

from __future__ import annotations

import asyncio
import collections
from dataclasses import dataclass, field

from .._settle import CallbackResult
from .._validate import EVENT_NAMES
from ..collector import ReceivedEvent
from ..emitter import Emitter
from ..payload import SCREEN_VIEW_SCHEMA, TIMING_SCHEMA
from ._messages import counted
from ._terminal import escape

__all__ = ["Tally", "deliver", "describe", "event_kind", "failure_reason"]

#: Exit status when the input was bad (argparse uses 2 for usage errors too).
EXIT_BAD_INPUT = 2
#: Exit status when events were not delivered (or arrived invalid).
EXIT_NOT_DELIVERED = 1
#: Exit status after Ctrl-C, as shells expect (128 + SIGINT).
EXIT_INTERRUPTED = 130


@dataclass
class Tally:
    """An emitter callback that counts what the collector did with our events.

    ``delivered`` events got a 2xx answer; ``dropped`` were discarded undelivered (a
    non-retryable status such as 400); ``failures`` maps each failing status (-1: no
    response) to how many events it hit, so the final message can say *why*.
    """

    delivered: int = 0
    dropped: int = 0
    failures: collections.Counter[int] = field(default_factory=collections.Counter)
    last_failure: int | None = None

    def __call__(self, successes: list[CallbackResult], failures: list[CallbackResult]) -> None:
        self.delivered += sum(result.count for result in successes)
        for result in failures:
            self.failures[result.status] += result.count
            self.last_failure = result.status
            if result.dropped:
                self.dropped += result.count


async def deliver(emitter: Emitter, tally: Tally, *, timeout: float, retries: int) -> int:
    """Flush until storage is empty; return how many events are still stored.

    ``Emitter.flush`` returns as soon as one iteration fails completely, which is right for
    a library but too quick for a CLI talking to a collector that is restarting. So this
    retries a total failure up to ``retries`` times with a short doubling pause, and gives
    up once ``timeout`` seconds pass without a single event being delivered. Any progress
    resets both budgets: a slow but working collector is never abandoned.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    attempts = 0
    while True:
        before = tally.delivered
        left = await emitter.flush(timeout=max(0.0, deadline - loop.time()))
        if left == 0:
            return 0
        if tally.delivered > before:
            attempts = 0
            deadline = loop.time() + timeout
            continue
        attempts += 1
        remaining = deadline - loop.time()
        if attempts > retries or remaining <= 0:
            return left
        await asyncio.sleep(min(0.25 * 2 ** (attempts - 1), remaining))


def failure_reason(tally: Tally, url: str) -> str:
    """A sentence saying why events did not get through, from the last failing status."""
    status = tally.last_failure
    if status is None:
        return f"the collector at {url} did not answer in time"
    if status == -1:
        return f"no response from the collector at {url} (refused, unreachable or timed out)"
    if status == 0:
        return "events were dropped before sending (queue full)"
    if tally.dropped:
        them = "it was" if tally.dropped == 1 else "they were"
        return (
            f"the collector at {url} refused {counted(tally.dropped, 'event')} with HTTP "
            f"{status} and {them} dropped (HTTP {status} is not retried)"
        )
    return f"the collector at {url} answered HTTP {status}"


def _unstruct(event: ReceivedEvent) -> dict[str, object]:
    inner = event.decoded.get("unstruct_event")
    return inner if isinstance(inner, dict) else {}


def event_kind(event: ReceivedEvent) -> str:
    """The event's type as a person says it; screen views and timings are told apart
    from other self-describing events by their schema."""
    kind = str(event.payload.get("e", "?"))
    if kind == "ue":
        schema = _unstruct(event).get("schema")
        if schema == SCREEN_VIEW_SCHEMA:
            return "screen view"
        if schema == TIMING_SCHEMA:
            return "timing"
    return EVENT_NAMES.get(kind, f"unknown ({kind})")


def _detail(event: ReceivedEvent) -> str:
    p = event.payload
    kind = p.get("e")
    if kind == "pv":
        return " ".join(filter(None, [p.get("url", ""), repr(p["page"]) if "page" in p else ""]))
    if kind == "se":
        named = (("se_la", "label"), ("se_pr", "property"), ("se_va", "value"))
        extras = [f"{name} {p[key]}" for key, name in named if key in p]
        base = f"{p.get('se_ca', '?')} / {p.get('se_ac', '?')}"
        return f"{base} ({', '.join(extras)})" if extras else base
    if kind == "tr":
        return f"order {p.get('tr_id', '?')} total {p.get('tr_tt', '?')} {p.get('tr_cu', '')}"
    if kind == "ti":
        return (
            f"order {p.get('ti_id', '?')} sku {p.get('ti_sk', '?')} "
            f"{p.get('ti_qu', '?')} x {p.get('ti_pr', '?')} {p.get('ti_cu', '')}"
        ).rstrip()
    if kind == "ue":
        inner = _unstruct(event)
        data = inner.get("data")
        schema = str(inner.get("schema", "?"))
        if schema == SCREEN_VIEW_SCHEMA and isinstance(data, dict):
            return " ".join(f"{k}={data[k]}" for k in ("name", "id") if k in data)
        if schema == TIMING_SCHEMA and isinstance(data, dict):
            return f"{data.get('category')} / {data.get('variable')} = {data.get('timing')} ms"
        return schema
    return ""


def describe(event: ReceivedEvent) -> str:
    """One line: verdict, type, app id, details, contexts and the first error if bad.

    Escaped: every field comes from whoever sent the event, and this line is printed
    on a terminal, where a raw ``\x1b]0;...`` would retitle it and ``\x1b[2J`` clear it.
    """
    verdict = "good" if event.valid else "BAD "
    contexts = event.decoded.get("contexts")
    parts = [f"{verdict}  {event_kind(event):<16}", f"app={event.payload.get('aid', '-')}"]
    detail = _detail(event)
    if detail:
        parts.append(detail)
    if isinstance(contexts, list) and contexts:
        parts.append(f"+{counted(len(contexts), 'context')}")
    if event.errors:
        more = f" (+{len(event.errors) - 1} more)" if len(event.errors) > 1 else ""
        parts.append(f"-- {event.errors[0]}{more}")
    return escape("  ".join(parts))
