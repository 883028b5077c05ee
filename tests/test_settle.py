"""The fate of each request's rows once its answer is in (pure decision, no I/O)."""

from __future__ import annotations

import pytest

import asynctracker as at
from asynctracker._isolate import Isolation, row_key
from asynctracker._sender import NO_RESPONSE, Outcome
from asynctracker._settle import settle


def rows(*ids: int) -> list[at.EventRow]:
    return [at.EventRow(i, {"e": "pv"}) for i in ids]


@pytest.mark.parametrize("status", [200, 204], ids=["200", "204"])
def test_2xx_are_delivered_and_deleted(status: int) -> None:
    result = settle([Outcome(rows(1, 2), status)], at.RetryPolicy(), {})
    assert (result.delete, result.release, result.sent) == ([1, 2], [], 2)
    assert result.successes == [at.CallbackResult(2, status)]
    assert result.delivered
    assert result.retry_hint is None


@pytest.mark.parametrize("status", [400, 401, 403, 410, 422])
def test_non_retryable_statuses_are_dropped_and_reported(status: int) -> None:
    result = settle([Outcome(rows(1, 2, 3), status)], at.RetryPolicy(), {})
    assert (result.delete, result.release) == ([1, 2, 3], [])
    assert result.failures == [at.CallbackResult(3, status, dropped=True)]
    assert result.drops == [(3, f"status {status} is not retryable")]
    assert result.retry_hint is None
    assert not result.delivered


def test_a_single_event_refused_as_too_large_is_dropped() -> None:
    result = settle([Outcome(rows(7), 413)], at.RetryPolicy(), {})
    assert result.delete == [7]
    assert result.failures == [at.CallbackResult(1, 413, dropped=True)]


@pytest.mark.parametrize("status", [NO_RESPONSE, 302, 404, 500, 503], ids=str)
def test_other_failures_are_kept_for_retry(status: int) -> None:
    result = settle([Outcome(rows(1, 2), status)], at.RetryPolicy(), {})
    assert (result.delete, result.release, result.failed) == ([], [1, 2], 2)
    assert result.failures == [at.CallbackResult(2, status)]
    assert result.retry_hint == 0.0


def test_retry_hint_is_the_longest_retry_after_of_the_iteration() -> None:
    outcomes = [Outcome(rows(1), 429, 2.0), Outcome(rows(2), 503, 5.0), Outcome(rows(3), 200)]
    result = settle(outcomes, at.RetryPolicy(), {})
    assert result.retry_hint == 5.0
    assert result.delivered


def test_rows_out_of_attempts_are_dropped_and_the_rest_kept() -> None:
    first, second = rows(1, 2)
    attempts = {row_key(first): 2}
    result = settle([Outcome([first, second], 500)], at.RetryPolicy(max_attempts=3), attempts)
    assert (result.delete, result.release) == ([1], [2])
    assert result.drops == [(1, "max_attempts reached")]
    assert attempts == {row_key(second): 1}  # the dropped row is forgotten
    assert at.CallbackResult(1, 500, dropped=True) in result.failures


def test_a_new_event_given_a_deleted_rows_id_starts_with_no_failures() -> None:
    """SQLite hands a deleted row's id to the next row once the newest rows are gone
    (deleted by another process, say): the new event must not inherit the old one's
    attempts or strikes."""
    policy = at.RetryPolicy(max_attempts=2, poison_after=2)
    isolation = Isolation()
    old = at.EventRow(5, {"e": "pv", "eid": "old"})
    attempts: dict[int, int] = {}
    settle([Outcome([old], 500), Outcome(rows(6), 200)], policy, attempts, isolation)
    assert isolation.strikes == attempts == {row_key(old): 1}
    new = at.EventRow(5, {"e": "pv", "eid": "new"})  # old was deleted elsewhere
    result = settle([Outcome([new], 500), Outcome(rows(7), 200)], policy, attempts, isolation)
    assert (result.delete, result.release) == ([7], [5])  # a first failure: kept
    assert attempts[row_key(new)] == isolation.strikes[row_key(new)] == 1


def test_statuses_made_retryable_by_the_policy_are_kept() -> None:
    policy = at.RetryPolicy(non_retryable_statuses=frozenset())
    result = settle([Outcome(rows(1), 400)], policy, {})
    assert (result.delete, result.release) == ([], [1])


def test_a_chunk_failing_while_others_succeed_is_halved_then_its_lone_event_is_poison() -> None:
    isolation = Isolation()
    policy = at.RetryPolicy(poison_after=2)
    result = settle([Outcome(rows(1, 2, 3, 4), 500), Outcome(rows(5), 200)], policy, {}, isolation)
    assert result.release == [1, 2, 3, 4]
    assert [len(c) for c in isolation.chunks(rows(1, 2, 3, 4, 6), 40_000)] == [1, 2, 2]
    settle([Outcome(rows(1), 500), Outcome(rows(6), 200)], policy, {}, isolation)
    result = settle([Outcome(rows(1), 500), Outcome(rows(7), 200)], policy, {}, isolation)
    assert result.delete == [1, 7]
    assert result.drops == [
        (1, "failed alone 2 time(s) while the collector accepted other events ()")
    ]
    [poison] = [r for r in result.failures if r.dropped]
    assert poison.reason == "poison"
    assert row_key(rows(1)[0]) not in isolation.suspects


def test_an_outage_splits_a_chunk_once_and_then_neither_halves_nor_strikes() -> None:
    isolation = Isolation()
    policy = at.RetryPolicy(poison_after=1)
    stored = rows(1, 2, 3, 4, 9)
    for _ in range(4):
        chunks = isolation.chunks(stored, 40_000)
        result = settle([Outcome(chunk, 500) for chunk in chunks], policy, {}, isolation)
        assert result.delete == []
    assert [len(c) for c in isolation.chunks(stored, 40_000)] == [3, 2]
    assert isolation.strikes == {}


def test_a_lone_failing_chunk_is_split_so_a_poison_event_can_be_found() -> None:
    isolation = Isolation()
    policy = at.RetryPolicy(poison_after=2)
    stored = rows(1, 2, 3, 4, 5, 6, 7, 8)
    poison = 6
    dropped = []
    for n in range(8):
        chunks = isolation.chunks(stored, 40_000)
        outcomes = [Outcome(c, 500 if any(r.id == poison for r in c) else 200) for c in chunks]
        result = settle(outcomes, policy, {}, isolation)
        dropped += [f.reason for f in result.failures if f.dropped]
        stored = [row for row in stored if row.id not in result.delete] + rows(100 + n)
    assert dropped == ["poison"]
    assert poison not in {row.id for row in stored}
    assert isolation.strikes == {}  # forgotten once dropped


@pytest.mark.parametrize("status", [429, 503], ids=str)
def test_load_shedding_makes_no_suspects(status: int) -> None:
    isolation = Isolation()
    settle([Outcome(rows(1, 2), status), Outcome(rows(3), 200)], at.RetryPolicy(), {}, isolation)
    assert isolation.suspects == set()
