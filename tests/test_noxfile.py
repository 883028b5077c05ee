"""``nox`` says which Pythons it tests on and why it skips the others.

The noxfile runs the tests on every Python 3.10-3.13 it can start; one it cannot (not on
PATH, or a pyenv shim for a version pyenv does not expose) is left out. A user running
``nox`` must see that, not find out later that "every Python" meant one. These tests run
the real ``nox --list`` in a child process whose PATH holds only the interpreters the
test lays out.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: What a pyenv shim says for a version that is installed but not selected.
SHIM = """#!/bin/sh
echo "pyenv: ${0##*/}: command not found" >&2
exit 127
"""


def lay_out(folder: Path, working: list[str], broken: list[str]) -> None:
    """``python3.X`` in ``folder``: the real interpreter for ``working``, a failing
    pyenv-style shim for ``broken``; other versions are absent."""
    folder.mkdir()
    for version in working:
        (folder / f"python{version}").symlink_to(sys.executable)
    for version in broken:
        shim = folder / f"python{version}"
        shim.write_text(SHIM)
        shim.chmod(0o755)


def nox_list(path: Path) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("NOX")}
    return subprocess.run(
        [sys.executable, "-m", "nox", "--list", "--noxfile", str(ROOT / "noxfile.py")],
        cwd=ROOT,
        env={**env, "PATH": str(path)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_nox_names_the_pythons_it_found_and_why_it_skipped_each_other(tmp_path: Path) -> None:
    lay_out(tmp_path / "bin", working=["3.11", "3.13"], broken=["3.12"])

    result = nox_list(tmp_path / "bin")

    assert result.returncode == 0, result.stderr
    assert "* tests-3.11" in result.stdout
    assert "* tests-3.13" in result.stdout
    assert "tests-3.10" not in result.stdout
    assert "tests-3.12" not in result.stdout
    report = result.stderr
    assert "nox: testing on Python 3.11, 3.13; skipping 3.10, 3.12:" in report
    assert "  3.10: no python3.10 on PATH\n" in report
    assert (
        f"  3.12: {tmp_path / 'bin' / 'python3.12'} does not start "
        "(exit status 127: pyenv: python3.12: command not found)\n"
    ) in report
    assert "pyenv exposes only the versions it selects" in report


def test_nox_says_when_every_python_was_found(tmp_path: Path) -> None:
    lay_out(tmp_path / "bin", working=["3.10", "3.11", "3.12", "3.13"], broken=[])

    result = nox_list(tmp_path / "bin")

    assert result.returncode == 0, result.stderr
    assert "nox: testing on Python 3.10, 3.11, 3.12, 3.13\n" in result.stderr
    assert "skipping" not in result.stderr
    assert "pyenv" not in result.stderr


@pytest.mark.parametrize("broken", [[], ["3.10", "3.11", "3.12", "3.13"]], ids=["none", "shims"])
def test_nox_without_any_supported_python_says_it_falls_back_to_python3(
    tmp_path: Path, broken: list[str]
) -> None:
    lay_out(tmp_path / "bin", working=[], broken=broken)

    result = nox_list(tmp_path / "bin")

    assert result.returncode == 0, result.stderr
    assert "* tests-3 -> " in result.stdout
    assert (
        "nox: none of Python 3.10, 3.11, 3.12, 3.13 starts; the tests run on python3 instead:"
        in result.stderr
    )
