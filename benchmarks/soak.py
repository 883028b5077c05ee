"""Soak: many events through random 500s and collector outages; count what arrives.

Run: ``python benchmarks/soak.py [--events 200000] [--error-rate 0.1]``

A real collector on 127.0.0.1 answers a share of requests with 500 and is stopped for
``--outage`` seconds every ``--every`` seconds (connections refused, then restarted on
the same port). Tracking never pauses for it. At the end the script prints how many
events were tracked, delivered, delivered more than once, and dropped, and exits
non-zero unless every tracked event arrived exactly once.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import asynctracker as at
from asynctracker.collector import Collector, ReceivedRequest, Reply


async def outages(collector: Collector, every: float, length: float, stop: asyncio.Event) -> int:
    count = 0
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), timeout=every)
            break
        except asyncio.TimeoutError:
            pass
        await collector.stop()
        count += 1
        await asyncio.sleep(length)
        await collector.start()
    return count


async def soak(args: argparse.Namespace) -> int:
    chance = random.Random(args.seed)

    def responder(request: ReceivedRequest) -> Reply | None:
        return Reply(500) if chance.random() < args.error_rate else None

    with tempfile.TemporaryDirectory() as folder:
        async with Collector(responder=responder) as collector:
            emitter = at.Emitter(
                collector.url,
                db_name=Path(folder) / "soak.db",
                retry=at.RetryPolicy(backoff_base=0.1, backoff_cap=2.0),
            )
            stop = asyncio.Event()
            outage_task = asyncio.create_task(outages(collector, args.every, args.outage, stop))
            started = time.perf_counter()
            tracked: list[str] = []
            async with at.Tracker(emitter, app_id="soak") as tracker:
                for start in range(0, args.events, 1000):
                    size = min(1000, args.events - start)
                    tracked += await asyncio.gather(
                        *(tracker.track_struct_event("soak", "event", value=i) for i in range(size))
                    )
                track_seconds = time.perf_counter() - started
                with contextlib.suppress(TimeoutError, asyncio.TimeoutError):
                    await collector.wait_for_events(len(tracked), timeout=args.deadline)
                stop.set()
                windows = await outage_task  # it always leaves the collector running
                left = await tracker.flush(timeout=30)
                stats = tracker.emitter.stats()
            total_seconds = time.perf_counter() - started

            counts = Counter(event.payload["eid"] for event in collector.events)
            promised = set(tracked)
            delivered = promised & set(counts)
            duplicated = sum(n - 1 for n in counts.values() if n > 1)
            failed_requests = sum(1 for r in collector.requests if r.status == 500)

    print(f"tracked      {len(tracked):>9,}  in {track_seconds:.1f}s")
    print(f"delivered    {len(delivered):>9,}  in {total_seconds:.1f}s")
    print(f"missing      {len(promised - delivered):>9,}")
    print(f"duplicated   {duplicated:>9,}")
    print(f"dropped      {stats.dropped:>9,}")
    print(f"still stored {left:>9,}")
    print(f"outages      {windows:>9,}  of {args.outage}s every {args.every}s")
    print(f"500 replies  {failed_requests:>9,}  (last 10,000 requests; rate {args.error_rate})")
    print(f"emitter      {stats}")
    ok = len(delivered) == len(promised) and duplicated == 0 and stats.dropped == 0
    print("RESULT", "OK" if ok else "FAILED")
    return 0 if ok else 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--error-rate", type=float, default=0.10)
    parser.add_argument("--every", type=float, default=3.0, help="seconds between outages")
    parser.add_argument("--outage", type=float, default=1.0, help="seconds each outage lasts")
    parser.add_argument("--deadline", type=float, default=300.0)
    parser.add_argument("--seed", type=int, default=1)
    sys.exit(asyncio.run(soak(parser.parse_args())))


if __name__ == "__main__":
    main()
