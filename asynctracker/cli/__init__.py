"""The ``asynctracker`` command (also ``python -m asynctracker``).

Subcommands: ``track`` (one event), ``send`` (newline-delimited JSON), ``collector`` (a
local collector with a web page), ``queue`` (a SQLite queue's waiting events) and
``demo`` (every event type, end to end). This module
only runs the parsed command (the parser is in ``_parser``, its value types in ``_args``)
and maps outcomes to exit statuses; the work lives in ``_track``, ``_send``,
``_collector`` and ``_demo``, so each can be read (and tested) on its own.

Exit statuses: 0 everything delivered (and valid, for the demo); 1 something was not
delivered or arrived invalid; 2 bad input (flags, JSON, schema URIs, bad lines) or a
command that could not run, always as one line on stderr; 130 interrupted. Every error
reads ``asynctracker COMMAND: error: MESSAGE`` (``_messages``), as argparse's do.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import Iterator, Sequence

from ._common import EXIT_BAD_INPUT, EXIT_INTERRUPTED, EXIT_NOT_DELIVERED
from ._messages import error, notice
from ._parser import build_parser, parse

__all__ = ["build_parser", "main"]


@contextlib.contextmanager
def _logging_to_stderr(verbosity: int) -> Iterator[None]:
    """The library logs through "asynctracker"; the CLI shows those logs only when asked,
    because its own messages already say what failed and why. The logger is restored on
    the way out, so calling ``main`` in-process (tests, other tools) leaves no trace."""
    level = {0: logging.ERROR, 1: logging.INFO}.get(verbosity, logging.DEBUG)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("asynctracker")
    saved = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(saved[0])
        logger.propagate = saved[1]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``asynctracker`` console script; returns the exit status."""
    args = parse(argv)
    # ``send`` prints the command that resumes an interrupted run: this one plus --skip.
    args.argv = list(sys.argv[1:] if argv is None else argv)
    with _logging_to_stderr(args.verbose):
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    """Run the parsed command; every failure is one line and a status, never a traceback."""
    out, err = sys.stdout, sys.stderr
    try:
        if args.command == "track":
            from ._track import run_track

            return asyncio.run(run_track(args, out, err))
        if args.command == "send":
            from ._send import run_send

            return asyncio.run(run_send(args, out, err))
        if args.command == "collector":
            from ._collector import run_collector

            return asyncio.run(run_collector(args, out, err))
        if args.command == "queue":
            from ._queue import run_queue

            return asyncio.run(run_queue(args, out, err))
        from ._demo import run_demo

        return asyncio.run(run_demo(db=args.db, events=args.events, out=out))
    except KeyboardInterrupt:
        print(notice(args.command, "interrupted"), file=err)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (``asynctracker demo | head``): stop quietly, and keep the
        # interpreter from failing again while flushing stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_NOT_DELIVERED
    except Exception as exc:  # the promise: one line, never a traceback
        if args.verbose >= 2:
            logging.getLogger("asynctracker").exception("%s failed", args.command)
        detail = str(exc) or type(exc).__name__
        hint = "" if args.verbose >= 2 else " (-vv shows where)"
        error(args.command, f"{detail}{hint}", err)
        return EXIT_BAD_INPUT
