"""The sqlite3 connection SQLiteStorage runs on its own thread, safe across fork.

SQLite keeps per-process bookkeeping of the locks each open file holds. A child forked
while a connection is open inherits that bookkeeping but not the operating-system locks
it describes (POSIX locks are not inherited), and its own new connection to the same
file then skips the locks it believes the process already holds. Measured with this
package before the fix: a child forked while a statement was in flight stayed locked
out of the file for good (every time), and one forked while the connection was idle
could lose the commits it made after the parent closed (the parent, seeing no other
reader, took the WAL with it). SQLite documents the hazard:
https://www.sqlite.org/howtocorrupt.html section 2.6.

So, three rules:

* every statement runs whole, rows fetched, inside the connection's gate (so does
  every other call into SQLite), and a transaction is one call (``transaction``): the
  gate is never held while waiting for the event loop;
* ``os.fork()`` waits at the gate of every open connection, so none is inside SQLite
  when the process is copied;
* the child closes its copies first thing (they are idle), before anything in it can
  open the file again, so its bookkeeping starts empty.
"""

from __future__ import annotations

import atexit
import logging
import os
import sqlite3
import threading
import weakref
from collections.abc import Sequence
from typing import Any

__all__ = ["ForkSafeConnection", "is_busy"]

# sqlite3.SQLITE_BUSY and SQLITE_LOCKED exist from Python 3.11 only.
_BUSY_CODES = (5, 6)


def is_busy(exc: sqlite3.Error) -> bool:
    """Did the statement fail because another connection holds a lock (SQLITE_BUSY or
    SQLITE_LOCKED)? By error code where Python gives one (3.11+), else by message."""
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(code, int):
        return code & 0xFF in _BUSY_CODES
    message = str(exc).lower()
    return "locked" in message or "busy" in message


logger = logging.getLogger("asynctracker")

# Guards the set of open connections; held while one is opened or closed, so a fork
# never copies SQLite in the middle of either.
_registry = threading.Lock()
_open: weakref.WeakSet[ForkSafeConnection] = weakref.WeakSet()
_held: list[ForkSafeConnection] = []


class ForkSafeConnection(sqlite3.Connection):
    """A sqlite3 connection whose statements a fork waits for (opened and used on the
    storage's thread, ``_sqlite_thread``, or on the loop's for inline inserts)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._gate = threading.Lock()
        # A statement waits up to the busy timeout for another process's lock.
        self._longest_statement = float(kwargs.get("timeout", 5.0))
        with _registry:
            super().__init__(*args, **kwargs)
            _open.add(self)

    def execute(self, sql: str, parameters: Any = (), /) -> Any:
        with self._gate:
            return super().execute(sql, parameters).fetchall()

    def fetch(self, sql: str, parameters: Sequence[object] = ()) -> tuple[list[Any], int]:
        """Run one statement: its rows, and how many rows it changed."""
        with self._gate:
            before = super().total_changes
            rows = super().execute(sql, parameters).fetchall()
            return rows, super().total_changes - before

    def transaction(self, statements: Sequence[tuple[str, Sequence[object]]]) -> list[Any]:
        """Run the statements as one ``BEGIN IMMEDIATE`` transaction (all or nothing);
        each statement's rows, in order."""
        with self._gate:
            return self._transaction(statements)

    def execute_only(self, sql: str, parameters: Any = (), /) -> None:
        """Run a statement that returns no rows (an INSERT), with no rows object made."""
        with self._gate:
            super().execute(sql, parameters)

    def _transaction(self, statements: Sequence[tuple[str, Sequence[object]]]) -> list[Any]:
        execute = super().execute
        execute("BEGIN IMMEDIATE")
        try:
            results = [execute(sql, params).fetchall() for sql, params in statements]
            execute("COMMIT")
        except BaseException:
            if self.in_transaction:
                execute("ROLLBACK")
            raise
        return results

    def executescript(self, sql_script: str, /) -> sqlite3.Cursor:
        with self._gate:
            return super().executescript(sql_script)

    def close(self) -> None:
        with _registry, self._gate:
            _open.discard(self)
            super().close()


def _before_fork() -> None:
    """Wait until no open connection is inside SQLite, and keep it so until forked."""
    _registry.acquire()
    for conn in list(_open):
        if conn._gate.acquire(timeout=conn._longest_statement + 1.0):
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

    Their threads are daemons (see ``_sqlite_thread``) and
    would simply stop; closing here (after a statement in flight, at the gate) lets
    SQLite checkpoint the WAL and remove its files, as a normal close does.
    """
    for conn in list(_open):
        try:
            conn.close()
        except sqlite3.Error:
            logger.debug("could not close a SQLite connection at exit", exc_info=True)


atexit.register(_close_at_exit)

if hasattr(os, "register_at_fork"):
    os.register_at_fork(
        before=_before_fork,
        after_in_parent=_after_fork_in_parent,
        after_in_child=_after_fork_in_child,
    )
