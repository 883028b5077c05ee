"""The collector's lifecycle: start, stop, restart, its SQLite file, and leaving it running."""

from __future__ import annotations

import asyncio
import sys
import textwrap
from pathlib import Path

import httpx
import pytest
from test_collector import TP2, event, post_body

from asynctracker.collector import Collector

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


async def test_a_program_that_never_stops_its_collector_still_exits(tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import asyncio, warnings, httpx
        from asynctracker.collector import Collector
        warnings.simplefilter("ignore", ResourceWarning)
        COLLECTOR = Collector(db_path={str(tmp_path / "c.db")!r})

        async def main():
            await COLLECTOR.start()
            async with httpx.AsyncClient(base_url=COLLECTOR.url) as client:
                await client.get("/i", params={{"e": "pv", "url": "x"}})
            print("sent", flush=True)

        asyncio.run(main())
        """
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        script,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 60)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, err.decode()
    assert out.decode().strip() == "sent"
