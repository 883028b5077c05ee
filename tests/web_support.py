"""Serving a framework app the way production does: a real server on 127.0.0.1.

Leaving each context stops the server as a deploy does, lifespan shutdown (uvicorn) or
``runner.cleanup()`` (aiohttp, the same shutdown as ``web.run_app`` on SIGTERM)
included, so tests see what reaches the collector once the app has stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import uvicorn
from aiohttp import web
from starlette.types import ASGIApp


@contextlib.asynccontextmanager
async def uvicorn_serving(app: ASGIApp) -> AsyncIterator[str]:
    """Run ``app`` under a real uvicorn server on 127.0.0.1; yields its base URL."""
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=0,
        lifespan="on",
        log_level="warning",
        proxy_headers=False,  # the middleware decides about X-Forwarded-For
        ws="none",
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError("uvicorn stopped during startup")
            await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


@contextlib.asynccontextmanager
async def aiohttp_serving(app: web.Application) -> AsyncIterator[str]:
    """Run ``app`` on a real aiohttp server on 127.0.0.1; yields its base URL."""
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()
