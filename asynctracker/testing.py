"""Helpers for testing your own tracking code: real trackers, no network, readable events.

Your code gets a real :class:`~asynctracker.Tracker` (so it builds real payloads and the
emitter really sends them); only the HTTP edge is replaced by :class:`CapturingTransport`,
which answers 200 and keeps every event it is sent::

    from asynctracker.testing import capture_tracker

    async def test_signup_is_tracked() -> None:
        async with capture_tracker(app_id="shop") as (tracker, events):
            await signup(tracker, "alice")          # your code
            await tracker.flush()
        (event,) = events.with_schema("iglu:com.acme/signup/jsonschema/1-0-0")
        assert event["unstruct_event"]["data"] == {"name": "alice"}
        events.assert_valid()

Reading the events of a capture while some tracked events have not reached it yet fails
with an AssertionError that says how many are still queued and that ``await
tracker.flush()`` is missing, instead of an empty list and a bare ``assert 0 == 1``.

With pytest, the ``tracker_capture``, ``capturing_tracker`` and ``tracked_events``
fixtures do the same, configured by a ``tracker_options`` fixture or an
``@pytest.mark.asynctracker(...)`` marker (see :mod:`pytest_asynctracker`, the plugin
registered when asynctracker is installed). Nothing here needs pytest.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import NamedTuple, overload
from urllib.parse import parse_qsl

import httpx

from ._settle import Callback
from ._validate import decode_event, validate_event, validate_post_body
from .emitter import Emitter, RequestType
from .storage.memory import MemoryStorage
from .subject import Subject
from .tracker import Platform, Tracker

__all__ = [
    "COLLECTOR_URL",
    "CapturedEvents",
    "CapturingTransport",
    "TrackerCapture",
    "capture_tracker",
]

#: The collector URL capture_tracker() gives its emitter. Nothing is ever sent to it: the
#: transport answers every request (``.test`` is reserved and never resolves).
COLLECTOR_URL = "https://collector.asynctracker.test"


class CapturedEvents(Sequence[dict[str, str]]):
    """The events a :class:`CapturingTransport` received, in arrival order.

    It is a sequence of raw payloads (flat ``dict[str, str]``, ``stm`` included, exactly
    as sent). The helpers below answer what tests usually ask: which events of a type or
    schema arrived, what they say once decoded, and whether they follow the protocol.
    """

    def __init__(self) -> None:
        self._events: list[dict[str, str]] = []
        self._body_problems: list[str] = []
        self._changed = asyncio.Event()
        self._received = 0  # every event ever recorded; clear() does not reset it
        self._queued: Callable[[int], int] | None = None
        self._queued_why = ""

    def _record(self, events: Sequence[dict[str, str]], problems: Sequence[str]) -> None:
        self._events.extend(dict(event) for event in events)
        self._received += len(events)
        self._body_problems.extend(problems)
        self._changed.set()

    def _follow(self, queued: Callable[[int], int], why: str) -> None:
        """Learn how many tracked events have not arrived yet (set by capture_tracker)."""
        self._queued, self._queued_why = queued, why

    @property
    def queued(self) -> int:
        """Events the capture's tracker has stored but this capture has not received yet.

        Always 0 for a :class:`CapturingTransport` you wired to an emitter yourself.
        """
        return 0 if self._queued is None else max(0, self._queued(self._received))

    def _check_delivered(self) -> None:
        queued = self.queued
        if queued:
            raise AssertionError(
                f"{_events(queued)} still queued in the tracker, not captured yet: "
                f"await tracker.flush() before reading events{self._queued_why} "
                f"({_events(len(self._events))} captured so far)"
            )

    # -- Sequence -----------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._events)

    @overload
    def __getitem__(self, index: int) -> dict[str, str]: ...

    @overload
    def __getitem__(self, index: slice) -> list[dict[str, str]]: ...

    def __getitem__(self, index: int | slice) -> dict[str, str] | list[dict[str, str]]:
        self._check_delivered()
        return self._events[index]

    def __iter__(self) -> Iterator[dict[str, str]]:
        self._check_delivered()
        return iter(list(self._events))

    def __repr__(self) -> str:
        kinds = ", ".join(event.get("e", "?") for event in self._events[:20])
        more = ", ..." if len(self._events) > 20 else ""
        queued = self.queued
        waiting = f"; {queued} still queued: await tracker.flush()" if queued else ""
        return f"<CapturedEvents {len(self._events)}: [{kinds}{more}]{waiting}>"

    # -- reading ------------------------------------------------------------------------

    @property
    def payloads(self) -> list[dict[str, str]]:
        """A copy of the raw payloads, for comparing with ``==`` or snapshotting."""
        self._check_delivered()
        return [dict(event) for event in self._events]

    def decoded(self) -> list[dict[str, object]]:
        """Every payload with its self-describing JSON decoded, for readable assertions.

        ``ue_px``/``ue_pr`` become ``unstruct_event`` (``{"schema", "data"}``) and
        ``cx``/``co`` become ``contexts`` (a list of entities), whichever encoding the
        tracker used, so tests do not depend on ``base64_encode``.
        """
        self._check_delivered()
        return [decode_event(event) for event in self._events]

    def of_type(self, event_type: str) -> list[dict[str, str]]:
        """Raw payloads whose ``e`` is ``event_type``: ``"pv"``, ``"se"``, ``"ue"``, ``"tr"``,
        ``"ti"`` (screen views and timings are ``"ue"``; use :meth:`with_schema`)."""
        self._check_delivered()
        return [dict(event) for event in self._events if event.get("e") == event_type]

    def with_schema(self, schema: str) -> list[dict[str, object]]:
        """Decoded self-describing events whose event schema matches ``schema``.

        Give a full URI (``iglu:com.acme/click/jsonschema/1-0-0``) to match one version,
        or leave the version out (``iglu:com.acme/click/jsonschema``) to match any.
        """
        return [
            event
            for event in self.decoded()
            if _schema_matches(_unstruct_schema(event.get("unstruct_event")), schema)
        ]

    def with_context(self, schema: str) -> list[dict[str, object]]:
        """Decoded events that carry a context entity matching ``schema`` (as in
        :meth:`with_schema`)."""
        return [
            event
            for event in self.decoded()
            if any(
                _schema_matches(_unstruct_schema(entity), schema)
                for entity in _as_list(event.get("contexts"))
            )
        ]

    # -- checking -----------------------------------------------------------------------

    def problems(self) -> list[str]:
        """Every tracker-protocol problem found, one line each; empty means all valid."""
        self._check_delivered()
        found = [f"request body: {problem}" for problem in self._body_problems]
        for index, event in enumerate(self._events):
            label = f"event #{index} (e={event.get('e')!r}, eid={event.get('eid')!r})"
            found += [f"{label}: {problem}" for problem in validate_event(event)]
        return found

    def assert_valid(self) -> None:
        """Fail the test unless every event follows the Snowplow tracker protocol.

        Checks required keys (``e p tv eid dtm``), that every value is a non-empty string,
        that every key is one the pipeline knows, UUID event ids, 13-digit timestamps,
        the keys each event type needs, and the self-describing JSON of ``ue_*``/``cx``.
        Raises AssertionError listing every problem, not just the first, or saying how
        many tracked events were never flushed to the capture (checking none of them
        would otherwise pass).
        """
        found = self.problems()
        if found:
            raise AssertionError(
                f"{len(found)} tracker-protocol problem(s) in {len(self._events)} captured "
                "event(s):\n  " + "\n  ".join(found)
            )

    async def wait_for(self, count: int, timeout: float = 5.0) -> None:
        """Wait until at least ``count`` events arrived (delivery runs in the background).

        Prefer ``await tracker.flush()`` when you hold the tracker. Raises TimeoutError
        with what did arrive.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while len(self._events) < count:
            self._changed.clear()
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"waited {timeout}s for {count} event(s); got {self!r}")
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)

    def clear(self) -> None:
        """Forget everything captured so far (say, events tracked during setup)."""
        self._events.clear()
        self._body_problems.clear()


