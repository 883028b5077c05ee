"""Has this process forked since? Answered without a system call, and told once.

The emitter, its storage and the event-id buffer must never reuse what a forked child
inherited from its parent (a send task, HTTP connections, SQLite connections, random
bytes). They ask on every ``track_*`` call, so the question must cost an attribute
read: ``forks`` counts the forks this process descends from, bumped in each child. A
saved value that differs from it means "forked since": the caller then starts over.

Work that must happen at the fork itself (a SQLite connection closed in the child
before anything can use it) registers here with :func:`at_fork`: this module is the
one place that calls ``os.register_at_fork``.
"""

from __future__ import annotations

import os
from collections.abc import Callable

__all__ = ["at_fork", "forks"]

#: How many times this process, or an ancestor of it, has run ``os.fork()``'s child side.
forks = 0

_before: list[Callable[[], None]] = []
_after_in_parent: list[Callable[[], None]] = []
_after_in_child: list[Callable[[], None]] = []


def at_fork(
    *,
    before: Callable[[], None] | None = None,
    after_in_parent: Callable[[], None] | None = None,
    after_in_child: Callable[[], None] | None = None,
) -> None:
    """Call these around every later ``os.fork()`` (as ``os.register_at_fork`` does).

    ``before`` hooks run in the reverse order of registration, the others in order.
    """
    if before is not None:
        _before.insert(0, before)
    if after_in_parent is not None:
        _after_in_parent.append(after_in_parent)
    if after_in_child is not None:
        _after_in_child.append(after_in_child)


def _run(hooks: list[Callable[[], None]]) -> None:
    for hook in hooks:
        hook()


def _count_fork() -> None:
    global forks
    forks += 1
    _run(_after_in_child)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(
        before=lambda: _run(_before),
        after_in_parent=lambda: _run(_after_in_parent),
        after_in_child=_count_fork,
    )
