"""Letting a program end that never stopped its collector.

aiosqlite's worker thread is not a daemon (its maintainers prefer a program that waits to
writes cut off), and the interpreter joins every non-daemon thread when the main thread
ends, before any ``atexit`` handler runs: one connection nobody closes keeps the process
alive for ever. The collector closes its connection when it stops, and stops itself when
its event loop shuts down (``asyncio.run`` does that), which covers nearly every program.
This covers the rest: a loop that was never shut down.

One daemon thread waits for the main thread to end, then calls aiosqlite's public
``Connection.stop()`` on every connection still open whose event loop is not running:
aiosqlite runs what is already queued, closes the file and ends its thread, and the
interpreter's join returns. (Events still waiting for the collector's writer task stay
unwritten: no loop is left to run it.) A connection whose loop still runs, on another
thread, is left to that loop's owner, whose thread keeps the process alive anyway.
"""

from __future__ import annotations

import asyncio
import threading
import weakref

import aiosqlite

from .. import _process

__all__ = ["forget_at_exit", "stop_at_exit"]

_lock = _process.ForkSafeLock()
_open: weakref.WeakKeyDictionary[aiosqlite.Connection, asyncio.AbstractEventLoop] = (
    weakref.WeakKeyDictionary()
)
_watcher: threading.Thread | None = None


def stop_at_exit(connection: aiosqlite.Connection, loop: asyncio.AbstractEventLoop) -> None:
    """Stop ``connection`` when the main thread ends, unless it was closed (and forgotten)
    before, or ``loop`` still runs then."""
    global _watcher
    with _lock:
        _open[connection] = loop
        # None yet, or the parent's, which a forked child does not have.
        if _watcher is None or not _watcher.is_alive():
            _watcher = threading.Thread(
                target=_stop_after_main, name="asynctracker-collector-exit", daemon=True
            )
            _watcher.start()


def forget_at_exit(connection: aiosqlite.Connection) -> None:
    """``connection`` is being closed by its owner: nothing to do for it at exit."""
    with _lock:
        _open.pop(connection, None)


def _stop_after_main() -> None:
    threading.main_thread().join()
    with _lock:
        left = list(_open.items())
    for connection, loop in left:
        if not loop.is_running():
            connection.stop()
