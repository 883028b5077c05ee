"""Flask: a tracker per app, a Subject per request, optional page views.

The extension, in the usual Flask pattern::

    from flask import Flask
    from asynctracker import sync
    from asynctracker.integrations.flask import Tracking, get_tracker

    def make_tracker() -> sync.Tracker:
        return sync.Tracker(sync.Emitter("collector.acme.com"), app_id="shop")

    tracking = Tracking(tracker=make_tracker, trusted_proxies=["10.0.0.0/8"])

    def create_app() -> Flask:
        app = Flask(__name__)
        tracking.init_app(app)

        @app.post("/cart/<sku>")
        def add_to_cart(sku: str) -> dict[str, str]:
            return {"event_id": get_tracker().track_struct_event("cart", "add", label=sku)}

        return app

Each request's Subject is built before the view runs and bound with
:func:`asynctracker.bind_subject` until the request is torn down, so a plain
``get_tracker().track_*()`` in the view, or in code it calls, is attributed to the
request's user. Flask handles each request in one thread (gunicorn's sync and
``gthread`` workers, the development server), and context variables are per thread:
concurrent requests never see each other's Subject.

The tracker outlives requests: nothing closes it per request or app context. A
function given as ``tracker`` runs on first use, in each worker process after gunicorn
forks it. At exit, ``asynctracker.sync`` flushes every open tracker within its
``close_timeout``, and what is not delivered stays in the SQLite file.

docs/sync.md has the whole recipe, with gunicorn. Only Flask is imported, and only
when this module is.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from contextlib import AbstractContextManager

from flask import Flask, Response, current_app, request

from .._request_scope import bind_subject
from ..exceptions import ConfigurationError
from ..subject import Subject
from ..sync import Tracker
from . import (
    DEFAULT_EXCLUDED_PATHS,
    DEFAULT_METHODS,
    DEFAULT_STATUSES,
    PageViewFilter,
    PathRule,
    ProxyNetwork,
    parse_trusted_proxies,
)
from ._sync import LazyTracker, SyncTrackerSource, subject_from_environ, track_page_view

__all__ = ["EXTENSION_KEY", "AppTracking", "Tracking", "get_subject", "get_tracker"]

#: ``app.extensions[EXTENSION_KEY]`` holds the app's :class:`AppTracking`.
EXTENSION_KEY = "asynctracker"
# request.environ keys: the request's Subject, and the binding that teardown undoes.
_SUBJECT = "asynctracker.subject"
_BINDING = "asynctracker.binding"


class AppTracking:
    """What :meth:`Tracking.init_app` keeps for one app, in ``app.extensions``.

    Its request hooks build and bind each request's Subject and track page views; its
    :meth:`get_tracker` returns the app's tracker, made on first use.
    """

    def __init__(self, extension: Tracking, tracker: LazyTracker) -> None:
        self.tracker = tracker
        self.trusted_proxies = extension.trusted_proxies
        self.track_page_views = extension.track_page_views
        self.page_views = extension.page_views

    def get_tracker(self) -> Tracker:
        """The app's tracker (made now, on first use, when a function was given)."""
        return self.tracker.get()

    def subject(self) -> Subject:
        """The current request's Subject, built once per request."""
        subject = request.environ.get(_SUBJECT)
        if not isinstance(subject, Subject):
            subject = subject_from_environ(request.environ, request.cookies, self.trusted_proxies)
            request.environ[_SUBJECT] = subject
        return subject

    def bind(self) -> None:
        """``before_request``: bind the request's Subject until teardown."""
        binding = bind_subject(self.subject())
        binding.__enter__()
        request.environ[_BINDING] = binding

    def track(self, response: Response) -> Response:
        """``after_request``: track the page view, if the request and status qualify."""
        if (
            self.track_page_views
            and self.page_views.wants_request(request.method, request.path)
            and self.page_views.wants_status(response.status_code)
        ):
            track_page_view(
                self.tracker.get,
                lambda: request.url,
                request.referrer,
                self.subject(),
                request.path,
            )
        return response

    def unbind(self, error: BaseException | None) -> None:
        """``teardown_request``: undo :meth:`bind` (the thread may serve another request)."""
        binding: AbstractContextManager[None] | None = request.environ.pop(_BINDING, None)
        if binding is not None:
            binding.__exit__(None, None, None)


