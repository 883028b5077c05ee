"""Trips to SQLiteStorage's thread: what one costs, and what a burst of them delivers.

    python benchmarks/sqlite_trips.py [--trips 3000] [--events 20000]

Runs everything on the storage's thread (``inline_writes=False``): one ``count()`` per
trip in a row, one insert per trip in a row, 100 concurrent inserters sharing group
commits, and claim + delete of the result 500 rows at a time. Prints one JSON line, so
two versions can be compared interleaved, each on its own ``PYTHONPATH``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path

import asynctracker as at


def payload(i: int) -> dict[str, str]:
    return {"e": "se", "se_ca": "c", "se_ac": "a", "se_la": f"label-{i}", "eid": f"{i:032d}"}


async def measure(trips: int, events: int) -> dict[str, float]:
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="at-trips-") as tmp:
        async with at.SQLiteStorage(Path(tmp) / "trips.db", inline_writes=False) as storage:
            await storage.add_event_row(payload(0))
            started = time.perf_counter()
            for _ in range(trips):
                await storage.count()
            out["count_trip_us"] = (time.perf_counter() - started) / trips * 1e6
            started = time.perf_counter()
            for i in range(trips):
                await storage.add_event_row(payload(i))
            out["serial_insert_us"] = (time.perf_counter() - started) / trips * 1e6
            gate = asyncio.Semaphore(100)

            async def insert(i: int) -> None:
                async with gate:
                    await storage.add_event_row(payload(i))

            started = time.perf_counter()
            await asyncio.gather(*(insert(i) for i in range(events)))
            out["c100_insert_ev_s"] = events / (time.perf_counter() - started)
            started = time.perf_counter()
            drained = 0
            while rows := await storage.claim_event_rows(500):
                await storage.delete_event_rows([row.id for row in rows])
                drained += len(rows)
            out["claim_delete_ev_s"] = drained / (time.perf_counter() - started)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trips", type=int, default=3_000)
    parser.add_argument("--events", type=int, default=20_000)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(measure(args.trips, args.events))))


if __name__ == "__main__":
    main()
