"""The collector's HTML page, rendered by a real browser (headless Chromium).

The page shows network input to a person, so what matters is what a browser makes of
it: one row per event, marked good or bad, with the decoded data readable, and any markup
an event carries shown as text, never run. Asserting on the string the server sends
cannot prove the last point; the DOM Chromium builds (``--dump-dom``) can, and so can the
collector itself: the injected scripts below would call ``POST /reset`` if they ran.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import httpx
import pytest

import asynctracker as at
from asynctracker.collector import Collector, ReceivedEvent
from asynctracker.collector._http import Request, Response

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="headless Chromium is not installed (/usr/bin/chromium missing; "
    "apt-get install -y chromium)",
)

TIMEOUT = 90.0
SCRIPT = "<script>fetch('/reset', {method: 'POST'}); document.title = 'pwned'</script>"
IMG = "<img src=x onerror=\"document.body.setAttribute('data-pwned', '1')\">"
CLICK = "iglu:com.acme/click/jsonschema/1-0-0"
USER = "iglu:com.acme/user/jsonschema/1-0-0"
PAYLOAD_DATA = "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4"
TP2 = "/com.snowplowanalytics.snowplow/tp2"


@dataclass
class Row:
    classes: list[str]
    cells: list[str] = field(default_factory=list)


class PageDOM(HTMLParser):
    """The parts of the dumped DOM the tests look at: event rows, elements, body attrs."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.rows: list[Row] = []
        self.tags: set[str] = set()
        self.scripts: list[str] = []
        self.body_attrs: dict[str, str | None] = {}
        self.title = ""
        self.summary = ""
        self._row: Row | None = None
        self._cell: list[str] | None = None
        self._in: str | None = None
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        attributes = dict(attrs)
        if tag == "script":
            self.scripts.append(attributes.get("src") or "(inline)")
        if tag == "body":
            self.body_attrs = attributes
        elif tag == "title" or (tag == "p" and attributes.get("class") == "summary"):
            self._in = tag
        elif tag == "tr" and "event" in (attributes.get("class") or "").split():
            self._row = Row((attributes.get("class") or "").split())
        elif tag == "td" and self._row is not None:
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag == self._in:
            self._in = None
        elif tag == "td" and self._row is not None and self._cell is not None:
            self._row.cells.append("".join(self._cell))
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.rows.append(self._row)
            self._row = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)
        if self._in == "title":
            self.title += data
        elif self._in == "p":
            self.summary += data


async def chromium(url: str, tmp_path: Path, *extra: str) -> str:
    """Run headless Chromium on ``url`` without blocking the loop the collector runs on."""
    proc = await asyncio.create_subprocess_exec(
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--no-proxy-server",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        *extra,
        url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), TIMEOUT)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, err.decode(errors="replace")[-2000:]
    return out.decode("utf-8")


@pytest.fixture
async def filled_collector() -> AsyncIterator[Collector]:
    """A collector holding, in order: 2 good events from the tracker, 2 bad hand-made ones.

    Both kinds carry markup: the good one in its decoded data, the bad ones in raw
    fields, in a field name, and in what the validator quotes back in its errors.
    """
    async with Collector() as collector:
        emitter = at.Emitter(collector.url, storage=at.MemoryStorage())
        async with at.Tracker(emitter, app_id="shop") as tracker:
            await tracker.track_struct_event("shop", "add", "sku-1", value=2)
            await tracker.track_self_describing_event(
                at.SelfDescribingJson(CLICK, {"note": SCRIPT, "n": 42}),
                contexts=[at.SelfDescribingJson(USER, {"tier": "gold"})],
            )
            assert await tracker.flush(10) == 0
        bad_post = {
            "schema": PAYLOAD_DATA,
            "data": [
                {"e": "se", "p": "srv", "tv": "hand", "eid": SCRIPT, "dtm": "1700000000000",
                 "aid": IMG, "se_ca": IMG, "se_ac": "x", IMG: "field name"},
            ],
        }  # fmt: skip
        async with httpx.AsyncClient() as client:
            answer = await client.post(
                f"{collector.url}/com.snowplowanalytics.snowplow/tp2", content=json.dumps(bad_post)
            )
            assert answer.status_code == 200
            answer = await client.get(
                f"{collector.url}/i", params={"e": "zz", "p": "srv", "tv": "hand"}
            )
            assert answer.status_code == 200
        assert [event.valid for event in collector.events] == [True, True, False, False]
        yield collector


