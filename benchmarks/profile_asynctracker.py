"""Profile asynctracker's end-to-end SQLite POST run (track -> insert -> send -> delete).

    python benchmarks/profile_asynctracker.py [--events 20000] [--storage sqlite]

Runs the same workload as the ``asynctracker-sqlite-post`` driver against the collector
process on 127.0.0.1, twice: under cProfile (exact self time per function, event-loop
thread only) and under pyinstrument (sampled call tree, where the wall time goes).
Writes benchmarks/profile_cprofile.txt and benchmarks/profile_pyinstrument.txt and
prints the top self-time functions. Note that aiosqlite runs SQLite in its own thread:
time spent there shows up on the loop thread only as waiting.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import pstats
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import drivers  # noqa: E402
from collector import CollectorClient, CollectorProcess  # noqa: E402


def _workload(n: int, url: str, storage: str, client: CollectorClient) -> tuple[float, int]:
    client.reset()
    return asyncio.run(
        drivers._asynctracker(n, url, storage=storage, request_type="POST", client=client)
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--storage", choices=["sqlite", "memory"], default="sqlite")
    parser.add_argument("--top", type=int, default=20)
    args = parser.parse_args(argv)

    with CollectorProcess(keep_eids=False) as collector:
        client = CollectorClient(collector.url)
        _workload(2_000, collector.url, args.storage, client)  # warm imports and caches

        profile = cProfile.Profile()
        profile.enable()
        seconds, delivered = _workload(args.events, collector.url, args.storage, client)
        profile.disable()
        out = io.StringIO()
        stats = pstats.Stats(profile, stream=out).strip_dirs().sort_stats("tottime")
        stats.print_stats(args.top)
        text = out.getvalue()
        (HERE / "profile_cprofile.txt").write_text(text)
        print(f"cProfile: {delivered} events in {seconds:.2f}s (profiling overhead included)")
        print(text[text.find("   ncalls") :])

        try:
            from pyinstrument import Profiler
        except ImportError:
            print("pyinstrument not installed: pip install pyinstrument for the call tree")
        else:
            profiler = Profiler(interval=0.0005)
            profiler.start()
            seconds, delivered = _workload(args.events, collector.url, args.storage, client)
            profiler.stop()
            tree = profiler.output_text(unicode=False, color=False, show_all=False)
            (HERE / "profile_pyinstrument.txt").write_text(tree)
            print(f"pyinstrument: {delivered} events in {seconds:.2f}s; tree in")
            print(f"  {HERE / 'profile_pyinstrument.txt'}")
        client.close()


if __name__ == "__main__":
    main()
