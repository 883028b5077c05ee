"""aiohttp.web: run the tracker with the application and give handlers a request Subject.

Wire it up with one call (or the two pieces it is made of)::

    from aiohttp import web
    import asynctracker as at
    from asynctracker.integrations.aiohttp import get_subject, get_tracker, setup_tracking

    def make_tracker() -> at.Tracker:
        return at.Tracker(at.Emitter("collector.acme.com"), app_id="shop")

    async def add_to_cart(request: web.Request) -> web.Response:
        tracker, subject = get_tracker(request), get_subject(request)
        await tracker.track_struct_event("cart", "add", label=request.match_info["sku"],
                                         subject=subject)
        return web.Response(text="added")

    app = web.Application()
    setup_tracking(app, make_tracker, trusted_proxies=["10.0.0.0/8"])
    # = app.cleanup_ctx.append(tracker_context(make_tracker))
    #   app.middlewares.append(tracking_middleware(trusted_proxies=["10.0.0.0/8"]))
    app.router.add_post("/cart/{sku}", add_to_cart)

The middleware also binds the request's Subject (:func:`asynctracker.bind_subject`)
while the handler runs, so code deeper down can call ``bound_subject()`` or leave
``subject=`` out of ``track_*`` instead of passing it around.

When the emitter sends with your own ``httpx.AsyncClient`` (``Emitter(...,
http_client=client)``), the tracker must be flushed before that client closes. Cleanup
contexts are cleaned up in reverse order, so add the client's context first and make
the tracker in the factory, which runs at startup, after the client exists::

    CLIENT = web.AppKey("http_client", httpx.AsyncClient)

    async def http_client(app: web.Application) -> AsyncIterator[None]:
        async with httpx.AsyncClient(timeout=5) as client:
            app[CLIENT] = client
            yield

    app.cleanup_ctx.append(http_client)  # first: closed after the tracker's final flush
    setup_tracking(app, lambda: at.Tracker(at.Emitter(URL, http_client=app[CLIENT])))

docs/frameworks.md has the whole recipe, for FastAPI too.

Only aiohttp is imported, and only when this module is.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Collection, Iterable
from typing import Final, cast

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from .._checks import lossy_utf8
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
    "TRACKER_KEY",
    "get_subject",
    "get_tracker",
    "setup_tracking",
    "subject_from_request",
    "tracker_context",
    "tracking_middleware",
]

logger = logging.getLogger("asynctracker")

#: ``app[TRACKER_KEY]`` holds the running tracker (set by :func:`tracker_context`).
TRACKER_KEY: Final = web.AppKey("asynctracker", Tracker)
# request[...] key of the request's Subject. web.RequestKey exists from aiohttp 3.14 (a
# plain str key makes newer aiohttp warn); read it through get_subject().
_SUBJECT_KEY: Final = cast(
    "web.RequestKey[Subject]",
    getattr(web, "RequestKey", lambda name, _type: name)("asynctracker_subject", Subject),
)


def tracker_context(
    tracker: Tracker | Callable[[], Tracker],
) -> Callable[[web.Application], AsyncIterator[None]]:
    """A cleanup context (``app.cleanup_ctx.append(...)``) that runs the tracker with the app.

    On startup the tracker is opened (events a previous run left in SQLite start sending)
    and stored in ``app[TRACKER_KEY]`` for :func:`get_tracker`. On cleanup it is flushed
    (bounded by the emitter's ``close_timeout``) and closed, so stopping the server
    delivers what the last requests tracked. Contexts run in order and are cleaned up in
    reverse, so append this before contexts that track events in their own cleanup, and
    after the context of anything the tracker uses (the emitter's ``http_client``),
    which must outlive its final flush.

    Pass a function that makes the tracker when the app may be started more than once
    (tests): a closed tracker cannot be opened again.
    """

    async def run(app: web.Application) -> AsyncIterator[None]:
        running = resolve_tracker(tracker, "tracker_context")
        async with running:
            app[TRACKER_KEY] = running
            yield

    return run


def get_tracker(request: web.Request) -> Tracker:
    """The application's running tracker.

    Raises ConfigurationError when there is none: the app was made without
    :func:`tracker_context` (or :func:`setup_tracking`).
    """
    tracker = request.config_dict.get(TRACKER_KEY)
    if tracker is None:
        raise ConfigurationError(
            "no running tracker on the application: add "
            "app.cleanup_ctx.append(tracker_context(...)) or call setup_tracking(app, ...)"
        )
    return tracker


def _subject(request: web.BaseRequest, trusted: TrustedProxies) -> Subject:
    return subject_from_parts(
        peer=request.remote,
        forwarded_for=request.headers.getall("X-Forwarded-For", []),
        user_agent=request.headers.get("User-Agent"),
        accept_language=request.headers.get("Accept-Language"),
        cookies=request.cookies,
        trusted_proxies=trusted,
    )


def subject_from_request(
    request: web.BaseRequest, trusted_proxies: Iterable[ProxyNetwork] = ()
) -> Subject:
    """Build a Subject from a request: ip, user agent, language and ``_sp_id`` cookie.

    ``X-Forwarded-For`` is believed only when the peer is in ``trusted_proxies`` (see
    :mod:`asynctracker.integrations`). Prefer the middleware, which parses
    ``trusted_proxies`` once instead of per request.
    """
    return _subject(request, parse_trusted_proxies(trusted_proxies))


def get_subject(request: web.Request) -> Subject:
    """The request's Subject: the one the middleware built, else one built now.

    Without :func:`tracking_middleware` the Subject comes from the immediate peer (no
    proxy is trusted), so handlers work either way.
    """
    subject = request.get(_SUBJECT_KEY)
    if isinstance(subject, Subject):
        return subject
    return _subject(request, ())


def tracking_middleware(
    *,
    trusted_proxies: Iterable[ProxyNetwork] = (),
    track_page_views: bool = False,
    tracker: Tracker | None = None,
    methods: Iterable[str] = DEFAULT_METHODS,
    statuses: Collection[int] = DEFAULT_STATUSES,
    include_paths: Iterable[PathRule] | None = None,
    exclude_paths: Iterable[PathRule] = DEFAULT_EXCLUDED_PATHS,
) -> Middleware:
    """Middleware giving every request its Subject, and optionally tracking page views.

    The Subject is bound with :func:`asynctracker.bind_subject` while the handler runs,
    so a plain ``await tracker.track_*()`` in it, or in a task it starts, is attributed
    to the request's user; :func:`get_subject` returns the same Subject.

    Args:
        trusted_proxies: addresses/networks of your load balancers; only requests from
            them have their ``X-Forwarded-For`` believed.
        track_page_views: also track a page view per request that passes the filters
            below (off by default: most APIs are not pages). The URL is the request's and
            the referrer its ``Referer``. A handler's ``raise web.HTTPFound(...)`` counts
            with its status. A tracking error is logged, never raised into the request.
        tracker: the tracker for page views; by default the app's (``app[TRACKER_KEY]``).
        methods: request methods tracked as page views (default ``GET`` only).
        statuses: response statuses tracked (default 200-399: no errors).
        include_paths: if given, only paths matching one of these are tracked.
        exclude_paths: paths never tracked (default
            :data:`~asynctracker.integrations.DEFAULT_EXCLUDED_PATHS`: health checks,
            metrics, API docs, static files); pass ``()`` to track them too.

    Path entries are prefixes (``"/static/"``) or compiled ``re.Pattern`` objects; see
    :class:`~asynctracker.integrations.PageViewFilter` for the defaults' reasons. Raises
    ConfigurationError for a malformed option, naming it.
    """
    trusted = parse_trusted_proxies(trusted_proxies)
    if tracker is not None and not isinstance(tracker, Tracker):
        raise ConfigurationError("tracker must be an asynctracker.Tracker")
    page_views = PageViewFilter(
        methods=methods, statuses=statuses, include_paths=include_paths, exclude_paths=exclude_paths
    )

    @web.middleware
    async def asynctracker_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        subject = _subject(request, trusted)
        request[_SUBJECT_KEY] = subject
        with bind_subject(subject):
            if not track_page_views or not page_views.wants_request(request.method, request.path):
                return await handler(request)
            try:
                response = await handler(request)
            except web.HTTPException as exc:
                if page_views.wants_status(exc.status):
                    await _track_page_view(request, subject, tracker)
                raise
            if page_views.wants_status(response.status):
                await _track_page_view(request, subject, tracker)
            return response

    return asynctracker_middleware


async def _track_page_view(request: web.Request, subject: Subject, tracker: Tracker | None) -> None:
    try:
        running = tracker if tracker is not None else get_tracker(request)
        # aiohttp hands header bytes that are not UTF-8 over as lone surrogates, which
        # track_* refuses: a visitor's odd Referer must not cost the page view.
        referrer = request.headers.get("Referer")
        await running.track_page_view(
            lossy_utf8(str(request.url)),
            referrer=lossy_utf8(referrer) if referrer else None,
            subject=subject,
        )
    except Exception:
        logger.exception("asynctracker could not track the page view of %s", request.path)


def setup_tracking(
    app: web.Application,
    tracker: Tracker | Callable[[], Tracker],
    *,
    trusted_proxies: Iterable[ProxyNetwork] = (),
    track_page_views: bool = False,
    methods: Iterable[str] = DEFAULT_METHODS,
    statuses: Collection[int] = DEFAULT_STATUSES,
    include_paths: Iterable[PathRule] | None = None,
    exclude_paths: Iterable[PathRule] = DEFAULT_EXCLUDED_PATHS,
) -> None:
    """Add :func:`tracker_context` and :func:`tracking_middleware` to ``app`` in one call.

    Call it while building the app (before it starts); see those two for the options.
    It also flushes the tracker when the app shuts down (``on_shutdown``, bounded by the
    emitter's ``close_timeout``), before any cleanup context runs: a context added after
    this call is cleaned up before the tracker's, and may close the client the emitter
    sends with, so what the requests tracked is delivered while it is still open.
    """
    app.cleanup_ctx.append(tracker_context(tracker))
    app.on_shutdown.append(_deliver_before_cleanup)
    app.middlewares.append(
        tracking_middleware(
            trusted_proxies=trusted_proxies,
            track_page_views=track_page_views,
            methods=methods,
            statuses=statuses,
            include_paths=include_paths,
            exclude_paths=exclude_paths,
        )
    )


async def _deliver_before_cleanup(app: web.Application) -> None:
    """Flush what the requests tracked while everything the emitter uses is still open;
    a failure is logged, never raised, so the cleanup that closes the tracker still runs."""
    tracker = app.get(TRACKER_KEY)
    if tracker is None:
        return
    try:
        await flush_open_emitters(tracker)
    except Exception:
        logger.exception("asynctracker could not flush the tracker at shutdown")
