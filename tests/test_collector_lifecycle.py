"""The collector's lifecycle: start, stop, restart, its SQLite file, and leaving it running.

Its database is an aiosqlite connection, whose thread is not a daemon: these tests run
real programs in subprocesses that forget to stop their collector, and check that they
still exit, with the events on disk and a warning saying what was forgotten.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import sys
from pathlib import Path

import aiosqlite
import httpx
import pytest
from test_collector import TP2, event, post_body

from asynctracker.collector import Collector
from asynctracker.collector._db import Database
from asynctracker.collector._table import SCHEMA, Filters

# -- connections and lifecycle ---------------------------------------------------------------


async def test_two_hundred_sequential_requests_share_one_connection(
    collector: Collector,
) -> None:
    peers: set[object] = set()
    async with httpx.AsyncClient(base_url=collector.url) as client:
        for i in range(200):
            response = await client.post(TP2, json=post_body(event(se_la=str(i))))
            assert response.status_code == 200
            stream = response.extensions["network_stream"]
            peers.add(stream.get_extra_info("client_addr"))
    assert len(collector.events) == 200
    assert len(peers) == 1


async def test_stopped_collector_restarts_on_the_same_port() -> None:
    collector = Collector()
    await collector.start()
    url = collector.url
    async with httpx.AsyncClient(timeout=2) as client:
        await client.post(url + TP2, json=post_body(event()))
        await collector.stop()
        with pytest.raises(httpx.ConnectError):
            await client.post(url + TP2, json=post_body(event()))
        await collector.start()
        try:
            assert collector.url == url
            assert (await client.post(url + TP2, json=post_body(event()))).status_code == 200
        finally:
            await collector.stop()
    assert len(collector.events) == 2


async def test_new_collector_can_take_over_an_explicit_port() -> None:
    async with Collector() as first:
        port = first.port
    async with Collector(port=port) as second, httpx.AsyncClient() as client:
        response = await client.get(f"http://127.0.0.1:{port}/health")
        assert response.status_code == 200
        assert second.url == first.url


async def test_starting_twice_is_an_error(collector: Collector) -> None:
    with pytest.raises(RuntimeError, match="already running"):
        await collector.start()


async def test_events_persist_across_collectors_sharing_a_database(tmp_path: Path) -> None:
    db = tmp_path / "collector.db"
    batch = [event(se_la="1"), event(eid="bad")]
    pixel = event(se_la="2")
    async with Collector(db_path=db) as first, httpx.AsyncClient(base_url=first.url) as client:
        await client.post(TP2, json=post_body(*batch))
        await client.get("/i", params=pixel)
    async with Collector(db_path=db) as second:
        assert [e.payload for e in second.events] == [*batch, pixel]
        assert [e.method for e in second.events] == ["POST", "POST", "GET"]
        assert [e.valid for e in second.events] == [True, False, True]
        assert second.events[1].errors == first.events[1].errors
        second.reset()
    async with Collector(db_path=db) as third:
        assert third.events == []


async def test_reset_while_stopped_also_empties_the_database(tmp_path: Path) -> None:
    collector = Collector(db_path=tmp_path / "collector.db")
    async with collector, httpx.AsyncClient(base_url=collector.url) as client:
        await client.post(TP2, json=post_body(event()))
    collector.reset()
    async with collector:
        assert collector.events == []


async def test_url_is_unavailable_before_a_free_port_is_picked() -> None:
    with pytest.raises(RuntimeError):
        _ = Collector().url


# -- the database -----------------------------------------------------------------------------


async def test_inserts_queued_while_the_writer_is_busy_share_one_commit(tmp_path: Path) -> None:
    statements: list[str] = []
    commits: list[int] = []
    connection = await aiosqlite.connect(tmp_path / "events.db")
    await connection.executescript(SCHEMA)
    await connection.set_trace_callback(statements.append)
    db = Database(connection, commits.append)
    try:
        for seq in range(1, 51):  # fifty requests' worth, queued without yielding
            db.insert([(seq, event(se_la=str(seq)), "POST", (), 1700000000.0)])
        total, rows = await db.page(Filters(), limit=100, newest_first=False)
    finally:
        await db.close()

    assert total == 50
    assert [seq for seq, *_ in rows] == list(range(1, 51))
    assert commits == [50]
    assert [s for s in statements if s.upper().startswith("COMMIT")] == ["COMMIT"]


async def test_a_query_sees_every_insert_and_reset_queued_before_it(tmp_path: Path) -> None:
    async with Collector(db_path=tmp_path / "c.db") as collector:
        async with httpx.AsyncClient(base_url=collector.url) as client:
            await client.post(TP2, json=post_body(event(), event()))
            collector.reset()
            await client.get("/i", params=event(se_la="after"))
            answer = await client.get("/events")
        assert answer.headers["x-total-count"] == "1"
        assert answer.json()[0]["payload"]["se_la"] == "after"


# -- a collector its program never stopped ------------------------------------------------------

FORGETFUL = """
import asyncio, sys
from asynctracker.collector import Collector

COLLECTOR = Collector(db_path=sys.argv[1])


async def get(path):
    reader, writer = await asyncio.open_connection("127.0.0.1", COLLECTOR.port)
    writer.write(f"GET {{path}} HTTP/1.1\\r\\nHost: 127.0.0.1\\r\\n".encode())
    writer.write(b"Connection: close\\r\\n\\r\\n")
    status = (await reader.read()).split(b"\\r\\n")[0].decode()
    writer.close()
    return status


async def main():
    await COLLECTOR.start()
    print(await get("/i?e=pv&url=first"), flush=True)
    await get("/events")  # answered after the first event was committed
    print(await get("/i?e=pv&url=second"), flush=True)  # queued for the writer, at least


{run}
"""


@pytest.mark.parametrize(
    ("run", "stored"),
    [
        # The collector stops itself as the loop shuts down, writing what was queued,
        # and says it was forgotten.
        ("asyncio.run(main())", {2}),
        # An old-style program: its loop is never shut down, so nothing stops the
        # collector, and what its writer had not reached stays unwritten; the
        # interpreter's exit must still not wait for the database thread.
        ("asyncio.new_event_loop().run_until_complete(main())", {1, 2}),
    ],
    ids=["asyncio.run", "loop never shut down"],
)
async def test_a_program_that_never_stops_its_collector_still_exits(
    tmp_path: Path, run: str, stored: set[int]
) -> None:
    db = tmp_path / "c.db"
    script = tmp_path / "forgetful.py"
    script.write_text(FORGETFUL.format(run=run))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-W", "always::ResourceWarning", str(script), str(db),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 60)
    finally:
        if proc.returncode is None:  # it hung: the bug this test is about
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, err.decode()
    assert out.decode().split() == ["HTTP/1.1", "200", "OK"] * 2
    if run.startswith("asyncio.run"):
        assert "stopped as its event loop shut down" in err.decode()
    with contextlib.closing(sqlite3.connect(db)) as file:  # closed cleanly, readable
        [(count,)] = file.execute("SELECT count(*) FROM collector_events").fetchall()
    assert count in stored
