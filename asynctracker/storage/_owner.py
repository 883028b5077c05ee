"""Who owns a claimed row, and whether that owner is still alive.

An owner id is ``host/pid/start-time/token``. The process start time (from /proc on
Linux) tells a live process from a later one that reused the pid, so rows claimed by a
killed worker can be taken back at once instead of waiting for their claim to expire.
A claim also records the boot it was made in (Linux's boot id): a claim of an earlier
boot is dead (a reboot ends every process), and a claim of this boot expires by the
host's monotonic clock, which the wall clock's steps (NTP, a VM resumed) never move.
Off Linux, or for another host, liveness is unknown and the wall-clock expiry decides.
"""

from __future__ import annotations

import os
import socket
import uuid

__all__ = ["BOOT", "dead_owners", "new_owner_id"]

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
