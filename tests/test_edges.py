"""The promise at its edges (issue 19): huge answers, callbacks that flush or close, a fork
beside a loop thread, one file under two names, proxies from the environment, a file
deleted while in use, and one event with thousands of entities.

Real servers on 127.0.0.1 and real SQLite files throughout.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import resource
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from raw_servers import raw_server, read_request_body

import asynctracker as at
from asynctracker.collector import Collector

NO_AUTO_RETRY = at.RetryPolicy(auto_retry=False)


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# -- row 4: the status line decides; the body is read up to a cap and discarded ----------


@contextlib.asynccontextmanager
async def endless_body_server(bodies: list[bytes]) -> AsyncIterator[str]:
    """Answers every request 200, then a body that never ends (read until close)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            bodies.append(await read_request_body(reader))
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n")
            chunk = b"x" * 65536
            while True:
                writer.write(chunk)
                await writer.drain()

    async with raw_server(handle) as url:
        yield url


@pytest.mark.parametrize("client", ["owned", "users"])
async def test_a_200_with_an_endless_body_delivers_once_in_flat_memory(
    db_path: Path, client: str
) -> None:
    bodies: list[bytes] = []
    async with (
        endless_body_server(bodies) as url,
        httpx.AsyncClient(timeout=5) as users_client,
    ):
        before = peak_rss_mib()
        emitter = at.Emitter(
            url,
            db_name=db_path,
            retry=NO_AUTO_RETRY,
            http_client=users_client if client == "users" else None,
        )
        async with at.Tracker(emitter) as tracker:
            for n in range(50):
                await tracker.track_struct_event("c", f"a{n}")
            assert await tracker.flush(timeout=10) == 0
            await asyncio.sleep(1.5)  # were the body read on, it would pile up meanwhile
        assert emitter.stats().sent == 50
        assert peak_rss_mib() - before < 100
    assert len(bodies) == 1  # delivered, never resent


# -- row 5: the callback may flush or close the tracker ----------------------------------


async def test_a_callback_that_awaits_flush_lets_every_event_through(
    collector: Collector, db_path: Path
) -> None:
    left: list[int] = []

    async def callback(ok: list[at.CallbackResult], failed: list[at.CallbackResult]) -> None:
        left.append(await tracker.flush(timeout=5))

    tracker = at.Tracker(at.Emitter(collector.url, db_name=db_path, callback=callback))
    started = asyncio.get_running_loop().time()
    async with tracker:
        for n in range(6):
            await tracker.track_struct_event("c", f"a{n}")
            await asyncio.sleep(0.02)
        assert await tracker.flush(timeout=5) == 0
    assert asyncio.get_running_loop().time() - started < 5  # no close timeout waited out
    assert len(collector.events) == 6
    assert left
    assert left[-1] == 0


async def test_a_callback_that_closes_the_tracker_closes_everything(
    collector: Collector, db_path: Path
) -> None:
    closed = asyncio.Event()

    async def callback(ok: list[at.CallbackResult], failed: list[at.CallbackResult]) -> None:
        await tracker.aclose()
        closed.set()

    emitter = at.Emitter(collector.url, db_name=db_path, callback=callback)
    tracker = at.Tracker(emitter)
    async with tracker:
        for n in range(6):
            await tracker.track_struct_event("c", f"a{n}")
        await asyncio.wait_for(closed.wait(), 5)
        assert emitter.closed
        with pytest.raises(at.ClosedError):
            await tracker.track_struct_event("c", "late")
    await asyncio.wait_for(tracker.aclose(), 1)  # a later close: at once, nothing left
    # The file was closed: SQLite removes the WAL when its last connection closes.
    assert not await asyncio.to_thread(Path(f"{db_path}-wal").exists)
    with contextlib.closing(sqlite3.connect(db_path)) as conn:
        (stored,) = conn.execute("SELECT count(*) FROM events").fetchone()
    assert stored + len(collector.events) == 6  # delivered or kept: none lost


# -- row 7: a fork beside a loop thread ----------------------------------------------------

