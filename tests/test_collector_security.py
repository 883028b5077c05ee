"""The collector is safe to leave running: hostile clients, pages and events, on 127.0.0.1.

Each test is one of issue 14's findings, replayed against a real collector: the request a
malicious web page (CSRF, DNS rebinding), a slow or greedy client, or a crafted event
would send, and what the collector must do instead of what it used to do.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from test_collector import TP2, event, post_body

from asynctracker.collector import Collector

EVIL_ORIGIN = "https://attacker.example"


@pytest.fixture
async def client(collector: Collector) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=collector.url, timeout=10) as http:
        yield http


async def raw_exchange(collector: Collector, data: bytes, *, timeout: float = 5.0) -> bytes:
    """Send raw bytes on a fresh connection; return everything read until the server closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", collector.port)
    try:
        writer.write(data)
        await writer.drain()
        return await asyncio.wait_for(reader.read(1 << 20), timeout)
    finally:
        writer.close()
        await writer.wait_closed()


# -- CSRF ----------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/reset", "/micro/reset"])
async def test_a_foreign_page_cannot_reset_the_collector(
    collector: Collector, client: httpx.AsyncClient, path: str
) -> None:
    await client.post(TP2, json=post_body(event()))
    # What <form enctype="text/plain"> or fetch(..., {mode: "no-cors"}) on another site sends.
    answer = await client.post(
        path,
        content=b"x=1",
        headers={
            "origin": EVIL_ORIGIN,
            "content-type": "text/plain",
            "sec-fetch-site": "cross-site",
        },
    )
    assert answer.status_code == 403
    assert len(collector.events) == 1


async def test_a_cross_site_get_cannot_reset_through_micro(
    collector: Collector, client: httpx.AsyncClient
) -> None:
    await client.post(TP2, json=post_body(event()))
    # <img src="http://127.0.0.1:9090/micro/reset"> on another site: no Origin on a GET.
    answer = await client.get("/micro/reset", headers={"sec-fetch-site": "cross-site"})
    assert answer.status_code == 403
    assert len(collector.events) == 1


async def test_an_older_browser_without_fetch_metadata_is_caught_by_its_referer(
    collector: Collector, client: httpx.AsyncClient
) -> None:
    await client.post(TP2, json=post_body(event()))
    answer = await client.get("/micro/reset", headers={"referer": f"{EVIL_ORIGIN}/page"})
    assert answer.status_code == 403
    assert len(collector.events) == 1


async def test_a_same_origin_request_without_the_page_token_cannot_reset(
    collector: Collector, client: httpx.AsyncClient
) -> None:
    await client.post(TP2, json=post_body(event()))
    origin = collector.url
    answer = await client.post(
        "/reset", headers={"origin": origin, "sec-fetch-site": "same-origin"}
    )
    assert answer.status_code == 403
    assert len(collector.events) == 1

    answer = await client.post(
        "/reset",
        headers={
            "origin": origin,
            "sec-fetch-site": "same-origin",
            "x-collector-token": collector.token,
        },
    )
    assert answer.status_code == 200
    assert collector.events == []


@pytest.mark.parametrize(
    ("site", "with_token", "status"),
    [
        (None, True, 403),  # nothing vouches for a hidden origin without Fetch Metadata
        ("cross-site", True, 403),
        ("same-site", True, 403),
        ("same-origin", False, 403),
        ("same-origin", True, 200),  # the page's own button when the origin is withheld
    ],
)
async def test_a_hidden_origin_resets_only_from_the_same_origin_with_the_token(
    collector: Collector, client: httpx.AsyncClient, site: str | None, with_token: bool, status: int
) -> None:
    await client.post(TP2, json=post_body(event()))
    headers = {"origin": "null"}
    if site is not None:
        headers["sec-fetch-site"] = site
    if with_token:
        headers["x-collector-token"] = collector.token
    answer = await client.post("/reset", headers=headers)
    assert answer.status_code == status
    assert len(collector.events) == (0 if status == 200 else 1)


async def test_scripts_without_an_origin_still_reset_as_with_micro(
    collector: Collector, client: httpx.AsyncClient
) -> None:
    await client.post(TP2, json=post_body(event()))
    assert (await client.post("/micro/reset")).json() == {"total": 0, "good": 0, "bad": 0}
    await client.post(TP2, json=post_body(event()))
    assert (await client.post("/reset")).status_code == 200
    assert collector.events == []


async def test_a_foreign_reset_leaves_the_database_file_alone(tmp_path: Path) -> None:
    db = tmp_path / "collector.db"
    async with Collector(db_path=db) as collector, httpx.AsyncClient(base_url=collector.url) as c:
        await c.post(TP2, json=post_body(event(), event()))
        await c.post("/reset", content=b"", headers={"origin": EVIL_ORIGIN})
    async with Collector(db_path=db) as again:
        assert len(again.events) == 2


# -- Host checks (DNS rebinding) -------------------------------------------------------------


