"""``asynctracker send`` at its edges: bad lines, huge lines, Ctrl-C and resuming, progress.

Every test runs the real command as a child process against a real collector on
127.0.0.1; Ctrl-C is a real SIGINT sent to the child.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import re
import shlex
import signal
import sys
from pathlib import Path

import pytest
from cli_support import TIMEOUT, run_cli

from asynctracker.cli._events import MAX_DEPTH
from asynctracker.cli._progress import Figures, StatusLine
from asynctracker.cli._send import _resume_command
from asynctracker.collector import Collector, ReceivedRequest, Reply

SCHEMA = "iglu:com.acme/x/jsonschema/1-0-0"


def struct_line(action: str) -> bytes:
    return json.dumps({"category": "t", "action": action}).encode() + b"\n"


def actions(collector: Collector) -> list[str]:
    return [event.payload["se_ac"] for event in collector.events]


# Each of these ended the whole run with a traceback (or was sent and broke the collector).
BAD_LINES: dict[str, bytes] = {
    "400-digit value": b'{"category": "t", "action": "b", "value": ' + b"9" * 400 + b"}",
    "5,000 deep": b'{"schema": "' + SCHEMA.encode() + b'", "data": '
    + b"[" * 5000 + b"]" * 5000 + b"}",
    "just past the depth limit": b'{"schema": "' + SCHEMA.encode() + b'", "data": '
    + b"[" * MAX_DEPTH + b"]" * MAX_DEPTH + b"}",
    "not UTF-8": b'{"category": "caf\xe9", "action": "b"}',
    "lone surrogate in a value": b'{"category": "t\\ud800", "action": "b"}',
    "lone surrogate in a key": b'{"schema": "' + SCHEMA.encode() + b'", "data": {"k\\udc00": 1}}',
    "NaN": b'{"schema": "' + SCHEMA.encode() + b'", "data": {"n": NaN}}',
    "1e400": b'{"category": "t", "action": "b", "value": 1e400}',
    "5,000 digits": b'{"schema": "' + SCHEMA.encode() + b'", "data": {"n": ' + b"1" * 5000 + b"}}",
    "a string": b'"just a string"',
    "an array": b"[1, 2]",
    "not JSON": b"{oops",
}  # fmt: skip


async def test_send_never_stops_on_a_bad_line_and_reports_each_by_number(
    collector: Collector, tmp_path: Path
) -> None:
    source = tmp_path / "mixed.ndjson"
    good = 2000
    with source.open("wb") as file:
        for i in range(good):
            file.write(struct_line(str(i)))
            if i == 10:  # the bad lines come early: the run must go on after them
                file.writelines(line + b"\n" for line in BAD_LINES.values())

    result = await run_cli("send", source, "--collector", collector.url)

    assert result.code == 2, result.err
    assert "Traceback" not in result.err
    for number, label in enumerate(BAD_LINES, start=12):
        assert f"{source}:{number}: bad line: " in result.err, label
    assert result.err.count("bad line: ") == len(BAD_LINES)
    assert f"{good:,} delivered" in result.out
    assert f"{len(BAD_LINES)} bad lines" in result.out
    assert sorted(map(int, actions(collector))) == list(range(good))
    assert all(event.valid for event in collector.events)


@pytest.mark.parametrize(
    ("line", "needle"),
    [
        pytest.param(BAD_LINES["400-digit value"], "beyond the float range", id="big-value"),
        pytest.param(BAD_LINES["5,000 deep"], f"nested more than {MAX_DEPTH} levels", id="deep"),
        pytest.param(BAD_LINES["not UTF-8"], "not UTF-8 text (byte 18 is 0xe9)", id="utf8"),
        pytest.param(BAD_LINES["lone surrogate in a key"], "a key holds a lone surr", id="key"),
        pytest.param(BAD_LINES["NaN"], "NaN is not a JSON number", id="nan"),
        pytest.param(BAD_LINES["a string"], "must be a JSON object, got str", id="str"),
    ],
)
async def test_send_says_what_is_wrong_with_a_bad_line(
    collector: Collector, line: bytes, needle: str
) -> None:
    result = await run_cli("send", "-", "--collector", collector.url, stdin=line + b"\n")

    assert result.code == 2
    assert "stdin:1: bad line: " in result.err
    assert needle in result.err
    assert collector.requests == []


async def test_thousands_of_bad_lines_are_summed_up_not_printed_one_by_one(
    collector: Collector,
) -> None:
    stdin = b"".join([struct_line("first"), b"nope\n" * 5000, struct_line("last")])

    result = await run_cli("send", "-", "--collector", collector.url, stdin=stdin)

    assert result.code == 2
    assert result.err.count("bad line: ") == 100
    assert len(result.err.splitlines()) < 120
    assert "5,000 bad lines were skipped" in result.err
    assert "further bad lines are summed up" in result.err
    assert actions(collector) == ["first", "last"]


async def test_a_line_longer_than_the_limit_is_skipped_and_reported_by_number(
    collector: Collector,
) -> None:
    long_line = b'{"category": "t", "action": "' + b"x" * 5000 + b'"}\n'
    fits = b'{"category": "t", "action": "' + b"y" * 900 + b'"}\n'
    stdin = b"".join([struct_line("1"), long_line, fits, long_line, struct_line("5")])

    result = await run_cli(
        "send", "-", "--collector", collector.url, "--max-line-bytes", "1k", stdin=stdin
    )

    assert result.code == 2
    assert "stdin:2: bad line: longer than --max-line-bytes (1,024 bytes)" in result.err
    assert "stdin:4: bad line: longer than --max-line-bytes" in result.err
    assert result.err.count("bad line: ") == 2
    assert actions(collector) == ["1", "y" * 900, "5"]


async def test_a_200_mb_line_is_skipped_in_flat_memory(
    collector: Collector, tmp_path: Path
) -> None:
    source = tmp_path / "huge.ndjson"
    with source.open("wb") as file:
        file.write(struct_line("before"))
        file.write(b'{"category": "t", "action": "')
        chunk = b"x" * (1 << 20)
        for _ in range(200):
            file.write(chunk)
        file.write(b'"}\n')
        file.write(struct_line("after"))
    # A parent of its own, so RUSAGE_CHILDREN is this one command's peak RSS.
    measure = (
        "import resource, subprocess, sys\n"
        "code = subprocess.run(sys.argv[1:]).returncode\n"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, code)\n"
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", measure, sys.executable, "-m", "asynctracker",
        "send", str(source), "--collector", collector.url,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        out, err = await asyncio.wait_for(proc.communicate(), TIMEOUT)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        source.unlink()  # pytest keeps the last runs' folders: do not keep 200 MB each
    *_, peak_kib, code = out.decode().split()

    assert int(code) == 2, err.decode()
    assert f"{source}:2: bad line: longer than --max-line-bytes (1,048,576 bytes)" in err.decode()
    assert actions(collector) == ["before", "after"]
    # The line alone is 200 MiB; the process stays within a small multiple of the
    # 1 MiB read size above the interpreter's own footprint.
    assert int(peak_kib) < 150 * 1024, f"peak RSS {int(peak_kib) / 1024:.0f} MiB"


async def test_skip_starts_after_the_first_n_lines(collector: Collector, tmp_path: Path) -> None:
    source = tmp_path / "ten.ndjson"
    source.write_bytes(b"".join(struct_line(str(i)) for i in range(1, 11)))

    result = await run_cli("send", source, "--collector", collector.url, "--skip", "4")
    beyond = await run_cli("send", source, "--collector", collector.url, "--skip", "99")

    assert result.code == 0, result.err
    assert actions(collector) == [str(i) for i in range(5, 11)]
    assert "6 lines after skipping 4" in result.out
    assert beyond.code == 0, beyond.err


async def _interrupted_send(
    args: list[str | bytes], lines: bytes, until: asyncio.Event
) -> tuple[int, str, str]:
    """Run ``send -`` with ``lines`` on a stdin left open (like a live pipe), press
    Ctrl-C once ``until`` is set, and return its exit status, stdout and stderr."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "asynctracker", "send", "-", *args,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdin is not None
    try:
        proc.stdin.write(lines)
        await proc.stdin.drain()
        await asyncio.wait_for(until.wait(), TIMEOUT)
        proc.send_signal(signal.SIGINT)
        out, err = await asyncio.wait_for(proc.communicate(), TIMEOUT)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def resume_args(err: str) -> list[str]:
    [command] = re.findall(r"^to resume[^:]*: (.*)$", err, re.M)
    args = shlex.split(command)
    assert args[:3] == [sys.executable, "-m", "asynctracker"]
    return args[3:]


