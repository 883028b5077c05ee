"""Running ``python -m asynctracker`` as a child process from async tests.

Children are awaited with asyncio, because the collector serving them runs on the test's
event loop; they are killed in ``finally`` if a test times out.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

TIMEOUT = 60.0
STRUCT = ("--category", "shop", "--action", "add")
SCHEMA = "iglu:com.acme/click/jsonschema/1-0-0"


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str


def cli_args(args: tuple[str | bytes | Path, ...]) -> list[str | bytes]:
    return [arg if isinstance(arg, bytes) else str(arg) for arg in args]


async def run_cli(
    *args: str | bytes | Path,
    stdin: bytes | None = None,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
) -> Result:
    """Run ``python -m asynctracker *args`` to completion without blocking the loop."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "asynctracker",
        *cli_args(args),
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=cwd,
        env=None if env is None else {**os.environ, **env},
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(stdin), TIMEOUT)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return Result(proc.returncode, out.decode(), err.decode(errors="replace"))


def free_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
