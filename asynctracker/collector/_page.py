"""The collector's ``GET /`` page: what arrived, decoded, and what is wrong with it.

Meant for a person running ``python -m asynctracker demo`` or ``asynctracker collector``,
so it favours readability over completeness (only the most recent events are shown).
Every value comes from the network, so everything is passed through ``html.escape``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from html import escape

from .._validate import EVENT_NAMES
from ._store import ReceivedEvent

__all__ = ["render_page"]

#: Rendering 100k rows would make the page useless and slow; the JSON endpoints have all.
MAX_ROWS = 1000

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5rem; }
table { border-collapse: collapse; width: 100%; }
th, td { border: 1px solid #ccc; padding: .3rem .5rem; vertical-align: top; text-align: left; }
tr.good td:first-child { border-left: 4px solid #2a2; }
tr.bad td:first-child { border-left: 4px solid #c22; }
pre { margin: 0; font-size: .8rem; white-space: pre-wrap; }
.errors { color: #c22; }
"""


def _pretty(value: object) -> str:
    return escape(json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False))


def _when(event: ReceivedEvent) -> str:
    created = event.payload.get("dtm")
    if isinstance(created, str) and created.isdigit():
        stamp = int(created) / 1000
    else:
        stamp = event.received_at
    return (
        time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(stamp)) + f".{int(stamp % 1 * 1000):03d}"
    )


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


def render_page(events: Sequence[ReceivedEvent]) -> bytes:
    """Render the HTML page for ``events`` (arrival order, most recent ``MAX_ROWS``)."""
    good = sum(1 for event in events if event.valid)
    bad = len(events) - good
    first = max(0, len(events) - MAX_ROWS)
    shown = "" if first == 0 else f" (showing the last {MAX_ROWS})"
    rows = "\n".join(_row(i + 1, events[i]) for i in range(first, len(events)))
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>asynctracker collector</title><style>{_STYLE}</style></head>
<body>
<h1>asynctracker collector</h1>
<p class="summary">{len(events)} events: {good} good, {bad} bad{shown}.
<a href="/events">JSON</a> &middot; <a href="/events/bad">bad events as JSON</a></p>
<table id="events">
<thead><tr><th>#</th><th>event</th><th>time</th><th>app id</th><th>data</th>
<th>contexts</th><th>errors</th></tr></thead>
<tbody>
{rows}
</tbody></table>
</body></html>
"""
    return page.encode("utf-8")
