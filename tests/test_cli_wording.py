"""How the command line words what it prints: one form for errors, counts that agree.

Every error reads ``asynctracker COMMAND: error: MESSAGE`` on one line, whether argparse
found a bad flag or the command found a bad event, an unreadable file or a taken port,
so whoever reads stderr meets one shape. Every count is printed with its noun in the
right number: "1 event", "2 events".
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import sys
from pathlib import Path

import pytest
from cli_support import STRUCT, TIMEOUT, free_port, run_cli

from asynctracker.cli import _demo, _send, main
from asynctracker.collector import Collector, Reply


def one_line(err: str) -> str:
    assert "Traceback" not in err
    assert err.count("\n") == 1, err
    return err


COMMAND_ERRORS = [
    pytest.param(
        "track", ("--collector", "http://127.0.0.1:1", "--json", "{}"), "--json needs --schema",
        id="track-bad-event",
    ),
    pytest.param(
        "track", ("--collector", "ftp://127.0.0.1:1", *STRUCT), "http or https", id="track-bad-url"
    ),
    pytest.param(
        "send", ("{tmp}/missing.ndjson", "--collector", "http://127.0.0.1:1"), "cannot read",
        id="send-missing-file",
    ),
    pytest.param(
        "collector", ("--port", "0", "--iglu", "{tmp}/missing"), "does not exist",
        id="collector-missing-iglu",
    ),
    pytest.param(
        "track", ("--collector", "http://127.0.0.1:1", *STRUCT, "surplus"),
        "unrecognized arguments: surplus", id="track-surplus-argument",
    ),
    pytest.param(
        "demo", ("--events", "1", "surplus"), "unrecognized arguments: surplus",
        id="demo-surplus-argument",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("command", "args", "needle"), COMMAND_ERRORS)
async def test_a_commands_own_errors_read_like_argparses_errors_for_that_command(
    command: str, args: tuple[str, ...], needle: str, tmp_path: Path
) -> None:
    bad_flag = await run_cli(command, "--db", tmp_path / "no" / "x.db", stdin=b"")
    own = await run_cli(command, *(a.replace("{tmp}", str(tmp_path)) for a in args), stdin=b"")

    prefix = f"asynctracker {command}: error: "
    assert bad_flag.code == 2
    assert one_line(bad_flag.err).startswith(prefix + "argument --db: ")
    assert own.code == 2
    assert one_line(own.err).startswith(prefix)
    assert needle in own.err


async def test_a_taken_port_is_a_collector_error(collector: Collector) -> None:
    result = await run_cli("collector", "--port", str(collector.port))

    assert result.code == 1
    assert one_line(result.err).startswith(
        f"asynctracker collector: error: cannot listen on 127.0.0.1:{collector.port}: "
    )


async def test_every_error_line_of_a_failed_send_names_the_command() -> None:
    lines = json.dumps({"category": "a", "action": "b"}).encode() + b"\nnot json\n"
    async with Collector(responder=lambda request: Reply(400)) as refusing:
        result = await run_cli("send", "-", "--collector", refusing.url, stdin=lines)

    assert result.code == 1
    assert result.err.splitlines() == [
        "stdin:2: bad line: the line is not valid JSON: Expecting value: line 1 column 1 (char 0)",
        f"asynctracker send: error: 1 event dropped: the collector at {refusing.url}/"
        "com.snowplowanalytics.snowplow/tp2 refused 1 event with HTTP 400 and it was "
        "dropped (HTTP 400 is not retried)",
        "asynctracker send: error: 1 bad line was skipped",
    ]


@pytest.mark.usefixtures("cli_logging")
def test_send_that_stops_reading_on_a_stalled_collector_says_so_as_an_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setattr(_send, "_HIGH_WATER", 2)  # stop to drain after the first read
    source = tmp_path / "events.ndjson"
    source.write_text("".join(json.dumps({"category": "c", "action": str(i)}) + "\n"
                              for i in range(5)))  # fmt: skip
    url = f"http://127.0.0.1:{free_port()}"

    status = main(["send", str(source), "--collector", url, "--retries", "0", "--timeout", "1"])

    err = capsys.readouterr().err
    assert status == 1
    assert "asynctracker send: error: stopped reading after line 5: no response from " in err
    assert "asynctracker send: error: input was not read to the end" in err


@pytest.mark.usefixtures("cli_logging")
def test_ctrl_c_in_a_command_names_the_command(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    async def pressed(**kwargs: object) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(_demo, "run_demo", pressed)

    assert main(["demo"]) == 130
    assert capsys.readouterr().err == "asynctracker demo: interrupted\n"


# -- counts -------------------------------------------------------------------------------


def struct_line(action: str) -> bytes:
    return json.dumps({"category": "c", "action": action}).encode() + b"\n"


@pytest.mark.parametrize(
    ("stdin", "summary"),
    [
        pytest.param(
            struct_line("one"),
            "stdin: 1 line, 1 event queued, 1 delivered, 0 failed, 0 bad lines in ",
            id="one-line",
        ),
        pytest.param(
            struct_line("one") + b"nope\n",
            "stdin: 2 lines, 1 event queued, 1 delivered, 0 failed, 1 bad line in ",
            id="one-bad-line",
        ),
        pytest.param(
            struct_line("one") + struct_line("two"),
            "stdin: 2 lines, 2 events queued, 2 delivered, 0 failed, 0 bad lines in ",
            id="two-lines",
        ),
    ],
)
async def test_send_summary_counts_agree_with_their_nouns(
    collector: Collector, stdin: bytes, summary: str
) -> None:
    result = await run_cli("send", "-", "--collector", collector.url, stdin=stdin)

    assert result.out.startswith(summary), result.out


async def test_send_words_single_counts_in_the_singular(collector: Collector) -> None:
    too_long = await run_cli(
        "send", "-", "--collector", collector.url, "--max-line-bytes", "1", stdin=b"{}\n"
    )
    flood = await run_cli("send", "-", "--collector", collector.url, stdin=b"nope\n" * 101)

    assert "stdin:1: bad line: longer than --max-line-bytes (1 byte)\n" in too_long.err
    assert "stdin: 1 more bad line, the latest stdin:101: " in flood.err
    assert "101 bad lines were skipped" in flood.err


async def test_track_into_a_db_says_one_event_is_kept(db_path: Path) -> None:
    async with Collector(responder=lambda request: Reply(503)) as failing:
        result = await run_cli(
            "track", "--collector", failing.url, *STRUCT, "--db", db_path, "--retries", "0"
        )

    assert result.code == 1
    assert f"1 event kept in {db_path}; the next run with --db {db_path}" in result.err


async def test_demo_with_one_bulk_event_says_event(tmp_path: Path) -> None:
    result = await run_cli("demo", "--events", "1", cwd=tmp_path)

    assert result.code == 0, result.out + result.err
    assert "  1 bulk structured event: 1 good, 0 bad, 0 missing\n" in result.out


async def test_collector_that_received_one_event_says_event_when_it_stops() -> None:
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "asynctracker", "collector", "--port", str(port),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None
    try:
        await asyncio.wait_for(proc.stdout.readline(), TIMEOUT)  # listening
        sent = await run_cli("track", "--collector", f"http://127.0.0.1:{port}", *STRUCT)
        assert sent.code == 0, sent.err
        proc.send_signal(signal.SIGTERM)
        out, err = await asyncio.wait_for(proc.communicate(), TIMEOUT)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()

    assert re.search(r"^collector stopped: 1 event, 1 good, 0 bad$", out.decode(), re.M), (
        out.decode() + err.decode()
    )
