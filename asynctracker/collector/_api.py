"""The collector's own routes: the page, ``/events``, ``/health``, reset and the Micro API.

Listings are paged queries on the event log's SQLite table, run off the event loop, so a
collector holding 300k events answers with one page (``limit`` at most
:data:`MAX_LIMIT`) without blocking its loop. Every JSON answer is ``ensure_ascii``, so no
stored value can make it invalid UTF-8; every state-changing route passes the CSRF check.

The server hands these routes a :class:`Site`, what they read and may change, so that
this module needs nothing from the server: data flows one way, server -> routes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode

from ._guard import csrf_problem
from ._http import NOSNIFF, Request, Response, json_response
from ._iglu import IgluRegistry, validation_mode
from ._micro import CODES, bad_json, good_json, micro_filters
from ._page import PAGE_JS, PAGE_SIZE, PageView, render_page
from ._store import EventLog
from ._table import Filters

__all__ = ["MAX_LIMIT", "Site", "route"]

#: The largest page ``/events`` serves.
MAX_LIMIT = 1000
_PAGE_HEADERS = {
    **NOSNIFF,
    "content-type": "text/html; charset=utf-8",
    "content-security-policy": "default-src 'none'; script-src 'self'; connect-src 'self'; "
    "style-src 'unsafe-inline'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'",
    "x-frame-options": "DENY",
    # Not no-referrer: that makes a browser send "Origin: null" with the page's own reset
    # form (see _guard); same-origin names the page to itself and to nobody else.
    "referrer-policy": "same-origin",
}


@dataclass(frozen=True, slots=True)
class Site:
    """What the collector's own routes read and may change (the server makes one)."""

    log: EventLog
    #: The page embeds it; a browser's state-changing request must send it back.
    token: str
    iglu: IgluRegistry | None
    #: Forget every event and recorded request.
    reset: Callable[[], None]


def _error(status: int, message: str) -> Response:
    return json_response(status, {"errors": [message]})


#: path -> the methods it answers (HEAD is answered wherever GET is).
ROUTES: dict[str, tuple[str, ...]] = {
    "/": ("GET",),
    "/page.js": ("GET",),
    "/events": ("GET",),
    "/events/good": ("GET",),
    "/events/bad": ("GET",),
    "/reset": ("POST",),
    "/health": ("GET",),
    "/micro/all": ("GET",),
    "/micro/good": ("GET", "POST"),
    "/micro/bad": ("GET", "POST"),
    "/micro/reset": ("GET", "POST"),
}


def _int(value: str | None, default: int, *, low: int, high: int) -> int | None:
    if value is None or value == "":
        return default
    if not (value.isascii() and value.isdigit()) or len(value) > 12:
        return None
    return min(max(int(value), low), high)


async def route(site: Site, request: Request, path: str, query: str) -> Response | None:
    """Answer a collector route; ``None`` when ``path`` is not one (a tracker route, or 404)."""
    if path.startswith("/micro/iglu/"):
        return _iglu(site, path)
    methods = ROUTES.get(path)
    if methods is None:
        return None
    method = "GET" if request.method == "HEAD" else request.method
    if method not in methods:
        return _error(405, f"use {' or '.join(methods)} {path}")
    params = dict(parse_qsl(query))
    log = site.log
    if path == "/health":
        return json_response(200, {"ok": True, "events": log.total, "bad": log.bad})
    if path == "/micro/all":
        return json_response(200, {"total": log.total, "good": log.good, "bad": log.bad})
    if path in ("/reset", "/micro/reset"):
        problem = csrf_problem(request.headers, request.body, site.token)
        if problem is not None:
            return _error(403, problem)
        site.reset()
        if path == "/micro/reset":
            return json_response(200, {"total": 0, "good": 0, "bad": 0})
        if request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            return Response(303, b"", {"location": "/"})
        return json_response(200, {"ok": True})
    if path == "/page.js":
        headers = {**NOSNIFF, "content-type": "text/javascript; charset=utf-8"}
        return Response(200, PAGE_JS, headers)
    if path in ("/micro/good", "/micro/bad"):
        parsed = micro_filters(method, query, request.body, valid=path == "/micro/good")
        if isinstance(parsed, str):
            return _error(400, parsed)
        filters, limit = parsed
        page = await log.page(filters, limit=limit)
        shape = good_json if path == "/micro/good" else bad_json
        return json_response(200, [shape(event) for _, event in page.items])
    if path == "/":
        return await _page(site, params)
    return await _events(site, path, params)


async def _events(site: Site, path: str, params: Mapping[str, str]) -> Response:
    """``/events[/good|/bad]``: a page of events, oldest first, with paging headers."""
    limit = _int(params.get("limit"), MAX_LIMIT, low=1, high=MAX_LIMIT)
    offset = _int(params.get("offset"), 0, low=0, high=10**12)
    if limit is None or offset is None:
        return _error(400, "'limit' and 'offset' must be whole numbers")
    valid = {"/events": None, "/events/good": True, "/events/bad": False}[path]
    page = await site.log.page(Filters(valid=valid), limit=limit, offset=offset, newest_first=False)
    headers = {"x-total-count": str(page.total)}
    if offset + len(page.items) < page.total:
        after = urlencode({"limit": limit, "offset": offset + limit})
        headers["link"] = f'<{path}?{after}>; rel="next"'
    return json_response(200, [event.to_json() for _, event in page.items], headers)


async def _page(site: Site, params: Mapping[str, str]) -> Response:
    log = site.log
    chosen = {key: params.get(key, "")[:500] for key in ("type", "app", "schema", "status", "q")}
    page = _int(params.get("page"), 0, low=0, high=10**9)
    if page is None:
        return _error(400, "'page' must be a whole number")
    kind = chosen["type"]
    filters = Filters(
        valid={"good": True, "bad": False}.get(chosen["status"]),
        event_type=CODES.get(kind, kind) or None,
        app_id=chosen["app"] or None,
        schema=chosen["schema"] or None,
        text=chosen["q"] or None,
    )
    found = await log.page(filters, limit=PAGE_SIZE, offset=page * PAGE_SIZE)
    view = PageView(
        rows=found.items,
        matching=found.total,
        total=log.total,
        good=log.good,
        bad=log.bad,
        by_type=dict(log.by_type),
        filters=chosen,
        page=page,
        token=site.token,
        mode=validation_mode(site.iglu),
    )
    return Response(200, render_page(view), _PAGE_HEADERS)


def _iglu(site: Site, path: str) -> Response:
    """``/micro/iglu/{vendor}/{name}/jsonschema/{version}``: a schema of the registry."""
    parts = path.removeprefix("/micro/iglu/").split("/")
    registry = site.iglu
    if len(parts) != 4 or parts[2] != "jsonschema":
        return _error(404, "use /micro/iglu/{vendor}/{name}/jsonschema/{version}")
    if registry is None:
        return _error(404, "no Iglu registry: start the collector with --iglu DIR")
    schema = registry.schema(parts[0], parts[1], parts[3])
    if schema is None:
        return _error(404, f"iglu:{'/'.join(parts)} is not in the registry")
    return Response(200, schema, {**NOSNIFF, "content-type": "application/json"})
