"""``asynctracker queue FILE``: the events a SQLite queue holds, and sending the stranded.

A file shared by programs for several collectors (or tenants) keeps each event for the
destination it was tracked for, and an emitter sends only its own. Events whose
destination no program uses any more (the collector URL changed, its credentials were
removed) wait until someone decides: this command lists them, exports them (one
payload per line, as tracked: ``Emitter.add_many`` replays them), or moves them to the
destination an emitter with the given options has, and delivers them.
"""

from __future__ import annotations

import argparse
import json
from typing import TextIO

from .._wire import Endpoints, redact
from ..emitter import Emitter
from ..exceptions import AsyncTrackerError, ConfigurationError
from ..storage.sqlite import SQLiteStorage
from ..tracker import Tracker
from ._common import EXIT_BAD_INPUT, EXIT_NOT_DELIVERED, Tally, deliver, failure_reason
from ._messages import counted, error
from ._terminal import escape

__all__ = ["run_queue"]


def _headers(given: list[str]) -> dict[str, str]:
    headers = {}
    for header in given:
        name, colon, value = header.partition(":")
        if not colon:
            raise ConfigurationError(f"--header {header!r} must read NAME: VALUE")
        headers[name.strip()] = value.strip()
    return headers


async def run_queue(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """List, export or move the events of a queue file."""
    if not args.file.exists():
        error("queue", f"{args.file} does not exist", err)
        return EXIT_BAD_INPUT
    if args.move is not None:
        return await _move(args, out, err)
    async with SQLiteStorage(args.file) as storage:
        waiting = await storage.destinations()
        if args.export is not None:
            if args.export not in {destination.number for destination in waiting}:
                error("queue", f"{args.file} holds no events for destination #{args.export}", err)
                return EXIT_BAD_INPUT
            for row in await storage.export_events(args.export):
                print(json.dumps(row.event, separators=(",", ":")), file=out)
            return 0
        unbound = await storage.count()  # no emitter bound: the rows of no destination
    total = unbound + sum(destination.events for destination in waiting)
    print(escape(f"{args.file}: {counted(total, 'event')} waiting"), file=out)
    for destination in waiting:
        line = f"  #{destination.number}  {destination.collector}  "
        print(escape(line + counted(destination.events, "event")), file=out)
    if unbound:
        print(
            f"  -   any destination (the next emitter sends them)  {counted(unbound, 'event')}",
            file=out,
        )
    if waiting:
        print(
            escape(
                f"send a destination's events elsewhere: asynctracker queue {args.file} "
                "--move N --to URL; save them: --export N > events.ndjson"
            ),
            file=out,
        )
    return 0


async def _move(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    if args.to is None:
        error("queue", "--move needs --to URL: the collector to send them to", err)
        return EXIT_BAD_INPUT
    tally = Tally()
    try:
        endpoints = Endpoints.parse(args.to, "https")
        url = redact(endpoints.post if args.method == "POST" else endpoints.get)
        emitter = Emitter(
            args.to,
            request_type=args.method,
            headers=_headers(args.header),
            storage=SQLiteStorage(args.file),
            callback=tally,
            close_timeout=0,
        )
    except AsyncTrackerError as exc:
        error("queue", str(exc), err)
        return EXIT_BAD_INPUT
    async with Tracker(emitter):
        moved = await emitter.adopt_events(args.move)
        if not moved:
            error("queue", f"{args.file} holds no events for destination #{args.move}", err)
            return EXIT_BAD_INPUT
        left = await deliver(emitter, tally, timeout=args.timeout, retries=2)
    print(escape(f"moved {counted(moved, 'event')} from #{args.move} to {url}"), file=out)
    if left:
        reason = failure_reason(tally, url)
        error("queue", f"{counted(left, 'event')} not delivered yet: {reason}", err)
        return EXIT_NOT_DELIVERED
    print(escape(f"delivered {counted(tally.delivered, 'event')} to {url}"), file=out)
    return 0