FORK_BESIDE_A_LOOP_THREAD = """
import asyncio, os, sys, threading
import asynctracker as at

url, db = sys.argv[1], sys.argv[2]
loop = asyncio.new_event_loop()
threading.Thread(target=loop.run_forever, daemon=True).start()
tracker = at.Tracker(at.Emitter(url, db_name=db), app_id="fork")
asyncio.run_coroutine_threadsafe(tracker.track_struct_event("c", "parent"), loop).result(10)

async def child():
    await tracker.track_struct_event("c", "child")
    left = await tracker.flush(timeout=10)
    await tracker.aclose()
    return left

pid = os.fork()
if pid == 0:
    try:
        left = asyncio.run(child())
    except BaseException as exc:
        print("CHILD-FAILED", repr(exc), flush=True)
        os._exit(1)
    print("CHILD", left, flush=True)
    os._exit(0)
_, status = os.waitpid(pid, 0)
print("PARENT", asyncio.run_coroutine_threadsafe(tracker.flush(timeout=10), loop).result(20))
sys.exit(os.waitstatus_to_exitcode(status))
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork() does not exist here")
async def test_a_child_forked_beside_a_loop_thread_tracks_on_its_own_loop(
    collector: Collector, db_path: Path
) -> None:
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-c", FORK_BESIDE_A_LOOP_THREAD, collector.url, str(db_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "CHILD 0" in result.stdout
    assert sorted(event.payload["se_ac"] for event in collector.events) == ["child", "parent"]


# -- row 9: one database, one name ---------------------------------------------------------


async def test_a_hard_linked_file_is_refused_with_the_reason(db_path: Path) -> None:
    async with at.SQLiteStorage(db_path) as storage:
        await storage.add_event_row({"e": "pv"})
    other = db_path.with_name("other.db")
    os.link(db_path, other)
    for name in (db_path, other):
        storage = at.SQLiteStorage(name)
        with pytest.raises(at.StorageError, match="hard links"):
            await storage.add_event_row({"e": "pv"})
        await storage.aclose()


BIND_MOUNTED = """
import asyncio, sys
import asynctracker as at

async def main():
    storage = at.SQLiteStorage(sys.argv[1])
    try:
        await storage.add_event_row({"e": "pv"})
    except at.StorageError as exc:
        print(exc)
    finally:
        await storage.aclose()

asyncio.run(main())
"""


@pytest.mark.skipif(
    shutil.which("unshare") is None or os.geteuid() != 0,
    reason="needs root and unshare(1) to bind-mount a file in a mount namespace of its own",
)
async def test_a_file_bind_mounted_on_its_own_is_refused(tmp_path: Path) -> None:
    source, target = tmp_path / "host.db", tmp_path / "app" / "events.db"
    target.parent.mkdir()
    target.touch()
    async with at.SQLiteStorage(source) as storage:
        await storage.add_event_row({"e": "pv"})
    script = f"mount --bind {source} {target} && {sys.executable} -c '{BIND_MOUNTED}' {target}"
    result = await asyncio.to_thread(
        subprocess.run,
        ["unshare", "--mount", "sh", "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "mount the folder that holds it, never the file" in result.stdout.lower(), (
        result.stdout + result.stderr
    )


# -- row 10: proxies, a deleted file, many entities ------------------------------------------


async def test_a_dead_proxy_in_the_environment_and_trust_env_false(
    collector: Collector, db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    for trust_env, expected_left in ((True, 1), (False, 0)):
        emitter = at.Emitter(
            collector.url,
            storage=at.MemoryStorage(),
            retry=NO_AUTO_RETRY,
            trust_env=trust_env,
            close_timeout=0,
        )
        async with at.Tracker(emitter) as tracker:
            await tracker.track_struct_event("c", f"trust-{trust_env}")
            assert await tracker.flush(timeout=5) == expected_left
    assert [event.payload["se_ac"] for event in collector.events] == ["trust-False"]


async def test_closing_after_the_file_was_deleted_says_the_events_are_lost(
    db_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    emitter = at.Emitter("http://127.0.0.1:9", db_name=db_path, retry=NO_AUTO_RETRY)
    with caplog.at_level(logging.WARNING, logger="asynctracker"):
        async with at.Tracker(emitter) as tracker:
            await tracker.track_struct_event("c", "doomed")
            for suffix in ("", "-wal", "-shm"):
                with contextlib.suppress(FileNotFoundError):
                    os.remove(f"{db_path}{suffix}")
    [closing] = [r.getMessage() for r in caplog.records if "closing" in r.message]
    assert "was deleted or replaced while in use" in closing
    assert "are lost" in closing
    assert "wait in" not in closing


async def test_an_event_with_thousands_of_entities_gives_the_loop_turns_meanwhile(
    collector: Collector,
) -> None:
    """Encoding 10,000 entities takes the loop tens of milliseconds: it is done a step
    at a time, with the other tasks running in between (counted in loop turns)."""
    entities = [
        at.SelfDescribingJson("iglu:com.acme/item/jsonschema/1-0-0", {"n": n})
        for n in range(10_000)
    ]
    turns = 0

    async def count_turns() -> None:
        nonlocal turns
        while True:
            turns += 1
            await asyncio.sleep(0)

    emitter = at.Emitter(collector.url, storage=at.MemoryStorage())
    async with at.Tracker(emitter) as tracker:
        counting = asyncio.create_task(count_turns())
        await asyncio.sleep(0)
        turns = 0
        await tracker.track_struct_event("c", "many", contexts=entities)
        counting.cancel()
        assert turns >= 10_000 // 100 - 1
        assert await tracker.flush(timeout=10) == 0
    [event] = collector.events
    contexts = event.decoded["contexts"]
    assert isinstance(contexts, list)
    assert [entity["data"]["n"] for entity in contexts] == list(range(10_000))
