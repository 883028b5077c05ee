"""Which requests the middlewares track as page views: path, method and status filters.

See :class:`PageViewFilter` for the defaults and why.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from typing import TypeAlias

from ..exceptions import ConfigurationError

__all__ = [
    "DEFAULT_EXCLUDED_PATHS",
    "DEFAULT_METHODS",
    "DEFAULT_STATUSES",
    "PageViewFilter",
    "PathRule",
]

#: One path filter entry: a prefix (``"/static/"``) or a compiled regular expression.
PathRule: TypeAlias = "str | re.Pattern[str]"

#: Methods tracked as page views by default: what a browser sends to show a page.
DEFAULT_METHODS: frozenset[str] = frozenset({"GET"})
#: Statuses tracked as page views by default: pages that were served (2xx) or redirected
#: to (3xx); errors are not pages anyone saw.
DEFAULT_STATUSES: range = range(200, 400)
#: Path prefixes never tracked as page views by default: probes, metrics, API docs and
#: static assets (see the module docstring for why).
DEFAULT_EXCLUDED_PATHS: tuple[str, ...] = (
    "/health",
    "/livez",
    "/readyz",
    "/metrics",
    "/docs",
    "/redoc",
    "/openapi.json",
    "/favicon.ico",
    "/robots.txt",
    "/static/",
)


def _path_rules(name: str, rules: Iterable[PathRule]) -> tuple[PathRule, ...]:
    if isinstance(rules, (str, re.Pattern)):
        raise ConfigurationError(f"{name} must be a list of path prefixes or re.Pattern objects")
    checked: list[PathRule] = []
    for rule in rules:
        if not isinstance(rule, re.Pattern) and not (
            isinstance(rule, str) and rule.startswith("/")
        ):
            raise ConfigurationError(
                f"{name} entry {rule!r} must be a path prefix starting with '/' "
                "or a compiled re.Pattern"
            )
        checked.append(rule)
    return tuple(checked)


def _methods(methods: Iterable[str]) -> frozenset[str]:
    if isinstance(methods, str):
        raise ConfigurationError("methods must be a list of HTTP methods, such as ['GET']")
    checked: set[str] = set()
    for method in methods:
        if not isinstance(method, str) or not method.isalpha():
            raise ConfigurationError(f"methods entry {method!r} is not an HTTP method")
        checked.add(method.upper())
    return frozenset(checked)


def _statuses(statuses: Collection[int]) -> Collection[int]:
    if isinstance(statuses, range):
        return statuses
    if isinstance(statuses, (str, bytes)):
        raise ConfigurationError("statuses must be a range or a collection of HTTP status codes")
    checked: set[int] = set()
    for status in statuses:
        if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
            raise ConfigurationError(f"statuses entry {status!r} is not an HTTP status code")
        checked.add(status)
    return frozenset(checked)


def _matches(path: str, rules: tuple[PathRule, ...]) -> bool:
    for rule in rules:
        if isinstance(rule, str):
            if path.startswith(rule):
                return True
        elif rule.search(path):
            return True
    return False


class PageViewFilter:
    """The page-view filters of one middleware (its ``methods``, ``statuses``,
    ``include_paths`` and ``exclude_paths`` options).

    A page view means "a person saw a page". Most requests a web service answers are not
    that, so by default the middlewares track a request only when all of these hold:

    - its method is ``GET`` (:data:`DEFAULT_METHODS`): browsers fetch pages with GET; a
      POST/PUT/DELETE is an action, better tracked as an event of its own, and HEAD is sent
      by uptime monitors and link checkers, never by a person viewing a page;
    - its status is 2xx or 3xx (:data:`DEFAULT_STATUSES`): a 404 or a 500 is not a page
      anyone saw, and bots probing for ``/wp-admin`` would otherwise fill the warehouse;
    - its path matches no entry of :data:`DEFAULT_EXCLUDED_PATHS`: health checks and
      metrics scrapes (machines, every few seconds), API documentation (developers), and
      static files and favicons (fetched by the page, not a page themselves).

    Every filter is an option of both middlewares: ``methods``, ``statuses``,
    ``include_paths`` and ``exclude_paths``. A path entry is either a string, matched as a
    prefix (``"/static/"`` covers everything below it, ``"/health"`` covers ``/health``,
    ``/healthz`` and ``/health/live``), or a compiled :class:`re.Pattern`, matched with
    ``pattern.search(path)`` (anchor it with ``^``/``$`` as you need). ``include_paths``
    (default: every path) is checked first, then ``exclude_paths`` removes from it. The
    path is the request's path without its query string.

    The filter is built once when the middleware is made, so a bad option raises
    ConfigurationError (naming the option) at startup, not on the first request.
    """

    __slots__ = ("exclude_paths", "include_paths", "methods", "statuses")

    def __init__(
        self,
        *,
        methods: Iterable[str] = DEFAULT_METHODS,
        statuses: Collection[int] = DEFAULT_STATUSES,
        include_paths: Iterable[PathRule] | None = None,
        exclude_paths: Iterable[PathRule] = DEFAULT_EXCLUDED_PATHS,
    ) -> None:
        self.methods = _methods(methods)
        self.statuses = _statuses(statuses)
        self.include_paths = (
            None if include_paths is None else _path_rules("include_paths", include_paths)
        )
        self.exclude_paths = _path_rules("exclude_paths", exclude_paths)

    def wants_request(self, method: str, path: str) -> bool:
        """Whether a request with this method and path may become a page view.

        Checked before the handler runs; the status is checked after, by
        :meth:`wants_status`.
        """
        if method.upper() not in self.methods:
            return False
        if self.include_paths is not None and not _matches(path, self.include_paths):
            return False
        return not _matches(path, self.exclude_paths)

    def wants_status(self, status: int) -> bool:
        """Whether a response with this status is tracked as a page view."""
        return status in self.statuses
