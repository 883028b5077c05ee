"""The sqlite3 connections SQLiteStorage uses, safe across fork.

SQLite keeps per-process bookkeeping of the locks each open file holds. A child forked
while a connection is open inherits that bookkeeping but not the operating-system locks
it describes (POSIX locks are not inherited), and its own new connection to the same
file then skips the locks it believes the process already holds: a child forked while
a statement was in flight stayed locked out of the file, and one forked while the
connection was idle could lose the commits it made after the parent closed. SQLite
documents the hazard: https://www.sqlite.org/howtocorrupt.html section 2.6.

So, three rules:

* every call into SQLite runs inside the connection's gate, rows fetched, and a
  transaction is one call: the gate is never held while waiting for the event loop,
  nor while waiting for another process's lock (the connection's own busy timeout is
  short; the storage waits out a longer lock between attempts, outside the gate);
* ``os.fork()`` waits at the gate of every open connection, so none is inside SQLite
  when the process is copied;
* the child closes its copies first thing (they are idle), before anything in it can
  open the file again, so its bookkeeping starts empty.

The sqlite3.Connection contract is kept: ``execute`` returns a cursor as usual; the
gated calls have names of their own.
"""

from __future__ import annotations

import atexit
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
# How long a fork waits for a statement in progress before it copies the process anyway
# (a statement never waits for a lock inside the gate, so this is only ever reached by
# a very slow disk).
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
        """Run one statement: its rows, and how many rows it changed itself (not
        counting what its triggers changed)."""
        with self._gate:
            cursor = self.execute(sql, parameters)
            rows = cursor.fetchall()
            return rows, max(cursor.rowcount, 0)

    def run_only(self, sql: str, parameters: Sequence[object] = ()) -> None:
        """Run a statement that returns no rows (an INSERT), with no rows object made."""
        with self._gate:
            self.execute(sql, parameters)

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


def _after_fork_in_parent() -> None:
    for conn in _held:
        conn._gate.release()
    _held.clear()
    _registry.release()


def _after_fork_in_child() -> None:
    """Close the copies of the parent's connections (idle: see _before_fork)."""
    for conn in _held:
        try:
            sqlite3.Connection.close(conn)
        except sqlite3.Error:
            logger.debug("could not close a connection inherited from the parent", exc_info=True)
        _open.discard(conn)
        conn._gate.release()
    _held.clear()
    _registry.release()


def _close_at_exit() -> None:
    """Close the connections of storages never closed, when the interpreter exits.

    Their threads are daemons and would simply stop; closing here (after a statement
    in flight, at the gate) lets SQLite checkpoint the WAL and remove its files, as a
    normal close does.
    """
    for conn in list(_open):
        try:
            conn.close()
        except sqlite3.Error:
            logger.debug("could not close a SQLite connection at exit", exc_info=True)


atexit.register(_close_at_exit)
_process.at_fork(
    before=_before_fork,
    after_in_parent=_after_fork_in_parent,
    after_in_child=_after_fork_in_child,
)