async def test_ctrl_c_drains_says_the_last_line_stored_and_the_resume_command_works(
    collector: Collector,
) -> None:
    all_lines = b"".join(struct_line(str(i)) for i in range(1, 81))
    first_50 = b"".join(all_lines.splitlines(keepends=True)[:50])
    seen_50 = asyncio.Event()

    async def count(request: ReceivedRequest) -> None:
        if len(collector.events) + request.body.count(b'"se_ac"') >= 50:
            seen_50.set()

    collector.responder = count

    code, out, err = await _interrupted_send(
        ["--collector", collector.url, "--app-id", "a b"], first_50, seen_50
    )

    assert code == 130, err
    assert "Traceback" not in err
    assert "interrupted: the last line stored is stdin:50" in err
    assert "to resume with the same input on stdin: " in err
    args = resume_args(err)
    assert args[-2:] == ["--skip", "50"]
    assert args[args.index("--app-id") : args.index("--app-id") + 2] == ["--app-id", "a b"]
    assert "50 delivered" in out

    resumed = await run_cli(*args, stdin=all_lines)

    assert resumed.code == 0, resumed.err
    assert actions(collector) == [str(i) for i in range(1, 81)]  # each line exactly once


async def test_ctrl_c_with_the_collector_down_keeps_events_in_db_and_resumes_from_there(
    collector: Collector, db_path: Path
) -> None:
    stored = asyncio.Event()

    def unavailable(request: ReceivedRequest) -> Reply:
        stored.set()  # the events were stored before the first send
        return Reply(503)

    collector.responder = unavailable
    lines = b"".join(struct_line(str(i)) for i in range(1, 31))
    code, _, err = await _interrupted_send(
        ["--collector", collector.url, "--db", str(db_path), "--timeout", "1"], lines, stored
    )

    assert code == 130, err
    assert "asynctracker send: interrupted after line " in err
    assert "delivering 30 stored events for up to 1 s (Ctrl-C again to stop now)" in err
    assert f"30 events kept in {db_path}" in err
    args = resume_args(err)
    assert args[-2:] == ["--skip", "30"]

    collector.responder = None  # the collector is back when the run is resumed
    more = lines + b"".join(struct_line(str(i)) for i in range(31, 41))
    resumed = await run_cli(*args, stdin=more)

    assert resumed.code == 0, resumed.err
    assert sorted(map(int, actions(collector))) == list(range(1, 41))


