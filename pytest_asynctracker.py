"""The asynctracker pytest plugin: fixtures for testing your own tracking code.

pytest loads this module in every run of an environment where asynctracker is installed
(the ``pytest11`` entry point ``asynctracker``), used or not. So it imports nothing but
pytest (and pytest-asyncio's fixture decorator when it is installed): asynctracker (and
httpx...) is imported by the first fixture a test asks for. That is also why
it is a top-level module rather than ``asynctracker.pytest_plugin``: importing anything
inside the package would import the whole package first. ``-p no:asynctracker``
switches it off. See docs/testing.md.

The tracker fixtures are async: they need the pytest-asyncio plugin
(``pip install pytest-asyncio``), with ``asyncio_mode = "auto"`` or tests marked
``@pytest.mark.asyncio``. Without it, a test asking for one fails at setup with a
message saying so (runs that never ask for them are not affected).

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
- ``asynctracker_db_path`` (autouse, so every test has it): the test's own default
  event queue. It sets ``ASYNCTRACKER_DB_PATH`` to a file no other test uses, so an
  ``Emitter`` made without ``db_name`` or ``storage`` never sends the events an
  earlier test left in ``./events.db``. Override the fixture to choose otherwise.
"""

from __future__ import annotations

import inspect
import itertools
import re
import sys
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from asynctracker import Tracker
    from asynctracker.testing import CapturedEvents, TrackerCapture

__all__ = [
    "asynctracker_db_path",
    "capturing_tracker",
    "tracked_events",
    "tracker_capture",
    "tracker_options",
]

MARKER = "asynctracker"
DB_PATH_VARIABLE = "ASYNCTRACKER_DB_PATH"

NO_PYTEST_ASYNCIO = (
    "asynctracker's tracker fixtures (tracker_capture, capturing_tracker, tracked_events) "
    "are async and need the pytest-asyncio plugin, which is not active in this run. "
    'Install it (pip install pytest-asyncio), then set asyncio_mode = "auto" in your '
    "pytest configuration or mark these tests @pytest.mark.asyncio "
    "(and drop any -p no:asyncio)."
)


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


def _pytest_asyncio_active(config: pytest.Config) -> bool:
    # Looked up, not imported: a run without pytest-asyncio has no module to find.
    plugin = sys.modules.get("pytest_asyncio.plugin")
    return plugin is not None and config.pluginmanager.is_registered(plugin)


@pytest.fixture
def _asynctracker_async_runner(request: pytest.FixtureRequest) -> None:
    """Fail with the fix when nothing will run the async fixtures.

    Without pytest-asyncio, pytest reports "requested an async fixture with no plugin"
    and then an unrelated internal AssertionError in the next test. This sync fixture
    is set up before ``tracker_capture``, so the test fails here first, naming what to
    install. anyio's pytest plugin runs async fixtures too, for tests that ask for its
    ``anyio_backend`` fixture: those are let through.
    """
    config = request.config
    if _pytest_asyncio_active(config):
        return
    if "anyio_backend" in request.fixturenames and config.pluginmanager.has_plugin("anyio"):
        return
    pytest.fail(NO_PYTEST_ASYNCIO, pytrace=False)


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
    request: pytest.FixtureRequest,
    tracker_options: Mapping[str, object],
    _asynctracker_async_runner: None,
) -> AsyncIterator[TrackerCapture]:
    """A tracker that captures its events in memory: ``tracker, events = tracker_capture``.

    Made with ``tracker_options`` and the ``asynctracker`` marker's keywords; flushed and
    closed after the test. See :func:`asynctracker.testing.capture_tracker`. Needs
    pytest-asyncio.
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


# -- each test's own default event queue ----------------------------------------------------

_numbers = itertools.count(1)


@pytest.fixture(scope="session")
def _asynctracker_db_folder(request: pytest.FixtureRequest) -> Iterator[Path]:
    """One folder for the session's per-test queue files.

    One folder, not each test's ``tmp_path``: the fixture is autouse, so it runs for
    every test of every project that has asynctracker installed, and pytest makes each
    ``tmp_path`` by listing the whole base temp folder. Under ``--basetemp`` like
    ``tmp_path`` when the tmpdir plugin is on, else a temporary folder of our own.
    """
    if request.config.pluginmanager.has_plugin("tmpdir"):
        factory: pytest.TempPathFactory = request.getfixturevalue("tmp_path_factory")
        yield factory.mktemp("asynctracker-queues", numbered=True)
    else:
        with tempfile.TemporaryDirectory(prefix="asynctracker-queues-") as folder:
            yield Path(folder)


@pytest.fixture(autouse=True)
def asynctracker_db_path(
    request: pytest.FixtureRequest, _asynctracker_db_folder: Path
) -> Iterator[Path]:
    """This test's default event queue: ``ASYNCTRACKER_DB_PATH`` names it during the test.

    An :class:`~asynctracker.Emitter` made without ``db_name`` or ``storage`` stores its
    events in ``$ASYNCTRACKER_DB_PATH``, else ``./events.db``, which every test of a run
    would share: events one test left undelivered would be sent, and seen, by the next.
    Each test gets a file of its own instead (nothing is created until an emitter opens
    it). Function-scoped: an emitter made by a module- or session-scoped fixture without
    ``db_name`` still opens ``./events.db``. Override this fixture (same name) to change
    it, or ``monkeypatch.setenv`` the variable in a test.
    """
    name = re.sub(r"\W", "_", request.node.name)[:40]
    path = _asynctracker_db_folder / f"{next(_numbers)}-{name}.db"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(DB_PATH_VARIABLE, str(path))
        yield path
