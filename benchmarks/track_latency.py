"""How long one ``track_*`` call takes, and whether it beats one SQLite commit per event.

    python benchmarks/track_latency.py [--events 20000] [--rounds 3]

``track_*`` returns once the event is stored. With SQLite that means committed, so the
natural yardstick is plain ``sqlite3``, one INSERT + COMMIT per event, WAL,
synchronous=NORMAL, in a tight loop: asynctracker's SQLite track rate should never be
below it (group commit should put it far above under concurrency).

Each round runs, interleaved: the raw sqlite3 loop, then asynctracker with SQLite and
with MemoryStorage at concurrency 1 (one caller awaiting each call) and at concurrency
100 (100 tasks tracking at once). Delivery to the collector on 127.0.0.1 runs meanwhile,
as it would in production. Rates count tracking time only (not the final flush).

Four more rows: one SQLite caller, the same 100, and 1,000, with nothing to deliver to
(the track path alone; more callers share each commit), and what an async service gets from
one transaction per call without blocking its loop: 100 callers each awaiting their own
INSERT on one aiosqlite connection.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from collector import CollectorClient, CollectorProcess  # noqa: E402
from drivers import ACTION, CATEGORY, VALUE, label  # noqa: E402
from loop_lag import percentile  # noqa: E402

UNDELIVERED_1 = "asynctracker-sqlite c=1, no collector"
UNDELIVERED = "asynctracker-sqlite c=100, no collector"
UNDELIVERED_1000 = "asynctracker-sqlite c=1000, no collector"
PER_CALL_ASYNC = "aiosqlite commit-per-call c=100"
CLOSED_PORT_URL = "http://127.0.0.1:9"  # discard port: nothing listens, sends fail fast


def _raw_events(n: int) -> list[str]:
    import uuid

    event = {"e": "se", "se_ca": CATEGORY, "se_ac": ACTION, "se_va": "2.5", "tv": "py-x"}
    return [json.dumps({**event, "se_la": label(i), "eid": str(uuid.uuid4())}) for i in range(n)]


def raw_sqlite_rate(n: int) -> float:
    """Events/s of sqlite3 with one INSERT and one COMMIT per event (WAL, NORMAL)."""
    with tempfile.TemporaryDirectory(prefix="raw-sqlite-") as tmp:
        conn = sqlite3.connect(Path(tmp) / "raw.db", isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("CREATE TABLE events (id INTEGER PRIMARY KEY, event TEXT NOT NULL)")
        raws = _raw_events(n)
        started = time.perf_counter()
        for raw in raws:
            conn.execute("BEGIN")
            conn.execute("INSERT INTO events(event) VALUES (?)", (raw,))
            conn.execute("COMMIT")
        seconds = time.perf_counter() - started
        conn.close()
    return n / seconds


async def _aiosqlite_per_call(n: int, concurrency: int) -> dict[str, float]:
    """The naive durable async tracker: each call awaits its own INSERT transaction on
    aiosqlite's thread (autocommit, so one statement is one transaction)."""
    import aiosqlite

    raws = _raw_events(n)
    latencies: list[float] = []
    with tempfile.TemporaryDirectory(prefix="aiosqlite-") as tmp:
        async with aiosqlite.connect(Path(tmp) / "ev.db", isolation_level=None) as conn:
            await conn.execute("PRAGMA journal_mode=WAL")
            await conn.execute("PRAGMA synchronous=NORMAL")
            await conn.execute("CREATE TABLE events (id INTEGER PRIMARY KEY, event TEXT NOT NULL)")

            async def producer(first: int) -> None:
                for raw in raws[first::concurrency]:
                    started = time.perf_counter()
                    await conn.execute("INSERT INTO events(event) VALUES (?)", (raw,))
                    latencies.append(time.perf_counter() - started)

            started = time.perf_counter()
            await asyncio.gather(*(producer(k) for k in range(concurrency)))
            seconds = time.perf_counter() - started
    return _rates(latencies, seconds)


def _rates(latencies: list[float], seconds: float) -> dict[str, float]:
    return {
        "rate": len(latencies) / seconds,
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "max_ms": max(latencies) * 1000,
    }


