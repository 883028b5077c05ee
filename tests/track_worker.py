"""A tracking process for the multi-process tests (run as a script, not collected).

Tracks ``--count`` structured events into the SQLite file ``--db`` and prints each
event id as soon as its ``track_*`` call returned, so the parent knows exactly which
events were promised. Modes:

- ``track``: track, flush, close, print ``DONE``.
- ``fork``: open the emitter, track once, then ``os.fork()``: the child reuses the same
  tracker object in a new event loop (it must not reuse the parent's task, client or
  SQLite connection), and both processes track and flush.
- ``fork-storage``: fork a process that has a SQLiteStorage open (``--moment idle``,
  or ``busy``: while one of its inserts waits on another process's lock); the
  child stores rows with a storage of its own, before and after the parent closed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys

import asynctracker as at


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def make_tracker(args: argparse.Namespace) -> at.Tracker:
    retry = at.RetryPolicy(backoff_base=0.05, backoff_cap=0.5)
    emitter = at.Emitter(args.collector, db_name=args.db, retry=retry, send_limit=50)
    return at.Tracker(emitter, app_id=args.name)


async def track(tracker: at.Tracker, count: int, name: str) -> None:
    for index in range(count):
        eid = await tracker.track_struct_event("worker", name, value=index)
        say(f"EID {eid}")


async def run_track(args: argparse.Namespace) -> None:
    async with make_tracker(args) as tracker:
        await track(tracker, args.count, args.name)
        left = await drain(tracker)
    say(f"DONE {left}")


async def drain(tracker: at.Tracker, seconds: float = 60.0) -> int:
    """Flush until the shared file is empty (rows claimed by a sibling count as stored)."""
    deadline = asyncio.get_running_loop().time() + seconds
    left = await tracker.flush(timeout=seconds)
    while left and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.1)
        left = await tracker.flush(timeout=seconds)
    return left


def run_fork(args: argparse.Namespace) -> None:
    tracker = make_tracker(args)

    async def before_fork() -> None:
        await tracker.emitter.open()
        await track(tracker, 1, "parent")

    async def after_fork(role: str) -> int:
        await track(tracker, args.count, role)
        left = await drain(tracker)
        await tracker.aclose()
        return left

    loop = asyncio.new_event_loop()
    loop.run_until_complete(before_fork())
    pid = os.fork()
    if pid == 0:
        left = asyncio.run(after_fork("child"))
        say(f"CHILD-DONE {left}")
        os._exit(0)
    left = loop.run_until_complete(after_fork("parent"))
    loop.close()
    _, status = os.waitpid(pid, 0)
    say(f"DONE {left} child-status={status}")


def run_fork_storage(args: argparse.Namespace) -> None:
    loop = asyncio.new_event_loop()
    storage = at.SQLiteStorage(args.db, busy_timeout=3)
    loop.run_until_complete(storage.open())
    if args.moment == "busy":
        # Another process holds the write lock for a moment: the parent's insert waits
        # for it (between attempts, outside the fork gate) while the process forks.
        blocker = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "import sqlite3, sys, time\n"
                "c = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
                "c.execute('BEGIN IMMEDIATE'); print('locked', flush=True)\n"
                "time.sleep(0.5); c.close()",
                args.db,
            ],
            stdout=subprocess.PIPE,
        )
        assert blocker.stdout is not None
        blocker.stdout.readline()
        insert = loop.create_task(storage.add_event_row({"e": "pv", "who": "parent"}))
        loop.run_until_complete(asyncio.sleep(0.1))  # the insert now waits for the lock
    else:
        insert = loop.create_task(storage.add_event_row({"e": "pv", "who": "parent"}))
        loop.run_until_complete(insert)
    parent_closed, tell_child = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(tell_child)  # so the read below ends if the parent dies first

        async def child() -> None:
            async with at.SQLiteStorage(args.db, busy_timeout=3) as own:
                await own.add_event_row({"e": "pv", "who": "child, parent open"})
                await asyncio.to_thread(os.read, parent_closed, 1)
                await own.add_event_row({"e": "pv", "who": "child, parent closed"})

        try:
            asyncio.run(child())
        except Exception as exc:
            say(f"CHILD-FAILED {exc}")
            os._exit(1)
        os._exit(0)
    os.close(parent_closed)
    loop.run_until_complete(insert)
    loop.run_until_complete(storage.aclose())
    loop.close()
    os.write(tell_child, b"x")
    _, status = os.waitpid(pid, 0)
    say(f"DONE child-status={status}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["track", "fork", "fork-storage"])
    parser.add_argument("--db", required=True)
    parser.add_argument("--collector")
    parser.add_argument("--moment", choices=["idle", "busy"], default="idle")
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--name", default="worker")
    args = parser.parse_args()
    if args.mode == "track":
        asyncio.run(run_track(args))
    elif args.mode == "fork":
        run_fork(args)
    else:
        run_fork_storage(args)


if __name__ == "__main__":
    main()
