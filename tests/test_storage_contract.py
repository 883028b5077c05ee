"""One contract suite for the Storage protocol, run against every implementation.

The same behaviour is asked of MemoryStorage, SQLiteStorage and a minimal storage a user
could write (five async methods over a dict, nothing else).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import threading
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import pytest
from examples_support import ROOT, load_file
from iglu import check_received

import asynctracker as at
from asynctracker import _adapter
from asynctracker._encoded import EncodedPayload
from asynctracker._rowstore import Bound, RowStore, Stored
from asynctracker.collector import Collector, Reply

# The user-written storage of the typing quickstart (checked by mypy --strict as users
# write it) is the one this contract suite holds to the same rules as the built-ins.
UserStorage = load_file(
    ROOT / "tests" / "typing" / "quickstart.py", "typing_quickstart"
).ListStorage


KINDS = ["memory", "sqlite", "sqlite-thread-only", "user-written"]


def make_storage(kind: str, tmp_path: Path) -> at.Storage:
    if kind == "memory":
        return at.MemoryStorage()
    if kind == "sqlite":
        return at.SQLiteStorage(tmp_path / "contract.db")
    if kind == "sqlite-thread-only":
        return at.SQLiteStorage(tmp_path / "contract.db", inline_writes=False)
    return UserStorage()


@pytest.fixture(params=KINDS)
async def storage(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[at.Storage]:
    made = make_storage(request.param, tmp_path)
    yield made
    closer = getattr(made, "aclose", None)
    if closer is not None:
        await closer()


def payload(n: int, **extra: str) -> dict[str, str]:
    return {"e": "se", "se_ca": "c", "se_ac": f"a-{n}", **extra}


async def fill(storage: at.Storage, count: int) -> list[dict[str, str]]:
    payloads = [payload(n) for n in range(count)]
    for item in payloads:
        assert await storage.add_event_row(item) is True
    return payloads


async def ids(storage: at.Storage) -> list[int]:
    return [row.id for row in await storage.get_all_event_rows()]


def test_implements_the_storage_protocol(storage: at.Storage) -> None:
    assert isinstance(storage, at.Storage)


async def test_starts_empty(storage: at.Storage) -> None:
    assert await storage.get_all_event_rows() == []
    assert await storage.get_event_rows_within_range(10) == []


async def test_rows_come_back_oldest_first(storage: at.Storage) -> None:
    payloads = await fill(storage, 25)
    rows = await storage.get_all_event_rows()
    assert [row.event for row in rows] == payloads
    assert [row.id for row in rows] == sorted(row.id for row in rows)
    assert len({row.id for row in rows}) == 25


async def test_payload_values_round_trip_exactly(storage: at.Storage) -> None:
    tricky = payload(0, page='quotes " and \\ backslash', refr="ünïcødé 😀 \u2028 \x00 end")
    await storage.add_event_row(tricky)
    [row] = await storage.get_all_event_rows()
    assert row.event == tricky


@pytest.mark.parametrize(
    ("limit", "expected"),
    [
        pytest.param(0, [], id="zero"),
        pytest.param(1, [0], id="one"),
        pytest.param(3, [0, 1, 2], id="some"),
        pytest.param(5, [0, 1, 2, 3, 4], id="exactly-all"),
        pytest.param(50, [0, 1, 2, 3, 4], id="more-than-stored"),
    ],
)
async def test_within_range_returns_at_most_that_many_oldest_rows(
    storage: at.Storage, limit: int, expected: list[int]
) -> None:
    payloads = await fill(storage, 5)
    rows = await storage.get_event_rows_within_range(limit)
    assert [row.event for row in rows] == [payloads[i] for i in expected]


async def test_within_range_after_deleting_the_oldest(storage: at.Storage) -> None:
    payloads = await fill(storage, 6)
    first_two = (await ids(storage))[:2]
    assert await storage.delete_event_rows(first_two) == 2
    rows = await storage.get_event_rows_within_range(2)
    assert [row.event for row in rows] == payloads[2:4]


async def test_delete_by_ids_returns_how_many_were_deleted(storage: at.Storage) -> None:
    payloads = await fill(storage, 5)
    stored = await ids(storage)
    assert await storage.delete_event_rows([stored[1], stored[3]]) == 2
    assert [row.event for row in await storage.get_all_event_rows()] == [
        payloads[0],
        payloads[2],
        payloads[4],
    ]
    assert await storage.delete_event_rows([stored[1]]) == 0  # already gone
    assert await storage.delete_event_rows([max(stored) + 1000]) == 0  # never existed
    assert await storage.delete_event_rows([]) == 0
    assert await storage.delete_event_rows([stored[0], max(stored) + 1000]) == 1
    assert len(await storage.get_all_event_rows()) == 2


async def test_delete_many_ids_at_once(storage: at.Storage) -> None:
    await fill(storage, 1_200)  # more than SQLite's classic 999 bound parameters
    stored = await ids(storage)
    assert await storage.delete_event_rows(stored[:1_100]) == 1_100
    assert await ids(storage) == stored[1_100:]


async def test_delete_all_returns_the_count_and_empties(storage: at.Storage) -> None:
    await fill(storage, 7)
    assert await storage.delete_all_event_rows() == 7
    assert await storage.get_all_event_rows() == []
    assert await storage.delete_all_event_rows() == 0


async def test_deleting_an_older_row_frees_no_id(storage: at.Storage) -> None:
    await fill(storage, 3)
    first = await ids(storage)
    assert first == sorted(set(first))
    assert await storage.delete_event_rows([first[0]]) == 1
    await storage.add_event_row(payload(99))
    assert (await ids(storage))[-1] > max(first)


async def test_memory_storage_never_reuses_ids() -> None:
    """MemoryStorage's promise (the spec's); SQLite may give the newest deleted ids
    again (see tests/test_sqlite_ids.py)."""
    storage = at.MemoryStorage()
    await fill(storage, 3)
    first = await ids(storage)
    assert await storage.delete_event_rows([first[-1]]) == 1
    await storage.add_event_row(payload(99))
    after_delete = await ids(storage)
    assert after_delete[-1] > max(first)

    await storage.delete_all_event_rows()
    await storage.add_event_row(payload(100))
    [after_clear] = await ids(storage)
    assert after_clear > max(after_delete)


async def test_event_row_event_is_a_fresh_copy(storage: at.Storage) -> None:
    original = payload(0)
    await storage.add_event_row(original)
    original["se_ca"] = "changed by the caller after adding"

    [row] = await storage.get_all_event_rows()
    event = row.event
    assert event == payload(0)
    assert row.event is not event
    event["se_ca"] = "changed"
    event["new"] = "x"
    assert row.event == payload(0)
    [again] = await storage.get_event_rows_within_range(1)
    assert again.event == payload(0)


async def test_event_values_are_strings(storage: at.Storage) -> None:
    await fill(storage, 2)
    for row in await storage.get_all_event_rows():
        assert isinstance(row.id, int)
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in row.event.items())


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
async def test_built_in_aclose_is_idempotent_and_refuses_later_use(
    kind: str, tmp_path: Path
) -> None:
    storage = make_storage(kind, tmp_path)
    await storage.add_event_row(payload(1))
    assert isinstance(storage, (at.MemoryStorage, at.SQLiteStorage))
    await storage.aclose()
    await storage.aclose()
    with pytest.raises(at.ClosedError) as info:
        await storage.add_event_row(payload(2))
    assert isinstance(info.value, RuntimeError)
    with pytest.raises(at.ClosedError):
        await storage.get_all_event_rows()


async def test_emitter_delivers_from_a_user_written_storage(collector: Collector) -> None:
    storage = UserStorage()
    emitter = at.Emitter(collector.url, storage=storage)
    async with at.Tracker(emitter, app_id="user-storage") as tracker:
        eids = [await tracker.track_page_view(page_url=f"https://a/{n}") for n in range(5)]
        eids.append(
            await tracker.track_ecommerce_transaction(
                order_id="o", total_value=2, items=[at.EcommerceItem(sku="s", price=2)]
            )
        )
        assert await tracker.flush() == 0
    await collector.wait_for_events(7)
    check_received(collector.events)
    assert set(eids) <= {event.payload["eid"] for event in collector.events}
    assert len(collector.events) == 7
    assert await storage.get_all_event_rows() == []


async def test_emitter_keeps_rows_in_a_user_written_storage_when_the_collector_fails(
    collector: Collector,
) -> None:

    collector.responder = lambda _: Reply(500)
    storage = UserStorage()
    emitter = at.Emitter(collector.url, storage=storage, retry=at.RetryPolicy(auto_retry=False))
    tracker = at.Tracker(emitter)
    try:
        await tracker.track_page_view(page_url="https://a/")
        assert await tracker.flush() == 1
    finally:
        await tracker.aclose()
    assert len(await storage.get_all_event_rows()) == 1


# -- SQLite only --------------------------------------------------------------------------


async def test_sqlite_rows_persist_across_instances_on_one_file(tmp_path: Path) -> None:
    path = tmp_path / "persist.db"
    first = at.SQLiteStorage(path)
    payloads = await fill(first, 10)
    await first.delete_event_rows([(await ids(first))[0]])
    first_ids = await ids(first)
    await first.aclose()

    second = at.SQLiteStorage(path)
    try:
        assert [row.event for row in await second.get_all_event_rows()] == payloads[1:]
        assert await ids(second) == first_ids
        await second.add_event_row(payload(99))
        assert (await ids(second))[-1] > max(first_ids)
    finally:
        await second.aclose()


async def test_sqlite_two_open_instances_see_each_others_rows(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    async with at.SQLiteStorage(path) as one, at.SQLiteStorage(path) as two:
        await one.add_event_row(payload(1))
        await two.add_event_row(payload(2))
        assert [row.event for row in await one.get_all_event_rows()] == [payload(1), payload(2)]
        assert await two.delete_all_event_rows() == 2
        assert await one.get_all_event_rows() == []


BUILT_INS = ["memory", "sqlite"]


@pytest.fixture(params=BUILT_INS)
async def built_in(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[at.MemoryStorage | at.SQLiteStorage]:
    made = make_storage(request.param, tmp_path)
    assert isinstance(made, (at.MemoryStorage, at.SQLiteStorage))
    yield made
    await made.aclose()


async def test_count_includes_claimed_rows(built_in: at.MemoryStorage | at.SQLiteStorage) -> None:
    assert await built_in.count() == 0
    await fill(built_in, 4)
    assert await built_in.count() == 4
    await built_in.claim_event_rows(2)
    assert await built_in.count() == 4
    await built_in.delete_event_rows((await ids(built_in))[:1])
    assert await built_in.count() == 3


async def test_claim_takes_oldest_unclaimed_and_release_gives_them_back(
    built_in: at.MemoryStorage | at.SQLiteStorage,
) -> None:
    payloads = await fill(built_in, 5)
    first = await built_in.claim_event_rows(2)
    assert [row.event for row in first] == payloads[:2]
    second = await built_in.claim_event_rows(10)
    assert [row.event for row in second] == payloads[2:]
    assert await built_in.claim_event_rows(10) == []
    assert len(await built_in.get_all_event_rows()) == 5  # claimed rows are still stored

    await built_in.release_event_rows([row.id for row in first])
    again = await built_in.claim_event_rows(10)
    assert [row.id for row in again] == [row.id for row in first]


async def test_deleting_a_claimed_row_removes_it(
    built_in: at.MemoryStorage | at.SQLiteStorage,
) -> None:
    await fill(built_in, 3)
    claimed = await built_in.claim_event_rows(3)
    assert await built_in.delete_event_rows([claimed[0].id]) == 1
    await built_in.release_event_rows([row.id for row in claimed])
    assert [row.id for row in await built_in.claim_event_rows(10)] == [
        row.id for row in claimed[1:]
    ]


async def test_add_event_rows_stores_a_batch_in_order(
    built_in: at.MemoryStorage | at.SQLiteStorage,
) -> None:
    payloads = [payload(n) for n in range(2_500)]
    assert await built_in.add_event_rows(payloads) == 2_500
    assert [row.event for row in await built_in.get_all_event_rows()] == payloads


async def test_add_event_rows_is_all_or_nothing(
    built_in: at.MemoryStorage | at.SQLiteStorage,
) -> None:
    await fill(built_in, 2)
    before = await built_in.get_all_event_rows()
    batch: list[dict[str, object]] = [payload(10), {"e": "pv", "url": object()}, payload(11)]
    with pytest.raises((TypeError, at.AsyncTrackerError)):
        await built_in.add_event_rows(batch)  # type: ignore[arg-type]
    assert await built_in.get_all_event_rows() == before


async def test_sqlite_batch_failing_in_a_later_statement_stores_nothing(tmp_path: Path) -> None:
    # 2,500 rows are three INSERT statements in one transaction; make the second fail.
    path = tmp_path / "batch.db"
    async with at.SQLiteStorage(path) as storage:
        await fill(storage, 2)
        with contextlib.closing(sqlite3.connect(path)) as conn:
            conn.execute(
                "CREATE TRIGGER refuse BEFORE INSERT ON events WHEN NEW.event LIKE '%refuse%' "
                "BEGIN SELECT RAISE(ABORT, 'refused by a trigger'); END"
            )
        payloads = [payload(n) for n in range(2_500)]
        payloads[1_500] = payload(1_500, note="refuse")
        with pytest.raises(at.StorageError, match="refused by a trigger"):
            await storage.add_event_rows(payloads)
        assert await storage.count() == 2
        assert await storage.add_event_rows(payloads[:1_000]) == 1_000  # not left mid-transaction
        assert await storage.count() == 1_002


async def test_sqlite_claims_are_invisible_to_another_instance_until_released(
    tmp_path: Path,
) -> None:
    path = tmp_path / "claims.db"
    async with at.SQLiteStorage(path) as one, at.SQLiteStorage(path) as two:
        payloads = await fill(one, 4)
        mine = await one.claim_event_rows(3)
        theirs = await two.claim_event_rows(10)
        assert [row.event for row in theirs] == payloads[3:]
        await one.release_event_rows([row.id for row in mine])
        assert [row.event for row in await two.claim_event_rows(10)] == payloads[:3]


async def test_sqlite_aclose_releases_this_instances_claims(tmp_path: Path) -> None:
    path = tmp_path / "release.db"
    one = at.SQLiteStorage(path)
    await fill(one, 3)
    assert len(await one.claim_event_rows(10)) == 3
    await one.aclose()
    async with at.SQLiteStorage(path) as two:
        assert len(await two.claim_event_rows(10)) == 3


async def test_sqlite_creates_the_file_on_first_use(tmp_path: Path) -> None:
    path = tmp_path / "lazy.db"
    storage = at.SQLiteStorage(path)
    assert not path.exists()
    try:
        await storage.add_event_row(payload(1))
        assert path.exists()
    finally:
        await storage.aclose()


async def test_sqlite_on_a_missing_folder_raises_storage_error(tmp_path: Path) -> None:
    storage = at.SQLiteStorage(tmp_path / "missing" / "events.db")
    with pytest.raises(at.StorageError) as info:
        await storage.add_event_row(payload(1))
    assert isinstance(info.value, RuntimeError)
    await storage.aclose()
    # A failed connect stops its thread; let it finish while this test runs, so no
    # thread of this test outlives it.
    await _sqlite_threads_finished()


async def test_sqlite_callers_cancelled_before_their_group_commit_store_nothing(
    tmp_path: Path,
) -> None:
    """A caller that gave up before the storage's thread took its rows is skipped; the
    others of the group are stored."""
    async with at.SQLiteStorage(tmp_path / "cancelled.db", inline_writes=False) as storage:
        blocker = sqlite3.connect(tmp_path / "cancelled.db", isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")  # the thread waits here with the first group
        first = asyncio.create_task(storage.add_event_row(payload(0)))
        await asyncio.sleep(0.05)
        callers = [asyncio.create_task(storage.add_event_row(payload(n))) for n in range(1, 6)]
        await asyncio.sleep(0)
        callers[1].cancel()
        blocker.rollback()
        blocker.close()
        await asyncio.wait_for(asyncio.gather(first, *callers, return_exceptions=True), 5)
        stored = [row.event["se_ac"] for row in await storage.get_all_event_rows()]
        assert stored == ["a-0", "a-1", "a-3", "a-4", "a-5"]


async def _sqlite_threads_finished(timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while any(
        thread.name == "asynctracker-sqlite" and thread.is_alive()
        for thread in threading.enumerate()
    ):
        assert asyncio.get_running_loop().time() < deadline, "SQLite thread still running"
        await asyncio.sleep(0.01)


# -- the emitter's internal interface (_rowstore.RowStore) ----------------------
# Every storage the emitter can be given is seen through RowStore: the built-ins are
# one, a user's five-method storage is adapted once, and a built-in subclass that
# overrides an insert is wrapped so that override sees every event.


def encoded_payload(event: dict[str, str]) -> EncodedPayload:
    """The tracker's lazily decoding payload, which a user's code must never see."""
    return EncodedPayload(json.dumps(event, separators=(",", ":")), event.get("eid", ""))


class _OverridingMemoryStorage(at.MemoryStorage):
    def __init__(self) -> None:
        super().__init__()
        self.seen: list[dict[str, str]] = []

    async def add_event_row(self, payload: Mapping[str, str]) -> bool:
        self.seen.append(dict(payload))
        return await super().add_event_row(payload)


ROW_STORE_KINDS = [*KINDS, "built-in-subclass"]


@pytest.fixture(params=ROW_STORE_KINDS)
async def row_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[RowStore]:
    made = (
        _OverridingMemoryStorage()
        if request.param == "built-in-subclass"
        else make_storage(request.param, tmp_path)
    )
    store = _adapter.row_store(made)
    await store.open()
    yield store
    await store.aclose()


async def test_each_storage_gets_the_row_store_its_kind_needs(tmp_path: Path) -> None:
    built_in = at.SQLiteStorage(tmp_path / "kind.db")
    assert _adapter.row_store(built_in) is built_in
    user = UserStorage()
    adapted = _adapter.row_store(user)
    assert isinstance(adapted, _adapter.StorageAdapter)
    assert adapted.storage is user
    overriding = _OverridingMemoryStorage()
    wrapped = _adapter.row_store(overriding)
    assert wrapped is not overriding
    assert isinstance(wrapped, RowStore)


async def insert(
    store: RowStore, payloads: list[Mapping[str, str]], bound: Bound | None = None
) -> tuple[Stored, list[Stored]]:
    """Insert through the emitter's interface: the outcome, and what the listener got."""
    heard: list[Stored] = []
    done = store.insert(payloads, bound, heard.append)
    if not isinstance(done, Stored):
        done = await done
    return done, heard