async def _asynctracker(
    n: int, url: str, storage: str, concurrency: int, *, flush: bool = True
) -> dict[str, float]:
    import asynctracker as at

    latencies: list[float] = []
    with tempfile.TemporaryDirectory(prefix="at-latency-") as tmp:
        store = at.MemoryStorage() if storage == "memory" else at.SQLiteStorage(Path(tmp) / "ev.db")
        tracker = at.Tracker(at.Emitter(url, storage=store), namespace="bench", app_id="bench")
        async with tracker:
            per_task = n // concurrency

            async def producer(base: int) -> None:
                for i in range(base, base + per_task):
                    started = time.perf_counter()
                    await tracker.track_struct_event(CATEGORY, ACTION, label(i), value=VALUE)
                    latencies.append(time.perf_counter() - started)

            started = time.perf_counter()
            await asyncio.gather(*(producer(k * per_task) for k in range(concurrency)))
            seconds = time.perf_counter() - started
            if flush:
                await tracker.flush()
            else:
                tracker.emitter.close_timeout = 0
    return _rates(latencies, seconds)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=20_000, help="events at concurrency 100")
    parser.add_argument("--serial-events", type=int, default=5_000, help="at concurrency 1")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=HERE / "track_latency.json")
    args = parser.parse_args(argv)

    cases = [(s, c) for c in (1, 100) for s in ("sqlite", "memory")]
    runs: dict[str, list[dict[str, float]]] = {"raw-sqlite3-commit-per-event": []}
    runs.update({f"asynctracker-{s} c={c}": [] for s, c in cases})
    # The same 100 callers with nothing to deliver to (a closed port): the track path
    # alone, without the send loop's claims, deletes and HTTP sharing the two cores.
    runs[UNDELIVERED_1] = []
    runs[UNDELIVERED] = []
    runs[UNDELIVERED_1000] = []
    runs[PER_CALL_ASYNC] = []
    with CollectorProcess(keep_eids=False) as collector:
        client = CollectorClient(collector.url)
        for _ in range(args.rounds):
            runs["raw-sqlite3-commit-per-event"].append(
                {"rate": raw_sqlite_rate(args.serial_events)}
            )
            for storage, concurrency in cases:
                client.reset()
                n = args.serial_events if concurrency == 1 else args.events
                runs[f"asynctracker-{storage} c={concurrency}"].append(
                    asyncio.run(_asynctracker(n, collector.url, storage, concurrency))
                )
            for name, callers in ((UNDELIVERED, 100), (UNDELIVERED_1000, 1000)):
                runs[name].append(
                    asyncio.run(
                        _asynctracker(args.events, CLOSED_PORT_URL, "sqlite", callers, flush=False)
                    )
                )
            runs[UNDELIVERED_1].append(
                asyncio.run(
                    _asynctracker(args.serial_events, CLOSED_PORT_URL, "sqlite", 1, flush=False)
                )
            )
            runs[PER_CALL_ASYNC].append(asyncio.run(_aiosqlite_per_call(args.serial_events, 100)))
        client.close()

    summary = {
        name: {key: statistics.median(r[key] for r in results) for key in results[0]}
        for name, results in runs.items()
    }
    raw = summary["raw-sqlite3-commit-per-event"]["rate"]
    print(f"track_struct_event latency and rate, median of {args.rounds} rounds")
    print(f"| {'case':40} | track/s | x raw sqlite3 | p50 ms | p99 ms | max ms |")
    print(f"|{'-' * 42}|---------|---------------|--------|--------|--------|")
    for name, s in summary.items():
        cells = [f"{s[k]:6.3f}" if k in s else "     -" for k in ("p50_ms", "p99_ms", "max_ms")]
        head = f"| {name:40} | {s['rate']:7,.0f} | {s['rate'] / raw:13.2f} | "
        print(head + " | ".join(cells) + " |")
    result = {
        "events": args.events,
        "serial_events": args.serial_events,
        "rounds": args.rounds,
        "summary": summary,
        "runs": runs,
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
