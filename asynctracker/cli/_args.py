"""Argument types and the parser that reports a bad one in a single line.

Each type function turns the text of one option into its value or raises
``argparse.ArgumentTypeError`` with a sentence about the value; argparse prefixes the
option's name, and :class:`Parser` prints the result as one escaped line with exit
status 2, so a wrong flag never shows a traceback or a page of usage.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
from pathlib import Path
from typing import NoReturn

from .._checks import utf8_problem
from ._terminal import escape

__all__ = [
    "Parser",
    "byte_size",
    "count",
    "number",
    "port",
    "positive",
    "sqlite_path",
]

_SQLITE_MAGIC = b"SQLite format 3\x00"
_SIZE = re.compile(r"(\d+)\s*(?:([kmg])i?)?b?")
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line on stderr and exit status 2.

    argparse's own error prints the whole usage first, which pushes the one useful line
    (which option, what is wrong) to the bottom of a screenful; the usage is one
    ``--help`` away, and the line says so.
    """

    def error(self, message: str) -> NoReturn:
        line = f"{self.prog}: error: {message} (see: {self.prog} --help)"
        self.exit(2, escape(line) + "\n")


def _finite(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def positive(text: str) -> float:
    """A number of seconds greater than zero."""
    value = _finite(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}")
    return value


def number(text: str) -> float:
    """A finite number for ``--value``; whole numbers stay ints, so 2 is sent as "2"."""
    value = _finite(text)
    whole = value.is_integer() and "." not in text and "e" not in text.lower()
    return int(value) if whole else value


def count(text: str) -> int:
    """A whole number, zero or more."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be zero or more, got {text!r}")
    return value


def port(text: str) -> int:
    """A TCP port, 0 (any free port) to 65535."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be 0-65535 (0: any free port), got {text!r}")
    return value


def byte_size(text: str) -> int:
    """A positive size in bytes, with an optional binary unit: ``1048576``, ``512k``, ``1MiB``."""
    match = _SIZE.fullmatch(text.strip().lower())
    if match is None:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a size in bytes (e.g. 1048576, 512k, 1MiB)"
        )
    value = int(match[1]) * _UNITS[match[2] or ""]
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be at least 1 byte, got {text!r}")
    return value


def sqlite_path(text: str) -> Path:
    """A path for a SQLite file: an existing SQLite file, an empty file, or a new file
    in an existing, writable folder. Checked up front so that a folder, a typo in the
    folder or some other file is one clear line, not an error from deep in SQLite."""
    if utf8_problem(text) is not None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a valid file name")
    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is a folder; give a file path in it")
    if path.exists():
        try:
            with path.open("rb") as file:
                head = file.read(len(_SQLITE_MAGIC))
        except OSError as exc:
            raise argparse.ArgumentTypeError(f"cannot read {text!r}: {exc.strerror}") from None
        if head and head != _SQLITE_MAGIC:
            raise argparse.ArgumentTypeError(f"{text!r} exists and is not a SQLite file")
        if not os.access(path, os.W_OK):
            raise argparse.ArgumentTypeError(f"{text!r} is not writable")
        return path
    folder = path.parent
    if not folder.is_dir():
        raise argparse.ArgumentTypeError(f"folder {str(folder)!r} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(f"folder {str(folder)!r} is not writable")
    return path


def program() -> list[str]:
    """How this process was started, to print commands the user can run again."""
    if Path(sys.argv[0]).name == "__main__.py":
        return [sys.executable, "-m", "asynctracker"]
    return ["asynctracker"]
