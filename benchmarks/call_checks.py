"""What the argument checks of a ``track_*`` call cost, per event.

    python benchmarks/call_checks.py [--events 2000] [--rounds 40] [--build-only]

Two figures per call shape, in microseconds per event:

* ``build``: the tracker's side of a call (checks, payload text), which is where the
  argument checks live; measured by running the call with the emitter's insert
  replaced by one that returns at once; process CPU time, the best of ``--rounds``
  rounds: the figures least disturbed by other processes on a shared machine.
* ``track``: the whole ``await tracker.track_*()`` into a MemoryStorage, delivery to an
  in-memory transport answering 200 running meanwhile, as in production; the median.

Run it on two commits to compare (``PYTHONPATH=<other checkout>`` runs that one's
package); the figures depend on the machine's load.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable

import httpx

import asynctracker as at

CTX = at.SelfDescribingJson("iglu:com.acme/user/jsonschema/1-0-0", {"id": 7, "name": "ada"})
EVENT = at.SelfDescribingJson(
    "iglu:com.acme/click/jsonschema/1-0-0", {"x": 1, "target": "buy", "tags": ["a", "b"]}
)

Call = Callable[[at.Tracker, int], Awaitable[str]]

SHAPES: dict[str, Call] = {
    "struct": lambda t, i: t.track_struct_event("shop", "add", f"l{i}", None, 2.5),
    "struct+timestamp": lambda t, i: t.track_struct_event(
        "shop", "add", f"l{i}", None, 2.5, timestamp=1_700_000_000_000 + i
    ),
    "self_describing": lambda t, i: t.track_self_describing_event(EVENT),
    "self_describing+ctx": lambda t, i: t.track_self_describing_event(EVENT, contexts=[CTX]),
    "page_view": lambda t, i: t.track_page_view(f"https://shop.example/p/{i}", "Product"),
}


def _tracker(status: int) -> tuple[at.Tracker, httpx.AsyncClient]:
    client = httpx.AsyncClient(transport=httpx.MockTransport(lambda _: httpx.Response(status)))
    emitter = at.Emitter(
        "collector.test",
        storage=at.MemoryStorage(),
        http_client=client,
        retry=at.RetryPolicy(auto_retry=False),
    )
    return at.Tracker(emitter, namespace="bench", app_id="bench"), client


async def _round(call: Call, events: int) -> float:
    """Microseconds per awaited call, delivery running meanwhile."""
    tracker, client = _tracker(200)
    async with tracker:
        started = time.perf_counter()
        for i in range(events):
            await call(tracker, i)
        seconds = time.perf_counter() - started
        await tracker.flush()
    await client.aclose()
    return seconds / events * 1e6


async def _build_round(call: Call, events: int) -> float:
    """Microseconds per call with the storage insert and the send loop taken out.

    The emitter's insert is replaced on the instance by one that never suspends, so
    each call runs to completion on its first step: it is driven here without the event
    loop, whose scheduling would otherwise be most of the noise. CPU time of this
    process, not wall time, so other processes on a busy machine do not count.
    """
    tracker, client = _tracker(500)
    emitter = tracker.emitter
    await emitter.open()

    async def add(payload: object) -> None:
        return None

    emitter.add = add  # type: ignore[method-assign,assignment]
    started = time.process_time()
    for i in range(events):
        step = call(tracker, i)
        try:
            step.send(None)  # type: ignore[attr-defined]
        except StopIteration:
            pass
        else:  # pragma: no cover - a call that suspended would be measured wrongly
            raise RuntimeError("a track_* call suspended")
    seconds = time.process_time() - started
    await tracker.aclose()
    await client.aclose()
    return seconds / events * 1e6


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=2_000)
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--build-only", action="store_true", help="skip the track column")
    args = parser.parse_args()
    print(f"asynctracker {at.__version__} from {at.__file__}")
    print(f"{'shape':<22} {'build us':>9} {'track us':>9}")
    for name, call in SHAPES.items():
        builds = [await _build_round(call, args.events) for _ in range(args.rounds)]
        if args.build_only:
            print(f"{name:<22} {min(builds):>9.2f}")
            continue
        tracks = [await _round(call, args.events) for _ in range(args.rounds)]
        print(f"{name:<22} {min(builds):>9.2f} {statistics.median(tracks):>9.2f}")


if __name__ == "__main__":
    asyncio.run(main())
