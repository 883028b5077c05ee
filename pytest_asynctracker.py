"""The asynctracker pytest plugin: fixtures for testing your own tracking code.

pytest loads this module in every run of an environment where asynctracker is installed
(the ``pytest11`` entry point ``asynctracker``), used or not. So it imports nothing but
pytest and pytest-asyncio, which that run loads anyway: asynctracker (and httpx,
aiosqlite...) is imported by the first fixture a test asks for. That is also why it is
a top-level module rather than ``asynctracker.pytest_plugin``: importing anything inside
the package would import the whole package first. ``-p no:asynctracker`` switches it off.

Fixtures (see :func:`asynctracker.testing.capture_tracker`):

- ``tracker_capture``: ``tracker, events = tracker_capture``, a real tracker whose
  events are captured in memory; flushed and closed after the test.
- ``capturing_tracker`` / ``tracked_events``: its two halves.
- ``tracker_options``: the ``capture_tracker()`` keywords the tracker is made with
  (``app_id``, ``namespace``, ``platform``, ``base64_encode``, ``subject``,
  ``request_type``, ``callback``, ``status``). Empty by default; override it in a
  ``conftest.py`` or a test module::

      @pytest.fixture
      def tracker_options() -> dict[str, object]:
          return {"app_id": "shop", "namespace": "web"}

- the ``@pytest.mark.asynctracker(app_id="checkout")`` marker sets options for one
  test, class or module, over ``tracker_options`` (the closest marker wins).
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Callable, Mapping
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from asynctracker import Tracker
    from asynctracker.testing import CapturedEvents, TrackerCapture

__all__ = ["capturing_tracker", "tracked_events", "tracker_capture", "tracker_options"]

MARKER = "asynctracker"


def pytest_configure(config: pytest.Config) -> None:
    """Declare the marker, so ``--strict-markers`` runs accept it."""
    config.addinivalue_line(
        "markers",
        f"{MARKER}(**options): capture_tracker() keywords for this test's tracker_capture",
    )


def _async_fixture(function: Callable[..., AsyncIterator[TrackerCapture]]) -> Any:
    """Declare an async fixture so that it runs in pytest-asyncio's strict mode too."""
    try:
        from pytest_asyncio import fixture  # its public decorator, nothing internal
    except ImportError:  # pragma: no cover - e.g. anyio's plugin runs async fixtures
        return pytest.fixture(function)
    return fixture(function)


@pytest.fixture
def tracker_options() -> Mapping[str, object]:
    """The ``capture_tracker()`` keywords of ``tracker_capture``; override it to configure.

    Empty here: the tracker gets ``capture_tracker()``'s defaults (namespace ``"test"``,
    app id ``"test-app"``, platform ``"srv"``, base64 on, POST, status 200).
    """
    return {}


def _options(request: pytest.FixtureRequest, base: Mapping[str, object]) -> dict[str, Any]:
    from asynctracker.testing import capture_tracker

    options: dict[str, Any] = dict(base)
    # iter_markers yields the closest first: apply the farthest first so the closest wins.
    for marker in reversed(list(request.node.iter_markers(MARKER))):
        if marker.args:
            pytest.fail(f"@pytest.mark.{MARKER} takes keywords only, got {marker.args!r}")
        options.update(marker.kwargs)
    known = inspect.signature(capture_tracker).parameters
    unknown = sorted(set(options) - set(known))
    if unknown:
        pytest.fail(
            f"unknown asynctracker tracker option(s) {', '.join(map(repr, unknown))} "
            f"(from tracker_options or @pytest.mark.{MARKER}); "
            f"capture_tracker() takes: {', '.join(known)}",
            pytrace=False,
        )
    return options


@_async_fixture
async def tracker_capture(
    request: pytest.FixtureRequest, tracker_options: Mapping[str, object]
) -> AsyncIterator[TrackerCapture]:
    """A tracker that captures its events in memory: ``tracker, events = tracker_capture``.

    Made with ``tracker_options`` and the ``asynctracker`` marker's keywords; flushed and
    closed after the test. See :func:`asynctracker.testing.capture_tracker`.
    """
    from asynctracker.testing import capture_tracker

    async with capture_tracker(**_options(request, tracker_options)) as capture:
        yield capture


@pytest.fixture
def capturing_tracker(tracker_capture: TrackerCapture) -> Tracker:
    """The tracker of ``tracker_capture``, to hand to the code under test."""
    return tracker_capture.tracker


@pytest.fixture
def tracked_events(tracker_capture: TrackerCapture) -> CapturedEvents:
    """The events ``capturing_tracker`` sent (``await capturing_tracker.flush()`` first)."""
    return tracker_capture.events
