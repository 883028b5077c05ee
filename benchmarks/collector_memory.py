"""Memory and latency of the local collector holding many events.

    python benchmarks/collector_memory.py [--events 300000] [--batch 500]

Sends ``--events`` events to an in-process ``Collector`` over loopback, then prints the
process's RSS before and after, the time ``GET /events`` (one page) and ``GET /`` take,
and the longest stall of the collector's event loop while they are answered. The
collector keeps every event in SQLite and only the newest 10,000 in memory, so RSS
should level off however many events arrive.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid
from pathlib import Path

import httpx

from asynctracker.collector import Collector

TP2 = "/com.snowplowanalytics.snowplow/tp2"
SCHEMA = "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4"


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def body(start: int, count: int) -> bytes:
    events = [
        {
            "e": "se", "p": "srv", "tv": "bench", "eid": str(uuid.uuid4()),
            "dtm": "1700000000000", "aid": "bench", "se_ca": "c", "se_ac": f"a{start + i}",
        }
        for i in range(count)
    ]  # fmt: skip
    return json.dumps({"schema": SCHEMA, "data": events}).encode()


async def longest_stall(stop: asyncio.Event) -> float:
    worst = 0.0
    while not stop.is_set():
        before = time.perf_counter()
        await asyncio.sleep(0.001)
        worst = max(worst, time.perf_counter() - before - 0.001)
    return worst


async def main(events: int, batch: int) -> None:
    async with (
        Collector(max_connections=64) as collector,
        httpx.AsyncClient(base_url=collector.url, timeout=60) as client,
    ):
        start_rss = rss_mib()
        marks = {events // 4, events // 2, events}
        for sent in range(0, events, batch):
            answer = await client.post(TP2, content=body(sent, min(batch, events - sent)))
            answer.raise_for_status()
            if sent + batch in marks or sent + batch >= events:
                print(f"{min(sent + batch, events):>9,} events  RSS {rss_mib():7.1f} MiB")
        counts = (await client.get("/micro/all")).json()
        print(f"counts: {counts}  (RSS at start {start_rss:.1f} MiB)")
        for path in ("/events", "/events?offset=100000", "/", "/micro/good"):
            stop = asyncio.Event()
            watcher = asyncio.create_task(longest_stall(stop))
            began = time.perf_counter()
            answer = await client.get(path)
            took = time.perf_counter() - began
            stop.set()
            stall = await watcher
            print(
                f"GET {path:<24} {answer.status_code} {len(answer.content) / 1e6:6.2f} MB "
                f"in {took * 1000:7.1f} ms, longest loop stall {stall * 1000:6.1f} ms"
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--batch", type=int, default=500)
    args = parser.parse_args()
    asyncio.run(main(args.events, args.batch))
