"""Event ids: random UUID v4 strings, unique, and never repeated by a forked child."""

from __future__ import annotations

import re
import subprocess
import sys
import uuid

from asynctracker.payload import new_event_id


def test_event_ids_are_canonical_uuid4_and_unique() -> None:
    ids = [new_event_id() for _ in range(20_000)]
    assert len(set(ids)) == len(ids)
    for text in ids[:2000]:
        parsed = uuid.UUID(text)
        assert (parsed.version, parsed.variant) == (4, uuid.RFC_4122)
        assert str(parsed) == text
    canonical = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
    assert all(canonical.fullmatch(text) for text in ids)
    assert {text[19] for text in ids} == set("89ab")  # every variant digit occurs


def test_every_random_digit_of_an_event_id_varies() -> None:
    # Ids are cut from one random buffer per batch: a slip in the cutting would repeat
    # or fix digits. All 30 random hex digits (not the dashes, the version "4" or the
    # two fixed bits of the variant digit) must take every value over a few batches.
    ids = [new_event_id() for _ in range(2_000)]
    fixed = {8, 13, 14, 18, 19, 23}
    for position in set(range(36)) - fixed:
        assert {text[position] for text in ids} == set("0123456789abcdef"), position


def test_forked_child_does_not_repeat_the_parents_ids() -> None:
    code = (
        "import os\n"
        "from asynctracker.payload import new_event_id\n"
        "new_event_id()\n"
        "r, w = os.pipe()\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    os.write(w, new_event_id().encode()); os._exit(0)\n"
        "os.waitpid(pid, 0)\n"
        "print(os.read(r, 36).decode(), new_event_id())\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=30
    )
    child, parent = result.stdout.split()
    assert child != parent
