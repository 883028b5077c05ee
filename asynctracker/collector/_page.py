"""The collector's ``GET /`` page: what arrived, decoded, and what is wrong with it.

Meant for a person running ``asynctracker collector``: newest events first, filters (a
plain GET form), pages of :data:`PAGE_SIZE` events as far back as the database goes,
counts per event type with a bar chart, and a reset button. Everything is rendered here,
on the server, and every value comes from the network, so every value goes through
``html.escape``; the only script is ``/page.js`` (the Content-Security-Policy allows no
other), which refreshes the page's contents when new events arrive.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from html import escape
from urllib.parse import urlencode

from .._checks import lossy_utf8
from .._validate import EVENT_NAMES
from ._store import ReceivedEvent

__all__ = ["render_page"]

#: Events per page; older ones are on the next pages.
PAGE_SIZE = 100

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5rem; }
table { border-collapse: collapse; width: 100%; }
th, td { border: 1px solid #ccc; padding: .3rem .5rem; vertical-align: top; text-align: left; }
tr.good td:first-child { border-left: 4px solid #2a2; }
tr.bad td:first-child { border-left: 4px solid #c22; }
pre { margin: 0; font-size: .8rem; white-space: pre-wrap; }
.errors { color: #c22; }
form.filters { margin: .5rem 0 1rem; display: flex; gap: .5rem; flex-wrap: wrap; }
.chart { margin: .5rem 0; }
.chart text { font-size: 12px; }
nav.pages a { margin-right: 1rem; }
.mode { color: #555; }
dl.struct { display: grid; grid-template-columns: max-content auto; gap: 0 .5rem; }
dl.struct dt { color: #555; }
dl.struct dd { margin: 0; }
dl.struct { margin: 0 0 .3rem; }
"""


def _pretty(value: object) -> str:
    text = json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=repr)
    return escape(lossy_utf8(text))


def _when(event: ReceivedEvent) -> str:
    """The device time when it is a plausible epoch-ms string, else the arrival time."""
    created = event.payload.get("dtm")
    stamp = event.received_at
    if isinstance(created, str) and created.isascii() and created.isdigit() and len(created) <= 15:
        stamp = int(created) / 1000
    try:
        text = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(stamp))
    except (OverflowError, OSError, ValueError):
        return "?"
    return text + f".{int(stamp % 1 * 1000):03d}"


#: A structured event's optional fields, shown beside its category and action.
_STRUCT_FIELDS = (("se_la", "label"), ("se_pr", "property"), ("se_va", "value"))


def _struct_fields(payload: Mapping[str, object]) -> str:
    """A structured event's label, property and value (those it has), shown in the open."""
    items = "".join(
        f"<dt>{name}</dt><dd>{escape(lossy_utf8(str(payload[field])))}</dd>"
        for field, name in _STRUCT_FIELDS
        if field in payload
    )
    return f'<dl class="struct">{items}</dl>' if items else ""


def _row(index: int, event: ReceivedEvent) -> str:
    decoded = event.decoded
    kind = str(event.payload.get("e", "?"))
    label = EVENT_NAMES.get(kind, kind)
    details: list[str] = []
    unstruct = decoded.get("unstruct_event")
    if isinstance(unstruct, dict):
        label = f"{label}: {unstruct.get('schema', '?')}"
        details.append(f"<pre>{_pretty(unstruct.get('data'))}</pre>")
    if kind == "se":
        category, action = event.payload.get("se_ca", ""), event.payload.get("se_ac", "")
        label = f"{label}: {category} / {action}"
        details.append(_struct_fields(event.payload))
    elif kind == "pv":
        label = f"{label}: {event.payload.get('url', '')}"
    contexts = decoded.get("contexts")
    plain = {k: v for k, v in decoded.items() if k not in ("unstruct_event", "contexts", "e")}
    errors = "".join(f"<li>{escape(error)}</li>" for error in event.errors)
    status = "good" if event.valid else "bad"
    return (
        f'<tr class="event {status}">'
        f"<td>{index}</td>"
        f"<td>{escape(label)}<br><small>{escape(event.method)}</small></td>"
        f"<td>{escape(_when(event))}</td>"
        f"<td>{escape(str(event.payload.get('aid', '')))}</td>"
        f"<td>{''.join(details)}<details><summary>fields</summary>"
        f"<pre>{_pretty(plain)}</pre></details></td>"
        f"<td>{'<pre>' + _pretty(contexts) + '</pre>' if contexts is not None else ''}</td>"
        f'<td class="errors"><ul>{errors}</ul></td>'
        "</tr>"
    )


@dataclass(frozen=True, slots=True)
class PageView:
    """What one rendering of the page shows (the server fills it from the event log)."""

    rows: list[tuple[int, ReceivedEvent]]
    #: How many events match the filters, over all pages.
    matching: int
    total: int
    good: int
    bad: int
    by_type: Mapping[str, int]
    #: The filter form's values, as received (``type``, ``app``, ``schema``, ``status``, ``q``).
    filters: Mapping[str, str]
    page: int
    token: str
    #: One line saying how events are validated.
    mode: str


