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

With pytest, the ``tracker_capture``, ``capturing_tracker`` and ``tracked_events`` fixtures
do the same (the plugin is registered when asynctracker is installed). Nothing here needs
pytest: the fixtures are only defined when pytest is importable.
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

    def _record(self, events: Sequence[dict[str, str]], problems: Sequence[str]) -> None:
        self._events.extend(dict(event) for event in events)
        self._body_problems.extend(problems)
        self._changed.set()

    # -- Sequence -----------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._events)

    @overload
    def __getitem__(self, index: int) -> dict[str, str]: ...

    @overload
    def __getitem__(self, index: slice) -> list[dict[str, str]]: ...

    def __getitem__(self, index: int | slice) -> dict[str, str] | list[dict[str, str]]:
        return self._events[index]

    def __iter__(self) -> Iterator[dict[str, str]]:
        return iter(list(self._events))

    def __repr__(self) -> str:
        kinds = ", ".join(event.get("e", "?") for event in self._events[:20])
        more = ", ..." if len(self._events) > 20 else ""
        return f"<CapturedEvents {len(self._events)}: [{kinds}{more}]>"

    # -- reading ------------------------------------------------------------------------

    @property
    def payloads(self) -> list[dict[str, str]]:
        """A copy of the raw payloads, for comparing with ``==`` or snapshotting."""
        return [dict(event) for event in self._events]

    def decoded(self) -> list[dict[str, object]]:
        """Every payload with its self-describing JSON decoded, for readable assertions.

        ``ue_px``/``ue_pr`` become ``unstruct_event`` (``{"schema", "data"}``) and
        ``cx``/``co`` become ``contexts`` (a list of entities), whichever encoding the
        tracker used, so tests do not depend on ``base64_encode``.
        """
        return [decode_event(event) for event in self._events]

    def of_type(self, event_type: str) -> list[dict[str, str]]:
        """Raw payloads whose ``e`` is ``event_type``: ``"pv"``, ``"se"``, ``"ue"``, ``"tr"``,
        ``"ti"`` (screen views and timings are ``"ue"``; use :meth:`with_schema`)."""
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
        Raises AssertionError listing every problem, not just the first.
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
        async with tracker:
            yield TrackerCapture(tracker, transport.events)


# -- pytest plugin (registered through the ``pytest11`` entry point) -------------------

try:
    import pytest
except ImportError:  # pragma: no cover - pytest is optional for users of the helpers
    pass
else:

    def _async_fixture(function: Callable[[], AsyncIterator[TrackerCapture]]) -> object:
        """Declare an async fixture so that it runs in pytest-asyncio's strict mode too."""
        try:
            from pytest_asyncio import fixture  # its public decorator, nothing internal
        except ImportError:  # pragma: no cover - e.g. anyio's plugin runs async fixtures
            return pytest.fixture(function)
        return fixture(function)

    @_async_fixture
    async def tracker_capture() -> AsyncIterator[TrackerCapture]:
        """A tracker that captures its events in memory: ``tracker, events = tracker_capture``.

        Flushed and closed after the test; see :func:`capture_tracker`.
        """
        async with capture_tracker() as capture:
            yield capture

    @pytest.fixture
    def capturing_tracker(tracker_capture: TrackerCapture) -> Tracker:
        """The tracker of ``tracker_capture``, to hand to the code under test."""
        return tracker_capture.tracker

    @pytest.fixture
    def tracked_events(tracker_capture: TrackerCapture) -> CapturedEvents:
        """The events ``capturing_tracker`` sent (``await capturing_tracker.flush()`` first)."""
        return tracker_capture.events
