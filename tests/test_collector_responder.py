"""The collector's ``responder`` hook: the fault injection the delivery tests rely on.

A responder sees each tracker request first and may answer it instead (throttle, fail,
hang), or fall through to recording; the collector must survive whatever it does.
"""

from __future__ import annotations

import asyncio

import httpx
import pytest
from test_collector import TP2, event, post_body

from asynctracker.collector import Collector, ReceivedRequest, Reply


async def test_responder_reply_is_sent_and_events_are_not_recorded() -> None:
    def throttle(request: ReceivedRequest) -> Reply:
        return Reply(429, {"Retry-After": "7"}, b"slow down")

    async with (
        Collector(responder=throttle) as collector,
        httpx.AsyncClient(base_url=collector.url) as client,
    ):
        response = await client.post(TP2, json=post_body(event()))
    assert response.status_code == 429
    assert response.headers["retry-after"] == "7"
    assert response.content == b"slow down"
    assert collector.events == []
    assert [r.status for r in collector.requests] == [429]


async def test_async_responder_returning_none_falls_through_to_recording() -> None:
    seen: list[ReceivedRequest] = []

    async def spy(request: ReceivedRequest) -> None:
        seen.append(request)
        await asyncio.sleep(0)

    async with (
        Collector(responder=spy) as collector,
        httpx.AsyncClient(base_url=collector.url) as client,
    ):
        await client.post(TP2, json=post_body(event()))
    assert len(collector.events) == 1
    assert seen[0].path == TP2
    assert seen[0].status == 0


async def test_responder_that_raises_answers_500() -> None:
    def broken(request: ReceivedRequest) -> Reply:
        raise RuntimeError("boom")

    async with (
        Collector(responder=broken) as collector,
        httpx.AsyncClient(base_url=collector.url) as client,
    ):
        response = await client.post(TP2, json=post_body(event()))
    assert response.status_code == 500
    assert collector.events == []


async def test_hung_responder_times_out_the_client_but_not_the_server() -> None:
    hang = True

    async def maybe_hang(request: ReceivedRequest) -> None:
        if hang:
            await asyncio.Event().wait()

    async with (
        Collector(responder=maybe_hang) as collector,
        httpx.AsyncClient(base_url=collector.url, timeout=0.2) as client,
    ):
        with pytest.raises(httpx.ReadTimeout):
            await client.post(TP2, json=post_body(event()))
        hang = False
        response = await client.post(TP2, json=post_body(event()))
        assert response.status_code == 200
        assert len(collector.events) == 1


async def test_stop_closes_connections_stuck_in_a_hung_responder() -> None:
    async def hang(request: ReceivedRequest) -> None:
        await asyncio.Event().wait()

    collector = Collector(responder=hang)
    await collector.start()
    async with httpx.AsyncClient(base_url=collector.url, timeout=5) as client:
        pending = asyncio.create_task(client.post(TP2, json=post_body(event())))
        await asyncio.sleep(0.1)
        await asyncio.wait_for(collector.stop(), 2)
        with pytest.raises(httpx.TransportError):
            await pending
