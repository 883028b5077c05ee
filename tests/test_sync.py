"""asynctracker.sync: the engine for synchronous code (issue 21).

Plain threads call a real tracker; a real collector listens on 127.0.0.1 (on an event
loop of its own thread), and the queue is a real SQLite file. Forks, exits and
never-closed programs run in subprocesses.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sync_support import ThreadedCollector, stored

import asynctracker as at
from asynctracker import sync
from asynctracker.collector import Reply
from asynctracker.events import PageView, StructuredEvent

DOWN = "http://127.0.0.1:9"


def test_each_call_returns_the_event_id_once_the_event_is_committed(
    threaded_collector: ThreadedCollector, db_path: Path
) -> None:
    threaded_collector.collector.responder = lambda request: Reply(503)  # events wait
    emitter = sync.Emitter(threaded_collector.url, db_name=db_path, close_timeout=0)
    tracker = sync.Tracker(emitter, app_id="sync")
    eid = tracker.track_struct_event("shop", "add", value=2.5)
    assert stored(db_path) == 1  # committed: another connection sees it
    assert tracker.track(PageView(page_url="https://shop.example/")) != eid
    assert stored(db_path) == 2
    threaded_collector.collector.responder = None
    assert tracker.flush(timeout=10) == 0
    tracker.close()
    assert emitter.closed
    assert threaded_collector.actions() == ["add", "pv"]


def test_many_threads_deliver_each_event_exactly_once(
    threaded_collector: ThreadedCollector, db_path: Path
) -> None:
    with sync.Tracker(sync.Emitter(threaded_collector.url, db_name=db_path)) as tracker:

        def work(worker: int) -> list[str]:
            return [tracker.track_struct_event("t", f"{worker}-{n}") for n in range(200)]

        with ThreadPoolExecutor(8) as pool:
            eids = [eid for batch in pool.map(work, range(8)) for eid in batch]
    received = [event.payload["eid"] for event in threaded_collector.collector.events]
    assert sorted(received) == sorted(eids)
    assert len(set(eids)) == 1600


def test_errors_raise_in_the_calling_thread_and_store_nothing(db_path: Path) -> None:
    emitter = sync.Emitter(DOWN, db_name=db_path, max_events=1, overflow="raise", close_timeout=0)
    tracker = sync.Tracker(emitter)
    with pytest.raises(at.InvalidEventError):
        tracker.track_struct_event("", "no category")
    tracker.track(StructuredEvent("c", "first"))
    with pytest.raises(at.QueueFullError):
        tracker.track(StructuredEvent("c", "second"))
    assert stored(db_path) == 1
    tracker.close()
    unwritable = sync.Tracker(sync.Emitter(DOWN, db_name=db_path.parent / "missing" / "x.db"))
    with pytest.raises(at.StorageError):
        unwritable.track_struct_event("c", "a")
    unwritable.close()


async def test_a_call_from_a_running_event_loop_raises_at_once(db_path: Path) -> None:
    tracker = sync.Tracker(sync.Emitter(DOWN, db_name=db_path, close_timeout=0))
    with pytest.raises(at.BlockingCallError, match="event loop"):
        tracker.track_struct_event("c", "a")
    with pytest.raises(at.BlockingCallError):
        tracker.flush()
    assert not await asyncio.to_thread(db_path.exists)
    await asyncio.to_thread(tracker.close)


def test_a_call_from_the_emitters_own_callback_raises_instead_of_deadlocking(
    threaded_collector: ThreadedCollector, db_path: Path
) -> None:
    errors: list[BaseException] = []
    done = threading.Event()

    def callback(ok: list[at.CallbackResult], failed: list[at.CallbackResult]) -> None:
        try:
            tracker.track_struct_event("c", "from the callback")
        except BaseException as exc:
            errors.append(exc)
        done.set()

    tracker = sync.Tracker(sync.Emitter(threaded_collector.url, db_name=db_path, callback=callback))
    tracker.track_struct_event("c", "a")
    assert done.wait(10)
    assert [type(error) for error in errors] == [at.BlockingCallError]
    tracker.close()


def test_async_context_providers_are_refused_when_the_tracker_is_made() -> None:
    async def provider() -> None:
        return None

    with pytest.raises(at.ConfigurationError, match="plain functions"):
        sync.Tracker(sync.Emitter(DOWN, storage=at.MemoryStorage()), context_providers=[provider])


class ListStorage:
    """A user's five-method storage: a list in memory."""

    def __init__(self) -> None:
        self.rows: list[at.EventRow] = []
        self.next_id = 1

    async def add_event_row(self, payload: Mapping[str, str]) -> bool:
        self.rows.append(at.EventRow(self.next_id, dict(payload)))
        self.next_id += 1
        return True

    async def delete_all_event_rows(self) -> int:
        count, self.rows = len(self.rows), []
        return count

    async def delete_event_rows(self, ids: Sequence[int]) -> int:
        before = len(self.rows)
        self.rows = [row for row in self.rows if row.id not in set(ids)]
        return before - len(self.rows)

    async def get_all_event_rows(self) -> list[at.EventRow]:
        return list(self.rows)

    async def get_event_rows_within_range(self, event_range: int) -> list[at.EventRow]:
        return self.rows[:event_range]


