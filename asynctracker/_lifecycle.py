"""The emitter's lifecycle: unopened, open, closed, on one event loop of one process.

An emitter is opened by ``async with`` or its first event: the storage opens and binds
the emitter's destination, the owned HTTP client is made, and events left by an
earlier run start sending. It is closed once, by ``aclose()``. In between, the ground
can move (see ``_affinity``): the event loop ends (``asyncio.run`` returning with the
emitter open: a loop-end hook, ``_loop_end``, stops the send task and closes the owned
client while the loop still runs), a new loop uses the emitter, or the process forks.
Then what belonged to the old loop or the parent is dropped untouched and the emitter
opens afresh. This class is the one owner of that state for the emitter and, through
it, its storage.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import importlib
import logging
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass

import httpx

from ._affinity import Affinity, Move
from ._loop_end import call_at_loop_end
from ._pacing import Pacing
from ._rowstore import RowStore
from ._send_loop import SendLoop
from ._sender import Sender, no_cookies
from ._threads import Worker
from .exceptions import ClosedError

__all__ = ["Destination", "Lifecycle", "State", "new_client"]

logger = logging.getLogger("asynctracker")

# Seconds of adds one loop turn may run before a caller that loops on track_* sits out
# a turn (see _pacing).
_TURN_BUDGET = 0.0005
# Loop-end hooks copied from the parent by fork(): collected, one would schedule itself
# on the parent's loop, whose wake-up socket the child shares. Kept, never run.
_INHERITED_HOOKS: list[object] = []
# Blocking set-up work (loading CA certificates for the owned client) runs here.
_SETUP = Worker("asynctracker-setup")


class State(enum.Enum):
    UNOPENED = "unopened"
    OPEN = "open"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class Destination:
    """Who the emitter's events are for: ``identity`` (secrets included; storages keep
    a keyed hash), ``shown`` (the collector URL without secrets), and ``legacy``
    (whether rows an earlier version stored for ``shown`` may be this emitter's)."""

    identity: str
    shown: str
    legacy: bool


def new_client(timeout: float, max_connections: int, trust_env: bool) -> httpx.AsyncClient:
    """Build the owned client. Blocking (it loads the CA bundle, and httpcore imports
    anyio's asyncio backend on its first request): run it off the event loop."""
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
        trust_env=trust_env,
    )


class Lifecycle:
    """Opens and closes one emitter's storage, HTTP client and send loop (see the
    module). ``state`` and ``affinity`` are read on the emitter's hot path."""

    def __init__(
        self,
        store: RowStore,
        send: SendLoop,
        *,
        client: httpx.AsyncClient | None,
        new_client: Callable[[], httpx.AsyncClient],
        new_sender: Callable[[httpx.AsyncClient], Sender],
        destination: Destination,
        close_timeout: float,
    ) -> None:
        self._store = store
        self._send = send
        self._destination = destination
        self._close_timeout = close_timeout
        self.client = client
        self.owns_client = client is None
        self._new_client = new_client
        self._new_sender = new_sender
        #: The emitter's adding budget per loop turn; new on every loop and after fork.
        self.pacing = Pacing(_TURN_BUDGET)
        self.state = State.UNOPENED
        self.affinity = Affinity("tracker")
        self._loop_end: AsyncGenerator[None, None] | None = None
        self._open_lock: asyncio.Lock | None = None

    def open_here(self, loop: asyncio.AbstractEventLoop) -> bool:
        """Open on ``loop``, the running loop, in this process (a stopped loop's or the
        parent's open state does not count)."""
        return self.state is State.OPEN and self.affinity.here(loop)

    async def open(self) -> None:
        """Open storage and the HTTP client, then send what storage holds.

        Raises StorageError if the storage cannot be opened, ClosedError after close,
        ConfigurationError while another running loop uses the emitter.
        """
        self._follow()
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
            await send.recount(opening=True)
            if self.owns_client:
                self.client = await _SETUP.call(self._new_client)
            assert self.client is not None
            send.sender = self._new_sender(self.client)
            self.state = State.OPEN
            send.active = True
            self._loop_end = await call_at_loop_end(self._loop_ended)
        # Rows claimed by a send iteration the previous event loop stopped in mid-flight.
        await send.release_cut_off()
        if send.queued:
            send.wake()

    async def _bind_destination(self) -> None:
        """Rows record their destination: this emitter sends only its own from a file
        shared with programs for other collectors or tenants, and says what waits."""
        destination = self._destination
        await self._store.bind_destination(
            destination.identity, destination.shown, legacy=destination.legacy
        )
        waiting = await self._store.waiting_elsewhere()
        for number, (shown, count) in waiting.items():
            location = self._store.location
            logger.warning(
                "%s holds %d event(s) for another destination, #%s %s: this emitter (for "
                "%s) never sends them. To send them with this emitter: await "
                "emitter.adopt_events(%s), or `asynctracker queue %s --move %s --to URL`; "
                "to save them: `asynctracker queue %s --export %s`",
                location,
                count,
                number,
                shown,
                destination.shown,
                number,
                location,
                number,
                location,
                number,
            )

    def _follow(self) -> None:
        """Make the running loop of this process the home (see ``_affinity``)."""
        move = self.affinity.move_here()
        if move is Move.NONE or move is Move.FIRST:
            return
        if move is Move.FORKED:
            if self._loop_end is not None:
                _INHERITED_HOOKS.append(self._loop_end)
            self._send.cut_off = None  # the parent's rows, which the parent is still sending
            if self.state is State.OPEN and not self.owns_client:
                logger.warning(
                    "emitter used in a forked child with the parent's http_client; "
                    "create the client after fork"
                )
        self._forget()
        if self.state is State.OPEN:
            self.state = State.UNOPENED
            if self.owns_client:
                self.client = None  # its connections belong to the old loop or the parent

    def _forget(self) -> None:
        """Drop what belongs to a stopped loop or to the parent process, untouched."""
        self._loop_end = None
        self._open_lock = None
        self._send.forget()
        self._send.reporter.forget()
        self.pacing = Pacing(_TURN_BUDGET)

    async def _loop_ended(self) -> None:
        """The event loop is shutting down with this emitter open: stop sending and
        close the owned client while the loop still runs. The next loop that uses the
        emitter opens it again; rows a cut-off send had claimed are released then."""
        loop = asyncio.get_running_loop()
        if not self.open_here(loop):
            return
        self.state = State.UNOPENED
        self.affinity.leave()
        await self._send.stop()
        await self._send.reporter.stop(self._close_timeout)
        self._forget()
        if self.owns_client and self.client is not None:
            client, self.client = self.client, None
            await client.aclose()

    async def close(self) -> None:
        """Stop sending, hand the callback what is queued (bounded by close_timeout),
        close the owned client, warn about undelivered events, close the storage (which
        releases its claims). Idempotent; works from inside the callback too."""
        if self.state is State.CLOSED:
            return
        self._follow()  # after a fork or a stopped loop: their tasks are dropped, untouched
        was_open = self.state is State.OPEN
        self.state = State.CLOSED
        loop_end, self._loop_end = self._loop_end, None
        if loop_end is not None:
            await loop_end.aclose()  # nothing left for it to do
        await self._send.stop()
        await self._send.reporter.stop(self._close_timeout)
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
        self._send.delivery_log.close(left, self._store.location, lost=self._store.lost)