async def test_page_shows_one_row_per_event_marked_good_or_bad(
    filled_collector: Collector, tmp_path: Path
) -> None:
    dom = PageDOM(await chromium(f"{filled_collector.url}/", tmp_path, "--dump-dom"))

    assert dom.title == "asynctracker collector"
    assert "4 events: 2 good, 2 bad" in dom.summary
    assert len(dom.rows) == 4
    assert [row.cells[0] for row in dom.rows] == ["4", "3", "2", "1"]  # newest first
    arrival = dom.rows[::-1]
    assert ["good" in row.classes for row in arrival] == [True, True, False, False]
    assert ["bad" in row.classes for row in arrival] == [False, False, True, True]
    struct, unstruct, bad_post, bad_get = (" | ".join(row.cells) for row in arrival)
    assert "shop / add" in struct
    assert arrival[0].cells[3] == "shop"  # the app id column
    assert "self-describing" in unstruct
    assert "'eid' is not a UUID" in bad_post
    assert "'e' is not a known event type: 'zz'" in bad_get
    assert "GET" in bad_get


async def test_page_shows_self_describing_data_and_contexts_decoded(
    filled_collector: Collector, tmp_path: Path
) -> None:
    dom = PageDOM(await chromium(f"{filled_collector.url}/", tmp_path, "--dump-dom"))

    cells = dom.rows[2].cells  # the second event, newest first
    assert CLICK in cells[1]
    data = cells[4]
    assert '"n": 42' in data
    assert '"note": ' + json.dumps(SCRIPT) in data  # the markup, readable as text
    assert "ue_px" not in data  # decoded, not the base64 blob
    assert USER in cells[5]
    assert '"tier": "gold"' in cells[5]
    assert cells[6].strip() == ""  # no errors for a good event


async def test_markup_in_events_is_shown_as_text_and_never_runs(
    filled_collector: Collector, tmp_path: Path
) -> None:
    html = await chromium(f"{filled_collector.url}/", tmp_path, "--dump-dom")
    dom = PageDOM(html)

    assert dom.scripts == ["/page.js"]  # the page's own, from a file the CSP allows
    assert "img" not in dom.tags
    assert "data-pwned" not in dom.body_attrs
    assert dom.title != "pwned"
    bad_row = " ".join(dom.rows[1].cells)
    assert IMG in bad_row  # shown, as text, where it arrived
    assert SCRIPT in bad_row
    # The scripts would have POSTed /reset; the collector still has every event.
    assert len(filled_collector.events) == 4


async def test_page_renders_to_a_screenshot(filled_collector: Collector, tmp_path: Path) -> None:
    shot = tmp_path / "page.png"

    await chromium(
        f"{filled_collector.url}/", tmp_path, f"--screenshot={shot}", "--window-size=1280,900"
    )

    image = shot.read_bytes()
    assert image.startswith(b"\x89PNG\r\n\x1a\n")
    assert len(image) > 10_000  # a rendered table, not a blank page
    assert len(filled_collector.events) == 4


# -- newest first, filters, pages, chart, live updates, reset --------------------------------


async def test_filters_show_only_matching_events(
    filled_collector: Collector, tmp_path: Path
) -> None:
    url = filled_collector.url

    async def rows(query: str) -> list[Row]:
        return PageDOM(await chromium(f"{url}/?{query}", tmp_path, "--dump-dom")).rows

    assert [row.cells[0] for row in await rows("type=ue")] == ["2"]
    assert [row.cells[0] for row in await rows("status=bad")] == ["4", "3"]
    assert [row.cells[0] for row in await rows("app=shop")] == ["2", "1"]
    assert [row.cells[0] for row in await rows(f"schema={CLICK}")] == ["2"]
    assert [row.cells[0] for row in await rows("q=sku-1")] == ["1"]


