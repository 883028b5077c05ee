"""Crashes and processes: kill -9, two workers on one SQLite file, fork.

Each test runs ``tests/track_worker.py`` in real subprocesses against a real collector
on 127.0.0.1, and reads the event ids each worker printed once ``track_*`` returned:
those are the events asynctracker promised to deliver.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import signal
import sqlite3
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from test_reliability import hang_forever, received_eids

import asynctracker as at
from asynctracker.collector import Collector, Reply

WORKER = Path(__file__).with_name("track_worker.py")


async def start_worker(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-W",
        "ignore::DeprecationWarning",  # 3.12+ warns about fork() with threads
        str(WORKER),
        *args,
        stdout=asyncio.subprocess.PIPE,
    )


async def promised_eids(process: asyncio.subprocess.Process) -> tuple[list[str], list[str]]:
    """(event ids the worker printed, its other output lines), after it exits."""
    out, _ = await asyncio.wait_for(process.communicate(), timeout=120)
    lines = out.decode().splitlines()
    assert process.returncode == 0, lines[-5:]
    return [line[4:] for line in lines if line.startswith("EID ")], [
        line for line in lines if not line.startswith("EID ")
    ]


async def test_kill_9_loses_no_event_whose_track_returned(
    collector: Collector, db_path: Path
) -> None:
    collector.responder = hang_forever()  # requests in flight: rows claimed at the kill
    worker = await start_worker(
        "track", "--db", str(db_path), "--collector", collector.url, "--count", "100000"
    )
    assert worker.stdout is not None
    promised: list[str] = []
    try:
        while len(promised) < 300:
            line = await asyncio.wait_for(worker.stdout.readline(), timeout=30)
            assert line, "worker exited early"
            promised.append(line.decode().split()[1])
    finally:
        worker.send_signal(signal.SIGKILL)
        await worker.wait()
    assert worker.returncode == -signal.SIGKILL

    collector.responder = None
    emitter = at.Emitter(collector.url, db_name=db_path)
    async with emitter:
        # The dead worker's claims come back at once, not after claim_ttl (300 s).
        assert await emitter.flush(timeout=30) == 0
    delivered = received_eids(collector)
    assert set(promised) <= set(delivered)
    assert max(delivered.values()) == 1


async def test_two_processes_on_one_file_deliver_each_event_exactly_once(
    collector: Collector, db_path: Path
) -> None:
    chance = random.Random(11)
    collector.responder = lambda request: Reply(500) if chance.random() < 0.10 else None
    workers = [
        await start_worker(
            "track",
            "--db",
            str(db_path),
            "--collector",
            collector.url,
            "--count",
            "600",
            "--name",
            name,
        )
        for name in ("alpha", "beta")
    ]
    results = await asyncio.gather(*(promised_eids(worker) for worker in workers))
    tracked = [eid for eids, _ in results for eid in eids]
    assert len(tracked) == 1200
    assert all(other[-1] == "DONE 0" for _, other in results)

    delivered = received_eids(collector)
    assert set(delivered) == set(tracked)
    assert max(delivered.values()) == 1, [e for e, n in delivered.items() if n > 1][:5]
    assert Counter(e.payload["aid"] for e in collector.events) == {"alpha": 600, "beta": 600}


@pytest.mark.skipif(sys.platform == "win32", reason="os.fork() does not exist on Windows")
async def test_emitter_created_before_fork_is_safe_in_the_child(
    collector: Collector, db_path: Path
) -> None:
    worker = await start_worker(
        "fork", "--db", str(db_path), "--collector", collector.url, "--count", "200"
    )
    tracked, other = await promised_eids(worker)
    assert "CHILD-DONE 0" in other
    assert other[-1] == "DONE 0 child-status=0"
    assert len(tracked) == 401  # one before the fork, 200 in each process after it
    delivered = received_eids(collector)
    assert set(delivered) == set(tracked)
    assert max(delivered.values()) == 1


@pytest.mark.skipif(sys.platform == "win32", reason="os.fork() does not exist on Windows")
@pytest.mark.parametrize("moment", ["idle", "busy"])
async def test_child_forked_with_a_storage_open_keeps_every_commit(
    db_path: Path, moment: str
) -> None:
    # SQLite's lock bookkeeping is per process: a child that inherited the parent's
    # open connection was locked out ("busy": forked mid-statement) or could lose what
    # it committed after the parent closed ("idle": the parent took the WAL with it).
    worker = await start_worker("fork-storage", "--db", str(db_path), "--moment", moment)
    _, other = await promised_eids(worker)
    assert other == ["DONE child-status=0"]
    with contextlib.closing(sqlite3.connect(db_path)) as conn:
        stored = sorted(
            json.loads(row[0])["who"] for row in conn.execute("SELECT event FROM events")
        )
    assert stored == ["child, parent closed", "child, parent open", "parent"]


async def test_many_processes_opening_a_new_file_at_once_all_succeed(db_path: Path) -> None:
    code = (
        "import asyncio, sys\n"
        "import asynctracker as at\n"
        "async def main():\n"
        "    async with at.SQLiteStorage(sys.argv[1]) as storage:\n"
        "        await storage.add_event_row({'e': 'pv'})\n"
        "asyncio.run(main())\n"
    )
    openers = [
        await asyncio.create_subprocess_exec(sys.executable, "-c", code, str(db_path))
        for _ in range(8)
    ]
    codes = await asyncio.wait_for(asyncio.gather(*(p.wait() for p in openers)), timeout=60)
    assert codes == [0] * 8
    async with at.SQLiteStorage(db_path) as storage:
        assert await storage.count() == 8


# How the program runs its loop: asyncio.run closes async generators before closing the
# loop (the tracker closes its file then); a loop closed by hand, or left open, does not,
# and the file is still open when the interpreter exits.
RUN_LOOP = {
    "asyncio.run": "asyncio.run(main())\n",
    "loop closed by hand": (
        "loop = asyncio.new_event_loop()\nloop.run_until_complete(main())\nloop.close()\n"
    ),
    "loop left open": "asyncio.new_event_loop().run_until_complete(main())\n",
}


@pytest.mark.parametrize("run_loop", sorted(RUN_LOOP))
def test_a_process_that_never_closes_its_tracker_exits_and_keeps_its_events(
    db_path: Path, run_loop: str
) -> None:
    # A tracker kept until the end of the program and never closed: the interpreter
    # must still exit (aiosqlite's worker thread used to keep it waiting forever), with
    # every tracked event stored and the file closed cleanly (SQLite removes the WAL
    # file on a clean close; with the loop closed by hand, only the exit hook does it).
    code = (
        "import asyncio, sys\n"
        "import asynctracker as at\n"
        "KEPT = []\n"
        "async def main():\n"
        "    tracker = at.Tracker(at.Emitter('http://127.0.0.1:9', db_name=sys.argv[1]))\n"
        "    KEPT.append(tracker)\n"
        "    for n in range(3):\n"
        "        print(await tracker.track_struct_event('shop', 'view', str(n)), flush=True)\n"
    ) + RUN_LOOP[run_loop]
    finished = subprocess.run(
        [sys.executable, "-c", code, str(db_path)], capture_output=True, text=True, timeout=60
    )
    assert finished.returncode == 0, finished.stderr
    tracked = finished.stdout.split()
    assert len(tracked) == 3
    assert not Path(f"{db_path}-wal").exists()  # before opening it (that would recover)
    with contextlib.closing(sqlite3.connect(db_path)) as conn:
        stored = [json.loads(row[0])["eid"] for row in conn.execute("SELECT event FROM events")]
    assert sorted(stored) == sorted(tracked)


LOCK_HELD_AT_FORK = """
import os, signal, sys, threading
from asynctracker import _process
from asynctracker._threads import Worker

lock = _process.ForkSafeLock()
worker = Worker("test-worker")
held, release = threading.Event(), threading.Event()

def hold():
    with lock, worker._lock:  # another thread holds both when the process forks
        held.set()
        release.wait()

thread = threading.Thread(target=hold)
thread.start()
held.wait()
pid = os.fork()
if pid == 0:
    signal.alarm(5)  # a lock still held would block the child for ever
    with lock:
        pass
    done = threading.Event()
    worker.submit(done.set)  # the worker takes its lock to start its thread
    os._exit(0 if done.wait(5) else 1)
release.set()
thread.join()
_, status = os.waitpid(pid, 0)
sys.exit(os.waitstatus_to_exitcode(status))
"""


@pytest.mark.skipif(sys.platform == "win32", reason="os.fork() does not exist on Windows")
def test_a_lock_another_thread_held_at_a_fork_is_free_in_the_child() -> None:
    result = subprocess.run(
        [sys.executable, "-W", "ignore::DeprecationWarning", "-c", LOCK_HELD_AT_FORK],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, (result.returncode, result.stderr)
