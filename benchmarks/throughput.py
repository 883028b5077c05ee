"""End-to-end delivery throughput: asynctracker against its peers, in one run.

    python benchmarks/throughput.py [--rounds 5] [--events 20000] [--get-events 500]

Every driver (see drivers.py) runs once per round, each in a fresh interpreter, against
the same collector process on 127.0.0.1. Rounds are interleaved (round-robin, with the
order rotated each round) so that drift on a noisy machine hits every driver alike.
Prints medians, min/max and ratios, and writes benchmarks/results.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from collector import CollectorProcess  # noqa: E402
from drivers import DRIVERS, PATTERNS, run_isolated  # noqa: E402

PEERS = ("aio-snowplow-tracker", "snowplow-tracker", "raw-httpx")
RESULTS = HERE / "results.json"


def _paired_ratio(runs: dict[str, list[dict[str, Any]]], a: str, b: str) -> float | None:
    """Median over rounds of a/b events/s within the same round (robust to drift)."""
    pairs = [
        x["events_per_s"] / y["events_per_s"]
        for x, y in zip(runs.get(a, []), runs.get(b, []), strict=False)
        if y["events_per_s"]
    ]
    return statistics.median(pairs) if pairs else None


def summarise(runs: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    summary: dict[str, dict[str, Any]] = {}
    for name, results in runs.items():
        rates = [r["events_per_s"] for r in results]
        summary[name] = {
            "median": statistics.median(rates),
            "min": min(rates),
            "max": max(rates),
            "rounds": len(rates),
            "n": results[0]["n"],
            "delivered_min": min(r["delivered"] for r in results),
            "duplicates_max": max(r["duplicates"] for r in results),
            "requests_median": statistics.median(r["requests"] for r in results),
            "ratio_to": {peer: _paired_ratio(runs, name, peer) for peer in PEERS if peer in runs},
        }
    return summary


def table(summary: dict[str, dict[str, Any]]) -> str:
    peers = [p for p in PEERS if p in summary]
    head = ["driver", "median ev/s", "min", "max", "delivered", "dups", "reqs"]
    head += [f"x {p}" for p in peers]
    rows = [head]
    for name in sorted(summary, key=lambda k: -summary[k]["median"]):
        s = summary[name]
        row = [
            name,
            f"{s['median']:,.0f}",
            f"{s['min']:,.0f}",
            f"{s['max']:,.0f}",
            f"{s['delivered_min']}/{s['n']}",
            str(s["duplicates_max"]),
            f"{s['requests_median']:.0f}",
        ]
        for peer in peers:
            ratio = s["ratio_to"].get(peer)
            row.append("-" if ratio is None or peer == name else f"{ratio:.2f}")
        rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = [
        "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in rows
    ]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def measure(
    drivers: list[str],
    rounds: int,
    events: int,
    get_events: int,
    *,
    log: bool = True,
    pattern: str = "gather1000",
) -> dict[str, list[dict[str, Any]]]:
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in drivers}
    with CollectorProcess(keep_eids=True) as collector:
        for round_no in range(rounds):
            shift = round_no % len(drivers)
            for name in drivers[shift:] + drivers[:shift]:
                n = get_events if name.endswith("-get") else events
                result = run_isolated(name, n, collector.url, caller_pattern=pattern)
                runs[name].append(result)
                if log:
                    print(
                        f"round {round_no + 1}/{rounds} {name:26} "
                        f"{result['events_per_s']:>9,.0f} ev/s  "
                        f"{result['delivered']}/{n} in {result['seconds']:.2f}s",
                        flush=True,
                    )
    return runs


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument(
        "--get-events",
        type=int,
        default=500,
        help="events for GET drivers (one request each, so far slower; see README)",
    )
    parser.add_argument("--drivers", nargs="*", default=list(DRIVERS), choices=list(DRIVERS))
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--pattern",
        choices=PATTERNS,
        default="gather1000",
        help="how the async drivers call track_* (see drivers.track_in_slices)",
    )
    args = parser.parse_args(argv)

    started = time.time()
    runs = measure(args.drivers, args.rounds, args.events, args.get_events, pattern=args.pattern)
    summary = summarise(runs)
    text = table(summary)
    print()
    print(text)
    result = {
        "command": "python benchmarks/throughput.py " + " ".join(argv or sys.argv[1:]),
        "when": time.strftime("%Y-%m-%d %H:%M:%S %z", time.localtime(started)),
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": __import__("os").cpu_count(),
        },
        "rounds": args.rounds,
        "pattern": args.pattern,
        "events": args.events,
        "get_events": args.get_events,
        "summary": summary,
        "table": text,
        "runs": runs,
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {args.out}")
    return result


if __name__ == "__main__":
    main()
