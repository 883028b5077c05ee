"""Every code block in README.md and docs/*.md runs, as a user would run it.

Python blocks run as scripts in a fresh working directory (so ``events.db`` lands there)
with ``http://127.0.0.1:9090`` pointed at a collector this test starts; a block that
defines ``test_*`` functions is a test module (the testing recipes) and runs under
pytest, as a user's project with ``asyncio_mode = "auto"`` would run it. Shell blocks run
their ``asynctracker`` commands the same way; the install and test-suite commands are
the ones CI itself runs (``.ci/run``), so they are not run again from here.
"""

from __future__ import annotations

import asyncio
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from asynctracker.collector import Collector

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
#: Every page a user reads: the README, then the guides it links to.
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
README_URL = "http://127.0.0.1:9090"
# Commands CI runs itself: installing the package and running this very suite.
# tests/test_packaging.py builds the wheel (and the git-URL form) the same way, offline.
RUN_BY_CI = (
    "python3 -m pip install",
    "python3 -m nox",
    "python3 -m pytest",
    "python3 -m pip wheel",
)


def page_blocks(page: Path, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", page.read_text(), re.S | re.M)


def blocks(language: str) -> list[str]:
    return [block for page in PAGES for block in page_blocks(page, language)]


def block_ids(language: str) -> list[str]:
    return [
        f"{page.stem}-{language}-{index}"
        for page in PAGES
        for index in range(len(page_blocks(page, language)))
    ]


TEST_FUNCTION = re.compile(r"^(?:async )?def test_", re.M)
PYTEST = (
    "-m",
    "pytest",
    "-q",
    "-p",
    "no:cacheprovider",
    "-W",
    "error",
    "-o",
    "asyncio_mode=auto",
    "-o",
    "asyncio_default_fixture_loop_scope=function",
)


def commands(block: str) -> list[str]:
    joined = block.replace("\\\n", " ")
    return [part.strip() for line in joined.splitlines() for part in line.split("&&")]


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=120)


def test_readme_has_the_blocks_this_test_runs() -> None:
    assert len(page_blocks(README, "python")) >= 6
    assert any("asynctracker demo" in block for block in page_blocks(README, "bash"))


@pytest.mark.parametrize("code", blocks("python"), ids=block_ids("python"))
async def test_python_block_runs(code: str, tmp_path: Path) -> None:
    tests = len(TEST_FUNCTION.findall(code))
    async with Collector() as collector:
        script = tmp_path / ("test_block.py" if tests else "block.py")
        script.write_text(code.replace(README_URL, collector.url))
        args = [sys.executable, *PYTEST] if tests else [sys.executable]
        result = await _run_in_thread([*args, str(script)], tmp_path)
        assert result.returncode == 0, result.stdout + result.stderr
        if tests:
            assert f"{tests} passed" in result.stdout, result.stdout
        for event in collector.events:
            assert event.valid, event.errors


@pytest.mark.parametrize(
    "command",
    [c for block in blocks("bash") for c in commands(block) if c and not c.startswith(RUN_BY_CI)],
)
async def test_shell_command_runs(command: str, tmp_path: Path) -> None:
    args = shlex.split(command)
    if args[:3] == ["python3", "-m", "asynctracker"]:
        args = args[2:]
    assert args[0] == "asynctracker", f"README command not covered: {command}"
    async with Collector() as collector:
        args = [arg.replace(README_URL, collector.url) for arg in args]
        result = await _run_in_thread([sys.executable, "-m", *args], tmp_path)
        assert result.returncode == 0, result.stdout + result.stderr
        assert collector.events or args[1] == "demo"


async def _run_in_thread(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(run, args, cwd)