async def test_row_store_adds_one_then_many_and_counts_them(row_store: RowStore) -> None:
    done, heard = await insert(row_store, [payload(0)])
    assert done == Stored(1)
    assert heard == [done]
    assert await row_store.add_event_rows([payload(1), payload(2)]) == 3 - 1
    assert await row_store.count() == 3
    rows = await row_store.claim_event_rows(10)
    assert [row.event for row in rows] == [payload(n) for n in range(3)]


async def test_row_store_insert_applies_the_bound_all_or_nothing(row_store: RowStore) -> None:
    await row_store.add_event_rows([payload(n) for n in range(3)])
    raising = Bound(4, "raise")
    assert (await insert(row_store, [payload(3)], raising))[0] == Stored(1)
    done, heard = await insert(row_store, [payload(4), payload(5)], raising)
    assert done == Stored(0, refused=2, refused_by="raise")
    assert heard == [done]
    dropping = Bound(4, "drop_oldest")
    done, _ = await insert(row_store, [payload(6), payload(7)], dropping)
    assert done == Stored(2, evicted=2)
    assert await row_store.count() == 4
    events = [row.event["se_ac"] for row in await row_store.claim_event_rows(10)]
    assert events == ["a-2", "a-3", "a-6", "a-7"]
    # Every row is being sent now: nothing can be dropped for a new one. (A user's
    # storage has no claims: the emitter's one reader is all it knows.)
    user_written = not isinstance(getattr(row_store, "storage", row_store), RowStore)
    expected = (
        Stored(1, evicted=1) if user_written else Stored(0, refused=1, refused_by="drop_oldest")
    )
    assert (await insert(row_store, [payload(8)], dropping))[0] == expected


