"""Run every benchmark and print its figures (``nox -s bench`` calls this).

    python benchmarks/run_all.py            # the full run (several minutes)
    python benchmarks/run_all.py --quick    # a short smoke run (~1-2 minutes)

Each benchmark runs as its own process, one after the other (never two at once: they
would measure each other), with a time limit, against a collector on 127.0.0.1 that it
starts and stops itself. Full-run results land in benchmarks/*.json and
benchmarks/throughput.png; --quick writes them under the temp dir instead.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

FULL = [
    ("throughput.py", ["--rounds", "7", "--events", "20000", "--get-events", "500"], 1800),
    *(
        (
            "throughput.py",
            [
                *("--rounds", "5", "--events", "20000", "--pattern", pattern),
                *("--drivers", "asynctracker-sqlite-post", "asynctracker-memory-post"),
                *("aio-snowplow-tracker", "--out", str(HERE / f"results_{pattern}.json")),
            ],
            1800,
        )
        for pattern in ("serial", "sem64", "tasks64")
    ),
    (
        "throughput.py",
        [
            *("--rounds", "5", "--events", "20000", "--drivers", "asynctracker-sqlite-drain"),
            *("raw-httpx", "--out", str(HERE / "results_drain.json")),
        ],
        900,
    ),
    ("loop_lag.py", ["--events", "20000", "--rounds", "5"], 900),
    ("track_latency.py", ["--events", "20000", "--serial-events", "5000", "--rounds", "5"], 900),
    ("backlog_memory.py", ["--events", "1000000"], 1200),
    ("plot.py", [], 120),
]
QUICK_DIR = Path(tempfile.gettempdir()) / "asynctracker-bench-quick"
QUICK = [
    ("throughput.py", ["--rounds", "2", "--events", "5000", "--get-events", "100"], 600),
    ("loop_lag.py", ["--events", "5000", "--rounds", "1"], 300),
    ("track_latency.py", ["--events", "5000", "--serial-events", "1000", "--rounds", "1"], 300),
    ("backlog_memory.py", ["--events", "50000"], 300),
    ("plot.py", [], 120),
]


def _quick_outputs(script: str) -> list[str]:
    """Quick runs write under the temp dir, never over the committed full-run results."""
    stem = {"throughput.py": "results"}.get(script, script.removesuffix(".py"))
    if script == "plot.py":
        return [str(QUICK_DIR / "results.json"), str(QUICK_DIR / "throughput.png")]
    return ["--out", str(QUICK_DIR / f"{stem}.json")]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="short run with small counts")
    parser.add_argument("--skip", nargs="*", default=[], help="scripts to skip, e.g. backlog")
    args = parser.parse_args()

    failed = []
    for script, script_args, limit in QUICK if args.quick else FULL:
        if any(skip in script for skip in args.skip):
            continue
        command = [sys.executable, str(HERE / script), *script_args]
        if args.quick:
            QUICK_DIR.mkdir(exist_ok=True)
            command += _quick_outputs(script)
        print(f"\n=== {script} {' '.join(script_args)}", flush=True)
        started = time.perf_counter()
        try:
            code = subprocess.run(command, timeout=limit, check=False).returncode
        except subprocess.TimeoutExpired:
            code = -1
            print(f"--- {script} exceeded {limit}s and was stopped", flush=True)
        print(f"--- {script}: exit {code} in {time.perf_counter() - started:.0f}s", flush=True)
        if code:
            failed.append(script)
    if failed:
        print(f"\nfailed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
