"""``asynctracker track`` and ``asynctracker send``: events from the shell to a collector.

Both commands answer one question with their exit status: did the collector accept the
events? Queueing is not enough, so they count the emitter's callback reports (a
:class:`~asynctracker.cli._common.Tally`) and drain storage before exiting. Events come
from flags (``track``) or newline-delimited JSON (``send``); both go through
:func:`parse_event`, so a line of a file and a ``track`` call accept the same shapes and
fail with the same messages.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import math
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO, TypeVar, cast

from .._wire import Endpoints
from ..emitter import Emitter
from ..exceptions import AsyncTrackerError, InvalidEventError, StorageError
from ..payload import JSONValue, SelfDescribingJson
from ..storage import MemoryStorage
from ..tracker import Tracker
from ._common import (
    EXIT_BAD_INPUT,
    EXIT_NOT_DELIVERED,
    Tally,
    deliver,
    failure_reason,
)

__all__ = ["StructEvent", "UnstructEvent", "parse_event", "run_send", "run_track"]

_T = TypeVar("_T")

_STRUCT_KEYS = frozenset({"category", "action", "label", "property", "value", "contexts"})
_UNSTRUCT_KEYS = frozenset({"schema", "data", "contexts"})
#: Bytes read from the input per thread hop: big enough to amortise the hop, small
#: enough that memory stays flat however long the file is.
_READ_SIZE = 1 << 20
#: Lines tracked concurrently, so SQLite (``--db``) group-commits them.
_BURST = 500
#: When this many events wait in storage, reading pauses until the collector caught up,
#: so a fast file never outruns a slow collector into the emitter's overflow policy.
_HIGH_WATER = 20_000
#: Bad lines printed one by one; after that they are only counted.
_MAX_REPORTED = 100


@dataclass(frozen=True, slots=True)
class StructEvent:
    """A structured event (``e=se``) parsed from flags or a line."""

    category: str
    action: str
    label: str | None = None
    property: str | None = None
    value: float | None = None
    contexts: tuple[SelfDescribingJson, ...] = ()

    async def track(self, tracker: Tracker) -> str:
        return await tracker.track_struct_event(
            self.category,
            self.action,
            self.label,
            self.property,
            self.value,
            contexts=list(self.contexts) or None,
        )


@dataclass(frozen=True, slots=True)
class UnstructEvent:
    """A self-describing event (``e=ue``) parsed from flags or a line."""

    event: SelfDescribingJson
    contexts: tuple[SelfDescribingJson, ...] = ()

    async def track(self, tracker: Tracker) -> str:
        return await tracker.track_self_describing_event(
            self.event, contexts=list(self.contexts) or None
        )


def _string(obj: dict[str, object], key: str, *, required: bool = False) -> str | None:
    value = obj.get(key)
    if value is None or value == "":
        if required:
            raise InvalidEventError(f"{key!r} is required and must be a non-empty string")
        return None
    if not isinstance(value, str):
        raise InvalidEventError(f"{key!r} must be a string, got {type(value).__name__}")
    return value


def parse_contexts(value: object) -> tuple[SelfDescribingJson, ...]:
    """A JSON array of ``{"schema", "data"}`` objects as entities; errors name the index."""
    if value is None:
        return ()
    if not isinstance(value, list):
        raise InvalidEventError('contexts must be a JSON array of {"schema": ..., "data": ...}')
    contexts = []
    for index, item in enumerate(value):
        if not isinstance(item, dict) or set(item) != {"schema", "data"}:
            raise InvalidEventError(
                f'contexts[{index}] must be an object with exactly "schema" and "data"'
            )
        try:
            contexts.append(SelfDescribingJson(item["schema"], item["data"]))
        except InvalidEventError as exc:
            raise InvalidEventError(f"contexts[{index}]: {exc}") from exc
    return tuple(contexts)


def parse_event(obj: object) -> StructEvent | UnstructEvent:
    """Turn one JSON object into an event, or raise InvalidEventError saying what to fix.

    ``{"schema", "data", "contexts"?}`` is self-describing; ``{"category", "action",
    "label"?, "property"?, "value"?, "contexts"?}`` is structured. Unknown keys are refused
    rather than ignored, because a typo (``"lable"``) would otherwise lose data silently.
    """
    if not isinstance(obj, dict):
        raise InvalidEventError(f"an event must be a JSON object, got {type(obj).__name__}")
    if "schema" in obj:
        unknown = sorted(set(obj) - _UNSTRUCT_KEYS)
        if unknown:
            raise InvalidEventError(f"unknown keys {unknown} in a self-describing event")
        if "data" not in obj:
            raise InvalidEventError('a self-describing event needs "data"')
        data: JSONValue = obj["data"]
        return UnstructEvent(
            SelfDescribingJson(obj["schema"], data), parse_contexts(obj.get("contexts"))
        )
    if "category" in obj or "action" in obj:
        unknown = sorted(set(obj) - _STRUCT_KEYS)
        if unknown:
            raise InvalidEventError(f"unknown keys {unknown} in a structured event")
        value = obj.get("value")
        if value is not None and (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
        ):
            raise InvalidEventError(f'"value" must be a finite number, got {value!r}')
        return StructEvent(
            category=_string(obj, "category", required=True) or "",
            action=_string(obj, "action", required=True) or "",
            label=_string(obj, "label"),
            property=_string(obj, "property"),
            value=value,
            contexts=parse_contexts(obj.get("contexts")),
        )
    raise InvalidEventError(
        'expected {"schema": ..., "data": ...} (self-describing) or '
        '{"category": ..., "action": ...} (structured)'
    )


def _load_json(text: str, what: str) -> object:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise InvalidEventError(f"{what} is not valid JSON: {exc}") from None


def event_from_args(args: argparse.Namespace) -> StructEvent | UnstructEvent:
    """The event described by ``track``'s flags; InvalidEventError for bad combinations."""
    contexts = _load_json(args.contexts, "--contexts") if args.contexts is not None else None
    structured = args.category is not None or args.action is not None
    if args.schema is not None and structured:
        raise InvalidEventError("give either --schema/--json or --category/--action, not both")
    if args.schema is not None:
        data = _load_json(args.json, "--json") if args.json is not None else {}
        return parse_event({"schema": args.schema, "data": data, "contexts": contexts})
    if args.json is not None:
        raise InvalidEventError("--json needs --schema (the Iglu URI that describes it)")
    if not structured:
        raise InvalidEventError(
            "say what to send: --schema URI --json DATA, or --category C --action A"
        )
    if args.category is None or args.action is None:
        raise InvalidEventError("a structured event needs both --category and --action")
    fields = {"category": args.category, "action": args.action, "label": args.label,
              "property": args.property, "value": args.value, "contexts": contexts}  # fmt: skip
    return parse_event(fields)