async def test_row_store_claims_oldest_first_and_deletes_by_id(row_store: RowStore) -> None:
    await row_store.add_event_rows([payload(n) for n in range(5)])
    claimed = await row_store.claim_event_rows(2)
    assert [row.event for row in claimed] == [payload(0), payload(1)]
    assert await row_store.delete_claimed_rows([row.id for row in claimed]) == 2
    await row_store.release_event_rows([])
    assert [row.event for row in await row_store.claim_event_rows(10)] == [
        payload(n) for n in range(2, 5)
    ]


async def test_row_store_release_makes_rows_claimable_again(row_store: RowStore) -> None:
    await row_store.add_event_rows([payload(n) for n in range(3)])
    claimed = await row_store.claim_event_rows(3)
    await row_store.release_event_rows([row.id for row in claimed])
    again = await row_store.claim_event_rows(3)
    assert [row.id for row in again] == [row.id for row in claimed]


async def test_row_store_drops_the_oldest_rows(row_store: RowStore) -> None:
    await row_store.add_event_rows([payload(n) for n in range(4)])
    assert await row_store.delete_oldest_event_rows(3) == 3
    assert await row_store.count() == 1
    assert [row.event for row in await row_store.claim_event_rows(10)] == [payload(3)]


async def test_row_store_names_where_undelivered_events_stay(tmp_path: Path) -> None:
    sqlite = at.SQLiteStorage(tmp_path / "where.db")
    user = UserStorage()
    assert _adapter.row_store(sqlite).location == str(tmp_path / "where.db")
    assert _adapter.row_store(user).location == repr(user)
    assert _adapter.row_store(at.MemoryStorage()).location is None  # this process only
    assert _adapter.row_store(_OverridingMemoryStorage()).location is None


async def test_an_overriding_subclass_sees_every_event_as_a_plain_dict() -> None:
    storage = _OverridingMemoryStorage()
    store = _adapter.row_store(storage)
    encoded = encoded_payload(payload(7))
    assert (await insert(store, [encoded]))[0] == Stored(1)
    await store.add_event_rows([encoded])
    assert storage.seen == [payload(7), payload(7)]
    assert [type(seen) for seen in storage.seen] == [dict, dict]
    assert await store.count() == 2


async def test_the_emitter_calls_a_user_storages_aclose_once_adapted() -> None:
    closed: list[bool] = []

    class Closing(UserStorage):  # type: ignore[misc,valid-type]
        async def aclose(self) -> None:
            closed.append(True)

    emitter = at.Emitter("http://127.0.0.1:9", storage=Closing())
    await emitter.open()
    await emitter.aclose()
    assert closed == [True]
