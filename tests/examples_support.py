"""Shared by the framework integration tests: loading examples/ and a realistic _sp_id."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
DUID = "5f8b2c1e-1a2b-4c3d-8e9f-0123456789ab"
SID = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"


def sp_id_cookie(session_index: int) -> str:
    """A JavaScript tracker ``_sp_id`` cookie value with this session index."""
    return f"{DUID}.1700000000.{session_index}.1700000500.1699999000.{SID}"


def load_example(name: str) -> ModuleType:
    """Import examples/<name>.py the way ``python examples/<name>.py`` finds it."""
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