@pytest.mark.parametrize("path", ["/events", "/", "/micro/good", "/health"])
async def test_a_foreign_host_header_is_refused(
    collector: Collector, client: httpx.AsyncClient, path: str
) -> None:
    await client.post(TP2, json=post_body(event()))
    answer = await client.get(path, headers={"host": f"attacker.example:{collector.port}"})
    assert answer.status_code == 421
    assert event()["se_ca"] not in answer.text


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "[::1]", "app.localhost"])
async def test_loopback_host_names_are_served(
    collector: Collector, client: httpx.AsyncClient, host: str
) -> None:
    answer = await client.get("/health", headers={"host": f"{host}:{collector.port}"})
    assert answer.status_code == 200


async def test_allowed_hosts_adds_names() -> None:
    async with (
        Collector(allowed_hosts=["dev.test"]) as collector,
        httpx.AsyncClient(base_url=collector.url) as client,
    ):
        assert (await client.get("/health", headers={"host": "dev.test"})).status_code == 200
        assert (await client.get("/health", headers={"host": "other.test"})).status_code == 421


# -- HTTP framing, timeouts, limits --------------------------------------------------------


async def test_content_length_with_transfer_encoding_is_refused_and_closed(
    collector: Collector,
) -> None:
    body = json.dumps(post_body(event())).encode()
    smuggled = (
        (
            f"POST {TP2} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(body)}\r\n"
            "Transfer-Encoding: chunked\r\n\r\n"
        ).encode()
        + f"{len(body):x}\r\n".encode()
        + body
        + b"\r\n0\r\n\r\n"
    )
    answer = await raw_exchange(collector, smuggled + b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 400")
    assert answer.count(b"HTTP/1.1") == 1  # closed: the smuggled request is never served
    assert collector.events == []


async def test_a_client_that_never_finishes_its_head_is_cut_off() -> None:
    async with Collector(header_timeout=0.3) as collector:
        answer = await raw_exchange(collector, b"GET /health HTTP/1.1\r\nHost: x\r\n", timeout=5)
    assert answer.startswith(b"HTTP/1.1 408")


async def test_a_client_that_never_finishes_its_body_is_cut_off() -> None:
    async with Collector(body_timeout=0.3) as collector:
        head = f"POST {TP2} HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{{".encode()
        answer = await raw_exchange(collector, head, timeout=5)
    assert answer.startswith(b"HTTP/1.1 408")


async def test_an_idle_connection_is_closed() -> None:
    async with Collector(idle_timeout=0.3) as collector:
        answer = await raw_exchange(collector, b"", timeout=5)
    assert answer == b""  # closed by the server, well before the 5 s wait


async def test_too_many_connections_do_not_stop_health_from_answering() -> None:
    async with Collector(max_connections=20) as collector:
        idle = [await asyncio.open_connection("127.0.0.1", collector.port) for _ in range(60)]
        try:
            async with httpx.AsyncClient(base_url=collector.url, timeout=5) as client:
                assert (await client.get("/health")).status_code == 200
            reads = [asyncio.ensure_future(reader.read()) for reader, _ in idle]
            done, pending = await asyncio.wait(reads, timeout=2)
            for read in pending:
                read.cancel()
            assert len(done) >= 40  # the excess was closed at once, not left to pile up
        finally:
            for _, writer in idle:
                writer.close()


async def test_keep_alive_serves_many_requests_on_one_connection(collector: Collector) -> None:
    requests = b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n" * 5
    requests += b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    answer = await raw_exchange(collector, requests)
    assert answer.count(b"HTTP/1.1 200") == 6


# -- events that used to break it ----------------------------------------------------------

LONE_SURROGATE = b'{"schema": "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4",'
LONE_SURROGATE += b' "data": [{"e": "se", "p": "srv", "tv": "t", "eid": "x", "dtm": "1",'
LONE_SURROGATE += b' "se_ca": "a\\udc80b", "se_ac": "x"}]}'


@pytest.mark.parametrize("path", ["/", "/events", "/events/good", "/events/bad", "/micro/bad"])
async def test_a_lone_surrogate_breaks_no_endpoint_even_after_restart(
    tmp_path: Path, path: str
) -> None:
    db = tmp_path / "collector.db"
    for _run in range(2):
        async with (
            Collector(db_path=db) as collector,
            httpx.AsyncClient(base_url=collector.url) as c,
        ):
            if _run == 0:
                assert (await c.post(TP2, content=LONE_SURROGATE)).status_code == 200
            answer = await c.get(path)
            assert answer.status_code == 200
            answer.content.decode("utf-8")  # valid UTF-8
            if path != "/":
                json.loads(answer.content)
    [received] = collector.events
    assert any("surrogate" in error for error in received.errors)


async def test_a_database_written_by_the_earlier_collector_is_served_safely(
    tmp_path: Path,
) -> None:
    db = tmp_path / "collector.db"
    # The table and encoding of the previous version; closing() because a sqlite3
    # connection's own `with` commits but does not close (3.13 warns about that).
    with contextlib.closing(sqlite3.connect(db)) as old, old:
        old.execute(
            "CREATE TABLE received_events (id INTEGER PRIMARY KEY AUTOINCREMENT, payload TEXT "
            "NOT NULL, method TEXT NOT NULL, errors TEXT NOT NULL, received_at REAL NOT NULL)"
        )
        payload = json.dumps({**event(), "se_la": "\udc80", "dtm": "9" * 20})
        old.execute(
            "INSERT INTO received_events (payload, method, errors, received_at) VALUES "
            "(?, 'POST', '[]', 1700000000.0)",
            (payload,),
        )
    async with Collector(db_path=db) as collector, httpx.AsyncClient(base_url=collector.url) as c:
        for path in ["/", "/events", "/events/good", "/micro/good"]:
            answer = await c.get(path)
            assert answer.status_code == 200, path
            answer.content.decode("utf-8")
        [received] = collector.events
        assert received.payload["se_la"] == "\ufffd"


@pytest.mark.parametrize("dtm", ["²", "9" * 20, "-1", "1e400"])
async def test_odd_timestamps_break_no_endpoint(
    collector: Collector, client: httpx.AsyncClient, dtm: str
) -> None:
    await client.post(TP2, json=post_body(event(dtm=dtm)))
    await client.get("/i", params=event(dtm=dtm))
    for path in ["/", "/events", "/events/bad", "/micro/bad", "/micro/good"]:
        assert (await client.get(path)).status_code == 200, path
    assert len(collector.bad) == 2


async def test_deeply_nested_json_gets_400_not_a_dropped_connection(
    collector: Collector, client: httpx.AsyncClient
) -> None:
    deep = b'{"schema": "x", "data": [' + b"[" * 1000 + b"]" * 1000 + b"]}"
    answer = await client.post(TP2, content=deep)
    assert answer.status_code == 400
    assert "deep" in answer.text or "JSON" in answer.text
    nested_field = event(se_la="[" * 900 + "]" * 900)
    nested_value = post_body({**event(), "se_pr": json.loads("[" * 900 + "]" * 900)})
    assert (await client.post(TP2, json=post_body(nested_field))).status_code == 200
    assert (await client.post(TP2, content=json.dumps(nested_value).encode())).status_code == 400
    assert (await client.get("/")).status_code == 200
    assert (await client.get("/events")).status_code == 200


async def test_escape_sequences_never_reach_the_terminal() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "asynctracker",
        "collector",
        "--port",
        "0",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    try:
        first = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
        url = first.split("listening on ")[1].split(",")[0].strip()
        async with httpx.AsyncClient(base_url=url) as client:
            evil = event(se_ca="\x1b]0;pwned\x07\x1b[2J", aid="\x9b31m")
            assert (await client.post(TP2, json=post_body(evil))).status_code == 200
        lines = b""
        while b"structured" not in lines:
            lines += await asyncio.wait_for(proc.stdout.readline(), 30)
    finally:
        proc.terminate()
        await proc.wait()
    text = lines.decode()
    assert "\x1b" not in text
    assert "\x07" not in text
    assert "\x9b" not in text
    assert "\\x1b]0;pwned" in text  # shown, escaped


async def test_the_database_is_not_touched_by_host_refusals(tmp_path: Path) -> None:
    db = tmp_path / "c.db"
    async with Collector(db_path=db) as collector, httpx.AsyncClient(base_url=collector.url) as c:
        await c.post(TP2, json=post_body(event()), headers={"host": "attacker.example"})
        assert collector.events == []
    with contextlib.closing(sqlite3.connect(db)) as check:
        assert check.execute("SELECT count(*) FROM collector_events").fetchone() == (0,)


async def test_a_low_open_file_limit_is_not_exhausted_by_idle_sockets() -> None:
    # The collector command under `ulimit -n 128`, and 300 sockets that send nothing.
    script = (
        "import resource, sys; from asynctracker.cli import main; "
        "resource.setrlimit(resource.RLIMIT_NOFILE, (128, resource.getrlimit("
        "resource.RLIMIT_NOFILE)[1])); sys.exit(main(['collector', '--port', '0', '-q']))"
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    assert proc.stdout is not None
    assert proc.stderr is not None
    sockets = []
    try:
        first = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
        url = first.split("listening on ")[1].split(",")[0].strip()
        port = int(url.rsplit(":", 1)[1])
        for _ in range(300):
            sockets.append(await asyncio.open_connection("127.0.0.1", port))
        async with httpx.AsyncClient(base_url=url, timeout=5) as client:
            assert (await client.get("/health")).status_code == 200
    finally:
        for _, writer in sockets:
            writer.close()
        proc.terminate()
        _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert b"Too many open files" not in err
    assert len(err) < 2000, err[-2000:]
