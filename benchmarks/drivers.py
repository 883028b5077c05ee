"""One driver per tracker under test, all with the same interface and the same events.

``run(n_events, collector_url) -> (seconds, delivered)``: reset the collector, track
``n_events`` structured events (category/action/label/value) as fast as the tracker's API
allows, make it deliver them, and stop the clock when the collector has counted all of
them (or after a bounded wait). ``delivered`` is what the collector counted.

Each run should happen in a fresh process (``run_isolated``) so that one tracker's
threads, caches and garbage never slow the next one down:

    python benchmarks/drivers.py asynctracker-memory-post --n 20000 --url http://127.0.0.1:PORT
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import logging
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from collector import POST_PATH, CollectorClient

CATEGORY = "shop"
ACTION = "add"
VALUE = 2.5
SLICE = 1000  # concurrent track_* calls per asyncio.gather for the async trackers
DELIVERY_TIMEOUT = 120.0  # seconds the collector may take to see every event

Result = tuple[float, int]


def label(i: int) -> str:
    return f"sku-{i}"


def _quiet_peers() -> None:
    """The peers log every request at INFO through a root handler they install
    (``logging.basicConfig``); production users turn that off, so do we. Their modules
    set the INFO level when imported, so import them first, then lower it."""
    for name in (
        "aio_snowplow_tracker.emitters",
        "snowplow_tracker.emitters",
        "snowplow_tracker.snowplow",
    ):
        importlib.import_module(name)
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.simplefilter("ignore", DeprecationWarning)


#: How the async drivers call ``track_*`` (``--pattern``); the same for every tracker.
PATTERNS = ("gather1000", "serial", "sem64", "tasks64")
pattern = "gather1000"


async def track_in_slices(n: int, track: Callable[[int], Awaitable[object]]) -> None:
    """Track events 0..n-1 in the caller pattern ``pattern``:

    * ``gather1000``: ``SLICE`` concurrent calls at a time, gathered;
    * ``serial``: one caller awaiting each call in turn;
    * ``sem64``: every call gathered at once, 64 in flight under a semaphore;
    * ``tasks64``: 64 tasks, each awaiting its own calls in turn.
    """
    if pattern == "serial":
        for i in range(n):
            await track(i)
    elif pattern == "sem64":
        limit = asyncio.Semaphore(64)

        async def limited(i: int) -> None:
            async with limit:
                await track(i)

        await asyncio.gather(*(limited(i) for i in range(n)))
    elif pattern == "tasks64":

        async def loop(first: int) -> None:
            for i in range(first, n, 64):
                await track(i)

        await asyncio.gather(*(loop(k) for k in range(64)))
    else:
        for base in range(0, n, SLICE):
            await asyncio.gather(*(track(i) for i in range(base, min(base + SLICE, n))))


# -- asynctracker -----------------------------------------------------------------------


#: Requests in flight for the GET drivers (asynctracker's ``max_concurrent_requests``,
#: raw httpx's workers); ``--get-concurrency``. GET costs httpx CPU per request, which
#: grows with the connections in flight: sweep it to find the best.
get_concurrency = 16


async def _asynctracker(
    n: int, url: str, *, storage: str, request_type: str, client: CollectorClient
) -> Result:
    import asynctracker as at

    with tempfile.TemporaryDirectory(prefix="at-bench-") as tmp:
        store = at.MemoryStorage() if storage == "memory" else at.SQLiteStorage(Path(tmp) / "ev.db")
        emitter = at.Emitter(
            url,
            request_type=request_type,  # type: ignore[arg-type]
            storage=store,
            max_concurrent_requests=get_concurrency if request_type == "GET" else 16,
        )
        tracker = at.Tracker(emitter, namespace="bench", app_id="bench")
        async with tracker:
            start = time.perf_counter()
            await track_in_slices(
                n, lambda i: tracker.track_struct_event(CATEGORY, ACTION, label(i), value=VALUE)
            )
            await tracker.flush()
            delivered = client.wait_for(n, DELIVERY_TIMEOUT)
            seconds = time.perf_counter() - start
    return seconds, delivered


def asynctracker_sqlite_post(n: int, url: str, client: CollectorClient) -> Result:
    return asyncio.run(_asynctracker(n, url, storage="sqlite", request_type="POST", client=client))


def asynctracker_memory_post(n: int, url: str, client: CollectorClient) -> Result:
    return asyncio.run(_asynctracker(n, url, storage="memory", request_type="POST", client=client))


async def _asynctracker_drain(n: int, url: str, client: CollectorClient) -> Result:
    """A backlog of ``n`` events stored while the collector was unreachable, then sent
    by a new emitter on the same file: the clock covers the drain only."""
    import httpx

    import asynctracker as at

    def unreachable(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("collector down", request=request)

    with tempfile.TemporaryDirectory(prefix="at-bench-") as tmp:
        path = Path(tmp) / "ev.db"
        # Stored for this collector (rows record theirs), while every send fails.
        down = httpx.AsyncClient(transport=httpx.MockTransport(unreachable))
        offline = at.Tracker(
            at.Emitter(
                url,
                storage=at.SQLiteStorage(path),
                http_client=down,
                retry=at.RetryPolicy(backoff_base=60, backoff_cap=60),
            ),
            namespace="bench",
            app_id="bench",
        )
        await offline.emitter.open()
        for base in range(0, n, SLICE):
            await asyncio.gather(
                *(
                    offline.track_struct_event(CATEGORY, ACTION, label(i), value=VALUE)
                    for i in range(base, min(base + SLICE, n))
                )
            )
        await offline.emitter.aclose()
        await down.aclose()
        emitter = at.Emitter(url, storage=at.SQLiteStorage(path))
        start = time.perf_counter()
        async with emitter:
            await emitter.flush()
            delivered = client.wait_for(n, DELIVERY_TIMEOUT)
            seconds = time.perf_counter() - start
    return seconds, delivered


def asynctracker_sqlite_drain(n: int, url: str, client: CollectorClient) -> Result:
    return asyncio.run(_asynctracker_drain(n, url, client))


def asynctracker_sqlite_get(n: int, url: str, client: CollectorClient) -> Result:
    return asyncio.run(_asynctracker(n, url, storage="sqlite", request_type="GET", client=client))


# -- aio-snowplow-tracker 1.0.2 (aiohttp, in-memory buffer) -------------------------------

#: Events per POST for the peers. Their default is 10; 50 is kinder to them (fewer
#: requests) and matches the raw-httpx floor's batch size.
PEER_BATCH = 50


async def _aio_snowplow(n: int, url: str, client: CollectorClient) -> Result:
    import aiohttp
    from aio_snowplow_tracker import Emitter, Tracker

    host, port = url.split("://", 1)[1].split(":")
    async with aiohttp.ClientSession() as session:
        emitter = Emitter(
            host,
            protocol="http",
            port=int(port),
            method="post",
            buffer_size=PEER_BATCH,
            client_session=session,
        )
        tracker = Tracker(emitter, namespace="bench", app_id="bench")
        start = time.perf_counter()
        # Its Emitter.input holds a lock while it POSTs a full buffer, so concurrent
        # calls queue up behind each request: gather gives it every chance anyway.
        await track_in_slices(
            n, lambda i: tracker.track_struct_event(CATEGORY, ACTION, label(i), None, VALUE)
        )
        await tracker.flush()
        delivered = client.wait_for(n, DELIVERY_TIMEOUT)
        seconds = time.perf_counter() - start
    return seconds, delivered


def aio_snowplow_tracker(n: int, url: str, client: CollectorClient) -> Result:
    _quiet_peers()
    return asyncio.run(_aio_snowplow(n, url, client))


# -- snowplow-tracker 1.1.0 (requests, AsyncEmitter worker threads) -----------------------


def snowplow_tracker(n: int, url: str, client: CollectorClient) -> Result:
    _quiet_peers()
    import requests
    from snowplow_tracker import AsyncEmitter, StructuredEvent, Tracker

    host, port = url.split("://", 1)[1].split(":")
    session = requests.Session()
    adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=8)
    session.mount("http://", adapter)
    emitter = AsyncEmitter(
        host,
        protocol="http",
        port=int(port),
        method="post",
        batch_size=PEER_BATCH,
        thread_count=4,
        buffer_capacity=n + PEER_BATCH,  # its default (10,000) drops events when behind
        session=session,
    )
    tracker = Tracker("bench", emitter, app_id="bench")
    start = time.perf_counter()
    for i in range(n):
        tracker.track(
            StructuredEvent(category=CATEGORY, action=ACTION, label=label(i), value=VALUE)
        )
    tracker.flush()  # sync_flush: queue the rest and join the worker threads' queue
    delivered = client.wait_for(n, DELIVERY_TIMEOUT)
    seconds = time.perf_counter() - start
    session.close()
    return seconds, delivered


# -- raw httpx: the floor of what HTTP + this collector allow ---------------------------


RAW_BATCH = 50
RAW_IN_FLIGHT = 4


def raw_bodies(n: int) -> list[bytes]:
    """POST bodies of RAW_BATCH struct events shaped like asynctracker's, built up front."""
    import uuid

    now = str(int(time.time() * 1000))
    events = [
        {
            "e": "se",
            "se_ca": CATEGORY,
            "se_ac": ACTION,
            "se_la": label(i),
            "se_va": str(VALUE),
            "eid": str(uuid.uuid4()),
            "dtm": now,
            "stm": now,
            "tv": "py-bench",
            "p": "srv",
            "tna": "bench",
            "aid": "bench",
        }
        for i in range(n)
    ]
    schema = "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4"
    return [
        json.dumps(
            {"schema": schema, "data": events[i : i + RAW_BATCH]}, separators=(",", ":")
        ).encode()
        for i in range(0, n, RAW_BATCH)
    ]


