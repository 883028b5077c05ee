"""``asynctracker collector``: serve a local collector until stopped, one line per event.

It runs until a signal stops it, so its exit status says how it was stopped: 130 for
Ctrl-C (SIGINT), like every command (a script running ``asynctracker collector && next``
stops there, as after any interrupted command), and 0 for SIGTERM, the ordinary stop of
a service manager (systemd, ``docker stop``), which counts 0 as a clean stop. Either
way the collector is stopped properly first: its database written and closed, and the
summary printed. Failing to start is 1 (cannot listen) or 2 (bad ``--db``/``--iglu``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sqlite3
from typing import TextIO

from ..collector import Collector, ReceivedEvent
from ._common import EXIT_BAD_INPUT, EXIT_INTERRUPTED, EXIT_NOT_DELIVERED, describe
from ._messages import counted, error

__all__ = ["run_collector"]


async def run_collector(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Serve until SIGINT/SIGTERM, printing one line per event and a summary at the end.

    Returns 130 after SIGINT (Ctrl-C) and 0 after SIGTERM (see the module docstring).
    """

    def on_event(event: ReceivedEvent) -> None:
        # Events come from the network: describe() escapes what reaches the terminal.
        print(describe(event), file=out, flush=True)

    try:
        collector = Collector(
            args.host,
            args.port,
            db_path=args.db,
            on_event=None if args.quiet else on_event,
            allowed_hosts=args.allow_host,
            iglu=args.iglu,
        )
    except (RuntimeError, OSError) as exc:  # --iglu without jsonschema, or not a folder
        error("collector", str(exc), err)
        return EXIT_BAD_INPUT
    try:
        await collector.start()
    except (OSError, sqlite3.Error) as exc:
        where = f"{args.host}:{args.port}"
        if args.db is not None and (isinstance(exc, sqlite3.Error) or args.db.is_dir()):
            error("collector", f"cannot use --db {args.db}: {exc}", err)
            return EXIT_BAD_INPUT
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        error("collector", f"cannot listen on {where}: {reason}", err)
        return EXIT_NOT_DELIVERED
    stop = asyncio.Event()
    stopped_by: list[signal.Signals] = []

    def stop_on(signum: signal.Signals) -> None:
        stopped_by.append(signum)
        stop.set()

    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        # Windows: Ctrl-C still interrupts, as KeyboardInterrupt, which _run maps to 130.
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signum, stop_on, signum)
    try:
        stored = f", keeping events in {args.db}" if args.db else ""
        print(
            f"collector listening on {collector.url}{stored}\n"
            f"  page:    {collector.url}/   Micro API: {collector.url}/micro/all\n"
            f"  send to: asynctracker track --collector {collector.url} "
            "--category test --action ping\n"
            f"  stop with Ctrl-C. {collector.validation_mode}",
            file=out,
            flush=True,
        )
        await stop.wait()
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.remove_signal_handler(signum)
        await collector.stop()
    counts = collector.counts
    print(
        f"collector stopped: {counted(counts['total'], 'event')}, {counts['good']:,} good, "
        f"{counts['bad']:,} bad",
        file=out,
        flush=True,
    )
    return EXIT_INTERRUPTED if stopped_by and stopped_by[0] is signal.SIGINT else 0
