"""This process: has it forked since (answered without a system call), who is it, and
is another process still alive.

The emitter, its storage and the event-id buffer must never reuse what a forked child
inherited from its parent (a send task, HTTP connections, SQLite connections, random
bytes). They ask on every ``track_*`` call, so the question must cost an attribute
read: ``forks`` counts the forks this process descends from, bumped in each child. A
saved value that differs from it means "forked since": the caller then starts over.

Work that must happen at the fork itself (a SQLite connection closed in the child
before anything can use it) registers here with :func:`at_fork`: this module is the
one place that calls ``os.register_at_fork``. A lock another thread may hold at the
fork is a :class:`ForkSafeLock`: the child gets it afresh, unheld.

Processes sharing a SQLite file mark the rows they send with an owner id,
``host/pid/start-time/token``: the process start time (from /proc on Linux) tells a
live process from a later one that reused the pid, so a killed worker's rows come back
at once. :data:`BOOT` names this host's boot: an owner of an earlier boot is dead (a
reboot ends every process), and a claim of this boot can expire by the monotonic
clock, which every process of the boot shares and wall-clock steps never move. Off
Linux, or for another host, liveness is unknown.
"""

from __future__ import annotations

import os
import socket
import threading
import uuid
import weakref
from collections.abc import Callable

__all__ = ["BOOT", "ForkSafeLock", "at_fork", "dead_owners", "forks", "new_owner_id"]

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


class ForkSafeLock:
    """A ``threading.Lock`` (``with lock:``) that a forked child gets afresh: the parent's
    may be held at the fork by a thread the child does not have, and would stay held."""

    __slots__ = ("__weakref__", "_lock")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        _fork_safe_locks.add(self)

    def __enter__(self) -> None:
        self._lock.acquire()

    def __exit__(self, *exc_info: object) -> None:
        self._lock.release()


_fork_safe_locks: weakref.WeakSet[ForkSafeLock] = weakref.WeakSet()


def _count_fork() -> None:
    global forks
    forks += 1
    for lock in _fork_safe_locks:  # the child's one thread, before anything else runs
        lock._lock = threading.Lock()
    _run(_after_in_child)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(
        before=lambda: _run(_before),
        after_in_parent=lambda: _run(_after_in_parent),
        after_in_child=_count_fork,
    )


_HOST = socket.gethostname().replace("/", "_")
_HAS_PROC = os.path.exists("/proc/self/stat")


def _boot_id() -> str | None:
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as file:
            return f"{_HOST}/{file.read().strip()}"
    except OSError:
        return None


#: This host's current boot (None where the system does not say): claims made in it
#: expire by ``time.monotonic()``, which every process of the boot shares.
BOOT = _boot_id()


def _start_time(pid: int) -> str | None:
    """The kernel's start time of ``pid`` in clock ticks; None if it is gone or a zombie.

    A killed worker stays a zombie until its parent reaps it, but it will never release
    its rows again, so a zombie counts as dead.
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            data = stat.read()
    except FileNotFoundError:
        return None
    except OSError:
        return "?"
    # Field 2 (comm) may contain spaces and parentheses: split after the last ')'.
    fields = data[data.rfind(b")") + 2 :].split()
    if fields and fields[0] in (b"Z", b"X"):
        return None
    return fields[19].decode() if len(fields) > 19 else "?"


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def new_owner_id() -> str:
    """A fresh owner id for this process (call again after fork: the pid changed)."""
    pid = os.getpid()
    started = (_start_time(pid) if _HAS_PROC else None) or "?"
    return f"{_HOST}/{pid}/{started}/{uuid.uuid4().hex[:12]}"


def dead_owners(owners: list[tuple[str, str | None]], *, me: str) -> list[str]:
    """The owners among ``(owner, claim boot)`` pairs known to be dead processes on
    this host: of an earlier boot, gone, or a later process with the same pid.

    Blocking (reads /proc): run it on a worker thread. Owners in this same process
    are never reported dead, even when their storage was closed without releasing.
    """
    dead = []
    my_pid = me.split("/")[1]
    for owner, boot in owners:
        if BOOT is not None and boot is not None and boot != BOOT and boot.startswith(f"{_HOST}/"):
            dead.append(owner)  # this host rebooted since the claim
            continue
        parts = owner.split("/")
        if len(parts) != 4 or parts[0] != _HOST or parts[1] == my_pid:
            continue
        try:
            pid = int(parts[1])
        except ValueError:
            continue
        if not _HAS_PROC:
            if not _pid_exists(pid):
                dead.append(owner)
            continue
        started = _start_time(pid)
        if started is None or ("?" not in (started, parts[2]) and started != parts[2]):
            dead.append(owner)
    return dead
