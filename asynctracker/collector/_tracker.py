"""The tracker routes: ``POST .../tp2`` and ``GET .../i``, validated and recorded.

Each event's text is scrubbed before anything else sees it (:mod:`._safe`), then checked
against the tracker protocol and, when the collector has an Iglu registry, against the
schemas of its self-describing data and contexts. Bad events are recorded too, with
their reasons; only a body that holds no usable event gets 400.
"""

from __future__ import annotations

import time
from typing import Any, Literal
from urllib.parse import parse_qsl

from .._validate import validate_post_body
from ._http import error_body
from ._iglu import IgluRegistry
from ._safe import scrub
from ._store import EventLog, ReceivedEvent

__all__ = ["TP2_SUFFIX", "is_tracker_route", "track"]

TP2_SUFFIX = "/com.snowplowanalytics.snowplow/tp2"


def is_tracker_route(path: str) -> bool:
    """Whether ``path`` is where trackers send (any prefix before the standard paths)."""
    return path.endswith(TP2_SUFFIX) or path.endswith("/i")


def accept(
    payload: dict[str, Any],
    method: Literal["GET", "POST"],
    problems: list[str],
    now: float,
    iglu: IgluRegistry | None,
) -> ReceivedEvent:
    """Validate one event, making its text safe to store and show first."""
    cleaned, changed = scrub(payload)
    extra = list(problems)
    if changed:
        extra.append("invalid Unicode (a lone surrogate) replaced with U+FFFD")
    if iglu is not None:
        extra += iglu.problems(cleaned)
    return ReceivedEvent.check(cleaned, method, extra_errors=extra, received_at=now)


def track(
    log: EventLog, iglu: IgluRegistry | None, method: str, path: str, query: str, body: bytes
) -> tuple[int, bytes]:
    """Default handling of a tracker route: validate, record, answer 200 (empty body)."""
    if path.endswith(TP2_SUFFIX):
        if method == "HEAD":
            return 200, b""
        if method != "POST":
            return 405, b""
        payloads, problems = validate_post_body(body)
        if problems and not payloads:
            return 400, error_body(*problems)
        now = time.time()
        log.add([accept(p, "POST", problems, now, iglu) for p in payloads])
        return 200, b""
    if is_tracker_route(path):
        if method == "HEAD":
            return 200, b""
        if method != "GET":
            return 405, b""
        pairs = parse_qsl(query, keep_blank_values=True)
        if not pairs:
            return 400, error_body("no event in the query string")
        log.add([accept(dict(pairs), "GET", [], time.time(), iglu)])
        return 200, b""
    return 404, error_body(f"no route for {method} {path}")