async def _raw_httpx(n: int, url: str, client: CollectorClient) -> Result:
    import httpx

    bodies = raw_bodies(n)
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)
    headers = {"Content-Type": "application/json; charset=utf-8"}
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=RAW_IN_FLIGHT)) as http:

        async def worker() -> None:
            while not queue.empty():
                body = queue.get_nowait()
                response = await http.post(url + POST_PATH, content=body, headers=headers)
                response.raise_for_status()

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(RAW_IN_FLIGHT)))
        delivered = client.wait_for(n, DELIVERY_TIMEOUT)
        seconds = time.perf_counter() - start
    return seconds, delivered


def raw_httpx(n: int, url: str, client: CollectorClient) -> Result:
    return asyncio.run(_raw_httpx(n, url, client))


async def _raw_httpx_get(n: int, url: str, client: CollectorClient) -> Result:
    """One GET per event, query strings built before the clock starts, by
    ``get_concurrency`` workers on one client (the floor for the GET drivers)."""
    import urllib.parse

    import httpx

    queries = [
        urllib.parse.urlencode(
            {"e": "se", "se_ca": CATEGORY, "se_ac": ACTION, "se_la": label(i), "se_va": VALUE}
            | {"eid": f"00000000-0000-4000-8000-{i:012d}", "tv": "py-bench", "p": "srv"}
        )
        for i in range(n)
    ]
    pending = iter(queries)
    limits = httpx.Limits(max_connections=get_concurrency)
    async with httpx.AsyncClient(limits=limits) as http:

        async def worker() -> None:
            for query in pending:
                response = await http.get(f"{url}/i?{query}")
                response.raise_for_status()

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(get_concurrency)))
        delivered = client.wait_for(n, DELIVERY_TIMEOUT)
        seconds = time.perf_counter() - start
    return seconds, delivered