def _events(count: int) -> str:
    return f"{count} event{'' if count == 1 else 's'}"


def _unstruct_schema(value: object) -> str | None:
    if isinstance(value, dict):
        schema = value.get("schema")
        if isinstance(schema, str):
            return schema
    return None


def _as_list(value: object) -> list[object]:
    return list(value) if isinstance(value, list) else []


def _schema_matches(actual: str | None, wanted: str) -> bool:
    if actual is None:
        return False
    return actual == wanted or actual.startswith(wanted.rstrip("/") + "/")


class CapturingTransport(httpx.AsyncBaseTransport):
    """An httpx transport that plays the collector: it answers and records, offline.

    Give it to the emitter through ``http_client=httpx.AsyncClient(transport=...)``. POST
    bodies (``/com.snowplowanalytics.snowplow/tp2``) and GET queries (``/i``) are parsed
    into events in :attr:`events`; every request is kept in :attr:`requests`.

    Args:
        status: the HTTP status to answer. Events are recorded only when it is 2xx
            (what the emitter counts as delivered); use 500 or 400 to test your callback's
            handling of retries and drops.
    """

    def __init__(self, *, status: int = 200) -> None:
        self.status = status
        self.events = CapturedEvents()
        self.requests: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Record the request and, if the status means accepted, its events."""
        body = await request.aread()
        self.requests.append(request)
        if 200 <= self.status < 300:
            if request.method == "POST":
                events, problems = validate_post_body(body)
                if not events and problems:
                    return httpx.Response(400, request=request)
                self.events._record(events, problems)
            else:
                query = request.url.query.decode("ascii", "replace")
                self.events._record([dict(parse_qsl(query, keep_blank_values=True))], ())
        return httpx.Response(self.status, request=request)


class TrackerCapture(NamedTuple):
    """A tracker wired to a :class:`CapturingTransport`, and what it captured.

    Unpacks as ``tracker, events = capture``.
    """

    tracker: Tracker
    events: CapturedEvents


@contextlib.asynccontextmanager
async def capture_tracker(
    *,
    namespace: str | None = "test",
    app_id: str | None = "test-app",
    platform: Platform = "srv",
    base64_encode: bool = True,
    subject: Subject | None = None,
    request_type: RequestType = "POST",
    callback: Callback | None = None,
    status: int = 200,
) -> AsyncIterator[TrackerCapture]:
    """An open Tracker whose events are captured in memory instead of sent anywhere.

    The tracker is real (MemoryStorage, the real emitter loop), so what is captured is
    exactly what your code would send; only the HTTP edge is replaced. The keywords are
    the Tracker's, plus the emitter's ``request_type`` and ``callback`` and the
    transport's ``status``. On exit the tracker is flushed and closed. Events arrive in
    the background: ``await tracker.flush()`` before asserting.
    """
    transport = CapturingTransport(status=status)
    async with httpx.AsyncClient(transport=transport) as client:
        emitter = Emitter(
            COLLECTOR_URL,
            storage=MemoryStorage(),
            http_client=client,
            request_type=request_type,
            callback=callback,
            close_timeout=5.0,
        )
        tracker = Tracker(
            emitter,
            namespace=namespace,
            app_id=app_id,
            platform=platform,
            base64_encode=base64_encode,
            subject=subject,
        )
        # The transport records events only when it answers 2xx (what the emitter
        # counts as delivered): any other status is worth naming when events are missing.
        why = "" if 200 <= status < 300 else f" (this capture answers HTTP {status})"
        transport.events._follow(_queued_after(emitter), why)
        async with tracker:
            yield TrackerCapture(tracker, transport.events)


def _queued_after(emitter: Emitter) -> Callable[[int], int]:
    """How many stored events have not reached the capture, given how many did.

    The emitter's ``queued`` still counts a batch between its arrival at the transport
    and its settling as ``sent``; those are captured already, so they are subtracted.
    """

    def queued(received: int) -> int:
        stats = emitter.stats()
        return stats.queued - max(0, received - stats.sent)

    return queued
