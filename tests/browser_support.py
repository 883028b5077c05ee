"""Headless Chromium for the page tests: its DOM as text, or a tab driven like a person.

:func:`chromium` runs Chromium once on a URL (``--dump-dom``: the DOM it built, scripts
run, CSS applied); :class:`PageDOM` parses the parts the tests look at. :func:`open_tab`
starts Chromium with its DevTools protocol on a websocket of 127.0.0.1
(``--remote-debugging-port=0``) and gives a :class:`Tab` that loads pages, clicks with
the mouse where an element is drawn, and reads what is shown; the websocket client is
aiohttp's, already among the test requirements.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import aiohttp

CHROMIUM = Path("/usr/bin/chromium")
TIMEOUT = 90.0
FLAGS = (
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
)


@dataclass
class Row:
    classes: list[str]
    cells: list[str] = field(default_factory=list)
    #: Each cell's text outside closed ``<details>`` (a summary excepted): what is shown.
    shown: list[str] = field(default_factory=list)


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
        self._shown: list[str] | None = None
        self._hidden = 0  # depth inside closed <details>, outside their <summary>
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
            self._cell, self._shown = [], []
        elif tag == "details" and "open" not in attributes:
            self._hidden += 1
        elif tag == "summary" and self._hidden:
            self._hidden -= 1

    def handle_endtag(self, tag: str) -> None:
        if tag == self._in:
            self._in = None
        elif tag == "td" and self._row is not None and self._cell is not None:
            self._row.cells.append("".join(self._cell))
            self._row.shown.append("".join(self._shown or []))
            self._cell = self._shown = None
        elif tag == "tr" and self._row is not None:
            self.rows.append(self._row)
            self._row = None
        elif tag == "summary":
            self._hidden += 1
        elif tag == "details" and self._hidden:
            self._hidden -= 1

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)
            if not self._hidden and self._shown is not None:
                self._shown.append(data)
        if self._in == "title":
            self.title += data
        elif self._in == "p":
            self.summary += data


async def chromium(url: str, tmp_path: Path, *extra: str) -> str:
    """Run headless Chromium once on ``url`` with ``extra`` flags (``--dump-dom``...) and
    return what it printed, without blocking the loop the collector runs on."""
    proc = await asyncio.create_subprocess_exec(
        str(CHROMIUM),
        *FLAGS,
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


class Tab:
    """One Chromium tab, driven over the DevTools protocol (one flattened session)."""

    def __init__(self, socket: aiohttp.ClientWebSocketResponse[bool]) -> None:
        self._socket = socket
        self._ids = itertools.count(1)
        self._replies: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._events: list[dict[str, Any]] = []
        self._arrived = asyncio.Condition()
        self._session = ""
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for message in self._socket:
            if message.type is not aiohttp.WSMsgType.TEXT:
                break
            data = json.loads(message.data)
            if "id" in data:
                future = self._replies.pop(data["id"])
                if "error" in data:
                    future.set_exception(RuntimeError(f"DevTools: {data['error']}"))
                else:
                    future.set_result(data.get("result", {}))
            else:
                async with self._arrived:
                    self._events.append(data)
                    self._arrived.notify_all()

    async def attach(self) -> None:
        """Take the browser's first tab; from now on every call is made in it."""
        targets = await self.send("Target.getTargets")
        page = next(t for t in targets["targetInfos"] if t["type"] == "page")
        attached = await self.send("Target.attachToTarget", targetId=page["targetId"], flatten=True)
        self._session = attached["sessionId"]
        for domain in ("Page", "DOM", "Runtime"):
            await self.send(f"{domain}.enable")

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        """Call a DevTools method in this tab's session; its result."""
        message: dict[str, Any] = {"id": next(self._ids), "method": method, "params": params}
        if self._session:
            message["sessionId"] = self._session
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._replies[message["id"]] = future
        await self._socket.send_json(message)
        return await asyncio.wait_for(future, TIMEOUT)

    def mark(self) -> int:
        """A point in the event stream to wait from."""
        return len(self._events)

    async def wait_for(self, method: str, since: int) -> dict[str, Any]:
        """The first ``method`` event after ``since`` (a :meth:`mark`)."""

        def found() -> dict[str, Any] | None:
            return next((e for e in self._events[since:] if e.get("method") == method), None)

        async with self._arrived:
            await asyncio.wait_for(self._arrived.wait_for(found), TIMEOUT)
        event = found()
        assert event is not None
        return event

    async def go(self, url: str) -> None:
        """Load ``url`` and wait until it has loaded."""
        since = self.mark()
        await self.send("Page.navigate", url=url)
        await self.wait_for("Page.loadEventFired", since)

    async def click(self, selector: str) -> None:
        """Scroll the element into view and click its middle with the mouse, as a person
        does (so the browser builds the request, with every header it adds itself)."""
        root = await self.send("DOM.getDocument")
        node = root["root"]["nodeId"]
        found = await self.send("DOM.querySelector", nodeId=node, selector=selector)
        assert found["nodeId"], f"no {selector!r} on the page"
        await self.send("DOM.scrollIntoViewIfNeeded", nodeId=found["nodeId"])
        quads = (await self.send("DOM.getContentQuads", nodeId=found["nodeId"]))["quads"]
        xs, ys = quads[0][0::2], quads[0][1::2]
        x, y = sum(xs) / 4, sum(ys) / 4
        await self.send("Input.dispatchMouseEvent", type="mouseMoved", x=x, y=y)
        for kind in ("mousePressed", "mouseReleased"):
            await self.send(
                "Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1
            )

    async def text(self, selector: str = "body") -> str:
        """What the element shows (``innerText``: rendered text only)."""
        result = await self.send(
            "Runtime.evaluate",
            expression=f"document.querySelector({json.dumps(selector)}).innerText",
            returnByValue=True,
        )
        return str(result["result"]["value"])

    async def close(self) -> None:
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader


@contextlib.asynccontextmanager
async def open_tab(tmp_path: Path, *extra: str) -> AsyncIterator[Tab]:
    """Headless Chromium with one tab to drive; closed (the process killed) on the way out."""
    profile = tmp_path / "chromium-cdp-profile"
    log = (tmp_path / "chromium.log").open("wb")
    proc = await asyncio.create_subprocess_exec(
        str(CHROMIUM),
        *FLAGS,
        f"--user-data-dir={profile}",
        "--remote-debugging-port=0",
        *extra,
        "about:blank",
        stdout=log,
        stderr=log,
    )
    try:
        # Chromium writes the port it picked (and the browser's websocket path) here.
        port_file = profile / "DevToolsActivePort"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + TIMEOUT
        while not port_file.exists() or len(port_file.read_text().splitlines()) < 2:
            assert proc.returncode is None, (tmp_path / "chromium.log").read_text()[-2000:]
            assert loop.time() < deadline, "Chromium did not open its DevTools port"
            await asyncio.sleep(0.05)
        port, path = port_file.read_text().splitlines()[:2]
        async with (
            aiohttp.ClientSession() as http,
            http.ws_connect(f"ws://127.0.0.1:{port}{path}", max_msg_size=0) as socket,
        ):
            tab = Tab(socket)
            try:
                await tab.attach()
                yield tab
            finally:
                await tab.close()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        log.close()