async def test_pages_reach_past_the_newest_thousand_and_counts_are_charted(
    tmp_path: Path,
) -> None:
    async with Collector() as collector, httpx.AsyncClient(base_url=collector.url) as client:
        events = [
            {"e": "pv" if i % 5 else "se", "p": "srv", "tv": "t", "eid": str(uuid.uuid4()),
             "dtm": "1700000000000", "url": f"https://x.example/{i}", "se_ca": "c", "se_ac": "a"}
            for i in range(1250)
        ]  # fmt: skip
        for start in range(0, 1250, 250):
            body = {"schema": PAYLOAD_DATA, "data": events[start : start + 250]}
            assert (await client.post(TP2, json=body)).status_code == 200
        last = PageDOM(await chromium(f"{collector.url}/?page=12", tmp_path, "--dump-dom"))
        first = await chromium(f"{collector.url}/", tmp_path, "--dump-dom")
    assert [row.cells[0] for row in last.rows] == [str(n) for n in range(50, 0, -1)]
    assert "https://x.example/0" in " ".join(last.rows[-1].cells)  # the very first event
    assert "1,250 events" in last.summary
    chart = first[first.index("<svg") : first.index("</svg>")]
    assert "page view" in chart
    assert "1,000" in chart
    assert "structured" in chart
    assert "250" in chart


async def test_the_page_updates_itself_when_events_arrive(
    filled_collector: Collector, tmp_path: Path
) -> None:
    serve = filled_collector._handle
    served_pages = 0

    async def handle_then_send_one_more(request: Request) -> Response:
        nonlocal served_pages
        response = await serve(request)
        if request.target == "/" and served_pages == 0:
            served_pages += 1  # the browser has the page; now a new event arrives
            more = {"e": "pv", "p": "srv", "tv": "t", "url": "https://late.example/"}
            filled_collector._log.add([ReceivedEvent.check(more, "GET")])
        return response

    filled_collector._handle = handle_then_send_one_more  # type: ignore[method-assign]
    html = await chromium(
        f"{filled_collector.url}/", tmp_path, "--virtual-time-budget=10000", "--dump-dom"
    )
    dom = PageDOM(html)
    assert served_pages == 1
    assert len(dom.rows) == 5  # the fifth arrived after the page was served
    assert "https://late.example/" in " ".join(dom.rows[0].cells)
    assert "5 events" in dom.summary


async def test_the_reset_button_works_from_the_page_and_not_from_another_site(
    filled_collector: Collector, tmp_path: Path
) -> None:
    html = await chromium(f"{filled_collector.url}/", tmp_path, "--dump-dom")
    form = html[html.index('<form class="reset"') :]
    token = form.split('name="token" value="')[1].split('"')[0]
    assert 'action="/reset"' in form
    assert 'method="post"' in form

    # Another site (another origin: another port) auto-submits the same form.
    attack = (
        f'<form id="f" method="post" action="{filled_collector.url}/reset">'
        f'<input name="token" value="guess"></form>'
        "<script>document.getElementById('f').submit()</script>"
    ).encode()

    async def attacker_site(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:  # Chromium also opens spare connections that it closes unused
            await reader.readuntil(b"\r\n\r\n")
            head = f"HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: {len(attack)}"
            writer.write(head.encode() + b"\r\nconnection: close\r\n\r\n" + attack)
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    serve = filled_collector._handle
    resets: list[int] = []

    async def handle_and_note_resets(request: Request) -> Response:
        response = await serve(request)
        if request.target == "/reset":
            resets.append(response.status)
        return response

    filled_collector._handle = handle_and_note_resets  # type: ignore[method-assign]
    server = await asyncio.start_server(attacker_site, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        await chromium(
            f"http://127.0.0.1:{port}/", tmp_path, "--virtual-time-budget=5000", "--dump-dom"
        )
    assert resets == [403]  # the browser did submit it, and it was refused
    assert len(filled_collector.events) == 4

    # What the browser sends when the button on the collector's own page is pressed.
    async with httpx.AsyncClient(base_url=filled_collector.url) as client:
        pressed = await client.post(
            "/reset",
            data={"token": token},
            headers={"origin": filled_collector.url, "sec-fetch-site": "same-origin"},
        )
    assert pressed.status_code == 303
    assert filled_collector.events == []
