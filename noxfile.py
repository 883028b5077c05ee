"""Developer tasks. ``nox`` runs tests on every Python 3.10-3.13 found, lint and typecheck.

It says on stderr, each time it loads, which of those Pythons it found and why it skips
each other one. ``nox -s bench`` runs the benchmarks (not part of the default run).
"""

from __future__ import annotations

import shutil
import subprocess
import sys

import nox

nox.options.sessions = ["tests", "lint", "typecheck"]
nox.options.reuse_existing_virtualenvs = True

SUPPORTED = ("3.10", "3.11", "3.12", "3.13")


def _why_not(version: str) -> str | None:
    """None when ``python<version>`` is on PATH and starts; otherwise why it is skipped
    (a pyenv shim for a version pyenv does not expose is on PATH but does not start)."""
    name = f"python{version}"
    path = shutil.which(name)
    if path is None:
        return f"no {name} on PATH"
    try:
        run = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{path} does not start ({exc})"
    if run.returncode != 0:
        said = (run.stderr or run.stdout).strip().splitlines()
        detail = f": {said[0]}" if said else ""
        return f"{path} does not start (exit status {run.returncode}{detail})"
    return None


def _pythons() -> list[str]:
    """Every supported Python that starts here, said on stderr with why the others are
    left out: nox would fail on a missing one, and a silent skip would let "the tests
    pass on 3.10-3.13" mean one version. With none, the tests run on ``python3``."""
    why = {version: _why_not(version) for version in SUPPORTED}
    found = [version for version in SUPPORTED if why[version] is None]
    skipped = [version for version in SUPPORTED if why[version] is not None]
    lines = [f"  {version}: {why[version]}\n" for version in skipped]
    if not found:
        head = f"none of Python {', '.join(SUPPORTED)} starts; the tests run on python3 instead:"
    elif skipped:
        head = f"testing on Python {', '.join(found)}; skipping {', '.join(skipped)}:"
    else:
        head = f"testing on Python {', '.join(found)}"
    if any("pyenv" in line for line in lines):
        lines.append(
            "  pyenv exposes only the versions it selects: list each one in `pyenv global` "
            "(see `pyenv versions`), or set PYENV_VERSION as .ci/run does\n"
        )
    sys.stderr.write(f"nox: {head}\n{''.join(lines)}")
    return found or ["3"]


PYTHONS = _pythons()


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """The test suite, with warnings as errors."""
    session.install("-e", ".[test]")
    session.run("pytest", *(session.posargs or ["-q"]))


@nox.session(python=None)
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check."""
    session.install("ruff==0.17.6")  # pinned: formatting changes between releases
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python=None)
def typecheck(session: nox.Session) -> None:
    """mypy --strict on the package and the typing examples in tests/typing."""
    session.install("-e", ".[test,lint]")
    session.run("mypy", "--strict")


@nox.session(python=None)
def bench(session: nox.Session) -> None:
    """Benchmarks against the peers; prints figures, asserts nothing."""
    session.install("-e", ".[bench]")
    session.run("python", "benchmarks/run_all.py", *session.posargs)
