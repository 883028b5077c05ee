"""``asynctracker send``: newline-delimited JSON events from a file or stdin to a collector.

What the command promises, and how:

- **A bad line never stops the run.** Each line is read, decoded, parsed and tracked on
  its own; whatever is wrong with it (not UTF-8, not JSON, nested too deep, a number no
  float holds, a lone surrogate, too long) is reported with its number and the run goes
  on. The first ``_MAX_REPORTED`` are printed one by one, later ones summed up at most
  once a second, so a file of garbage cannot flood the terminal.
- **Flat memory.** Lines come from :class:`~asynctracker.cli._lines.LineReader` (bounded
  chunks, bounded line length), at most ``_BURST`` are tracked at once, and reading
  pauses while ``_HIGH_WATER`` events wait in storage.
- **Ctrl-C is a clean stop.** The first SIGINT (or SIGTERM) stops reading once the lines
  in flight are stored, drains storage for up to ``--timeout`` seconds (a second Ctrl-C
  stops at once), then says the last line stored and prints the command that resumes
  with ``--skip``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import os
import stat
import sys
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TextIO

from ..exceptions import AsyncTrackerError, StorageError
from ._args import program
from ._common import EXIT_BAD_INPUT, EXIT_INTERRUPTED, EXIT_NOT_DELIVERED, deliver
from ._events import check_text_options, load_json, parse_event
from ._interrupt import Interrupt, in_daemon_thread, unless
from ._lines import Line, LineReader, decode
from ._messages import counted, error, error_line, notice
from ._progress import Figures, StatusLine
from ._terminal import escape, shell_command
from ._track import Sender

__all__ = ["run_send"]


#: Lines tracked concurrently, so SQLite (``--db``) group-commits them.
_BURST = 500
#: When this many events wait in storage, reading pauses until the collector caught up,
#: so a fast file never outruns a slow collector into the emitter's overflow policy.
_HIGH_WATER = 20_000
#: Bad lines printed one by one; after that, one summary line per ``_REPORT_EVERY`` s.
_MAX_REPORTED = 100
_REPORT_EVERY = 1.0
#: Characters of a bad line's reason shown; the reason may quote the line.
_MAX_MESSAGE = 300


@dataclass
class _Run:
    """Where a run stands; every count is in lines of the input, numbered from 1."""

    name: str
    #: Every line up to this one is stored (or was blank or bad): the resume point.
    done: int = 0
    #: Every event from lines up to this one has also left storage (delivered or
    #: dropped): the resume point when undelivered events held in memory are lost.
    checkpoint: int = 0
    queued: int = 0
    bad: int = 0
    unreported: int = 0
    last_report: float = 0.0
    stalled: bool = False
    interrupted: bool = False


def _size(stream: io.RawIOBase) -> int | None:
    """The input's size in bytes if it is a regular file (``FILE`` or ``< FILE``)."""
    try:
        info = os.fstat(stream.fileno())
    except (OSError, ValueError, io.UnsupportedOperation):
        return None
    return info.st_size if stat.S_ISREG(info.st_mode) else None


async def _open(args: argparse.Namespace) -> io.RawIOBase:
    """The input, unbuffered (see LineReader); stdin's descriptor is left open."""
    if args.file == "-":
        return io.FileIO(sys.stdin.fileno(), "rb", closefd=False)
    # Off the loop too: opening a FIFO blocks until a writer appears.
    return await in_daemon_thread(lambda: io.FileIO(args.file, "rb"))


