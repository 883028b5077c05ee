"""The CLI's own words: its error lines, its notices, and counts with their nouns.

Every error reads ``asynctracker COMMAND: error: MESSAGE``, on one escaped line: the
form argparse already gives a bad flag of that command, so whoever reads stderr (a
person, a script, a log search) meets one shape whether the flag or the run went wrong.
Counts go through :func:`counted`, so a run that handled one event says "1 event".
"""

from __future__ import annotations

from typing import TextIO

from ._terminal import escape

__all__ = ["counted", "error", "error_line", "notice"]

#: The name argparse prefixes to its own errors (the parser's ``prog``).
PROGRAM = "asynctracker"


def notice(command: str, message: str) -> str:
    """``asynctracker COMMAND: MESSAGE``, escaped: a line about the run that is not an
    error (Ctrl-C was pressed, what happens next)."""
    return escape(f"{PROGRAM} {command}: {message}")


def error_line(command: str, message: str) -> str:
    """``asynctracker COMMAND: error: MESSAGE``, escaped, as argparse words a bad flag."""
    return notice(command, f"error: {message}")


def error(command: str, message: str, err: TextIO) -> None:
    """Print :func:`error_line` on ``err``."""
    print(error_line(command, message), file=err)


def counted(number: int, noun: str, plural: str | None = None) -> str:
    """``1 event``, ``0 events``, ``1,500 events``: the number with thousands separators
    and the noun in the form it takes (``plural`` when adding an s is wrong)."""
    if number == 1:
        return f"1 {noun}"
    return f"{number:,} {plural if plural is not None else noun + 's'}"
