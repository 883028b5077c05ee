"""Has this process forked since? Answered without a system call.

The emitter and SQLiteStorage must notice a fork before they reuse the parent's task,
HTTP connections or SQLite connection, and they ask on every ``track_*`` call, where
``os.getpid()`` (a system call, ~0.2 us on this project's benchmark machine) was a few
percent of the event loop's work per event. ``forks`` counts the forks this process
descends from, bumped in each child by ``os.register_at_fork``: comparing it to a value
saved earlier is an attribute read. A change sends the caller down its slow path, which
still compares process ids.
"""

from __future__ import annotations

import os

__all__ = ["forks"]

#: How many times this process, or an ancestor of it, has run ``os.fork()``'s child side.
forks = 0


def _count_fork() -> None:
    global forks
    forks += 1


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_count_fork)
