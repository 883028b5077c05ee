"""Every command-line error is one escaped line on stderr and exit status 2.

A wrong flag must say which option and what is wrong with it, in one line a person can
read and a script can log, never a traceback or a page of usage.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_support import STRUCT, run_cli

from asynctracker.cli import _demo, main
from asynctracker.cli._common import describe
from asynctracker.collector import Collector, ReceivedEvent


def assert_one_line_error(err: str, *needles: str) -> None:
    assert "Traceback" not in err
    assert err.endswith("\n")
    assert err.count("\n") == 1, err
    assert "error:" in err
    assert "\x1b" not in err
    for needle in needles:
        assert needle in err


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        pytest.param(("--port", "70000"), ("--port", "0-65535", "70000"), id="port-too-big"),
        pytest.param(("--port", "-1"), ("--port", "0-65535"), id="port-negative"),
        pytest.param(("--port", "http"), ("--port", "'http' is not a port"), id="port-not-int"),
    ],
)
async def test_collector_with_a_bad_port_is_one_line_and_exit_2(
    args: tuple[str, ...], needles: tuple[str, ...]
) -> None:
    result = await run_cli("collector", *args)

    assert result.code == 2
    assert_one_line_error(result.err, *needles)
    assert result.out == ""


async def test_collector_with_db_pointing_at_a_folder_is_one_line_and_exit_2(
    tmp_path: Path,
) -> None:
    result = await run_cli("collector", "--port", "0", "--db", tmp_path)

    assert result.code == 2
    assert_one_line_error(result.err, "--db", str(tmp_path), "is a folder")


@pytest.mark.parametrize("command", ["collector", "send", "track", "demo"])
@pytest.mark.parametrize(
    ("case", "needle"),
    [("no-folder", "does not exist"), ("not-sqlite", "is not a SQLite file")],
)
async def test_every_db_option_checks_its_path_up_front(
    command: str, case: str, needle: str, tmp_path: Path
) -> None:
    db = tmp_path / "notes.txt"
    if case == "no-folder":
        db = tmp_path / "missing" / "events.db"
    else:
        db.write_text("my notes, not a database")
    extra = {"send": ("-", "--collector", "http://127.0.0.1:1"),
             "track": ("--collector", "http://127.0.0.1:1", *STRUCT)}.get(command, ())  # fmt: skip

    result = await run_cli(command, *extra, "--db", db, stdin=b"")

    assert result.code == 2
    assert_one_line_error(result.err, f"asynctracker {command}: error: argument --db", needle)


async def test_track_value_that_is_not_a_number_names_the_option_and_the_value() -> None:
    result = await run_cli("track", "--collector", "http://127.0.0.1:1", *STRUCT, "--value", "abc")

    assert result.code == 2
    assert_one_line_error(result.err, "argument --value: 'abc' is not a number")
    assert "invalid" not in result.err
    assert "_number" not in result.err


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        pytest.param(("--value", "nan"), "--value: 'nan' is not a finite number", id="value-nan"),
        pytest.param(("--value", "1e999"), "--value: '1e999' is not a finite", id="value-inf"),
        pytest.param(("--timeout", "0"), "--timeout: must be a positive number", id="timeout-0"),
        pytest.param(("--timeout", "soon"), "--timeout: 'soon' is not a number", id="timeout"),
        pytest.param(("--retries", "-1"), "--retries: must be zero or more", id="retries"),
        pytest.param(("--retries", "2.5"), "--retries: '2.5' is not a whole number", id="r-2.5"),
        pytest.param(("--method", "PUT"), "--method: invalid choice: 'PUT'", id="method"),
    ],
)
async def test_track_bad_flags_are_one_line_naming_the_option(
    args: tuple[str, ...], needle: str
) -> None:
    result = await run_cli("track", "--collector", "http://127.0.0.1:1", *STRUCT, *args)

    assert result.code == 2
    assert_one_line_error(result.err, needle)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        pytest.param(("--skip", "-3"), "--skip: must be zero or more", id="skip"),
        pytest.param(("--max-line-bytes", "0"), "--max-line-bytes: must be at least 1", id="0"),
        pytest.param(
            ("--max-line-bytes", "lots"), "--max-line-bytes: 'lots' is not a size", id="x"
        ),
    ],
)
async def test_send_bad_flags_are_one_line_naming_the_option(
    args: tuple[str, ...], needle: str
) -> None:
    result = await run_cli("send", "-", "--collector", "http://127.0.0.1:1", *args, stdin=b"")

    assert result.code == 2
    assert_one_line_error(result.err, needle)


async def test_an_escape_sequence_in_a_bad_value_is_shown_escaped_not_run() -> None:
    result = await run_cli("collector", "--port", "\x1b]0;pwned\x07\x1b[2J")

    assert result.code == 2
    assert_one_line_error(result.err, "--port", "\\x1b]0;pwned\\x07\\x1b[2J")


async def test_track_refuses_an_argument_that_is_not_utf8_before_sending(
    collector: Collector,
) -> None:
    result = await run_cli(
        "track", "--collector", collector.url, *STRUCT, "--label", b"caf\xe9 \x1b[2J"
    )

    assert result.code == 2
    assert_one_line_error(result.err, "--label is not valid UTF-8 text")
    assert collector.requests == []


async def test_send_refuses_an_app_id_that_is_not_utf8(collector: Collector) -> None:
    line = b'{"category": "a", "action": "b"}\n'
    result = await run_cli("send", "-", "--collector", collector.url, "--app-id", b"\xff",
                           stdin=line)  # fmt: skip

    assert result.code == 2
    assert_one_line_error(result.err, "--app-id is not valid UTF-8 text")
    assert collector.requests == []


@pytest.mark.usefixtures("cli_logging")
def test_an_unexpected_failure_is_one_line_and_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    async def broken(**kwargs: object) -> int:
        raise RuntimeError("disk on fire \x1b[2J")

    monkeypatch.setattr(_demo, "run_demo", broken)

    assert main(["demo"]) == 2
    err = capsys.readouterr().err
    assert err == "asynctracker demo: error: disk on fire \\x1b[2J (-vv shows where)\n"


def test_the_collector_line_for_an_event_is_escaped() -> None:
    event = ReceivedEvent.check(
        {"e": "se", "se_ca": "\x1b]0;pwned\x07", "se_ac": "\x1b[2J", "aid": "\u202eevil"},
        "GET",
    )

    line = describe(event)

    assert "\x1b" not in line
    assert "\u202e" not in line
    assert "\\x1b]0;pwned\\x07 / \\x1b[2J" in line
    assert "app=\\u202eevil" in line
