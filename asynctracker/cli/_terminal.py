"""Text that reaches a terminal: escaped, fitted to its width, and quoted for a shell.

Everything the CLI prints may carry bytes it did not write (a file name, a JSON key from
a bad line, an argument): :func:`escape` turns control and other unprintable characters
into visible escapes, so no input can move the cursor, retitle or clear the terminal.
:func:`shell_command` prints a command that can be pasted back as it is.
"""

from __future__ import annotations

import os
import shlex
import shutil
from collections.abc import Sequence
from typing import TextIO

__all__ = ["columns", "escape", "shell_command"]


def _escaped(char: str) -> str:
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def escape(text: str) -> str:
    """``text`` with every unprintable character (controls, lone surrogates, bidi marks)
    written as a ``\\x``/``\\u`` escape; printable text is left alone."""
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() else _escaped(char) for char in text)


def columns(stream: TextIO) -> int:
    """The width of the terminal ``stream`` writes to.

    ``$COLUMNS`` wins (as for :func:`shutil.get_terminal_size`), then the size of the
    stream's own terminal (stderr may be a terminal while stdout is a pipe, which is
    what ``shutil`` asks), then 80.
    """
    fallback = shutil.get_terminal_size((80, 24)).columns
    if os.environ.get("COLUMNS", "").isdigit():
        return fallback
    try:
        return os.get_terminal_size(stream.fileno()).columns or fallback
    except (AttributeError, ValueError, OSError):  # not a terminal, or no file descriptor
        return fallback


def _quote(arg: str) -> str:
    if arg.isprintable():
        return shlex.quote(arg)
    # bash/zsh ANSI-C quoting: the exact argument, yet nothing raw reaches the terminal.
    return "$'" + "".join(_ansi_c(char) for char in arg) + "'"


def _ansi_c(char: str) -> str:
    if char.isprintable():
        return {"\\": "\\\\", "'": "\\'"}.get(char, char)
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8, kept by surrogateescape
        return f"\\x{code - 0xDC00:02x}"
    return _escaped(char)


def shell_command(argv: Sequence[str]) -> str:
    """``argv`` as one shell line that runs the same command when pasted."""
    return " ".join(_quote(arg) for arg in argv)
