"""The ``asynctracker`` argument parser: every subcommand, its flags, help and examples.

Only the shape of the command line lives here; the value types (and the one-line
errors for a bad value) are in ``_args``, the work in each command's own module.
:func:`parse` is what ``main`` calls: argparse reports a surplus argument of a command
as an error of the whole program (``asynctracker: error: unrecognized arguments``);
``parse`` reports it as the command's, ``asynctracker track: error: ...``, like every
other error about that command.
"""

from __future__ import annotations

import argparse
import textwrap
from collections.abc import Sequence
from pathlib import Path

from .._version import __version__
from ._args import Parser, byte_size, count, number, port, positive, sqlite_path

__all__ = ["build_parser", "parse"]

_EXIT_CODES = """\
exit status: 0 delivered, 1 not delivered (or invalid), 2 bad input, 130 interrupted"""
_SEND_EXIT_CODES = """\
exit status:
  0    every line was an event and every event was delivered
  1    some events were not delivered (dropped by the collector, or still stored:
       kept in --db if given, else lost), or reading stopped on a stalled collector
  2    some lines were bad (each reported as FILE:LINE, then skipped; every good
       line was delivered), or bad arguments
  130  interrupted (Ctrl-C): the last line stored and the command that resumes
       with --skip are printed"""
_COLLECTOR_EXIT_CODES = """\
exit status:
  0    stopped by SIGTERM (how a service manager stops it)
  1    cannot listen on --host/--port (the port is taken, the address is not here)
  2    bad arguments, or --db or --iglu cannot be used
  130  stopped with Ctrl-C (SIGINT)"""


def _examples(text: str, exit_codes: str = _EXIT_CODES) -> str:
    return (
        "examples:\n" + textwrap.indent(textwrap.dedent(text).strip(), "  ") + "\n\n" + exit_codes
    )


def _delivery_options() -> Parser:
    """Flags shared by ``track`` and ``send``: where to send and how hard to try."""
    parent = Parser(add_help=False)
    group = parent.add_argument_group("delivery")
    group.add_argument(
        "--collector",
        required=True,
        metavar="URL",
        help="collector URL (http://127.0.0.1:9090) or host[:port][/prefix]",
    )
    group.add_argument("--method", choices=("GET", "POST"), default="POST", help="default POST")
    group.add_argument(
        "--protocol",
        choices=("http", "https"),
        default="https",
        help="scheme when --collector has none (default https)",
    )
    group.add_argument("--app-id", metavar="ID", help="application id (aid)")
    group.add_argument("--namespace", default="cli", help="tracker namespace (default cli)")
    group.add_argument(
        "--platform",
        default="srv",
        choices=("web", "mob", "pc", "srv", "app", "tv", "cnsl", "iot"),
        help="platform code (default srv)",
    )
    group.add_argument(
        "--db",
        type=sqlite_path,
        metavar="PATH",
        help="SQLite file for at-least-once delivery across runs: what is not delivered "
        "stays there and the next run with the same --db sends it (default: memory)",
    )
    group.add_argument(
        "--timeout",
        type=positive,
        default=10.0,
        metavar="SECONDS",
        help="give up after this long without any event delivered (default 10)",
    )
    group.add_argument(
        "--retries",
        type=count,
        default=2,
        metavar="N",
        help="retries after every request failed (no answer, 5xx) before giving up (default 2)",
    )
    return parent