@pytest.mark.parametrize("kind", ["memory", "user"])
def test_storages_other_than_sqlite_store_from_the_calling_thread(
    threaded_collector: ThreadedCollector, kind: str
) -> None:
    storage: at.Storage = at.MemoryStorage() if kind == "memory" else ListStorage()
    with sync.Tracker(sync.Emitter(threaded_collector.url, storage=storage)) as tracker:
        for n in range(3):
            tracker.track_struct_event("c", f"stored-{n}")
        assert tracker.flush(timeout=10) == 0
    assert threaded_collector.actions() == [f"stored-{n}" for n in range(3)]


FORKS = """
import os, sys
from asynctracker import sync
url, db = sys.argv[1], sys.argv[2]
tracker = sync.Tracker(sync.Emitter(url, db_name=db), app_id="fork")
tracker.track_struct_event("c", "parent-before")
pid = os.fork()
if pid == 0:
    tracker.track_struct_event("c", "child")
    left = tracker.flush(timeout=10)
    tracker.close()
    os._exit(0 if left == 0 else 3)
tracker.track_struct_event("c", "parent-after")
_, status = os.waitpid(pid, 0)
tracker.close()
sys.exit(os.waitstatus_to_exitcode(status))
"""


@pytest.mark.skipif(sys.platform == "win32", reason="os.fork() does not exist on Windows")
def test_a_forked_child_starts_its_own_and_every_event_arrives_once(
    threaded_collector: ThreadedCollector, db_path: Path
) -> None:
    result = subprocess.run(
        [sys.executable, "-c", FORKS, threaded_collector.url, str(db_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert threaded_collector.actions() == ["child", "parent-after", "parent-before"]


CHILD_ONLY_CLOSES = """
import os, sys
from asynctracker import _lifecycle, sync
tracker = sync.Tracker(sync.Emitter(sys.argv[1], db_name=sys.argv[2]))
tracker.track_struct_event("c", "parent")
pid = os.fork()
if pid == 0:
    opened = []
    real_open = _lifecycle.Lifecycle.open

    async def spy(self):
        opened.append(1)
        await real_open(self)

    _lifecycle.Lifecycle.open = spy
    tracker.close()
    os._exit(3 if opened else 0)
_, status = os.waitpid(pid, 0)
tracker.close()
sys.exit(os.waitstatus_to_exitcode(status))
"""


@pytest.mark.skipif(sys.platform == "win32", reason="os.fork() does not exist on Windows")
def test_closing_in_a_child_that_never_used_the_tracker_opens_nothing(
    threaded_collector: ThreadedCollector, db_path: Path
) -> None:
    """The parent's open state is not the child's: the child's close only closes."""
    result = subprocess.run(
        [sys.executable, "-c", CHILD_ONLY_CLOSES, threaded_collector.url, str(db_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert threaded_collector.actions() == ["parent"]


FLUSHES_FIRST = """
import sys
import asynctracker as at
from asynctracker import sync
tracker = sync.Tracker(sync.Emitter(sys.argv[1], storage=at.MemoryStorage(), close_timeout=5))
assert tracker.flush(timeout=1) == 0  # the emitter's first use
for n in range(5):
    tracker.track_struct_event("c", f"after-flush-{n}")
"""


def test_an_emitter_first_used_by_flush_is_still_flushed_at_exit(
    threaded_collector: ThreadedCollector,
) -> None:
    async def slow(request: object) -> None:
        await asyncio.sleep(0.2)  # later than the interpreter's exit, but for its flush

    threaded_collector.collector.responder = slow
    result = subprocess.run(
        [sys.executable, "-c", FLUSHES_FIRST, threaded_collector.url],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert threaded_collector.actions() == sorted(f"after-flush-{n}" for n in range(5))


NEVER_CLOSES = """
import sys, time
from asynctracker import sync
tracker = sync.Tracker(sync.Emitter(sys.argv[1], db_name=sys.argv[2], close_timeout=2))
for n in range(20):
    tracker.track_struct_event("c", f"left-{n}")
print("tracked", flush=True)
"""


@pytest.mark.parametrize("collector_up", [True, False], ids=["collector-up", "collector-down"])
def test_a_program_that_never_closes_exits_within_its_close_timeout(
    threaded_collector: ThreadedCollector, db_path: Path, collector_up: bool
) -> None:
    if not collector_up:  # accepts connections, never answers: the worst case

        async def never_answer(request: object) -> None:
            await asyncio.sleep(30)

        threaded_collector.collector.responder = never_answer
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-c", NEVER_CLOSES, threaded_collector.url, str(db_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    took = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    assert took < 2 + 1 + 2  # close_timeout + 1 s, and the interpreter's own start
    if collector_up:
        assert threaded_collector.actions() == sorted(f"left-{n}" for n in range(20))
        assert stored(db_path) == 0
    else:
        assert stored(db_path) == 20  # what was not delivered stays in the file
