"""What the integrations for synchronous frameworks (Flask, Django, Celery) share.

- :class:`LazyTracker`: the app's :class:`asynctracker.sync.Tracker`, the one given or
  the one a factory makes on first use. A factory runs in the process that first needs
  the tracker: under gunicorn (``--preload`` or not) or Celery prefork that is each
  worker, after the fork, so every worker makes its own.
- :func:`subject_from_environ`: a request's Subject from its WSGI environ (Flask's
  ``request.environ``, Django's ``request.META``), by the rules of
  :func:`~asynctracker.integrations.subject_from_parts`.
- :func:`track_page_view`: a page view that logs its failure instead of raising it into
  the request, as the async middlewares do.

Nothing here imports a framework.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import TypeAlias

from .. import _process
from .. import sync as _sync
from ..exceptions import ConfigurationError
from ..subject import Subject
from ..tracker import Tracker as _AsyncTracker
from . import TrustedProxies, subject_from_parts

__all__ = ["LazyTracker", "SyncTrackerSource", "subject_from_environ", "track_page_view"]

logger = logging.getLogger("asynctracker")

#: What a synchronous integration is given: a sync Tracker, or a function making one.
SyncTrackerSource: TypeAlias = "_sync.Tracker | Callable[[], _sync.Tracker]"

_lock = _process.ForkSafeLock()


def _not_sync(needed_by: str, got: object) -> ConfigurationError:
    if isinstance(got, _AsyncTracker):
        return ConfigurationError(
            f"{needed_by} needs an asynctracker.sync.Tracker; the async asynctracker.Tracker "
            "is for asyncio apps (asynctracker.integrations.fastapi or .aiohttp)"
        )
    return ConfigurationError(
        f"{needed_by} needs an asynctracker.sync.Tracker or a function returning one, "
        f"not {type(got).__name__}"
    )


class LazyTracker:
    """A sync Tracker for an integration: the one given, or made on first use.

    Given a :class:`~asynctracker.sync.Tracker`, :meth:`get` returns it (a tracker made
    before a fork works in the child: it starts its own loop thread there). Given a
    function, :meth:`get` calls it once, on first use, under a lock, so concurrent first
    requests share one tracker. Raises ConfigurationError, naming ``needed_by``, for
    anything else, and when the function returns something other than a sync Tracker.
    """

    __slots__ = ("_made", "_source", "needed_by")

    def __init__(self, source: SyncTrackerSource, needed_by: str) -> None:
        if not isinstance(source, _sync.Tracker) and (
            isinstance(source, _AsyncTracker) or not callable(source)
        ):
            raise _not_sync(needed_by, source)
        self._source = source
        self._made: _sync.Tracker | None = source if isinstance(source, _sync.Tracker) else None
        self.needed_by = needed_by

    @property
    def made(self) -> _sync.Tracker | None:
        """The tracker, if it was given or has been made; None before the first use."""
        return self._made

    def get(self) -> _sync.Tracker:
        """The tracker, made now if this is its first use."""
        made = self._made
        if made is not None:
            return made
        with _lock:
            if self._made is None:
                factory = self._source
                assert not isinstance(factory, _sync.Tracker)
                tracker = factory()
                if not isinstance(tracker, _sync.Tracker):
                    raise _not_sync(f"{self.needed_by} (its tracker function's result)", tracker)
                self._made = tracker
            return self._made


def _text(environ: Mapping[str, object], key: str) -> str | None:
    value = environ.get(key)
    return value if isinstance(value, str) and value else None


def subject_from_environ(
    environ: Mapping[str, object], cookies: Mapping[str, str], trusted: TrustedProxies
) -> Subject:
    """The Subject of a WSGI request: ``REMOTE_ADDR`` (``X-Forwarded-For`` only from a
    trusted proxy), ``User-Agent``, ``Accept-Language`` and the ``_sp_id`` cookie from
    ``cookies`` (the framework's parsed ``Cookie`` header). A WSGI server joins repeated
    ``X-Forwarded-For`` headers with commas, which the hop walk splits again."""
    forwarded = _text(environ, "HTTP_X_FORWARDED_FOR")
    return subject_from_parts(
        peer=_text(environ, "REMOTE_ADDR"),
        forwarded_for=[forwarded] if forwarded else [],
        user_agent=_text(environ, "HTTP_USER_AGENT"),
        accept_language=_text(environ, "HTTP_ACCEPT_LANGUAGE"),
        cookies=cookies,
        trusted_proxies=trusted,
    )


def track_page_view(
    tracker: Callable[[], _sync.Tracker],
    url: Callable[[], str],
    referrer: str | None,
    subject: Subject,
    path: str,
) -> None:
    """Track a page view of ``url()`` with ``tracker()``; any error (no tracker, a bad
    URL, a full queue) is logged with ``path``, never raised into the request."""
    try:
        tracker().track_page_view(url(), referrer=referrer or None, subject=subject)
    except Exception:
        logger.exception("asynctracker could not track the page view of %s", path)
