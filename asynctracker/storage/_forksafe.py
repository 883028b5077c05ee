"""The sqlite3 connections SQLiteStorage uses, safe across fork.

SQLite keeps per-process bookkeeping of its file locks; a child forked while a
connection is open inherits it without the locks, and can be locked out or lose
commits (https://www.sqlite.org/howtocorrupt.html, 2.6). So every call into SQLite runs
inside the connection's gate (never while waiting for the loop or another process's
lock), ``os.fork()`` waits at every gate, and the child closes its idle copies first.
``execute`` keeps sqlite3's contract; the gated calls have names of their own.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import sqlite3
import threading
import weakref
from collections.abc import Sequence
from typing import Any

from .. import _process

__all__ = ["ForkSafeConnection", "is_busy"]

logger = logging.getLogger("asynctracker")

# sqlite3.SQLITE_BUSY and SQLITE_LOCKED exist from Python 3.11 only.
_BUSY_CODES = (5, 6)
# How long a fork waits for a statement in progress (one never waits for a lock inside
# the gate: only a very slow disk gets here).
_FORK_WAIT = 2.0


def is_busy(exc: sqlite3.Error) -> bool:
    """Did the statement fail because another connection holds a lock (SQLITE_BUSY or
    SQLITE_LOCKED)? By error code where Python gives one (3.11+), else by message."""
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(code, int):
        return code & 0xFF in _BUSY_CODES
    message = str(exc).lower()
    return "locked" in message or "busy" in message


# Guards the set of open connections; held while one is opened or closed, so a fork
# never copies SQLite in the middle of either.
_registry = threading.Lock()
_open: weakref.WeakSet[ForkSafeConnection] = weakref.WeakSet()
_held: list[ForkSafeConnection] = []


class ForkSafeConnection(sqlite3.Connection):
    """A sqlite3 connection whose calls a fork waits for (see the module)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._gate = threading.Lock()
        with _registry:
            super().__init__(*args, **kwargs)
            _open.add(self)

    def rows(self, sql: str, parameters: Sequence[object] = ()) -> tuple[list[Any], int]:
        """One statement: its rows, and how many rows it changed (its triggers' not)."""
        with self._gate:
            cursor = self.execute(sql, parameters)
            rows = cursor.fetchall()
            return rows, max(cursor.rowcount, 0)

    def script(self, sql_script: str) -> None:
        """Run a script with ``sqlite3_exec``, which steps each statement to its end."""
        with self._gate:
            self.executescript(sql_script)

    def in_gate(self) -> threading.Lock:
        """The gate, for a transaction that is one call of several statements."""
        return self._gate

    def close(self) -> None:
        with _registry, self._gate:
            _open.discard(self)
            super().close()


def _before_fork() -> None:
    """Wait until no open connection is inside SQLite, and keep it so until forked."""
    _registry.acquire()
    for conn in list(_open):
        if conn._gate.acquire(timeout=_FORK_WAIT):
            _held.append(conn)
        else:
            logger.warning("forking while a SQLite statement still runs; the child keeps its copy")


def _after_fork(*, child: bool) -> None:
    """Open the gates again; in the child, close the (idle) copies of the parent's
    connections first."""
    for conn in _held:
        if child:
            with contextlib.suppress(sqlite3.Error):
                sqlite3.Connection.close(conn)
            _open.discard(conn)
        conn._gate.release()
    _held.clear()
    _registry.release()


def _close_at_exit() -> None:
    """At exit, close the connections of storages never closed (their threads are
    daemons): SQLite checkpoints the WAL and removes its files, as a normal close does."""
    for conn in list(_open):
        with contextlib.suppress(sqlite3.Error):
            conn.close()


atexit.register(_close_at_exit)
_process.at_fork(
    before=_before_fork,
    after_in_parent=lambda: _after_fork(child=False),
    after_in_child=lambda: _after_fork(child=True),
)
