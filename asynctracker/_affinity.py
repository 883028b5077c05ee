"""Which process and event loop an object's per-loop state belongs to.

An emitter holds things that live and die with one event loop (its send task, its
timer, the owned HTTP client's connections) and with one process (everything, after a
fork). A tracker made at import time outlives loops (``asyncio.run`` twice) and is
copied into forked children (gunicorn ``--preload``, Celery prefork), so before it
reuses any of that state it asks :meth:`Affinity.move_here`. The hot path asks
:meth:`Affinity.here` instead: two comparisons.
"""

from __future__ import annotations

import asyncio
import enum

from . import _process
from .exceptions import ConfigurationError

__all__ = ["Affinity", "Move"]


class Move(enum.Enum):
    """What changed since the state was made: what the owner must drop."""

    NONE = "none"  # the same loop in the same process: keep everything
    FIRST = "first"  # nothing was made yet
    NEW_LOOP = "new_loop"  # the old loop has stopped: its tasks and connections are dead
    FORKED = "forked"  # a child process: everything the parent made is the parent's


class Affinity:
    """The home (process, event loop) of one owner's per-loop state."""

    __slots__ = ("forks", "loop", "owner")

    def __init__(self, owner: str) -> None:
        self.owner = owner
        self.forks = _process.forks
        self.loop: asyncio.AbstractEventLoop | None = None

    def here(self, loop: asyncio.AbstractEventLoop) -> bool:
        """Is ``loop`` (the running loop) this process's home loop?"""
        return self.loop is loop and self.forks == _process.forks

    def home_process(self) -> bool:
        """Is this the process the home loop belongs to (no fork since)?"""
        return self.forks == _process.forks

    def move_here(self) -> Move:
        """Make the running loop of this process the home, and say what changed.

        Raises ConfigurationError when another loop of this process still runs with
        the state (one tracker serves one loop at a time). In a forked child the
        parent's loop may look running (its state was copied mid-run): it is not.
        """
        loop = asyncio.get_running_loop()
        if self.forks != _process.forks:
            self.forks = _process.forks
            self.loop = loop
            return Move.FORKED
        old = self.loop
        if old is loop:
            return Move.NONE
        if old is not None and old.is_running() and not old.is_closed():
            raise ConfigurationError(
                f"this {self.owner} is in use on another running event loop; "
                f"use one {self.owner} per event loop"
            )
        self.loop = loop
        return Move.FIRST if old is None else Move.NEW_LOOP

    def leave(self) -> None:
        """The home loop is ending: the next loop to use the owner starts afresh."""
        self.loop = None
