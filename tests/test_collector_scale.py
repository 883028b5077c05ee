"""The collector left running for a long time: bounded memory, exact counts, paged answers.

Figures (RSS over 300k events, ``/events`` latency) come from
``benchmarks/collector_memory.py``; these tests pin the behaviour that makes them bounded.
"""

from __future__ import annotations

from pathlib import Path

import httpx
from test_collector import TP2, event, post_body

from asynctracker.collector import Collector


async def send_events(client: httpx.AsyncClient, count: int, *, batch: int = 250) -> list[str]:
    """POST ``count`` good events in batches; return their ids in order."""
    ids: list[str] = []
    for start in range(0, count, batch):
        events = [event(se_la=str(i)) for i in range(start, min(count, start + batch))]
        answer = await client.post(TP2, json=post_body(*events))
        assert answer.status_code == 200
        ids += [e["eid"] for e in events]
    return ids


async def test_only_the_newest_events_stay_in_memory_and_counts_stay_exact(
    tmp_path: Path,
) -> None:
    async with (
        Collector(memory_events=500) as collector,
        httpx.AsyncClient(base_url=collector.url, timeout=30) as client,
    ):
        ids = await send_events(client, 5000)
        await client.get("/i", params=event(e="zz"))
        # The database's one writer runs a query after every insert queued before it, and
        # calls each insert's "committed" callback before it answers the query.
        await client.get("/micro/good", params={"limit": 1})
        assert len(collector._log._recent) <= 500
        assert (await client.get("/micro/all")).json() == {"total": 5001, "good": 5000, "bad": 1}
        # Nothing was lost: the older events are read back from SQLite, in order.
        assert [e.payload["eid"] for e in collector.events[:5000]] == ids
        assert len(collector.bad) == 1


async def test_events_are_served_in_pages_with_links_to_the_next(
    collector: Collector,
) -> None:
    async with httpx.AsyncClient(base_url=collector.url, timeout=30) as client:
        ids = await send_events(client, 2500)
        first = await client.get("/events")
        assert first.headers["x-total-count"] == "2500"
        assert len(first.json()) == 1000
        seen = [item["payload"]["eid"] for item in first.json()]
        link = first.headers["link"]
        while link:
            path = link.split(";")[0].strip("<>")
            page = await client.get(path)
            seen += [item["payload"]["eid"] for item in page.json()]
            link = page.headers.get("link", "")
        assert seen == ids
        small = await client.get("/events", params={"limit": 10, "offset": 2495})
        assert [item["payload"]["eid"] for item in small.json()] == ids[2495:]
        assert (await client.get("/events", params={"limit": "many"})).status_code == 400
