"""Numbered lines from a byte stream, in bounded memory whatever the lines look like.

``send`` reads files of any size, from pipes as well as disks, so :class:`LineReader`
never holds more than one read chunk plus one line of at most ``max_line_bytes``: the
rest of a longer line is read and thrown away, and the line is reported as too long by
its number instead of growing a buffer to the size of the line. Lines end at ``\\n``
(a ``\\r`` before it is dropped), and are numbered from 1 as editors and ``wc -l``
count them; ``skip`` lines at the start are counted without being kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

__all__ = ["Batch", "Line", "LineReader", "Readable", "decode"]

#: Bytes asked for per read: big enough to amortise a thread hop per chunk, small
#: enough that memory stays flat.
READ_SIZE = 1 << 20
#: Lines handed over at most per batch: a chunk of tiny lines would otherwise become
#: half a million Line objects at once.
MAX_BATCH = 5000


class Readable(Protocol):
    """What the reader needs: ``read(n)`` returning at most n bytes, b"" at the end
    (``io.FileIO``: unbuffered, see LineReader)."""

    def read(self, size: int = -1, /) -> bytes | None: ...


@dataclass(frozen=True, slots=True)
class Line:
    """One non-blank line: its number and bytes, or ``data=None`` if it was too long."""

    number: int
    data: bytes | None


@dataclass(frozen=True, slots=True)
class Batch:
    """The lines completed by one read; ``through`` is the number of the last line
    consumed (blank and skipped ones included). An empty batch with ``eof`` ends it."""

    lines: list[Line]
    through: int
    eof: bool


class LineReader:
    """Blocking reads of numbered lines from an unbuffered stream; run it off the loop.

    A raw read returns whatever is available, so a slow pipe (``tail -f | asynctracker
    send -``) delivers each line as it comes instead of waiting for a full buffer. Raw,
    not buffered, also because a buffered reader holds a lock while it blocks: a read
    abandoned on Ctrl-C would then keep the interpreter from shutting down.
    """

    def __init__(self, stream: Readable, *, max_line_bytes: int, skip: int = 0) -> None:
        self._stream = stream
        self._max = max_line_bytes
        self._skip = skip
        self._partial = bytearray()
        self._too_long = False  # throwing away the rest of the current line
        self._eof = False
        self._pending: tuple[bytes, int] | None = None  # a chunk's unsplit rest
        #: Lines consumed so far (the number of the last complete line).
        self.lines = 0
        #: Bytes read from the stream so far, for a progress percentage.
        self.bytes_read = 0

    def next_batch(self) -> Batch:
        """The lines completed by the next read (at most ``MAX_BATCH``; the rest of the
        chunk comes with the next call). Blocks until that read returns."""
        out: list[Line] = []
        if self._pending is not None:
            rest, start = self._pending
            self._pending = None
            self._split(rest, out, start)
            return Batch(out, self.lines, eof=False)
        if not self._eof:
            # None only comes from a non-blocking descriptor with nothing to read; the
            # CLI's inputs block, so it is taken as the end rather than spun on.
            chunk = self._stream.read(READ_SIZE) or b""
            if chunk:
                self.bytes_read += len(chunk)
                self._split(chunk, out, 0)
                return Batch(out, self.lines, eof=False)
            self._eof = True
            if self._partial or self._too_long:  # a last line without a newline
                self._complete(b"", out)
        return Batch(out, self.lines, eof=True)

    def _split(self, chunk: bytes, out: list[Line], start: int) -> None:
        while True:
            if len(out) >= MAX_BATCH:  # a chunk of tiny lines: hand these over first
                self._pending = (chunk, start)
                return
            if self.lines < self._skip and not self._partial and not self._too_long:
                start = self._skip_lines(chunk, start)
            end = chunk.find(b"\n", start)
            if end < 0:
                self._keep(chunk[start:])
                return
            self._complete(chunk[start:end], out)
            start = end + 1

    def _skip_lines(self, chunk: bytes, start: int) -> int:
        """Count lines to skip from ``start`` without copying them; where the rest starts."""
        wanted = self._skip - self.lines
        found = chunk.count(b"\n", start)
        if found < wanted:  # all of it is skipped, maybe ending mid-line
            self.lines += found
            # The text after the last newline starts a line that is skipped too: drop it.
            self._too_long = start < len(chunk) and not chunk.endswith(b"\n")
            return len(chunk)
        for _ in range(wanted):
            start = chunk.index(b"\n", start) + 1
        self.lines += wanted
        return start

    def _keep(self, piece: bytes) -> None:
        if self._too_long:
            return
        if len(self._partial) + len(piece) > self._max:
            self._too_long = True
            self._partial.clear()
            return
        self._partial += piece

    def _complete(self, piece: bytes, out: list[Line]) -> None:
        self.lines += 1
        too_long = self._too_long or len(self._partial) + len(piece) > self._max
        if self._partial and not too_long:
            piece = bytes(self._partial) + piece
        self._partial.clear()
        self._too_long = False
        if self.lines <= self._skip:
            return
        if too_long:
            out.append(Line(self.lines, None))
        elif piece.strip():
            out.append(Line(self.lines, piece[:-1] if piece.endswith(b"\r") else piece))


def decode(data: bytes, number: int) -> str:
    """The line as text; UnicodeDecodeError if it is not UTF-8 (a UTF-8 byte order mark
    opening line 1 is dropped, as editors on Windows write one)."""
    text = data.decode("utf-8")
    return text[1:] if number == 1 and text.startswith("\ufeff") else text
