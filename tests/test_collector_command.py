"""``asynctracker collector``: a real subprocess serving real requests until a real signal.

Run as a user runs it (``python -m asynctracker collector``), stopped the ways a user
stops it: Ctrl-C (a real SIGINT to the child) or a service manager's SIGTERM. Its exit
status says which, as its ``--help`` promises.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import httpx
import pytest
from cli_support import SCHEMA, TIMEOUT, free_port, run_cli

from asynctracker.collector import Collector

# -- serving until stopped -------------------------------------------------------------


@pytest.mark.parametrize(
    ("stop", "status"), [(signal.SIGTERM, 0), (signal.SIGINT, 130)], ids=["SIGTERM", "Ctrl-C"]
)
async def test_collector_command_serves_prints_events_and_stops_cleanly(
    tmp_path: Path, stop: signal.Signals, status: int
) -> None:
    """Stopped either way, it writes its summary and keeps its database; Ctrl-C exits
    130 like every command, SIGTERM (a service manager's stop) 0."""
    port = free_port()
    db = tmp_path / "collector.db"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "asynctracker", "collector", "--port", str(port), "--db", str(db),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None
    url = f"http://127.0.0.1:{port}"
    try:
        first = await asyncio.wait_for(proc.stdout.readline(), TIMEOUT)
        assert f"listening on {url}" in first.decode()

        sent = await run_cli(
            "track", "--collector", url, "--app-id", "cmd", "--schema", SCHEMA, "--json", "{}"
        )
        assert sent.code == 0, sent.err
        bad_body = {
            "schema": "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4",
            "data": [{"e": "se", "p": "srv", "tv": "x", "eid": "not-a-uuid", "dtm": "1"}],
        }
        async with httpx.AsyncClient(timeout=10) as client:
            answer = await client.post(f"{url}/com.snowplowanalytics.snowplow/tp2", json=bad_body)
            assert answer.status_code == 200
            health = (await client.get(f"{url}/health")).json()
            page = await client.get(f"{url}/")
        assert health["events"] == 2
        assert health["bad"] == 1
        assert "asynctracker collector" in page.text

        lines = [
            (await asyncio.wait_for(proc.stdout.readline(), TIMEOUT)).decode() for _ in range(5)
        ]
        events = [line for line in lines if line.startswith(("good", "BAD"))]
        assert events[0].startswith("good  self-describing")
        assert "app=cmd" in events[0]
        assert SCHEMA in events[0]
        assert events[1].startswith("BAD ")
        assert "'eid' is not a UUID" in events[1]

        proc.send_signal(stop)
        rest, err = await asyncio.wait_for(proc.communicate(), TIMEOUT)
        assert proc.returncode == status, err.decode()
        assert "collector stopped: 2 events, 1 good, 1 bad" in (b"".join(
            line.encode() for line in lines) + rest).decode()  # fmt: skip
        assert db.exists()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_collector_command_on_a_taken_port_exits_1(collector: Collector) -> None:
    result = await run_cli("collector", "--port", str(collector.port))

    assert result.code == 1
    assert "cannot listen" in result.err


# -- the collector command's errors ---------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--port", "70000"], "argument --port: must be 0-65535"),
        (["--port", "0", "--db", "{tmp}"], "argument --db: "),
        (["--port", "0", "--iglu", "{tmp}/missing"], "does not exist"),
    ],
    ids=["port out of range", "db is a folder", "iglu folder missing"],
)
def test_collector_command_errors_are_one_line_with_status_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    from asynctracker.cli import main

    try:
        status = main(["collector", *(arg.format(tmp=tmp_path) for arg in args)])
    except SystemExit as exited:  # argparse's own checks end the parse with status 2
        status = exited.code

    err = capsys.readouterr().err
    assert status == 2
    assert message in err
    assert err.count("\n") == 1
    assert "Traceback" not in err


async def test_the_help_states_the_exit_status_of_each_way_to_stop() -> None:
    result = await run_cli("collector", "--help")

    assert result.code == 0
    status = result.out[result.out.index("exit status:") :]
    assert "130  stopped with Ctrl-C (SIGINT)" in status
    assert "0    stopped by SIGTERM" in status
