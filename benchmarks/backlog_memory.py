"""RSS growth while a large backlog builds up in SQLite because the collector is down.

    python benchmarks/backlog_memory.py [--events 1000000]

The emitter points at a 127.0.0.1 port that was just bound and closed, so every send is
refused at once and the events pile up in the SQLite file (the default ``max_events`` of
a durable storage is 1,000,000, so nothing is dropped). A durable backlog should cost
disk, not memory: RSS after tracking should stay close to RSS before, whatever the
backlog. RSS comes from /proc/self/status (VmRSS now, VmHWM the peak).

Then a collector process comes up and a new emitter on the same file delivers the
backlog: the drain rate, and the file's size once it is empty (files made by this
version use incremental auto_vacuum and shrink after a drain; older ones keep their
size, reusing the pages).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from collector import CollectorClient, CollectorProcess  # noqa: E402
from drivers import ACTION, CATEGORY, SLICE, VALUE, label  # noqa: E402

TIME_LIMIT = 900.0  # seconds: stop tracking (and say so) rather than run forever


def status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _files_size(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.glob("backlog.db*"))


async def measure(n: int) -> dict[str, Any]:
    import asynctracker as at

    # Tracked while nothing listens on the port, drained by a collector started on that
    # same port afterwards: stored events record their collector and go only to it.
    port = closed_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="at-backlog-") as tmp:
        db = Path(tmp) / "backlog.db"
        emitter = at.Emitter(url, storage=at.SQLiteStorage(db), close_timeout=0)
        tracker = at.Tracker(emitter, namespace="bench", app_id="bench")
        async with tracker:
            # Warm up every code path (send loop, failures, retry timer) before the baseline.
            await tracker.track_struct_event(CATEGORY, ACTION, "warm-up", value=VALUE)
            await tracker.flush(timeout=1)
            gc.collect()
            rss_before = status_kib("VmRSS")
            started = time.perf_counter()
            tracked = 1
            for base in range(0, n - 1, SLICE):
                await asyncio.gather(
                    *(
                        tracker.track_struct_event(CATEGORY, ACTION, label(i), value=VALUE)
                        for i in range(base, min(base + SLICE, n - 1))
                    )
                )
                tracked = min(base + SLICE, n - 1) + 1
                if time.perf_counter() - started > TIME_LIMIT:
                    break
            seconds = time.perf_counter() - started
            gc.collect()
            rss_after = status_kib("VmRSS")
            peak = status_kib("VmHWM")
            stored = await emitter.storage.count()  # type: ignore[attr-defined]
            stats = emitter.stats()
        db_bytes = await asyncio.to_thread(_files_size, Path(tmp))
        with CollectorProcess(keep_eids=False, port=port) as collector:
            client = CollectorClient(collector.url)
            client.reset()
            drain_started = time.perf_counter()
            async with at.Emitter(collector.url, storage=at.SQLiteStorage(db)) as drainer:
                left = await drainer.flush(timeout=TIME_LIMIT)
            delivered = client.wait_for(stored - left, 60)
            drain_seconds = time.perf_counter() - drain_started
            client.close()
        drained_bytes = await asyncio.to_thread(_files_size, Path(tmp))
    return {
        "events": n,
        "tracked": tracked,
        "stored": stored,
        "dropped": stats.dropped,
        "track_seconds": seconds,
        "track_rate": tracked / seconds,
        "rss_before_mib": rss_before / 1024,
        "rss_after_mib": rss_after / 1024,
        "rss_growth_mib": (rss_after - rss_before) / 1024,
        "rss_peak_mib": peak / 1024,
        "db_mib": db_bytes / 2**20,
        "drained": delivered,
        "drain_rate": delivered / drain_seconds,
        "db_after_drain_mib": drained_bytes / 2**20,
        "failed_attempts": stats.failed,
        "time_limited": tracked < n,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--out", type=Path, default=HERE / "backlog_memory.json")
    args = parser.parse_args(argv)
    result = asyncio.run(measure(args.events))
    print(
        f"backlog of {result['stored']:,} events in SQLite (collector down), "
        f"tracked at {result['track_rate']:,.0f} ev/s in {result['track_seconds']:.1f}s"
        + (" [stopped by time limit]" if result["time_limited"] else "")
    )
    print(
        f"RSS before {result['rss_before_mib']:.1f} MiB, after {result['rss_after_mib']:.1f} MiB "
        f"(growth {result['rss_growth_mib']:+.1f} MiB, peak {result['rss_peak_mib']:.1f} MiB); "
        f"database {result['db_mib']:.0f} MiB; dropped {result['dropped']}; "
        f"failed send attempts {result['failed_attempts']:,}"
    )
    print(
        f"drained {result['drained']:,} events at {result['drain_rate']:,.0f} ev/s; "
        f"database after the drain {result['db_after_drain_mib']:.1f} MiB"
    )
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
