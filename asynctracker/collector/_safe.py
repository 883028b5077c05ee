"""Making network input harmless before it is stored, served or printed.

A tracker (or anyone who can reach the port) controls every byte of an event. Two
things must hold whatever it sends: the stored text is valid Unicode (a lone surrogate,
which ``json.loads`` happily produces from ``"\\ud800"``, cannot be encoded as UTF-8 and
used to break every page that showed it), and nesting is shallow enough to walk without
recursion errors. (What reaches a terminal is escaped where it is printed:
``asynctracker.cli._terminal.escape``.)
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["scrub"]


_SURROGATE = re.compile("[\ud800-\udfff]")


def _scrub_text(text: str) -> str:
    return _SURROGATE.sub("\ufffd", text)


def scrub(value: Any) -> tuple[Any, bool]:
    """``value`` with every lone surrogate (in keys and strings) replaced by U+FFFD.

    Returns the cleaned value and whether anything was replaced. Call only on values that
    passed ``payload.nesting_exceeds`` (the collector checks every body); it recurses.
    """
    if isinstance(value, str):
        cleaned = _scrub_text(value)
        return cleaned, cleaned != value
    if isinstance(value, dict):
        changed = False
        result = {}
        for key, item in value.items():
            new_key, key_changed = scrub(key) if isinstance(key, str) else (key, False)
            new_item, item_changed = scrub(item)
            result[new_key] = new_item
            changed = changed or key_changed or item_changed
        return (result, True) if changed else (value, False)
    if isinstance(value, list):
        items = [scrub(item) for item in value]
        if any(changed for _, changed in items):
            return [item for item, _ in items], True
        return value, False
    return value, False
