"""A fast counting Snowplow collector for benchmarks, run as its own process.

    python benchmarks/collector.py [--port 0] [--eids]

Endpoints (127.0.0.1 only):

- ``POST /com.snowplowanalytics.snowplow/tp2``: parses the body, counts ``data`` events.
- ``GET /i``: counts one event.
- ``GET /count``: ``{"count": n, "requests": r, "unique": u}`` (``unique`` only with --eids,
  which keeps every ``eid`` so duplicates show up as ``count - unique``).
- ``POST /reset``: zeroes the counters.

It prints ``PORT <n>`` on stdout once listening, and exits when its parent dies, so a
crashed benchmark never leaves it behind. ``CollectorProcess`` starts and stops it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

POST_PATH = "/com.snowplowanalytics.snowplow/tp2"


def _build_app(keep_eids: bool) -> Any:
    from aiohttp import web

    state: dict[str, Any] = {"count": 0, "requests": 0, "eids": set()}
    eids: set[str] = state["eids"]

    async def post(request: web.Request) -> web.Response:
        body = await request.read()
        data = json.loads(body)["data"]
        state["count"] += len(data)
        state["requests"] += 1
        if keep_eids:
            eids.update(event.get("eid", "") for event in data)
        return web.Response(status=200)

    async def get(request: web.Request) -> web.Response:
        state["count"] += 1
        state["requests"] += 1
        if keep_eids:
            eids.add(request.query.get("eid", ""))
        return web.Response(status=200)

    async def count(request: web.Request) -> web.Response:
        answer = {"count": state["count"], "requests": state["requests"]}
        if keep_eids:
            answer["unique"] = len(eids)
        return web.json_response(answer)

    async def reset(request: web.Request) -> web.Response:
        state["count"] = 0
        state["requests"] = 0
        eids.clear()
        return web.Response(status=200)

    app = web.Application(client_max_size=16 * 1024 * 1024)
    app.router.add_post(POST_PATH, post)
    app.router.add_get("/i", get)
    app.router.add_get("/count", count)
    app.router.add_post("/reset", reset)
    return app


async def _serve(port: int, keep_eids: bool) -> None:
    from aiohttp import web

    runner = web.AppRunner(_build_app(keep_eids), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port, backlog=1024)
    await site.start()
    server = site._server
    assert server is not None
    bound = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    print(f"PORT {bound}", flush=True)
    parent = os.getppid()
    try:
        while os.getppid() == parent:  # noqa: ASYNC110 - polling for the parent's death
            await asyncio.sleep(0.5)
    finally:
        await runner.cleanup()


class CollectorProcess:
    """Start the collector in a child process; ``with CollectorProcess() as c: c.url``."""

    def __init__(self, *, keep_eids: bool = True, port: int = 0) -> None:
        self.keep_eids = keep_eids
        self.proc: subprocess.Popen[str] | None = None
        self.port = port

    def __enter__(self) -> CollectorProcess:
        args = [sys.executable, str(Path(__file__).resolve()), "--port", str(self.port)]
        if self.keep_eids:
            args.append("--eids")
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("PORT "):
            self.close()
            raise RuntimeError(f"collector did not start: {line!r}")
        self.port = int(line.split()[1])
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class CollectorClient:
    """Blocking keep-alive client for /count and /reset (independent of the code under test)."""

    def __init__(self, url: str) -> None:
        host_port = url.split("://", 1)[1].rstrip("/")
        host, port = host_port.split(":")
        self._conn = http.client.HTTPConnection(host, int(port), timeout=10)

    def _call(self, method: str, path: str) -> bytes:
        for attempt in range(2):
            try:
                self._conn.request(method, path)
                return self._conn.getresponse().read()
            except (ConnectionError, http.client.HTTPException):
                self._conn.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def counts(self) -> dict[str, int]:
        return dict(json.loads(self._call("GET", "/count")))

    def count(self) -> int:
        return self.counts()["count"]

    def reset(self) -> None:
        self._call("POST", "/reset")

    def wait_for(self, n: int, timeout: float = 60.0, interval: float = 0.002) -> int:
        """Poll until the collector has counted ``n`` events (or timeout); return the count."""
        deadline = time.perf_counter() + timeout
        while True:
            seen = self.count()
            if seen >= n or time.perf_counter() > deadline:
                return seen
            time.sleep(interval)

    def close(self) -> None:
        self._conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--eids", action="store_true", help="keep eids to count duplicates")
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args.port, args.eids))


if __name__ == "__main__":
    main()
