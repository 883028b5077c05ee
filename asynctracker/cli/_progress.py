"""``send``'s status output: a progress line that fits the terminal, and messages around it.

On a terminal the progress line is redrawn in place (``\\r`` + erase line) and never
wider than the terminal minus one column, so it can never wrap into a staircase of old
copies, however narrow the window. When the input's size is known (a regular file) it
starts with the share of bytes read and an estimate of the time left. With ``--progress``
and no terminal (a CI log) it prints a plain line every few seconds instead. Messages
(bad lines, warnings) first erase the progress line so they never share a line with it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import TextIO

from ._terminal import columns, escape

__all__ = ["Figures", "StatusLine", "render"]

_ERASE = "\r\x1b[K"
#: Redraws per second on a terminal, and seconds between lines in a log.
_TERMINAL_EVERY = 0.2
_LOG_EVERY = 5.0


@dataclass(frozen=True, slots=True)
class Figures:
    """What the progress line shows, sampled once per redraw."""

    lines: int
    queued: int
    delivered: int
    failed: int
    bad: int
    bytes_read: int
    total_bytes: int | None
    elapsed: float


def _duration(seconds: float) -> str:
    seconds = int(seconds + 0.5)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def render(figures: Figures, width: int) -> str:
    """The progress line for ``figures``, at most ``width - 1`` columns.

    Fields are added in order of importance and dropped whole when they do not fit, so
    a narrow terminal shows the percentage and ETA rather than half a word.
    """
    parts: list[str] = []
    total, done = figures.total_bytes, figures.bytes_read
    if total:
        parts.append(f"{min(done / total, 1.0):6.1%}")
        if 0 < done < total and figures.elapsed >= 1.0:
            parts.append(f"ETA {_duration((total - done) * figures.elapsed / done)}")
        elif done >= total:
            parts.append("read, sending")
    elapsed = max(figures.elapsed, 1e-9)
    parts += [
        f"line {figures.lines:,}",
        f"delivered {figures.delivered:,}",
        f"queued {figures.queued:,}",
        f"failed {figures.failed:,}",
        f"bad {figures.bad:,}",
        f"{figures.delivered / elapsed:,.0f} events/s",
    ]
    line = ""
    for part in parts:
        candidate = f"{line}  {part}" if line else part
        if len(candidate) > width - 1:
            break
        line = candidate
    return escape(line)[: max(width - 1, 0)]


class StatusLine:
    """Owns stderr while ``send`` runs: messages go above the progress line.

    ``sample`` is called on the event loop for each redraw; nothing here blocks on
    anything but writing to stderr.
    """

    def __init__(self, err: TextIO, *, show: bool, terminal: bool) -> None:
        self._err = err
        self._show = show
        self._terminal = terminal
        self._drawn = False
        self._task: asyncio.Task[None] | None = None

    def message(self, text: str) -> None:
        """Print one escaped line, erasing the progress line first if one is drawn."""
        if self._drawn:
            self._err.write(_ERASE)
            self._drawn = False
        print(escape(text), file=self._err, flush=True)

    def start(self, sample: Callable[[], Figures]) -> None:
        if self._show:
            self._task = asyncio.create_task(self._run(sample))

    async def _run(self, sample: Callable[[], Figures]) -> None:
        every = _TERMINAL_EVERY if self._terminal else _LOG_EVERY
        while True:
            await asyncio.sleep(every)
            self.draw(sample())

    def draw(self, figures: Figures) -> None:
        text = render(figures, columns(self._err))
        if self._terminal:
            self._err.write(f"{_ERASE}{text}")
            self._drawn = True
        else:
            self._err.write(f"{text}\n")
        self._err.flush()

    async def stop(self) -> None:
        """Stop redrawing and erase the line, so the summary starts on a clean line."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self._drawn:
            self._err.write(_ERASE)
            self._err.flush()
            self._drawn = False