def _chart(by_type: Mapping[str, int]) -> str:
    """Counts per event type as an inline SVG bar chart (nothing fetched from anywhere)."""
    if not by_type:
        return ""
    items = sorted(by_type.items(), key=lambda item: (-item[1], item[0]))[:12]
    most = max(count for _, count in items) or 1
    bars = []
    for index, (kind, count) in enumerate(items):
        y = index * 22
        width = max(1, round(300 * count / most))
        label = escape(EVENT_NAMES.get(kind, kind or "?"))
        bars.append(
            f'<text x="0" y="{y + 15}">{label}</text>'
            f'<rect x="130" y="{y + 3}" width="{width}" height="16" fill="#4a7fd1"></rect>'
            f'<text x="{136 + width}" y="{y + 15}">{count:,}</text>'
        )
    height = len(items) * 22
    return (
        f'<svg class="chart" role="img" aria-label="events per type" width="520" '
        f'height="{height}" viewBox="0 0 520 {height}">{"".join(bars)}</svg>'
    )


def _select(name: str, options: list[tuple[str, str]], chosen: str) -> str:
    rendered = "".join(
        f'<option value="{escape(value)}"{" selected" if value == chosen else ""}>'
        f"{escape(label)}</option>"
        for value, label in options
    )
    return f'<select name="{name}">{rendered}</select>'


def _form(filters: Mapping[str, str]) -> str:
    types = [("", "any type"), *((code, name) for code, name in EVENT_NAMES.items())]
    statuses = [("", "good and bad"), ("good", "good only"), ("bad", "bad only")]
    return (
        '<form class="filters" method="get" action="/">'
        f"{_select('type', types, filters.get('type', ''))}"
        f"{_select('status', statuses, filters.get('status', ''))}"
        f'<input name="app" placeholder="app id" value="{escape(filters.get("app", ""))}">'
        f'<input name="schema" placeholder="iglu:vendor/name/jsonschema/1-0-0" size="40" '
        f'value="{escape(filters.get("schema", ""))}">'
        f'<input name="q" placeholder="text" value="{escape(filters.get("q", ""))}">'
        '<button type="submit">filter</button> <a href="/">clear</a></form>'
    )


def _pages(view: PageView) -> str:
    last = max(0, (view.matching - 1) // PAGE_SIZE)
    query = {key: value for key, value in view.filters.items() if value}
    links = []
    if view.page > 0:
        newer = escape(urlencode({**query, "page": view.page - 1}))
        links.append(f'<a rel="prev" href="/?{newer}">newer</a>')
    links.append(f"<span>page {view.page + 1} of {last + 1}</span>")
    if view.page < last:
        older = escape(urlencode({**query, "page": view.page + 1}))
        links.append(f'<a rel="next" href="/?{older}">older</a>')
    return f'<nav class="pages">{"".join(links)}</nav>'


def render_page(view: PageView) -> bytes:
    """The whole HTML page for ``view``."""
    rows = "\n".join(_row(seq, event) for seq, event in view.rows)
    first = view.page * PAGE_SIZE
    shown = (
        f"showing {first + 1:,}-{first + len(view.rows):,} of {view.matching:,} matching, "
        "newest first"
        if view.rows
        else f"{view.matching:,} matching"
    )
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="collector-token" content="{escape(view.token)}">
<title>asynctracker collector</title><style>{_STYLE}</style>
<script src="/page.js" defer></script></head>
<body data-total="{view.total}">
<h1>asynctracker collector</h1>
<main id="live">
<p class="summary">{view.total:,} events: {view.good:,} good, {view.bad:,} bad ({shown}).
<a href="/events">JSON</a> &middot; <a href="/micro/all">Micro API</a></p>
<p class="mode">{escape(view.mode)}</p>
{_chart(view.by_type)}
{_form(view.filters)}
{_pages(view)}
<table id="events">
<thead><tr><th>#</th><th>event</th><th>time</th><th>app id</th><th>data</th>
<th>contexts</th><th>errors</th></tr></thead>
<tbody>
{rows}
</tbody></table>
{_pages(view)}
</main>
<form class="reset" method="post" action="/reset">
<input type="hidden" name="token" value="{escape(view.token)}">
<button type="submit">reset: delete every event</button></form>
</body></html>
"""
    return page.encode("utf-8", "replace")


#: Refreshes ``<main>`` when the count changes (only on the first page, where new events
#: appear), by fetching this same URL: the server renders and escapes, the script only
#: swaps parsed nodes in. Served as a file so the CSP can forbid every inline script.
PAGE_JS = b"""'use strict';
(function () {
  function refresh() {
    if (new URLSearchParams(location.search).get('page') > 0) return;
    fetch('/health', {cache: 'no-store'}).then(function (r) { return r.json(); })
      .then(function (health) {
        if (String(health.events) === document.body.dataset.total) return;
        return fetch(location.href, {cache: 'no-store'}).then(function (r) { return r.text(); })
          .then(function (html) {
            var fresh = new DOMParser().parseFromString(html, 'text/html');
            document.getElementById('live').replaceWith(
              document.importNode(fresh.getElementById('live'), true));
            document.body.dataset.total = fresh.body.dataset.total;
          });
      }).catch(function () {});
  }
  setInterval(refresh, 1000);
})();
"""
