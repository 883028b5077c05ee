"""Event-loop lag while tracking flat out.

    python benchmarks/loop_lag.py [--events 20000] [--rounds 5]

A ticker task sleeps 1 ms over and over and records how late it wakes up. That lateness
is what every other coroutine in the application (a web request, a health check) would
suffer while the tracker works. Scenarios run interleaved for a few rounds, each in a
fresh event loop, against the collector process on 127.0.0.1; the idle row is the
ticker alone (the floor this machine allows). Percentiles are over every round's ticks
pooled (one round has a few hundred ticks, so its own p99 is about its second-worst
tick); the last column, the median of the rounds' own p99s, is what earlier runs reported.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import drivers  # noqa: E402
from collector import CollectorClient, CollectorProcess  # noqa: E402

TICK = 0.001
PRODUCERS = 100


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


class _StopTicking:
    """Stands in for CollectorClient: stops the ticker before the driver's blocking poll."""

    def __init__(self, client: CollectorClient, stop: asyncio.Event) -> None:
        self._client = client
        self._stop = stop

    def wait_for(self, n: int, timeout: float = 60.0) -> int:
        self._stop.set()
        return self._client.wait_for(n, timeout)


async def _ticker(stop: asyncio.Event, lags: list[float]) -> None:
    while not stop.is_set():
        started = time.perf_counter()
        await asyncio.sleep(TICK)
        if stop.is_set():
            break  # this tick may span the driver's blocking poll: not the tracker's doing
        lags.append(time.perf_counter() - started - TICK)


Workload = Callable[[int, str, Any], Awaitable[tuple[float, int]]]


async def _idle(n: int, url: str, client: Any) -> tuple[float, int]:
    await asyncio.sleep(1.0)
    client.wait_for(0)
    return 1.0, 0


def _at(storage: str) -> Workload:
    async def work(n: int, url: str, client: Any) -> tuple[float, int]:
        return await drivers._asynctracker(
            n, url, storage=storage, request_type="POST", client=client
        )

    return work


def _at_producers(storage: str, concurrency: int = PRODUCERS) -> Workload:
    """The service pattern: ``concurrency`` request handlers, each awaiting its own
    ``track_*`` call in turn. Unlike gathering 1,000 calls at once (whose lag is mostly
    the 1,000 task steps the driver schedules in one go), the lag here comes from the
    tracker's own steps: the insert, the send loop's batches, the HTTP client."""

    async def work(n: int, url: str, client: Any) -> tuple[float, int]:
        import asynctracker as at

        with tempfile.TemporaryDirectory(prefix="at-lag-") as tmp:
            store = (
                at.MemoryStorage() if storage == "memory" else at.SQLiteStorage(Path(tmp) / "e.db")
            )
            tracker = at.Tracker(at.Emitter(url, storage=store), app_id="bench")
            async with tracker:
                started = time.perf_counter()

                async def producer(first: int) -> None:
                    for i in range(first, n, concurrency):
                        await tracker.track_struct_event(
                            drivers.CATEGORY, drivers.ACTION, drivers.label(i), value=drivers.VALUE
                        )

                await asyncio.gather(*(producer(k) for k in range(concurrency)))
                await tracker.flush()
                delivered = client.wait_for(n)
                return time.perf_counter() - started, delivered

    return work


