"""``python -m asynctracker``: the same command as the ``asynctracker`` console script,
for environments where the script is not on PATH (a venv that is not activated)."""

from __future__ import annotations

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
