"""FastAPI and Starlette: open the tracker with the app and give endpoints a request Subject.

Wire it up in three lines::

    from typing import Annotated

    from fastapi import Depends, FastAPI
    import asynctracker as at
    from asynctracker.integrations.fastapi import (
        TrackingMiddleware, get_subject, get_tracker, tracker_lifespan,
    )

    def make_tracker() -> at.Tracker:
        return at.Tracker(at.Emitter("collector.acme.com"), app_id="shop")

    app = FastAPI(lifespan=tracker_lifespan(make_tracker))
    app.add_middleware(TrackingMiddleware, trusted_proxies=["10.0.0.0/8"])

    @app.post("/cart/{sku}")
    async def add_to_cart(
        sku: str,
        tracker: Annotated[at.Tracker, Depends(get_tracker)],
        subject: Annotated[at.Subject, Depends(get_subject)],
    ) -> None:
        await tracker.track_struct_event("cart", "add", label=sku, subject=subject)

The middleware also binds the request's Subject (:func:`asynctracker.bind_subject`)
while the endpoint runs, so code deeper down can call ``bound_subject()`` or leave
``subject=`` out of ``track_*`` instead of passing it around.

When the emitter sends with your own ``httpx.AsyncClient`` (``Emitter(...,
http_client=client)``), the tracker must be flushed before that client closes. Open the
client in your own lifespan and run the tracker inside it with :func:`running_tracker`,
so that leaving the ``async with`` blocks closes them in the right order::

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with httpx.AsyncClient(timeout=5) as client:
            tracker = at.Tracker(at.Emitter(URL, http_client=client), app_id="shop")
            async with running_tracker(app, tracker):
                yield

    app = FastAPI(lifespan=lifespan)

docs/frameworks.md has the whole recipe, for aiohttp too.

Only Starlette is imported (FastAPI is Starlette), and only when this module is.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Collection, Iterable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any, TypeVar, overload

from starlette.applications import Starlette
from starlette.requests import HTTPConnection, cookie_parser
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .._request_scope import bind_subject
from ..exceptions import ConfigurationError
from ..subject import Subject
from ..tracker import Tracker
from . import (
    DEFAULT_EXCLUDED_PATHS,
    DEFAULT_METHODS,
    DEFAULT_STATUSES,
    PageViewFilter,
    PathRule,
    ProxyNetwork,
    TrustedProxies,
    flush_open_emitters,
    parse_trusted_proxies,
    resolve_tracker,
    subject_from_parts,
)

__all__ = [
    "STATE_KEY",
    "SUBJECT_STATE_KEY",
    "TrackingMiddleware",
    "get_subject",
    "get_tracker",
    "running_tracker",
    "subject_from_request",
    "tracker_lifespan",
]

logger = logging.getLogger("asynctracker")

#: ``app.state.<STATE_KEY>`` holds the tracker while the app runs.
STATE_KEY = "asynctracker"
#: ``request.state.<SUBJECT_STATE_KEY>`` holds the request's Subject (set by the middleware).
SUBJECT_STATE_KEY = "asynctracker_subject"

_AppT = TypeVar("_AppT", bound=Starlette)
# What a user's lifespan yields: None, or a mapping merged into every request's state.
_StateT = TypeVar("_StateT", bound="Mapping[str, Any] | None")


@overload
def tracker_lifespan(
    tracker: Tracker | Callable[[], Tracker],
    *,
    lifespan: None = None,
) -> Callable[[Starlette], AbstractAsyncContextManager[None]]: ...


@overload
def tracker_lifespan(
    tracker: Tracker | Callable[[], Tracker],
    *,
    lifespan: Callable[[_AppT], AbstractAsyncContextManager[_StateT]],
) -> Callable[[_AppT], AbstractAsyncContextManager[_StateT]]: ...


def tracker_lifespan(
    tracker: Tracker | Callable[[], Tracker],
    *,
    lifespan: Callable[[Any], AbstractAsyncContextManager[Any]] | None = None,
) -> Callable[[Any], AbstractAsyncContextManager[Any]]:
    """A ``lifespan=`` for FastAPI/Starlette that runs the tracker for as long as the app.

    On startup the tracker is opened (events a previous run left in SQLite start sending)
    and put on ``app.state.asynctracker`` for :func:`get_tracker`; then your own
    ``lifespan``, if given, runs inside it, so your startup and shutdown code can track
    events too, and whatever state it yields still reaches requests. On shutdown the
    tracker is flushed (bounded by the emitter's ``close_timeout``) and closed, so a
    deploy does not lose the last requests' events.

    With your own ``lifespan``, what the requests tracked is flushed *before* its
    shutdown code runs, and what that code tracks is flushed after it (each flush
    bounded by ``close_timeout``): so a client your lifespan closes (the emitter's
    ``http_client``) is still open for the requests' events. Events your shutdown code
    tracks after closing that client cannot be sent; if your lifespan creates what the
    tracker uses, use :func:`running_tracker` inside it instead, which nests them.

    Pass a function that makes the tracker (rather than a tracker) when the app may be
    started more than once, as in tests: a closed tracker cannot be opened again.
    """

    @contextlib.asynccontextmanager
    async def run(app: Any) -> AsyncIterator[Any]:
        async with _running(app, tracker, "tracker_lifespan") as running:
            if lifespan is None:
                yield None
                return
            async with lifespan(app) as state:
                yield state
                # Before your shutdown code, which may close what the emitter sends with.
                await flush_open_emitters(running)

    return run


def running_tracker(
    app: Starlette, tracker: Tracker | Callable[[], Tracker]
) -> AbstractAsyncContextManager[Tracker]:
    """Run the tracker with the app from inside your own lifespan; yields the tracker.

    Opens the tracker (or the one ``tracker()`` makes) and puts it on
    ``app.state.asynctracker`` for :func:`get_tracker`; on leaving, flushes it (bounded
    by the emitter's ``close_timeout``), closes it and takes it off ``app.state``. Nest
    it inside whatever the tracker uses, such as the ``httpx.AsyncClient`` you pass as
    the emitter's ``http_client``: the ``async with`` blocks then end in reverse order,
    the tracker's final flush first and the client's close after it. Your startup and
    shutdown code inside the ``async with`` can track events too. Raises
    ConfigurationError when ``tracker`` is neither a Tracker nor a function returning
    one.
    """
    return _running(app, tracker, "running_tracker")


@contextlib.asynccontextmanager
async def _running(
    app: Starlette, tracker: Tracker | Callable[[], Tracker], needed_by: str
) -> AsyncIterator[Tracker]:
    running = resolve_tracker(tracker, needed_by)
    async with running:
        setattr(app.state, STATE_KEY, running)
        try:
            yield running
        finally:
            if getattr(app.state, STATE_KEY, None) is running:
                delattr(app.state, STATE_KEY)


def get_tracker(conn: HTTPConnection) -> Tracker:
    """FastAPI dependency (or plain call in Starlette) returning the app's running tracker.

    Raises ConfigurationError when no tracker is running, which means the app was made
    without ``lifespan=tracker_lifespan(...)`` or :func:`running_tracker` (or its server
    does not run lifespans).
    """
    tracker = getattr(conn.app.state, STATE_KEY, None)
    if not isinstance(tracker, Tracker):
        raise ConfigurationError(
            "no running tracker on app.state: create the app with "
            "lifespan=tracker_lifespan(...) (or use running_tracker(app, ...) in your own "
            "lifespan) and run it under a server with lifespan on"
        )
    return tracker


def subject_from_request(
    conn: HTTPConnection, trusted_proxies: Iterable[ProxyNetwork] = ()
) -> Subject:
    """Build a Subject from a request: ip, user agent, language and ``_sp_id`` cookie.

    ``X-Forwarded-For`` is believed only when the peer is in ``trusted_proxies`` (see
    :mod:`asynctracker.integrations`). Prefer the middleware, which parses
    ``trusted_proxies`` once instead of per request.
    """
    return _subject(conn.scope, parse_trusted_proxies(trusted_proxies))


def get_subject(conn: HTTPConnection) -> Subject:
    """FastAPI dependency returning the request's Subject.

    It is the one :class:`TrackingMiddleware` built; without the middleware one is built
    on the spot from the immediate peer (no proxy is trusted), so endpoints work either way.
    """
    subject = conn.scope.get("state", {}).get(SUBJECT_STATE_KEY)
    if isinstance(subject, Subject):
        return subject
    return _subject(conn.scope, ())


def _subject(scope: Scope, trusted: TrustedProxies) -> Subject:
    forwarded: list[str] = []
    user_agent = accept_language = cookie = None
    for raw_name, raw_value in scope.get("headers", ()):
        name = raw_name.lower()
        if name == b"x-forwarded-for":
            forwarded.append(raw_value.decode("latin-1"))
        elif name == b"user-agent":
            user_agent = raw_value.decode("latin-1")
        elif name == b"accept-language":
            accept_language = raw_value.decode("latin-1")
        elif name == b"cookie":
            cookie = raw_value.decode("latin-1")
    client = scope.get("client")
    return subject_from_parts(
        peer=client[0] if client else None,
        forwarded_for=forwarded,
        user_agent=user_agent,
        accept_language=accept_language,
        cookies=cookie_parser(cookie) if cookie else None,
        trusted_proxies=trusted,
    )


def _route_path(scope: Scope) -> str:
    """The path as the app's routes see it: without the ``root_path`` a proxy mounts it at.

    ASGI servers put the full path in ``path`` (``/api/health`` behind ``--root-path
    /api``), so the filters, written against your routes, strip the prefix first.
    """
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root):
        return path[len(root) :] or "/"
    return path


class TrackingMiddleware:
    """Pure-ASGI middleware: a Subject for every request, and optional page views.

    Each HTTP or WebSocket request gets its Subject (see :func:`subject_from_request`),
    bound with :func:`asynctracker.bind_subject` while the request is handled, so a plain
    ``await tracker.track_*()`` in the endpoint, or in a task it starts, is attributed to
    the request's user. It is also in ``request.state.asynctracker_subject`` for
    ``Depends(get_subject)``.

    Args:
        app: the ASGI app to wrap (``app.add_middleware`` passes it).
        trusted_proxies: addresses/networks of your load balancers; only requests from
            them have their ``X-Forwarded-For`` believed.
        track_page_views: also track a page view per HTTP request that passes the
            filters below (off by default: most APIs are not pages). The URL is the
            request's and the referrer its ``Referer``. It is tracked after the response
            was sent, and a tracking error is logged, never raised into the request.
        tracker: the tracker for page views; by default the app's running tracker from
            :func:`tracker_lifespan`.
        methods: request methods tracked as page views (default ``GET`` only).
        statuses: response statuses tracked (default 200-399: no errors).
        include_paths: if given, only paths matching one of these are tracked.
        exclude_paths: paths never tracked (default
            :data:`~asynctracker.integrations.DEFAULT_EXCLUDED_PATHS`: health checks,
            metrics, API docs, static files); pass ``()`` to track them too.

    Path entries are prefixes (``"/static/"``) or compiled ``re.Pattern`` objects, matched
    against the path as your routes see it (without the ``root_path``); see
    :class:`~asynctracker.integrations.PageViewFilter` for the defaults' reasons. Raises
    ConfigurationError for a malformed option, naming it.

    Being pure ASGI (not ``BaseHTTPMiddleware``), it does not buffer responses or break
    streaming, background tasks or context variables.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        trusted_proxies: Iterable[ProxyNetwork] = (),
        track_page_views: bool = False,
        tracker: Tracker | None = None,
        methods: Iterable[str] = DEFAULT_METHODS,
        statuses: Collection[int] = DEFAULT_STATUSES,
        include_paths: Iterable[PathRule] | None = None,
        exclude_paths: Iterable[PathRule] = DEFAULT_EXCLUDED_PATHS,
    ) -> None:
        if tracker is not None and not isinstance(tracker, Tracker):
            raise ConfigurationError("tracker must be an asynctracker.Tracker")
        self.app = app
        self.trusted_proxies = parse_trusted_proxies(trusted_proxies)
        self.track_page_views = bool(track_page_views)
        self.tracker = tracker
        self.page_views = PageViewFilter(
            methods=methods,
            statuses=statuses,
            include_paths=include_paths,
            exclude_paths=exclude_paths,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        subject = _subject(scope, self.trusted_proxies)
        scope.setdefault("state", {})[SUBJECT_STATE_KEY] = subject
        with bind_subject(subject):
            if (
                not self.track_page_views
                or scope["type"] != "http"
                or not self.page_views.wants_request(scope["method"], _route_path(scope))
            ):
                await self.app(scope, receive, send)
                return
            status: list[int] = []

            async def send_with_status(message: Message) -> None:
                if message["type"] == "http.response.start":
                    status.append(int(message["status"]))
                await send(message)

            await self.app(scope, receive, send_with_status)
            if status and self.page_views.wants_status(status[0]):
                await self._track_page_view(scope, subject)

    async def _track_page_view(self, scope: Scope, subject: Subject) -> None:
        conn = HTTPConnection(scope)
        try:
            tracker = self.tracker if self.tracker is not None else get_tracker(conn)
            await tracker.track_page_view(
                str(conn.url), referrer=conn.headers.get("referer") or None, subject=subject
            )
        except Exception:
            logger.exception("asynctracker could not track the page view of %s", conn.url.path)
