"""Developer tasks. ``nox`` runs tests on every Python 3.10-3.13 found, lint and typecheck.

``nox -s bench`` runs the benchmarks (not part of the default run).
"""

from __future__ import annotations

import shutil
import subprocess

import nox

nox.options.sessions = ["tests", "lint", "typecheck"]
nox.options.reuse_existing_virtualenvs = True


def _runs(version: str) -> bool:
    """True when ``python<version>`` exists and starts (a pyenv shim may not)."""
    path = shutil.which(f"python{version}")
    if path is None:
        return False
    return subprocess.run([path, "--version"], capture_output=True, check=False).returncode == 0


# Every supported Python found on this machine: nox would fail in CI on a missing one.
PYTHONS = [v for v in ("3.10", "3.11", "3.12", "3.13") if _runs(v)] or ["3"]


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