LOCKER = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
conn.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
conn.execute("COMMIT")
"""


async def _write_lock_held(
    n: int, url: str, client: Any, *, hold: float = 1.0
) -> tuple[float, int]:
    """One caller tracking in turn while ANOTHER PROCESS holds the file's write lock for
    ``hold`` seconds: the inserts wait (on the thread), the loop must not. Raises if any
    track_* call fails."""
    import asynctracker as at

    with tempfile.TemporaryDirectory(prefix="at-lag-") as tmp:
        path = Path(tmp) / "e.db"
        tracker = at.Tracker(at.Emitter(url, storage=at.SQLiteStorage(path)), app_id="bench")
        async with tracker:
            await tracker.track_struct_event(drivers.CATEGORY, drivers.ACTION, "warm-up")
            locker = await asyncio.create_subprocess_exec(
                sys.executable, "-c", LOCKER, str(path), str(hold), stdout=asyncio.subprocess.PIPE
            )
            assert locker.stdout is not None
            assert (await locker.stdout.readline()).strip() == b"locked"
            started = time.perf_counter()
            for i in range(n - 1):
                await tracker.track_struct_event(
                    drivers.CATEGORY, drivers.ACTION, drivers.label(i), value=drivers.VALUE
                )
            assert await locker.wait() == 0
            await tracker.flush()
            delivered = client.wait_for(n)
            return time.perf_counter() - started, delivered


async def _aio(n: int, url: str, client: Any) -> tuple[float, int]:
    drivers._quiet_peers()
    return await drivers._aio_snowplow(n, url, client)


SCENARIOS: dict[str, Workload] = {
    "idle (ticker only)": _idle,
    "asynctracker-sqlite-post": _at("sqlite"),
    "asynctracker-memory-post": _at("memory"),
    "aio-snowplow-tracker": _aio,
    f"asynctracker-sqlite {PRODUCERS} producers": _at_producers("sqlite"),
    "asynctracker-sqlite 1 producer": _at_producers("sqlite", 1),
    "asynctracker-sqlite 1 producer, lock held 1 s": _write_lock_held,
    f"asynctracker-memory {PRODUCERS} producers": _at_producers("memory"),
}


async def _one(work: Workload, n: int, url: str, client: CollectorClient) -> dict[str, Any]:
    stop = asyncio.Event()
    lags: list[float] = []
    ticker = asyncio.create_task(_ticker(stop, lags))
    await asyncio.sleep(0)
    seconds, delivered = await work(n, url, _StopTicking(client, stop))
    stop.set()
    await ticker
    return {
        "ticks": len(lags),
        "p50_ms": percentile(lags, 50) * 1000,
        "p99_ms": percentile(lags, 99) * 1000,
        "max_ms": max(lags, default=float("nan")) * 1000,
        "delivered": delivered,
        "seconds": seconds,
        "lags_ms": [lag * 1000 for lag in lags],
    }


def summarize(results: list[dict[str, Any]]) -> dict[str, float]:
    """Percentiles over the ticks of every round pooled, plus the median round's p99."""
    pooled = [lag for r in results for lag in r["lags_ms"]]
    return {
        "p50_ms": percentile(pooled, 50),
        "p99_ms": percentile(pooled, 99),
        "p999_ms": percentile(pooled, 99.9),
        "max_ms": max(pooled, default=float("nan")),
        "ticks": len(pooled),
        "p99_median_round_ms": statistics.median(r["p99_ms"] for r in results),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=HERE / "loop_lag.json")
    parser.add_argument("--scenarios", nargs="*", choices=list(SCENARIOS), default=list(SCENARIOS))
    parser.add_argument(
        "--switch-interval",
        type=float,
        help="a diagnosis, not a setting to ship: run with sys.setswitchinterval(S) "
        "(default 0.005) to see how much lag is a thread waiting to take the GIL back",
    )
    args = parser.parse_args(argv)
    if args.switch_interval is not None:
        sys.setswitchinterval(args.switch_interval)
    # The workloads import the trackers inside their coroutines (so that a driver
    # process imports only its own); imported here first, so that the first round's
    # ticker does not count an ~80 ms import as lag (it did, in every run before).
    import asynctracker  # noqa: F401

    if "aio-snowplow-tracker" in args.scenarios:
        drivers._quiet_peers()

    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in args.scenarios}
    with CollectorProcess(keep_eids=False) as collector:
        client = CollectorClient(collector.url)
        for _ in range(args.rounds):
            for name in args.scenarios:
                work = SCENARIOS[name]
                client.reset()
                runs[name].append(asyncio.run(_one(work, args.events, collector.url, client)))
        client.close()

    summary = {name: summarize(results) for name, results in runs.items()}
    print(
        f"event-loop lag, 1 ms ticker, {args.events} events, {args.rounds} rounds pooled, "
        f"switch interval {sys.getswitchinterval() * 1000:g} ms"
    )
    print(
        f"| {'scenario':46} | lag p50 ms | lag p99 ms | p99.9 ms | lag max ms | ticks "
        "| median round's p99 |"
    )
    print(f"|{'-' * 48}|------------|------------|----------|------------|-------|{'-' * 20}|")
    for name, s in summary.items():
        print(
            f"| {name:46} | {s['p50_ms']:10.3f} | {s['p99_ms']:10.3f} | {s['p999_ms']:8.3f} | "
            f"{s['max_ms']:10.2f} | {s['ticks']:5.0f} | {s['p99_median_round_ms']:18.3f} |"
        )
    # Per-tick lags are summarized above; the file keeps each round's own figures.
    kept = {
        name: [{k: v for k, v in r.items() if k != "lags_ms"} for r in rs]
        for name, rs in runs.items()
    }
    result = {"events": args.events, "rounds": args.rounds, "summary": summary, "runs": kept}
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