def test_resume_command_quotes_arguments_and_replaces_an_earlier_skip() -> None:
    args = argparse.Namespace(
        argv=["send", "my file.ndjson", "--ski", "7", "--app-id=\x1bx", "--skip=3"]
    )
    command = _resume_command(args, 12)

    assert command.endswith("send 'my file.ndjson' $'--app-id=\\x1bx' --skip 12")
    assert "\x1b" not in command


@pytest.mark.skipif(sys.platform == "win32", reason="needs a pseudo-terminal")
async def test_progress_on_a_narrow_terminal_fits_and_shows_the_percentage(
    tmp_path: Path,
) -> None:
    import pty

    source = tmp_path / "events.ndjson"
    source.write_bytes(b"".join(struct_line(str(i)) for i in range(40)))

    async def slow(request: ReceivedRequest) -> None:
        await asyncio.sleep(0.4)

    async with Collector(responder=slow) as collector:
        master, slave = pty.openpty()
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "asynctracker", "send", str(source),
            "--collector", collector.url, "--method", "GET",
            stdout=asyncio.subprocess.PIPE, stderr=slave,
            env={**os.environ, "COLUMNS": "34"},
        )  # fmt: skip
        os.close(slave)
        try:
            await asyncio.wait_for(proc.communicate(), TIMEOUT)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        terminal = _read_all(master)

    assert proc.returncode == 0
    drawn = [part for part in terminal.split(b"\r\x1b[K") if part]
    assert drawn, terminal
    assert all(len(part) <= 33 for part in drawn), drawn
    assert all(b"\n" not in part for part in drawn)
    assert any(part.startswith(b"100.0%  read, sending") for part in drawn), drawn