def raw_httpx_get(n: int, url: str, client: CollectorClient) -> Result:
    return asyncio.run(_raw_httpx_get(n, url, client))


DRIVERS: dict[str, Callable[[int, str, CollectorClient], Result]] = {
    "asynctracker-sqlite-post": asynctracker_sqlite_post,
    "asynctracker-memory-post": asynctracker_memory_post,
    "asynctracker-sqlite-get": asynctracker_sqlite_get,
    "asynctracker-sqlite-drain": asynctracker_sqlite_drain,
    "aio-snowplow-tracker": aio_snowplow_tracker,
    "snowplow-tracker": snowplow_tracker,
    "raw-httpx": raw_httpx,
    "raw-httpx-get": raw_httpx_get,
}


def run(
    name: str,
    n_events: int,
    collector_url: str,
    caller_pattern: str = "gather1000",
    get_in_flight: int = 16,
) -> dict[str, float | int | str]:
    """Run one driver in this process against a fresh collector count."""
    global pattern, get_concurrency
    pattern = caller_pattern
    get_concurrency = get_in_flight
    client = CollectorClient(collector_url)
    try:
        client.reset()
        seconds, delivered = DRIVERS[name](n_events, collector_url, client)
        counts = client.counts()
    finally:
        client.close()
    return {
        "driver": name,
        "n": n_events,
        "seconds": seconds,
        "delivered": delivered,
        "events_per_s": delivered / seconds if seconds > 0 else 0.0,
        "requests": counts.get("requests", 0),
        "duplicates": counts["count"] - counts.get("unique", counts["count"]),
    }


def run_isolated(
    name: str,
    n_events: int,
    collector_url: str,
    timeout: float = 300.0,
    caller_pattern: str = "gather1000",
    get_in_flight: int = 16,
) -> dict[str, float | int | str]:
    """Run one driver in a fresh interpreter; bounded by ``timeout`` seconds."""
    args = [sys.executable, str(Path(__file__).resolve()), name]
    args += ["--n", str(n_events), "--url", collector_url, "--pattern", caller_pattern]
    args += ["--get-concurrency", str(get_in_flight)]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"driver {name} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description="run one benchmark driver once")
    parser.add_argument("driver", choices=sorted(DRIVERS))
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--url", required=True, help="collector base URL (127.0.0.1 only)")
    parser.add_argument("--pattern", choices=PATTERNS, default="gather1000")
    parser.add_argument("--get-concurrency", type=int, default=16)
    args = parser.parse_args()
    if not args.url.startswith("http://127.0.0.1:"):
        parser.error("benchmarks only talk to http://127.0.0.1:PORT")
    print(json.dumps(run(args.driver, args.n, args.url, args.pattern, args.get_concurrency)))


if __name__ == "__main__":
    main()
