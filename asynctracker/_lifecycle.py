"""The emitter's lifecycle: unopened, open, closed, and following loops and forks.

An emitter is opened by ``async with`` or its first event: the storage opens, the owned
HTTP client is made, and events left by an earlier run start sending. It is closed once,
by ``aclose()``. In between, two things can pull the ground from under it:

* the event loop ends (``asyncio.run`` returns with the emitter open): a loop-end hook
  (``_loop_end``) stops the send task and closes the owned client while the loop still
  runs, and the next loop that uses the emitter opens it again;
* the process forks: the child never reuses the parent's task, timer or connections,
  and opens afresh.

Both are noticed where they happen (the hook, ``_process.forks`` bumped at fork), so
the emitter's hot path only compares two values and the running loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import importlib
import logging
import os
from collections.abc import AsyncGenerator, Callable

import httpx

from . import _process
from ._loop_end import call_at_loop_end
from ._pacing import Pacing
from ._send_loop import SendLoop
from ._sender import Sender, no_cookies
from .exceptions import ClosedError, ConfigurationError
from .storage._rowstore import RowStore

__all__ = ["Lifecycle", "State"]

logger = logging.getLogger("asynctracker")

# Seconds of adds one loop turn may run before a caller that loops on track_* sits out
# a turn (see _pacing). Every storage may store without suspending (SQLiteStorage
# commits a lone caller's insert inline), so every one gets the budget.
_TURN_BUDGET = 0.0005
# Loop-end hooks copied from the parent by fork(); see Lifecycle._check_fork.
_INHERITED_HOOKS: list[object] = []


class State(enum.Enum):
    UNOPENED = "unopened"
    OPEN = "open"
    CLOSED = "closed"


def new_client(timeout: float, max_connections: int) -> httpx.AsyncClient:
    """Build the owned client. Blocking: run it in a worker thread.

    Creating the client loads the CA bundle (tens of milliseconds of disk and CPU),
    and httpcore imports anyio's asyncio backend on its first request; both are
    done here, off the event loop, so the first track_* does not stall it.
    """
    with contextlib.suppress(ImportError):
        importlib.import_module("anyio._backends._asyncio")
    return httpx.AsyncClient(
        timeout=timeout,
        limits=httpx.Limits(
            max_connections=max_connections,
            max_keepalive_connections=max_connections,
        ),
        # Collectors set a network user id cookie; sent back, it would stitch
        # every user of this process into one. The Sender follows redirects.
        cookies=no_cookies(),
        follow_redirects=False,
    )


class Lifecycle:
    """Opens and closes one emitter's storage, HTTP client and send loop, and starts
    them over on a new event loop or in a forked child.

    ``state``, ``forks`` and ``loop`` are read on the emitter's hot path: while the
    state is OPEN, ``forks`` is ``_process.forks`` and ``loop`` the running loop, the
    emitter is ready on this loop in this process.
    """

    def __init__(
        self,
        store: RowStore,
        send: SendLoop,
        *,
        client: httpx.AsyncClient | None,
        new_client: Callable[[], httpx.AsyncClient],
        new_sender: Callable[[httpx.AsyncClient], Sender],
        destination: str,
    ) -> None:
        self._store = store
        self._destination = destination
        self._send = send
        self.client = client
        self.owns_client = client is None
        self._new_client = new_client
        self._new_sender = new_sender
        #: The emitter's adding budget per loop turn; new on every loop and after fork.
        self.pacing = Pacing(_TURN_BUDGET)
        self.state = State.UNOPENED
        self.pid = os.getpid()
        self.forks = _process.forks
        self.loop: asyncio.AbstractEventLoop | None = None
        self._loop_end: AsyncGenerator[None, None] | None = None
        self._open_lock: asyncio.Lock | None = None

    async def _bind_destination(self) -> None:
        """Rows record their collector: this emitter sends only its own from a file
        that programs for other collectors share (see SQLiteStorage.bind_destination)."""
        waiting = await self._store.bind_destination(self._destination)
        for collector, count in waiting.items():
            logger.warning(
                "%s holds %d event(s) for another collector, %s: this emitter (for %s) "
                "never sends them; an emitter for that collector opened on the file does",
                self._store.location,
                count,
                collector,
                self._destination,
            )

    async def open(self) -> None:
        """Open storage and the HTTP client, then send what storage holds.

        Raises StorageError if the storage cannot be opened, ClosedError after close.
        """
        self._check_fork()
        self._check_loop()
        if self.state is State.OPEN:
            return
        if self.state is State.CLOSED:
            raise ClosedError("this emitter was closed; create a new one")
        if self._open_lock is None:
            self._open_lock = asyncio.Lock()
        send = self._send
        async with self._open_lock:
            if self.state is not State.UNOPENED:
                return
            await self._store.open()
            await self._bind_destination()
            send.queued = send.fresh = await self._store.count()
            if self.owns_client:
                self.client = await asyncio.to_thread(self._new_client)
            assert self.client is not None
            send.sender = self._new_sender(self.client)
            self.state = State.OPEN
            send.active = True
            self._loop_end = await call_at_loop_end(self._loop_ended)
        # Rows claimed by a send iteration the previous event loop stopped in mid-flight.
        await send.release_cut_off()
        if send.queued:
            send.wake()

    def _check_loop(self) -> None:
        """Follow the event loop the emitter is used from.

        A tracker made at import time and used by two ``asyncio.run`` calls in a row
        finds the first loop's send task, timer and HTTP connections dead: start over
        on the new loop (rows a stopped send had claimed are released on opening).
        """
        loop = asyncio.get_running_loop()
        old, self.loop = self.loop, loop
        if old is None or old is loop:
            return
        if old.is_running():
            self.loop = old
            raise ConfigurationError(
                "this emitter is in use on another running event loop; "
                "use one tracker per event loop"
            )
        self._forget()
        if self.state is State.OPEN:
            self.state = State.UNOPENED
            if self.owns_client:
                self.client = None  # its connections belong to the stopped loop

    def _check_fork(self) -> None:
        """In a forked child, never reuse the parent's task, timer or connections."""
        self.forks = _process.forks
        if self.pid == os.getpid():
            return
        self.pid = os.getpid()
        if self._loop_end is not None:
            # Collected, it would schedule itself on the parent's loop, whose wake-up
            # socket this process shares with the parent: keep it.
            _INHERITED_HOOKS.append(self._loop_end)
        self._forget()
        self._send.cut_off = None  # the parent's rows, which the parent is still sending
        if self.state is State.OPEN:
            # open() runs again in the child: a new owned client, a new connection.
            self.state = State.UNOPENED
            if self.owns_client:
                self.client = None
            else:
                logger.warning(
                    "emitter used in a forked child with the parent's http_client; "
                    "create the client after fork"
                )

    async def _loop_ended(self) -> None:
        """The event loop is shutting down with this emitter open (``asyncio.run``
        returning without ``aclose()``; see ``_loop_end``): stop sending and close the
        owned HTTP client while the loop still runs. The next loop that uses the
        emitter opens it again; rows a cut-off send had claimed are released then."""
        if self.state is not State.OPEN or self.loop is not asyncio.get_running_loop():
            return
        self.state = State.UNOPENED
        self.loop = None
        await self._send.stop()
        self._forget()
        if self.owns_client and self.client is not None:
            client, self.client = self.client, None
            await client.aclose()

    def _forget(self) -> None:
        """Drop what belongs to a stopped loop or to the parent process, untouched."""
        self._loop_end = None
        self._open_lock = None
        self._send.forget()
        self.pacing = Pacing(_TURN_BUDGET)

    async def close(self) -> None:
        """Stop sending, close the owned client, warn about undelivered events, close
        the storage (which releases its claims). Idempotent."""
        if self.state is State.CLOSED:
            return
        self._check_loop()
        was_open = self.state is State.OPEN
        self.state = State.CLOSED
        loop_end, self._loop_end = self._loop_end, None
        if loop_end is not None:
            await loop_end.aclose()  # nothing left for it to do
        await self._send.stop(same_process=self.pid == os.getpid())
        try:
            if was_open and self.owns_client and self.client is not None:
                await self.client.aclose()
        finally:
            if was_open:
                await self._warn_undelivered()
            await self._store.aclose()

    async def _warn_undelivered(self) -> None:
        """The closing WARNING about events left behind (see _health)."""
        try:
            left = await self._store.count()
        except Exception:  # the storage's own error surfaces from close, if at all
            left = 0
        self._send.delivery_log.close(left, self._store.location)
