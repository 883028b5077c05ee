"""The collector's HTML page, rendered by a real browser (headless Chromium).

The page shows network input to a person, so what matters is what a browser makes of
it: one row per event, marked good or bad, with the decoded data readable, and any markup
an event carries shown as text, never run. Asserting on the string the server sends
cannot prove the last point; the DOM Chromium builds (``--dump-dom``) can, and so can the
collector itself: the injected scripts below would call ``POST /reset`` if they ran. The
reset button is pressed the way a person presses it: a mouse click in a Chromium tab
driven over the DevTools protocol (``browser_support``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
from browser_support import CHROMIUM, PageDOM, Row, chromium, open_tab

import asynctracker as at
from asynctracker.collector import Collector, ReceivedEvent
from asynctracker.collector._http import Request, Response

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="headless Chromium is not installed (/usr/bin/chromium missing; "
    "apt-get install -y chromium)",
)

SCRIPT = "<script>fetch('/reset', {method: 'POST'}); document.title = 'pwned'</script>"
IMG = "<img src=x onerror=\"document.body.setAttribute('data-pwned', '1')\">"
CLICK = "iglu:com.acme/click/jsonschema/1-0-0"
USER = "iglu:com.acme/user/jsonschema/1-0-0"
PAYLOAD_DATA = "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4"
TP2 = "/com.snowplowanalytics.snowplow/tp2"


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
                 "aid": IMG, "se_ca": IMG, "se_ac": "x", "se_va": IMG, IMG: "field name"},
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


async def test_page_shows_a_structured_events_label_and_value(
    filled_collector: Collector, tmp_path: Path
) -> None:
    dom = PageDOM(await chromium(f"{filled_collector.url}/", tmp_path, "--dump-dom"))

    struct = dom.rows[-1]  # the oldest: track_struct_event("shop", "add", "sku-1", value=2)
    assert "shop / add" in struct.shown[1]
    data = struct.shown[4]  # the data cell, as shown: not folded into "fields"
    assert "labelsku-1" in data
    assert "value2" in data
    assert "property" not in data  # only the fields the event has
    assert "value" + IMG in dom.rows[1].shown[4]  # a bad event's, as text


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


def watch_resets(collector: Collector, *, hide_origin: bool = False) -> list[tuple[int, str]]:
    """Note (status, Origin, Sec-Fetch-Site) of every ``/reset`` the collector answers.

    ``hide_origin`` serves the page with ``Referrer-Policy: no-referrer``, as it once was
    (a privacy extension does the same): the browser then sends ``Origin: null``.
    """
    serve = collector._handle
    resets: list[tuple[int, str]] = []

    async def handle(request: Request) -> Response:
        response = await serve(request)
        if request.target == "/reset":
            headers = request.headers
            sent = f"{headers.get('origin')} {headers.get('sec-fetch-site')}"
            resets.append((response.status, sent))
        if hide_origin and request.target == "/":
            headers = {**response.headers, "referrer-policy": "no-referrer"}
            response = replace(response, headers=headers)
        return response

    collector._handle = handle  # type: ignore[method-assign]
    return resets


@pytest.mark.parametrize("hide_origin", [False, True], ids=["as served", "origin withheld"])
async def test_pressing_the_reset_button_deletes_every_event(
    filled_collector: Collector, tmp_path: Path, hide_origin: bool
) -> None:
    resets = watch_resets(filled_collector, hide_origin=hide_origin)

    async with open_tab(tmp_path) as tab:
        await tab.go(f"{filled_collector.url}/")
        assert (await tab.text(".summary")).startswith("4 events")
        since = tab.mark()
        await tab.click("form.reset button")
        await tab.wait_for("Page.loadEventFired", since)  # the page it was sent back to
        after = await tab.text(".summary")

    origin = "null" if hide_origin else filled_collector.url
    assert resets == [(303, f"{origin} same-origin")]
    assert filled_collector.events == []
    assert filled_collector.counts == {"total": 0, "good": 0, "bad": 0}
    assert after.startswith("0 events")


def attack_page(collector: Collector, token: str, *, hide_origin: bool) -> bytes:
    """A page on another site that submits the reset form to ``collector`` on load."""
    meta = '<meta name="referrer" content="no-referrer">' if hide_origin else ""
    return (
        f'{meta}<form id="f" method="post" action="{collector.url}/reset">'
        f'<input name="token" value="{token}"></form>'
        "<script>document.getElementById('f').submit()</script>"
    ).encode()


@pytest.mark.parametrize(
    ("host", "real_token", "hide_origin", "sent"),
    [
        ("127.0.0.1", False, False, "same-site"),  # another port: another origin, same site
        ("127.0.0.1", True, True, "same-site"),
        ("attacker.test", False, False, "cross-site"),
        # Even knowing the token, a page that hides its origin is betrayed by the
        # browser's own Sec-Fetch-Site.
        ("attacker.test", True, True, "cross-site"),
    ],
    ids=[
        "same site, guessed token",
        "same site, real token, origin withheld",
        "cross site, guessed token",
        "cross site, real token, origin withheld",
    ],
)
async def test_another_site_cannot_reset_the_collector(
    filled_collector: Collector,
    tmp_path: Path,
    host: str,
    real_token: bool,
    hide_origin: bool,
    sent: str,
) -> None:
    token = filled_collector.token if real_token else "guess"
    attack = attack_page(filled_collector, token, hide_origin=hide_origin)

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

    resets = watch_resets(filled_collector)
    server = await asyncio.start_server(attacker_site, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        await chromium(
            f"http://{host}:{port}/",
            tmp_path,
            "--host-resolver-rules=MAP attacker.test 127.0.0.1",
            "--virtual-time-budget=5000",
            "--dump-dom",
        )

    origin = "null" if hide_origin else f"http://{host}:{port}"
    assert resets == [(403, f"{origin} {sent}")]  # the browser did submit it: refused
    assert len(filled_collector.events) == 4
