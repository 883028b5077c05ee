"""Shared test support: loading files that are not importable modules (examples/, the
typing quickstart), a realistic ``_sp_id`` cookie, and a tracker factory for apps."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import asynctracker as at
from asynctracker._collector import Collector

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
DUID = "5f8b2c1e-1a2b-4c3d-8e9f-0123456789ab"
SID = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"


def sp_id_cookie(session_index: int) -> str:
    """A JavaScript tracker ``_sp_id`` cookie value with this session index."""
    return f"{DUID}.1700000000.{session_index}.1700000500.1699999000.{SID}"


def load_file(path: Path, name: str) -> ModuleType:
    """Import a Python file by path (``tests/typing`` would shadow the stdlib ``typing``)."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_example(name: str) -> ModuleType:
    """Import examples/<name>.py the way ``python examples/<name>.py`` finds it."""
    return load_file(EXAMPLES / f"{name}.py", f"example_{name}")


def collector_tracker(collector: Collector, db_path: Path) -> Callable[[], at.Tracker]:
    """A factory for apps: a fresh tracker per start, sending to ``collector``."""

    def make() -> at.Tracker:
        return at.Tracker(at.Emitter(collector.url, db_name=db_path), app_id="api")

    return make