def _common_options() -> Parser:
    parent = Parser(add_help=False)
    parent.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="log what the library does (-v info, -vv debug) on stderr",
    )
    return parent


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (``asynctracker.cli.build_parser``, for other tools)."""
    return _build()[0]


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    """The parsed command line; a bad one exits 2 with one line naming the command."""
    parser, subcommands = _build()
    args, surplus = parser.parse_known_args(argv)
    if surplus:
        subcommands[args.command].error(f"unrecognized arguments: {' '.join(surplus)}")
    return args


def _build() -> tuple[Parser, dict[str, Parser]]:
    """The top-level parser, and each subcommand's parser by its name."""
    common, delivery = _common_options(), _delivery_options()
    parser = Parser(
        prog="asynctracker",
        description="Send Snowplow events from the shell, run a local collector, or "
        "run the end-to-end demo.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=_examples(
            """
            asynctracker demo
            asynctracker collector --port 9090
            asynctracker track --collector http://127.0.0.1:9090 --category shop --action view
            asynctracker send events.ndjson --collector https://collector.acme.com
            """
        ),
    )
    parser.add_argument("--version", action="version", version=f"asynctracker {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    raw = argparse.RawDescriptionHelpFormatter

    track = commands.add_parser(
        "track",
        parents=[common, delivery],
        formatter_class=raw,
        help="send one event and wait for the collector to accept it",
        description="Send one structured or self-describing event; exit 0 only once the "
        "collector accepted it.",
        epilog=_examples(
            """
            asynctracker track --collector http://127.0.0.1:9090 \\
                --category shop --action add --label sku-1 --value 2.5
            asynctracker track --collector collector.acme.com --app-id shop \\
                --schema iglu:com.acme/click/jsonschema/1-0-0 --json '{"x": 1}' \\
                --contexts '[{"schema": "iglu:com.acme/user/jsonschema/1-0-0", "data": {"id": 7}}]'
            asynctracker track --collector http://127.0.0.1:9090 --db queue.db \\
                --category job --action done      # kept in queue.db if not delivered
            """
        ),
    )
    unstruct = track.add_argument_group("self-describing event")
    unstruct.add_argument("--schema", metavar="IGLU_URI", help="iglu:vendor/name/jsonschema/1-0-0")
    unstruct.add_argument("--json", metavar="DATA", help="the event's data as JSON (default {})")
    struct = track.add_argument_group("structured event")
    struct.add_argument("--category", help="se_ca (required for a structured event)")
    struct.add_argument("--action", help="se_ac (required for a structured event)")
    struct.add_argument("--label", help="se_la")
    struct.add_argument("--property", help="se_pr")
    struct.add_argument("--value", type=number, help="se_va, a number")
    track.add_argument(
        "--contexts", metavar="JSON", help='entities: a JSON array of {"schema": ..., "data": ...}'
    )

    send = commands.add_parser(
        "send",
        parents=[common, delivery],
        formatter_class=raw,
        help="send newline-delimited JSON events from a file or stdin",
        description="Send one event per line. A line is either self-describing, "
        '{"schema": URI, "data": {...}, "contexts": [...]}, or structured, '
        '{"category": C, "action": A, "label": L, "property": P, "value": N, "contexts": '
        "[...]}. Bad lines are reported with their number and skipped; the rest are sent. "
        "The input is streamed in bounded memory, so files of any size are fine. Ctrl-C "
        "stops after storing the lines in flight, delivers what is stored (for up to "
        "--timeout seconds; Ctrl-C again stops at once) and prints the command that "
        "resumes.",
        epilog=_examples(
            """
            asynctracker send events.ndjson --collector http://127.0.0.1:9090
            zcat events.ndjson.gz | asynctracker send - --collector collector.acme.com
            echo '{"category": "job", "action": "done"}' | \\
                asynctracker send - --collector http://127.0.0.1:9090 --db queue.db
            asynctracker send events.ndjson --collector http://127.0.0.1:9090 --skip 120000
            """,
            _SEND_EXIT_CODES,
        ),
    )
    send.add_argument("file", metavar="FILE", help="newline-delimited JSON file, or - for stdin")
    send.add_argument(
        "--skip",
        type=count,
        default=0,
        metavar="N",
        help="skip the first N lines (resume an interrupted run; Ctrl-C prints the command)",
    )
    send.add_argument(
        "--max-line-bytes",
        type=byte_size,
        default=1 << 20,
        metavar="SIZE",
        help="longer lines are reported as bad and skipped without being held in memory "
        "(default 1MiB; units k, M, G)",
    )
    send.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="show progress (percentage and ETA for a file) on stderr; default: only when "
        "stderr is a terminal",
    )

    collector = commands.add_parser(
        "collector",
        parents=[common],
        formatter_class=raw,
        help="run a local collector that validates events and shows them in a page",
        description="Run a Snowplow collector on your machine until Ctrl-C: it validates "
        "every event against the tracker protocol (and, with --iglu, self-describing data "
        "against your Iglu schemas), prints one line per event, and shows them decoded in "
        "a web page. JSON at /events; Snowplow Micro's API at /micro/all, /micro/good, "
        "/micro/bad, /micro/reset.",
        epilog=_examples(
            """
            asynctracker collector                          # http://127.0.0.1:9090/
            asynctracker collector --port 0 --db collector.db   # any free port, kept on disk
            asynctracker collector --iglu ./iglu            # validate against your schemas
            asynctracker collector --allow-host dev.test    # also answer Host: dev.test
            """,
            _COLLECTOR_EXIT_CODES,
        ),
    )
    collector.add_argument("--host", default="127.0.0.1", help="address to listen on")
    collector.add_argument(
        "--port", type=port, default=9090, help="port to listen on (default 9090, 0: any free)"
    )
    collector.add_argument(
        "--db",
        type=sqlite_path,
        metavar="PATH",
        help="keep received events in this SQLite file, e.g. collector.db "
        "(default: a temporary file, removed on exit)",
    )
    collector.add_argument(
        "--iglu",
        type=Path,
        metavar="DIR",
        help="validate self-describing events and contexts against the Iglu registry in DIR "
        "(vendor/name/jsonschema/version files; needs asynctracker[collector])",
    )
    collector.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="NAME",
        help="also answer requests whose Host header is NAME (repeatable; '*' for any). "
        "By default only localhost names and the listening address, against DNS rebinding",
    )
    collector.add_argument(
        "-q", "--quiet", action="store_true", help="do not print a line per event"
    )

    queue = commands.add_parser(
        "queue",
        parents=[common],
        formatter_class=raw,
        help="list a SQLite queue's waiting events by destination; export or move them",
        description="A SQLite file shared by programs for several collectors keeps each "
        "event for the destination (collector URL, credentials, headers) it was tracked for, "
        "and an emitter sends only its own. List what waits, export a destination's events "
        "as newline-delimited JSON, or move them to another destination and deliver them.",
        epilog=_examples(
            """
            asynctracker queue events.db
            asynctracker queue events.db --export 2 > stranded.ndjson
            asynctracker queue events.db --move 2 --to https://collector.acme.com \\
                --header 'X-Api-Key: ...'
            """
        ),
    )
    queue.add_argument("file", type=sqlite_path, metavar="FILE", help="the SQLite queue file")
    action = queue.add_mutually_exclusive_group()
    action.add_argument("--export", type=count, metavar="N", help="print destination N's events")
    action.add_argument(
        "--move", type=count, metavar="N", help="send destination N's events to --to instead"
    )
    queue.add_argument("--to", metavar="URL", help="with --move: the collector to send them to")
    queue.add_argument("--method", choices=("GET", "POST"), default="POST", help="default POST")
    queue.add_argument(
        "--header",
        action="append",
        default=[],
        metavar="'NAME: VALUE'",
        help="with --move: a header the emitter sends (repeatable), e.g. an API key",
    )
    queue.add_argument(
        "--timeout",
        type=positive,
        default=10.0,
        metavar="SECONDS",
        help="with --move: give up after this long without any event delivered (default 10)",
    )

    demo = commands.add_parser(
        "demo",
        parents=[common],
        formatter_class=raw,
        help="track every event type through SQLite to an in-process collector",
        description="Start a collector on 127.0.0.1, track one event of every type plus "
        "N structured events through the default SQLite storage, and report what arrived, "
        "how fast, and whether each event is valid.",
        epilog=_examples(
            """
            asynctracker demo
            asynctracker demo --events 10000
            asynctracker demo --db demo.db      # keep the SQLite queue file
            """
        ),
    )
    demo.add_argument(
        "--db",
        type=sqlite_path,
        metavar="PATH",
        help="SQLite file for the tracker's queue (default: a temporary folder)",
    )
    demo.add_argument(
        "--events",
        type=count,
        default=1000,
        metavar="N",
        help="extra structured events to show speed (default 1000)",
    )
    return parser, {
        "track": track,
        "send": send,
        "collector": collector,
        "queue": queue,
        "demo": demo,
    }
