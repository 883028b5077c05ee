"""Be told when the event loop shuts down, while it still runs.

A tracker made at import time outlives the loop it was first used on: ``asyncio.run``
returns, its loop closes, and the tracker's send task and HTTP connections go with it,
sockets left unclosed. asyncio gives no "loop closing" callback, but
``asyncio.run`` (and ``asyncio.Runner``) close every async generator still suspended
on the loop before closing it, awaiting each. So a generator parked at its ``yield``
runs its ``finally`` at exactly that moment, with the loop still running: there the
owner closes what belongs to that loop, and opens afresh on the next one.
"""

from __future__ import annotations

import weakref
from collections.abc import AsyncGenerator, Awaitable, Callable

__all__ = ["call_at_loop_end"]


async def call_at_loop_end(callback: Callable[[], Awaitable[None]]) -> AsyncGenerator[None, None]:
    """Await ``callback()`` (a bound method) when the running loop shuts down.

    Returns the parked generator: keep a reference to it (the loop holds a weak one),
    and ``aclose()`` it to call back early or when the owner closes. Holds the owner
    weakly, so a forgotten owner is not kept alive by its loop.
    """
    method = weakref.WeakMethod(callback)

    async def parked() -> AsyncGenerator[None, None]:
        try:
            yield
        finally:
            owner_callback = method()
            if owner_callback is not None:
                await owner_callback()

    sentinel = parked()
    await sentinel.asend(None)
    return sentinel
