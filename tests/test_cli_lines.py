"""``send``'s line reader against the plainest model of it: ``data.split(b"\\n")``.

The reader works a chunk at a time, bounds each line and each batch, and skips lines
without keeping them; whatever the chunk and batch sizes, it must number and return
exactly the lines the model does.
"""

from __future__ import annotations

import io
import random

import pytest

from asynctracker.cli import _lines
from asynctracker.cli._lines import LineReader


class Trickle(io.BytesIO):
    """A stream whose reads return at most ``most`` bytes, like a slow pipe."""

    def __init__(self, data: bytes, most: int) -> None:
        super().__init__(data)
        self.most = most

    def read(self, size: int | None = -1) -> bytes:
        return super().read(self.most if size is None or size < 0 else min(size, self.most))


def model(
    data: bytes, max_line_bytes: int, skip: int
) -> tuple[list[tuple[int, bytes | None]], int]:
    parts = data.split(b"\n")
    if parts[-1] == b"":
        parts.pop()
    lines: list[tuple[int, bytes | None]] = []
    for number, part in enumerate(parts, start=1):
        if number <= skip:
            continue
        if len(part) > max_line_bytes:
            lines.append((number, None))
        elif part.strip():
            lines.append((number, part.removesuffix(b"\r")))
    return lines, len(parts)


def read_all(reader: LineReader) -> list[tuple[int, bytes | None]]:
    lines: list[tuple[int, bytes | None]] = []
    through = 0
    while True:
        batch = reader.next_batch()
        assert len(batch.lines) <= _lines.MAX_BATCH
        assert batch.through >= through
        assert all(line.number <= batch.through for line in batch.lines)
        through = batch.through
        lines += [(line.number, line.data) for line in batch.lines]
        if batch.eof:
            return lines


@pytest.mark.parametrize("seed", range(4))
def test_reader_returns_the_lines_split_would_whatever_the_chunk_sizes(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = random.Random(seed)
    for _ in range(600):
        lines = [bytes(rng.choice(b"ab \r") for _ in range(rng.choice([0, 1, 2, 5, 12, 30])))
                 for _ in range(rng.randint(0, 30))]  # fmt: skip
        data = b"\n".join(lines) + (b"\n" if rng.random() < 0.5 else b"")
        max_line_bytes, skip = rng.choice([1, 3, 8, 100]), rng.randint(0, 35)
        most = rng.choice([1, 2, 3, 7, 50, 1000])
        monkeypatch.setattr(_lines, "READ_SIZE", most)
        monkeypatch.setattr(_lines, "MAX_BATCH", rng.choice([1, 2, 3, 5000]))
        reader = LineReader(Trickle(data, most), max_line_bytes=max_line_bytes, skip=skip)

        expected, total = model(data, max_line_bytes, skip)
        assert read_all(reader) == expected, (data, max_line_bytes, skip, most)
        assert reader.lines == total


def test_a_chunk_of_tiny_lines_comes_in_bounded_batches() -> None:
    data = b"{}\n" * 100_000  # 300 kB: one read, 100,000 lines
    reader = LineReader(io.BytesIO(data), max_line_bytes=10)

    sizes = []
    while not (batch := reader.next_batch()).eof:
        sizes.append(len(batch.lines))

    assert sum(sizes) == 100_000
    assert max(sizes) == _lines.MAX_BATCH


def test_a_utf8_byte_order_mark_opening_the_first_line_is_dropped() -> None:
    assert _lines.decode("\ufeff{}".encode(), 1) == "{}"
    assert _lines.decode("\ufeff{}".encode(), 2) == "\ufeff{}"
