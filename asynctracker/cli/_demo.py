"""``asynctracker demo``: track every event type end to end and show what arrived.

It is the README's "run the main job" command, so it must prove the whole path in a few
seconds without any setup: a real HTTP collector on 127.0.0.1 (started in-process on a
free port), the *default* SQLite storage (in a temporary folder, so nothing is ever left
in the working directory), every ``track_*`` method, then a verdict per event from the
collector's protocol validator. It exits non-zero if anything was not delivered, arrived
twice, or arrived invalid, which makes it a smoke test as well as a show-case.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import TextIO

from ..collector import Collector, ReceivedEvent
from ..emitter import Emitter
from ..payload import SelfDescribingJson
from ..subject import Subject
from ..tracker import EcommerceItem, Tracker
from ._common import (
    EXIT_NOT_DELIVERED,
    Tally,
    deliver,
    describe,
    event_kind,
    failure_reason,
)
from ._messages import counted

__all__ = ["run_demo"]

#: Bulk events are tracked this many at a time, the way a busy server's request handlers
#: call ``track_*`` concurrently; SQLite group commit turns each burst into few commits.
_BURST = 500
#: Seconds the demo waits for delivery before calling it a failure.
_DELIVERY_TIMEOUT = 15.0


async def _track_showcase(tracker: Tracker) -> list[str]:
    """Track one event of every kind; return the event ids in tracking order."""
    visitor = Subject(user_id="demo-user", language="en-GB", timezone="Europe/London")
    ids = [
        await tracker.track_page_view(
            "https://shop.example/", "Home", referrer="https://search.example/?q=mugs"
        ),
        await tracker.track_struct_event("shop", "add-to-basket", "sku-42", "mug", 2.5),
        await tracker.track_self_describing_event(
            SelfDescribingJson("iglu:com.acme/button_click/jsonschema/1-0-0", {"id": "buy"}),
            contexts=[SelfDescribingJson("iglu:com.acme/user/jsonschema/1-0-0", {"tier": 2})],
            subject=visitor,
        ),
        await tracker.track_screen_view(name="basket", id=str(uuid.uuid4())),
        await tracker.track_timing("db", "load-basket", 12, "postgres"),
    ]
    items = [
        EcommerceItem("sku-42", 24.95, 2, name="Mug", event_id=str(uuid.uuid4())),
        EcommerceItem("sku-7", 39.9, 1, name="Teapot", event_id=str(uuid.uuid4())),
    ]
    ids.append(
        await tracker.track_ecommerce_transaction(
            "order-1001", 89.8, currency="EUR", shipping=4.5, country="GB", items=items
        )
    )
    ids += [item.event_id for item in items if item.event_id]
    return ids


async def _track_bulk(tracker: Tracker, count: int) -> list[str]:
    ids: list[str] = []
    for start in range(0, count, _BURST):
        ids += await asyncio.gather(
            *(
                tracker.track_struct_event("demo", "bulk", f"event-{i}", value=i)
                for i in range(start, min(start + _BURST, count))
            )
        )
    return ids


def _rate(count: int, seconds: float) -> str:
    return f"{count / seconds:,.0f} events/s" if seconds > 0 else "n/a"


async def run_demo(*, db: Path | None, events: int, out: TextIO = sys.stdout) -> int:
    """Run the demo, print its report to ``out`` and return the exit status."""
    with contextlib.ExitStack() as stack:
        if db is None:
            folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="asynctracker-demo-"))
            db_file, where = Path(folder) / "events.db", "temporary, removed at exit"
        else:
            db_file, where = db, "kept"
        async with Collector("127.0.0.1", 0) as collector:
            return await _run(collector, db_file, where, events, out)
    raise AssertionError("unreachable")  # pragma: no cover  (mypy: ExitStack may swallow)


async def _run(collector: Collector, db_file: Path, where: str, bulk: int, out: TextIO) -> int:
    tally = Tally()
    emitter = Emitter(collector.url, db_name=db_file, callback=tally)
    tracker = Tracker(emitter, namespace="demo", app_id="asynctracker-demo")
    print(f"asynctracker demo: collector on {collector.url}", file=out)
    print(f"events stored in SQLite at {db_file} ({where})", file=out)
    async with tracker:
        started = time.perf_counter()
        showcase = await _track_showcase(tracker)
        bulk_ids = await _track_bulk(tracker, bulk)
        tracked = time.perf_counter()
        left = await deliver(emitter, tally, timeout=_DELIVERY_TIMEOUT, retries=3)
        delivered = time.perf_counter()

    total = len(showcase) + len(bulk_ids)
    arrived = collector.events
    by_id: dict[str, list[ReceivedEvent]] = collections.defaultdict(list)
    for event in arrived:
        by_id[event.payload.get("eid", "")].append(event)

    print(
        f"\ntracked {counted(total, 'event')} in {tracked - started:.3f} s "
        f"({_rate(total, tracked - started)});\ndelivery done {delivered - started:.3f} s "
        f"after the first track call, {delivered - tracked:.3f} s after the last "
        f"({_rate(total, delivered - started)} end to end)",
        file=out,
    )
    good = sum(1 for event in arrived if event.valid)
    print(
        f"\narrived at the collector: {counted(len(arrived), 'event')}, {good:,} good, "
        f"{len(arrived) - good:,} bad",
        file=out,
    )
    kinds = collections.Counter(event_kind(event) for event in arrived)
    for kind, count in kinds.most_common():
        print(f"  {kind:<18}{count:>8,}", file=out)

    problems: list[str] = []
    print("\nevents (verdict from the collector's protocol validator):", file=out)
    for eid in showcase:
        copies = by_id.get(eid, [])
        if not copies:
            print(f"MISSING  event {eid}", file=out)
            problems.append(f"event {eid} did not arrive")
            continue
        print(f"  {describe(copies[0])}", file=out)
        if len(copies) > 1:
            problems.append(f"event {eid} arrived {len(copies)} times")
        problems += [f"{eid}: {error}" for error in copies[0].errors]

    bulk_copies = [event for eid in bulk_ids for event in by_id.get(eid, [])]
    bulk_bad = [event for event in bulk_copies if not event.valid]
    missing = sum(1 for eid in bulk_ids if eid not in by_id)
    print(
        f"  {counted(bulk, 'bulk structured event')}: {len(bulk_copies) - len(bulk_bad):,} good, "
        f"{len(bulk_bad):,} bad, {missing:,} missing",
        file=out,
    )
    if missing:
        problems.append(f"{counted(missing, 'bulk event')} did not arrive")
    if len(bulk_copies) > len(bulk_ids) - missing:
        problems.append("some bulk events arrived more than once")
    problems += [describe(event) for event in bulk_bad[:5]]
    extra = len(arrived) - sum(len(by_id.get(eid, [])) for eid in {*showcase, *bulk_ids})
    if extra:
        print(f"  {counted(extra, 'more event')}, left in {db_file} by an earlier run", file=out)
    if left:
        stored = counted(left, "event")
        problems.append(f"{stored} still stored: {failure_reason(tally, collector.url)}")

    print("\nverdict: ", end="", file=out)
    if problems:
        print(f"FAILED ({counted(len(problems), 'problem')})", file=out)
        for problem in problems[:20]:
            print(f"  - {problem}", file=out)
    else:
        print(f"OK: all {total:,} events were delivered once each and are valid", file=out)
    print(
        "\nto watch events in a browser, run a collector and send it something:\n"
        "  asynctracker collector --port 9090        # then open http://127.0.0.1:9090/\n"
        "  asynctracker track --collector http://127.0.0.1:9090 --category shop --action view",
        file=out,
    )
    return EXIT_NOT_DELIVERED if problems else 0