class Tracking:
    """The Flask extension: ``Tracking(app, make_tracker)``, or ``Tracking(tracker=...)``
    then ``init_app(app)`` in your app factory.

    Args:
        app: the app to set up now (or call :meth:`init_app` later).
        tracker: a :class:`asynctracker.sync.Tracker`, or a function returning one,
            called on first use in each process (so each gunicorn worker makes its own).
            ``init_app(app, tracker=...)`` may give it per app instead.
        trusted_proxies: addresses/networks of your load balancers; only requests from
            them have their ``X-Forwarded-For`` believed. (If the app is wrapped in
            werkzeug's ``ProxyFix``, ``REMOTE_ADDR`` is already the client's.)
        track_page_views: also track a page view per request that passes the filters
            below (off by default: most APIs are not pages). The URL is the request's and
            the referrer its ``Referer``. It is tracked in ``after_request`` (one local
            commit, before the response is sent); an error is logged, never raised.
        methods, statuses, include_paths, exclude_paths: the page-view filters of
            :class:`~asynctracker.integrations.PageViewFilter` (default: GET, 200-399,
            every path but health checks, metrics, API docs and static files).

    Raises ConfigurationError for a malformed option (here), and from ``init_app`` when
    no tracker was given.
    """

    def __init__(
        self,
        app: Flask | None = None,
        tracker: SyncTrackerSource | None = None,
        *,
        trusted_proxies: Iterable[ProxyNetwork] = (),
        track_page_views: bool = False,
        methods: Iterable[str] = DEFAULT_METHODS,
        statuses: Collection[int] = DEFAULT_STATUSES,
        include_paths: Iterable[PathRule] | None = None,
        exclude_paths: Iterable[PathRule] = DEFAULT_EXCLUDED_PATHS,
    ) -> None:
        self.tracker = tracker
        self.trusted_proxies = parse_trusted_proxies(trusted_proxies)
        self.track_page_views = bool(track_page_views)
        self.page_views = PageViewFilter(
            methods=methods,
            statuses=statuses,
            include_paths=include_paths,
            exclude_paths=exclude_paths,
        )
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask, *, tracker: SyncTrackerSource | None = None) -> AppTracking:
        """Set up ``app``: its tracker in ``app.extensions["asynctracker"]`` and the request
        hooks. Hooks registered before this call run before the Subject is bound (they can
        still call :func:`get_subject`)."""
        source = tracker if tracker is not None else self.tracker
        if source is None:
            raise ConfigurationError(
                "Tracking needs a tracker: Tracking(app, make_tracker), "
                "Tracking(tracker=...) or init_app(app, tracker=...)"
            )
        state = AppTracking(self, LazyTracker(source, "Tracking"))
        app.extensions[EXTENSION_KEY] = state
        app.before_request(state.bind)
        app.after_request(state.track)
        app.teardown_request(state.unbind)
        return state


def _state() -> AppTracking:
    state = current_app.extensions.get(EXTENSION_KEY)
    if not isinstance(state, AppTracking):
        raise ConfigurationError(
            "this Flask app has no asynctracker Tracking: call Tracking(app, make_tracker) "
            "or tracking.init_app(app)"
        )
    return state


def get_tracker() -> Tracker:
    """The current app's tracker (in a request, or ``with app.app_context():``).

    Raises ConfigurationError when the app was not set up with :class:`Tracking`.
    """
    return _state().get_tracker()


def get_subject() -> Subject:
    """The current request's Subject: the one the extension bound (built once per
    request, from the app's ``trusted_proxies``)."""
    return _state().subject()
