"""Django: a tracker from settings, a Subject per request, optional page views.

Two steps. In ``settings.py``::

    ASYNCTRACKER = {
        "collector": "https://collector.acme.com",
        "app_id": "shop",
        "db_name": BASE_DIR / "events.db",
        "trusted_proxies": ["10.0.0.0/8"],
    }
    MIDDLEWARE = [..., "asynctracker.integrations.django.TrackingMiddleware"]

and in a view::

    from asynctracker.integrations.django import get_tracker

    def add_to_cart(request, sku):
        event_id = get_tracker().track_struct_event("cart", "add", label=sku)
        ...

``ASYNCTRACKER`` takes ``collector`` (the emitter's ``collector_uri``), any keyword of
:class:`asynctracker.sync.Emitter` and :class:`asynctracker.sync.Tracker`, and the
middleware's options (:data:`MIDDLEWARE_OPTIONS`). For what settings cannot express (a
callback, several emitters), give ``"tracker"``: a function returning a sync Tracker,
or its dotted path, instead of the emitter and tracker keywords.

The tracker is made on first use in each process (each gunicorn worker, after the
fork) and is never closed per request; at exit ``asynctracker.sync`` flushes it within
its ``close_timeout``. The middleware binds each request's Subject with
:func:`asynctracker.bind_subject` while the view runs, so ``get_tracker().track_*()``
there is attributed to the request's user.

The middleware is synchronous: under ASGI, Django runs it (and sync views) in a thread.
An ``async def`` view must not call the sync tracker directly (BlockingCallError):
wrap the call in ``asgiref.sync.sync_to_async``. docs/sync.md has the whole recipe.
Only Django is imported, and only when this module is.
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Callable, Mapping
from typing import Any

from django.conf import settings
from django.core.signals import setting_changed
from django.http import HttpRequest
from django.http.response import HttpResponseBase
from django.utils.module_loading import import_string

from .._request_scope import bind_subject
from ..exceptions import BlockingCallError, ConfigurationError
from ..subject import Subject
from ..sync import Emitter, Tracker
from . import PageViewFilter, parse_trusted_proxies
from ._sync import LazyTracker, subject_from_environ, track_page_view

__all__ = [
    "MIDDLEWARE_OPTIONS",
    "SETTING",
    "TrackingMiddleware",
    "get_subject",
    "get_tracker",
    "tracker_from_settings",
]

#: The name of the settings entry this module reads.
SETTING = "ASYNCTRACKER"
#: The keys of ``ASYNCTRACKER`` that configure :class:`TrackingMiddleware`.
MIDDLEWARE_OPTIONS = frozenset(
    {"trusted_proxies", "track_page_views", "methods", "statuses", "include_paths", "exclude_paths"}
)
_EMITTER_OPTIONS = frozenset(inspect.signature(Emitter).parameters) - {"collector_uri"}
_TRACKER_OPTIONS = frozenset(inspect.signature(Tracker).parameters) - {"emitters"}
_KNOWN = MIDDLEWARE_OPTIONS | _EMITTER_OPTIONS | _TRACKER_OPTIONS | {"collector", "tracker"}
_SUBJECT_ATTRIBUTE = "_asynctracker_subject"


def _settings() -> Mapping[str, Any]:
    """``settings.ASYNCTRACKER``, its keys checked: ConfigurationError names a typo."""
    configured = getattr(settings, SETTING, None)
    if configured is None:
        return {}
    if not isinstance(configured, Mapping):
        raise ConfigurationError(f"settings.{SETTING} must be a dict")
    unknown = sorted(str(key) for key in configured if key not in _KNOWN)
    if unknown:
        raise ConfigurationError(
            f"settings.{SETTING} has unknown keys {unknown}; it takes collector (or "
            "tracker), the keywords of asynctracker.sync.Emitter and sync.Tracker, and "
            f"{sorted(MIDDLEWARE_OPTIONS)}"
        )
    return configured


def tracker_from_settings() -> Tracker:
    """A new sync Tracker made from ``settings.ASYNCTRACKER`` (:func:`get_tracker` makes
    the process's one with it). Raises ConfigurationError for a missing, unknown or
    contradictory key, or a bad option."""
    options = dict(_settings())
    for key in MIDDLEWARE_OPTIONS:
        options.pop(key, None)
    factory = options.pop("tracker", None)
    if factory is not None:
        if options:
            raise ConfigurationError(
                f"settings.{SETTING} gives 'tracker', so the tracker's function makes it: "
                f"leave out {sorted(options)}"
            )
        made = import_string(factory)() if isinstance(factory, str) else factory()
        if not isinstance(made, Tracker):
            raise ConfigurationError(
                f"settings.{SETTING}['tracker'] must return an asynctracker.sync.Tracker, "
                f"not {type(made).__name__}"
            )
        return made
    collector = options.pop("collector", None)
    if not isinstance(collector, str) or not collector:
        raise ConfigurationError(
            f"settings.{SETTING} needs 'collector' (the collector's URL) or 'tracker' "
            "(a function returning an asynctracker.sync.Tracker, or its dotted path)"
        )
    emitter = {key: value for key, value in options.items() if key in _EMITTER_OPTIONS}
    tracker = {key: value for key, value in options.items() if key in _TRACKER_OPTIONS}
    return Tracker(Emitter(collector, **emitter), **tracker)


_tracker = LazyTracker(tracker_from_settings, f"settings.{SETTING}")


def get_tracker() -> Tracker:
    """This process's tracker, made from ``settings.ASYNCTRACKER`` on first use."""
    return _tracker.get()


def _settings_changed(*, setting: str, **kwargs: object) -> None:
    """``override_settings(ASYNCTRACKER=...)`` in tests: close the tracker made from the
    old settings (flushing within its close_timeout); the next use makes a new one.
    Changed from async code (an async test), the close runs on a thread of its own."""
    global _tracker
    if setting != SETTING:
        return
    old, _tracker = _tracker, LazyTracker(tracker_from_settings, f"settings.{SETTING}")
    if old.made is None:
        return
    try:
        old.made.close()
    except BlockingCallError:
        threading.Thread(target=old.made.close, name="asynctracker-close").start()


setting_changed.connect(_settings_changed, dispatch_uid="asynctracker.integrations.django")


def get_subject(request: HttpRequest) -> Subject:
    """The request's Subject: the one the middleware bound, else one built now from the
    immediate peer (no proxy trusted), so views work either way."""
    subject = getattr(request, _SUBJECT_ATTRIBUTE, None)
    if isinstance(subject, Subject):
        return subject
    return subject_from_environ(request.META, request.COOKIES, ())


class TrackingMiddleware:
    """Binds each request's Subject while the view runs; optionally tracks page views.

    Options come from ``settings.ASYNCTRACKER`` (:data:`MIDDLEWARE_OPTIONS`), read when
    Django loads the middleware, so a typo fails at startup with ConfigurationError:

    - ``trusted_proxies``: your load balancers; only their ``X-Forwarded-For`` is believed.
    - ``track_page_views`` (default False): track a page view per request that passes
      ``methods``, ``statuses``, ``include_paths`` and ``exclude_paths``
      (:class:`~asynctracker.integrations.PageViewFilter`: GET, 200-399, not health
      checks, metrics, API docs or static files). The URL is
      ``request.build_absolute_uri()``, the referrer its ``Referer``. It is tracked once
      the view has returned (one local commit); an error is logged, never raised.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        options = _settings()
        self.get_response = get_response
        self.trusted_proxies = parse_trusted_proxies(options.get("trusted_proxies", ()))
        self.track_page_views = bool(options.get("track_page_views", False))
        filters = {key: options[key] for key in MIDDLEWARE_OPTIONS & options.keys()}
        filters.pop("trusted_proxies", None)
        filters.pop("track_page_views", None)
        self.page_views = PageViewFilter(**filters)

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        subject = subject_from_environ(request.META, request.COOKIES, self.trusted_proxies)
        setattr(request, _SUBJECT_ATTRIBUTE, subject)
        with bind_subject(subject):
            response = self.get_response(request)
        if (
            self.track_page_views
            and self.page_views.wants_request(request.method or "", request.path_info)
            and self.page_views.wants_status(response.status_code)
        ):
            referrer = request.META.get("HTTP_REFERER")
            track_page_view(
                get_tracker,
                request.build_absolute_uri,
                referrer if isinstance(referrer, str) else None,
                subject,
                request.path_info,
            )
        return response
