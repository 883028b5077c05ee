"""Synchronous callers: asynctracker.sync beside snowplow-tracker 1.x, in one run.

    python benchmarks/sync_threads.py [--rounds 5] [--threads 8] [--events 1000]

Every round runs each driver in a fresh interpreter against the same collector process
(benchmarks/collector.py, with event ids kept to count duplicates), in turn:

* ``8 threads``: THREADS threads, each calling ``track`` EVENTS times as fast as it can;
  per-call latency (median, p99) and calls/s, then delivery of everything, and
  exactly-once checked by the collector's event ids.
* ``1 thread``: one thread calling in a loop (calls/s, durable for asynctracker).

The drivers: ``asynctracker-sync`` (sync.Tracker, the default SQLite file, durable: each
call returns once committed), ``snowplow-tracker`` (its synchronous Emitter, default
batch size: every call that fills a batch sends it, in memory only) and
``snowplow-tracker-async`` (its AsyncEmitter: fire and forget into memory, capped). And
``exit``: how long a program that tracks and never closes its sync tracker takes to
exit, with the collector answering and with a collector that accepts connections but
never answers (close_timeout 2 s). Prints a table; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from collector import CollectorClient, CollectorProcess  # noqa: E402

DRIVERS = ("asynctracker-sync", "snowplow-tracker", "snowplow-tracker-async")


def _tracker(driver: str, url: str, folder: str) -> tuple[Any, Any]:
    """(track one event, deliver everything) for a driver."""
    if driver == "asynctracker-sync":
        from asynctracker import StructuredEvent, sync

        tracker = sync.Tracker(
            sync.Emitter(url, db_name=os.path.join(folder, "events.db")), app_id="bench"
        )
        return (
            lambda label: tracker.track(StructuredEvent("shop", "add", label=label, value=2.5)),
            lambda: (tracker.flush(timeout=60), tracker.close()),
        )
    import logging

    from snowplow_tracker import AsyncEmitter, Emitter, StructuredEvent, Tracker

    for name in ("snowplow_tracker.emitters", "snowplow_tracker.snowplow"):
        logging.getLogger(name).setLevel(logging.WARNING)
    host, port = url.split("://", 1)[1].split(":")
    kind = AsyncEmitter if driver == "snowplow-tracker-async" else Emitter
    emitter = kind(host, protocol="http", port=int(port), method="post")
    peer = Tracker("bench", emitter, app_id="bench")
    return (
        lambda label: peer.track(StructuredEvent("shop", "add", label=label, value=2.5)),
        peer.flush,
    )


def run_driver(driver: str, url: str, threads: int, events: int) -> dict[str, Any]:
    """In a fresh interpreter: the calls, timed, then delivery, counted."""
    client = CollectorClient(url)
    client.reset()
    with tempfile.TemporaryDirectory() as folder:
        track, deliver = _tracker(driver, url, folder)
        track("warm-up")
        latencies: list[list[float]] = [[] for _ in range(threads)]

        def work(index: int) -> None:
            mine = latencies[index]
            for n in range(events):
                started = time.perf_counter()
                track(f"{index}-{n}")
                mine.append(time.perf_counter() - started)

        workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
        started = time.perf_counter()
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        calling = time.perf_counter() - started
        deliver()
        total = threads * events + 1
        delivered = client.wait_for(total, 60)
    counts = client.counts()
    every = sorted(latency for mine in latencies for latency in mine)
    return {
        "calls_per_s": threads * events / calling,
        "median_us": statistics.median(every) * 1e6,
        "p99_us": every[int(len(every) * 0.99)] * 1e6,
        "delivered": delivered,
        "expected": total,
        "duplicates": counts["count"] - counts.get("unique", counts["count"]),
    }


NEVER_CLOSES = """
import sys
from asynctracker import sync
tracker = sync.Tracker(sync.Emitter(sys.argv[1], db_name=sys.argv[2], close_timeout=2))
for n in range(100):
    tracker.track_struct_event("shop", "add", label=str(n))
"""


def exit_time(url: str) -> float:
    """Seconds from start to exit of a program that tracks 100 events, never closes."""
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "-c", NEVER_CLOSES, url, os.path.join(folder, "e.db")],
            check=True,
            timeout=60,
        )
        return time.perf_counter() - started


def hanging_collector() -> tuple[str, Any]:
    """A server that accepts connections and never answers."""
    import socket

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                held.append(server.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    return f"http://127.0.0.1:{server.getsockname()[1]}", server


def isolated(driver: str, url: str, threads: int, events: int) -> dict[str, Any]:
    output = subprocess.run(
        [
            *(sys.executable, __file__, "--one", driver, "--url", url),
            "--threads",
            str(threads),
            "--events",
            str(events),
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    ).stdout
    return dict(json.loads(output.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--one", choices=DRIVERS)
    parser.add_argument("--url")
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_driver(args.one, args.url, args.threads, args.events)))
        return
    results: dict[str, list[dict[str, Any]]] = {}
    with CollectorProcess() as collector:
        for round_ in range(args.rounds):
            order = DRIVERS[round_ % 3 :] + DRIVERS[: round_ % 3]
            for driver in order:
                for threads, events in ((args.threads, args.events), (1, 5 * args.events)):
                    key = f"{driver}, {threads} thread{'s' if threads > 1 else ''}"
                    results.setdefault(key, []).append(
                        isolated(driver, collector.url, threads, events)
                    )
        exits_up = [exit_time(collector.url) for _ in range(3)]
    url, server = hanging_collector()
    exits_hung = [exit_time(url) for _ in range(3)]
    server.close()
    print(f"{args.rounds} rounds; medians of the rounds\n")
    print("| driver | calls/s | median call | p99 call | delivered, duplicates |")
    print("| --- | ---: | ---: | ---: | --- |")
    for key, runs in results.items():
        print(
            f"| {key} | {statistics.median(r['calls_per_s'] for r in runs):,.0f} "
            f"| {statistics.median(r['median_us'] for r in runs):,.0f} us "
            f"| {statistics.median(r['p99_us'] for r in runs):,.0f} us "
            f"| {min(r['delivered'] for r in runs)}/{runs[0]['expected']}, "
            f"{max(r['duplicates'] for r in runs)} |"
        )
    sync8 = f"asynctracker-sync, {args.threads} threads"
    peer8 = f"snowplow-tracker, {args.threads} threads"
    ratios = [
        a["calls_per_s"] / b["calls_per_s"]
        for a, b in zip(results[sync8], results[peer8], strict=True)
    ]
    print(f"\nsync {args.threads} threads vs snowplow-tracker's Emitter, per round: ")
    print(", ".join(f"{r:.2f}x" for r in ratios), f"(median {statistics.median(ratios):.2f}x)")
    print(f"never-closed program exits in (close_timeout 2 s): collector up {exits_up}")
    print(f"                                               collector hung {exits_hung}")


if __name__ == "__main__":
    main()