def _read_all(fd: int) -> bytes:
    data = b""
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO: the child closed its end
            break
        if not chunk:
            break
        data += chunk
    os.close(fd)
    return data


def test_progress_flag_logs_plain_lines_when_stderr_is_not_a_terminal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    err = io.StringIO()
    status = StatusLine(err, show=True, terminal=False)
    status.draw(Figures(lines=5, queued=5, delivered=3, failed=0, bad=1, bytes_read=50,
                        total_bytes=200, elapsed=2.0))  # fmt: skip
    status.message("stdin:3: bad line: \x1b[2J")

    assert err.getvalue().splitlines() == [
        " 25.0%  ETA 0:06  line 5  delivered 3  queued 5  failed 0  bad 1  2 events/s",
        "stdin:3: bad line: \\x1b[2J",
    ]
    assert "\r" not in err.getvalue()


async def test_a_second_ctrl_c_stops_the_drain_at_once(db_path: Path) -> None:
    answering = asyncio.Event()

    async def hang(request: ReceivedRequest) -> None:
        answering.set()
        await asyncio.sleep(120)  # a collector that never answers

    async with Collector(responder=hang) as hung:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "asynctracker", "send", "-", "--collector", hung.url,
            "--db", str(db_path), "--timeout", "60",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert proc.stdin is not None
        assert proc.stderr is not None
        try:
            proc.stdin.write(b"".join(struct_line(str(i)) for i in range(1, 6)))
            await proc.stdin.drain()
            await asyncio.wait_for(answering.wait(), TIMEOUT)
            proc.send_signal(signal.SIGINT)
            first = await asyncio.wait_for(proc.stderr.readline(), TIMEOUT)
            assert b"for up to 60 s (Ctrl-C again to stop now)" in first
            proc.send_signal(signal.SIGINT)
            # Far less than the 60 s the first Ctrl-C allowed for draining.
            _, rest = await asyncio.wait_for(proc.communicate(), 20)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()

    assert proc.returncode == 130
    err = rest.decode()
    assert f"5 events kept in {db_path}" in err
    assert "the last line stored is stdin:5" in err
    assert err.rstrip().endswith("--skip 5")


async def test_what_send_prints_from_its_input_is_escaped(
    collector: Collector, tmp_path: Path
) -> None:
    source = tmp_path / "e\x1b[2Jvil.ndjson"
    huge_key = "k" * 10_000
    source.write_text(json.dumps({"category": "t", "action": "a", huge_key: 1}) + "\n")

    result = await run_cli("send", source, "--collector", collector.url)

    assert result.code == 2
    assert "\x1b" not in result.out + result.err
    assert "e\\x1b[2Jvil.ndjson:1: bad line: unknown keys" in result.err
    assert len(result.err.splitlines()[0]) < 400  # the reason is cut, not the whole key
    assert "e\\x1b[2Jvil.ndjson: 1 line," in result.out