@dataclass
class _Sender:
    """The emitter, tracker and tally of one command run, and how to talk about them."""

    emitter: Emitter
    tracker: Tracker
    tally: Tally
    url: str
    db: Path | None

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> _Sender:
        """Build from the shared flags; ConfigurationError for a bad collector URL."""
        endpoints = Endpoints.parse(args.collector, args.protocol)
        url = endpoints.post if args.method == "POST" else endpoints.get
        tally = Tally()
        emitter = Emitter(
            args.collector,
            request_type=args.method,
            protocol=args.protocol,
            storage=None if args.db else MemoryStorage(),
            db_name=args.db or "events.db",
            callback=tally,
            timeout=min(5.0, args.timeout),
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
        events = "1 event" if left == 1 else f"{left:,} events"
        if self.db is not None:
            return f"{events} kept in {self.db}; the next run with --db {self.db} sends them"
        return f"{events} lost: kept in memory only (use --db PATH to keep undelivered events)"


def _error(message: str, err: TextIO) -> None:
    print(f"asynctracker: error: {message}", file=err)


async def run_track(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Send one event and wait for the collector's answer."""
    try:
        event = event_from_args(args)
        sender = _Sender.from_args(args)
    except AsyncTrackerError as exc:
        _error(str(exc), err)
        return EXIT_BAD_INPUT
    tally = sender.tally
    try:
        async with sender.tracker:
            event_id = await event.track(sender.tracker)
            left = await deliver(sender.emitter, tally, timeout=args.timeout, retries=args.retries)
    except InvalidEventError as exc:
        _error(str(exc), err)
        return EXIT_BAD_INPUT
    except StorageError as exc:
        _error(str(exc), err)
        return EXIT_NOT_DELIVERED
    kind = "self-describing" if isinstance(event, UnstructEvent) else "structured"
    if left == 0 and tally.dropped == 0 and tally.delivered > 0:
        print(f"delivered {kind} event {event_id} to {sender.url}", file=out)
        return 0
    message = f"{kind} event {event_id} was not delivered: {sender.reason()}"
    if left:
        message += f". {sender.fate(left)}"
    _error(message, err)
    return EXIT_NOT_DELIVERED


async def _in_daemon_thread(func: Callable[[], _T]) -> _T:
    """Run a blocking read off the event loop on a daemon thread.

    Not ``run_in_executor``: executor threads are joined at interpreter exit, so a read
    blocked on an idle terminal would keep Ctrl-C from ending the process.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[_T] = loop.create_future()

    def settle(outcome: Callable[[], None]) -> None:
        if not future.done():
            outcome()

    def work() -> None:
        try:
            result = func()
        except BaseException as exc:  # handed to the awaiting task, never lost
            error = exc
            with contextlib.suppress(RuntimeError):  # loop already closed
                loop.call_soon_threadsafe(settle, lambda: future.set_exception(error))
        else:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(settle, lambda: future.set_result(result))

    threading.Thread(target=work, name="asynctracker-read", daemon=True).start()
    return await future


class _LineReader:
    """Complete lines from a binary stream, a chunk at a time (never the whole file).

    ``read1`` returns whatever is available, so a slow pipe (``tail -f | asynctracker
    send -``) delivers each line as it comes instead of waiting for a full buffer.
    """

    def __init__(self, stream: io.BufferedIOBase) -> None:
        self._stream = stream
        self._partial = b""
        self._eof = False

    def next_lines(self) -> list[bytes]:
        """Blocking: the next complete lines; an empty list means end of input."""
        while not self._eof:
            chunk = self._stream.read1(_READ_SIZE)
            if not chunk:
                self._eof = True
                break
            data = self._partial + chunk
            cut = data.rfind(b"\n")
            if cut < 0:
                self._partial = data
                continue
            self._partial = data[cut + 1 :]
            return data[: cut + 1].splitlines()
        last, self._partial = self._partial, b""
        return [last] if last.strip() else []


@dataclass
class _Progress:
    lines: int = 0
    queued: int = 0
    bad: int = 0
    blank: int = 0


async def run_send(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Stream newline-delimited JSON events to the collector; see ``send --help``."""
    try:
        sender = _Sender.from_args(args)
    except AsyncTrackerError as exc:
        _error(str(exc), err)
        return EXIT_BAD_INPUT
    name = "stdin" if args.file == "-" else args.file
    try:
        if args.file == "-":
            stream = cast(io.BufferedIOBase, sys.stdin.buffer)
        else:  # off the loop too: opening a FIFO blocks until a writer appears
            stream = await _in_daemon_thread(lambda: open(args.file, "rb"))  # noqa: SIM115
    except OSError as exc:
        _error(f"cannot read {name}: {exc.strerror or exc}", err)
        return EXIT_BAD_INPUT
    progress = _Progress()
    started = time.perf_counter()
    ticker: asyncio.Task[None] | None = None
    if err.isatty():
        ticker = asyncio.create_task(_tick(progress, sender.tally, started, err))
    try:
        with contextlib.ExitStack() as stack:
            if stream is not sys.stdin.buffer:
                stack.enter_context(stream)
            async with sender.tracker:
                stalled = await _pump(_LineReader(stream), sender, progress, name, args, err)
                left = await deliver(
                    sender.emitter, sender.tally, timeout=args.timeout, retries=args.retries
                )
    except StorageError as exc:
        _error(str(exc), err)
        return EXIT_NOT_DELIVERED
    finally:
        if ticker is not None:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker
            err.write("\r\x1b[K")
    elapsed = time.perf_counter() - started
    return _summary(sender, progress, name, left, stalled, elapsed, out, err)


async def _pump(
    reader: _LineReader,
    sender: _Sender,
    progress: _Progress,
    name: str,
    args: argparse.Namespace,
    err: TextIO,
) -> bool:
    """Read, parse and track every line; True if it stopped early on a stalled collector."""

    async def track_line(number: int, raw: bytes) -> None:
        try:
            event = parse_event(_load_json(raw.decode("utf-8"), "the line"))
            await event.track(sender.tracker)
        except UnicodeDecodeError:
            bad(number, "not UTF-8 text")
        except InvalidEventError as exc:
            bad(number, str(exc))
        else:
            progress.queued += 1

    def bad(number: int, message: str) -> None:
        progress.bad += 1
        if progress.bad <= _MAX_REPORTED:
            err.write("\r\x1b[K" if err.isatty() else "")
            print(f"{name}:{number}: bad line: {message}", file=err)
        if progress.bad == _MAX_REPORTED:
            print("(further bad lines are counted, not shown)", file=err)

    while lines := await _in_daemon_thread(reader.next_lines):
        work = []
        for raw in lines:
            progress.lines += 1
            if raw.strip():
                work.append(track_line(progress.lines, raw))
            else:
                progress.blank += 1
        for start in range(0, len(work), _BURST):
            await asyncio.gather(*work[start : start + _BURST])
        if sender.emitter.stats().queued >= _HIGH_WATER:
            left = await deliver(
                sender.emitter, sender.tally, timeout=args.timeout, retries=args.retries
            )
            if left:
                _error(f"stopped reading after line {progress.lines}: {sender.reason()}", err)
                return True
    return False


async def _tick(progress: _Progress, tally: Tally, started: float, err: TextIO) -> None:
    """Redraw the progress line a few times a second (only when stderr is a terminal)."""
    while True:
        await asyncio.sleep(0.2)
        elapsed = max(time.perf_counter() - started, 1e-9)
        failed = tally.dropped
        err.write(
            f"\r\x1b[Kqueued {progress.queued:,}  delivered {tally.delivered:,}  "
            f"failed {failed:,}  bad lines {progress.bad:,}  "
            f"{tally.delivered / elapsed:,.0f} events/s"
        )
        err.flush()


def _summary(
    sender: _Sender,
    progress: _Progress,
    name: str,
    left: int,
    stalled: bool,
    elapsed: float,
    out: TextIO,
    err: TextIO,
) -> int:
    tally = sender.tally
    rate = tally.delivered / elapsed if elapsed > 0 else 0.0
    print(
        f"{name}: {progress.lines:,} lines, {progress.queued:,} events queued, "
        f"{tally.delivered:,} delivered, {tally.dropped + left:,} failed, "
        f"{progress.bad:,} bad lines in {elapsed:.2f} s ({rate:,.0f} events/s)",
        file=out,
    )
    problems: list[str] = []
    if tally.dropped:
        problems.append(f"{tally.dropped:,} events dropped: {sender.reason()}")
    if left:
        problems.append(f"not delivered: {sender.reason()}. {sender.fate(left)}")
    if stalled:
        problems.append("input was not read to the end")
    if progress.bad:
        problems.append(f"{progress.bad:,} bad lines were skipped")
    for problem in problems:
        _error(problem, err)
    if tally.dropped or left or stalled:
        return EXIT_NOT_DELIVERED
    return EXIT_BAD_INPUT if progress.bad else 0
