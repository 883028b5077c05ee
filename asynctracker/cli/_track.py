"""``asynctracker track``, and the emitter every sending command builds from its flags.

The command answers one question with its exit status: did the collector accept the
event? Queueing is not enough, so :class:`Sender` counts the emitter's callback reports
(a :class:`~asynctracker.cli._common.Tally`) and the command drains storage with
:func:`~asynctracker.cli._common.deliver` before it exits.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from .._wire import Endpoints, redact
from ..emitter import Emitter
from ..exceptions import AsyncTrackerError, InvalidEventError, StorageError
from ..storage import MemoryStorage
from ..tracker import Tracker
from ._common import EXIT_BAD_INPUT, EXIT_NOT_DELIVERED, Tally, deliver, failure_reason
from ._events import UnstructEvent, check_text_options, event_from_args
from ._messages import counted, error
from ._terminal import escape

__all__ = ["Sender", "run_track"]


@dataclass
class Sender:
    """The emitter, tracker and tally of one command run, and how to talk about them."""

    emitter: Emitter
    tracker: Tracker
    tally: Tally
    url: str
    db: Path | None

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Sender:
        """Build from the shared flags; ConfigurationError for a bad collector URL."""
        endpoints = Endpoints.parse(args.collector, args.protocol)
        # Said in messages: never with the URL's user:password@.
        url = redact(endpoints.post if args.method == "POST" else endpoints.get)
        tally = Tally()
        emitter = Emitter(
            args.collector,
            request_type=args.method,
            protocol=args.protocol,
            storage=None if args.db else MemoryStorage(),
            db_name=args.db or "events.db",
            callback=tally,
            timeout=min(5.0, args.timeout),
            # The commands drain with deliver() themselves, within their own bounds:
            # leaving ``async with`` must not wait another close_timeout on top.
            close_timeout=0,
        )
        tracker = Tracker(
            emitter, namespace=args.namespace, app_id=args.app_id, platform=args.platform
        )
        return cls(emitter, tracker, tally, url, args.db)

    def reason(self) -> str:
        reason = failure_reason(self.tally, self.url)
        if self.tally.last_failure == -1 and self.url.startswith("https://"):
            reason += "; if it speaks plain HTTP, give an http:// URL or --protocol http"
        return reason

    def fate(self, left: int) -> str:
        """What happens to ``left`` undelivered events."""
        events = counted(left, "event")
        if self.db is not None:
            return f"{events} kept in {self.db}; the next run with --db {self.db} sends them"
        return f"{events} lost: kept in memory only (use --db PATH to keep undelivered events)"


async def run_track(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Send one event and wait for the collector's answer."""
    try:
        check_text_options(args)
        event = event_from_args(args)
        sender = Sender.from_args(args)
    except AsyncTrackerError as exc:
        error("track", str(exc), err)
        return EXIT_BAD_INPUT
    tally = sender.tally
    try:
        async with sender.tracker:
            event_id = await event.track(sender.tracker)
            left = await deliver(sender.emitter, tally, timeout=args.timeout, retries=args.retries)
    except InvalidEventError as exc:
        error("track", str(exc), err)
        return EXIT_BAD_INPUT
    except StorageError as exc:
        error("track", str(exc), err)
        return EXIT_NOT_DELIVERED
    kind = "self-describing" if isinstance(event, UnstructEvent) else "structured"
    if left == 0 and tally.dropped == 0 and tally.delivered > 0:
        print(escape(f"delivered {kind} event {event_id} to {sender.url}"), file=out)
        return 0
    message = f"{kind} event {event_id} was not delivered: {sender.reason()}"
    if left:
        message += f". {sender.fate(left)}"
    error("track", message, err)
    return EXIT_NOT_DELIVERED
