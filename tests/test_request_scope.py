"""bind_subject: the current request's Subject, scoped to a block and inherited by tasks."""

from __future__ import annotations

import asyncio

import pytest

import asynctracker as at


def test_nothing_is_bound_outside_a_block() -> None:
    assert at.bound_subject() is None


def test_blocks_nest_and_restore_the_outer_subject() -> None:
    outer, inner = at.Subject(user_id="outer"), at.Subject(user_id="inner")
    with at.bind_subject(outer):
        with at.bind_subject(inner):
            assert at.bound_subject() is inner
        assert at.bound_subject() is outer
    assert at.bound_subject() is None


async def test_tasks_started_inside_a_block_keep_its_subject() -> None:
    subject = at.Subject(user_id="u-1")
    with at.bind_subject(subject):
        task = asyncio.ensure_future(asyncio.sleep(0, result=None))
        child = asyncio.create_task(_current())
    await task
    assert await child is subject
    assert at.bound_subject() is None


async def _current() -> at.Subject | None:
    await asyncio.sleep(0)
    return at.bound_subject()


def test_a_non_subject_is_refused() -> None:
    with pytest.raises(TypeError, match="bind_subject takes a Subject"), at.bind_subject("u-1"):  # type: ignore[arg-type]
        pass