async def run_send(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Stream newline-delimited JSON events to the collector; see ``send --help``."""
    try:
        check_text_options(args)
        sender = Sender.from_args(args)
    except AsyncTrackerError as exc:
        error("send", str(exc), err)
        return EXIT_BAD_INPUT
    name = "stdin" if args.file == "-" else args.file
    try:
        stream = await _open(args)
    except OSError as exc:
        error("send", f"cannot read {name}: {exc.strerror or exc}", err)
        return EXIT_BAD_INPUT
    total = _size(stream)
    reader = LineReader(stream, max_line_bytes=args.max_line_bytes, skip=args.skip)
    run = _Run(name, done=args.skip, checkpoint=args.skip)
    terminal = err.isatty()
    status = StatusLine(err, show=terminal if args.progress is None else args.progress,
                        terminal=terminal)  # fmt: skip
    interrupt = Interrupt()
    started = time.perf_counter()

    def figures() -> Figures:
        tally = sender.tally
        return Figures(lines=run.done, queued=run.queued, delivered=tally.delivered,
                       failed=tally.dropped, bad=run.bad, bytes_read=reader.bytes_read,
                       total_bytes=total, elapsed=time.perf_counter() - started)  # fmt: skip

    status.start(figures)
    try:
        with contextlib.ExitStack() as stack:
            stack.enter_context(stream)
            stack.enter_context(interrupt.installed())
            async with sender.tracker:
                await _pump(reader, sender, run, args, status, interrupt)
                left = await _drain(sender, run, args, status, interrupt)
    except StorageError as exc:
        await status.stop()
        error("send", str(exc), err)
        return EXIT_NOT_DELIVERED
    finally:
        await status.stop()
    if run.unreported:
        status.message(f"{name}: {counted(run.unreported, 'more bad line')}")
    return _summary(sender, run, args, left, time.perf_counter() - started, out, err)


async def _pump(
    reader: LineReader,
    sender: Sender,
    run: _Run,
    args: argparse.Namespace,
    status: StatusLine,
    interrupt: Interrupt,
) -> None:
    """Read, parse and track every line, until the input ends, Ctrl-C, or the collector
    stops taking events while ``_HIGH_WATER`` of them wait."""

    def bad(number: int, message: str) -> None:
        if len(message) > _MAX_MESSAGE:  # e.g. "unknown keys [...]" from a huge object
            message = message[: _MAX_MESSAGE - 3] + "..."
        run.bad += 1
        if run.bad <= _MAX_REPORTED:
            status.message(f"{run.name}:{number}: bad line: {message}")
            if run.bad == _MAX_REPORTED:
                status.message(f"{run.name}: further bad lines are summed up once a second")
            return
        run.unreported += 1
        now = time.monotonic()
        if now - run.last_report >= _REPORT_EVERY:
            status.message(
                f"{run.name}: {counted(run.unreported, 'more bad line')}, "
                f"the latest {run.name}:{number}: {message}"
            )
            run.unreported, run.last_report = 0, now

    async def track_line(line: Line) -> None:
        if line.data is None:
            limit = counted(args.max_line_bytes, "byte")
            bad(line.number, f"longer than --max-line-bytes ({limit})")
            return
        try:
            event = parse_event(load_json(decode(line.data, line.number), "the line"))
            await event.track(sender.tracker)
        except UnicodeDecodeError as exc:
            bad(
                line.number,
                f"not UTF-8 text (byte {exc.start + 1} is 0x{line.data[exc.start]:02x})",
            )
        except (ValueError, TypeError, OverflowError, RecursionError) as exc:
            # InvalidEventError is a ValueError; the others are belt and braces, so
            # that no line, whatever the library makes of it, ends the run.
            bad(line.number, str(exc) or type(exc).__name__)
        else:
            run.queued += 1

    emitter = sender.emitter
    while not interrupt.stop.is_set():
        batch = await unless(interrupt.stop, in_daemon_thread(reader.next_batch))
        if batch is None:
            return
        for start in range(0, len(batch.lines), _BURST):
            burst = batch.lines[start : start + _BURST]
            await asyncio.gather(*map(track_line, burst))
            run.done = burst[-1].number
            if interrupt.stop.is_set():
                return
        run.done = batch.through
        if batch.eof:
            return
        if emitter.stats().queued == 0:
            run.checkpoint = run.done
        elif emitter.stats().queued >= _HIGH_WATER:
            drain = deliver(emitter, sender.tally, timeout=args.timeout, retries=args.retries)
            left = await unless(interrupt.stop, drain)
            if left is None:
                return
            if left:
                run.stalled = True
                status.message(
                    error_line(
                        "send", f"stopped reading after line {run.done:,}: {sender.reason()}"
                    )
                )
                return
            run.checkpoint = run.done


async def _drain(
    sender: Sender,
    run: _Run,
    args: argparse.Namespace,
    status: StatusLine,
    interrupt: Interrupt,
) -> int:
    """Deliver what is stored; after Ctrl-C, for ``--timeout`` seconds at most.
    Returns how many events are still stored."""

    def drain() -> Awaitable[int]:
        return deliver(sender.emitter, sender.tally, timeout=args.timeout, retries=args.retries)

    if not interrupt.stop.is_set():
        left = await unless(interrupt.stop, drain())
        if left is not None:
            if left == 0:
                run.checkpoint = run.done
            return left
    run.interrupted = True
    stored = sender.emitter.stats().queued
    status.message(
        notice(
            "send",
            f"interrupted after line {run.done:,}; delivering {counted(stored, 'stored event')}"
            f" for up to {args.timeout:g} s (Ctrl-C again to stop now)",
        )
    )
    try:
        left = await unless(interrupt.now, asyncio.wait_for(drain(), args.timeout))
    except asyncio.TimeoutError:
        left = None
    if left is None:
        left = sender.emitter.stats().queued
    if left == 0:
        run.checkpoint = run.done
    return left


def _resume_command(args: argparse.Namespace, skip: int) -> str:
    """This very command with ``--skip`` set to ``skip`` (any earlier ``--skip`` and its
    abbreviations, which argparse accepts, removed)."""
    argv: list[str] = list(getattr(args, "argv", sys.argv[1:]))
    kept: list[str] = []
    index = 0
    while index < len(argv):
        arg = argv[index]
        if arg == "--":
            kept += argv[index:]
            break
        option = arg.split("=", 1)[0]
        if len(option) > 3 and "--skip".startswith(option):
            index += 1 if "=" in arg else 2
            continue
        kept.append(arg)
        index += 1
    return shell_command([*program(), *kept, "--skip", str(skip)])


def _summary(
    sender: Sender,
    run: _Run,
    args: argparse.Namespace,
    left: int,
    elapsed: float,
    out: TextIO,
    err: TextIO,
) -> int:
    tally = sender.tally
    rate = tally.delivered / elapsed if elapsed > 0 else 0.0
    skipped = f" after skipping {args.skip:,}" if args.skip else ""
    lines = counted(max(run.done - args.skip, 0), "line")
    print(
        escape(
            f"{run.name}: {lines}{skipped}, {counted(run.queued, 'event')} queued, "
            f"{tally.delivered:,} delivered, {tally.dropped + left:,} failed, "
            f"{counted(run.bad, 'bad line')} in {elapsed:.2f} s ({rate:,.0f} events/s)"
        ),
        file=out,
    )
    problems: list[str] = []
    if tally.dropped:
        problems.append(f"{counted(tally.dropped, 'event')} dropped: {sender.reason()}")
    if left:
        problems.append(f"not delivered: {sender.reason()}. {sender.fate(left)}")
    if run.bad:
        were = "was" if run.bad == 1 else "were"
        problems.append(f"{counted(run.bad, 'bad line')} {were} skipped")
    if run.interrupted:
        problems.append(f"interrupted: the last line stored is {run.name}:{run.done}")
    elif run.stalled:
        problems.append(f"input was not read to the end: the last line stored is line {run.done}")
    for problem in problems:
        error("send", problem, err)
    lost = left > 0 and sender.db is None
    if run.interrupted or run.stalled or lost:
        resume = run.checkpoint if lost else run.done
        why = (
            f" (events after line {resume} held in memory were lost; some may arrive twice)"
            if lost and resume < run.done
            else ""
        )
        again = " with the same input on stdin" if args.file == "-" else ""
        print(f"to resume{again}{why}: {_resume_command(args, resume)}", file=err)
    if run.interrupted:
        return EXIT_INTERRUPTED
    if tally.dropped or left or run.stalled:
        return EXIT_NOT_DELIVERED
    return EXIT_BAD_INPUT if run.bad else 0
