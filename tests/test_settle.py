"""The fate of each request's rows once its answer is in (pure decision, no I/O)."""

from __future__ import annotations

import random

import pytest

import asynctracker as at
from asynctracker._isolate import POISON_ODDS, RowMemory, lone_failure_odds, row_key
from asynctracker._sender import NO_RESPONSE, Outcome
from asynctracker._settle import settle


def rows(*ids: int) -> list[at.EventRow]:
    return [at.EventRow(i, {"e": "pv"}) for i in ids]


def memory(attempts: dict[int, int] | None = None) -> RowMemory:
    made = RowMemory()
    made.attempts.update(attempts or {})
    return made


@pytest.mark.parametrize("status", [200, 204], ids=["200", "204"])
def test_2xx_are_delivered_and_deleted(status: int) -> None:
    result = settle([Outcome(rows(1, 2), status)], at.RetryPolicy(), memory())
    assert (result.delete, result.release, result.sent) == ([1, 2], [], 2)
    assert result.successes == [at.CallbackResult(2, status)]
    assert result.delivered
    assert result.retry_hint is None


@pytest.mark.parametrize("status", [400, 401, 403, 410, 422])
def test_non_retryable_statuses_are_dropped_and_reported(status: int) -> None:
    result = settle([Outcome(rows(1, 2, 3), status)], at.RetryPolicy(), memory())
    assert (result.delete, result.release) == ([1, 2, 3], [])
    assert result.failures == [at.CallbackResult(3, status, dropped=True)]
    assert result.drops == [(3, f"status {status} is not retryable")]
    assert result.retry_hint is None
    assert not result.delivered


def test_a_single_event_refused_as_too_large_is_dropped() -> None:
    result = settle([Outcome(rows(7), 413)], at.RetryPolicy(), memory())
    assert result.delete == [7]
    assert result.failures == [at.CallbackResult(1, 413, dropped=True)]


@pytest.mark.parametrize("status", [NO_RESPONSE, 302, 404, 500, 503], ids=str)
def test_other_failures_are_kept_for_retry(status: int) -> None:
    result = settle([Outcome(rows(1, 2), status)], at.RetryPolicy(), memory())
    assert (result.delete, result.release, result.failed) == ([], [1, 2], 2)
    assert result.failures == [at.CallbackResult(2, status)]
    assert result.retry_hint == 0.0


def test_retry_hint_is_the_longest_retry_after_of_the_iteration() -> None:
    outcomes = [Outcome(rows(1), 429, 2.0), Outcome(rows(2), 503, 5.0), Outcome(rows(3), 200)]
    result = settle(outcomes, at.RetryPolicy(), memory())
    assert result.retry_hint == 5.0
    assert result.delivered


def test_rows_out_of_attempts_are_dropped_and_the_rest_kept() -> None:
    first, second = rows(1, 2)
    remembered = memory({row_key(first): 2})
    result = settle([Outcome([first, second], 500)], at.RetryPolicy(max_attempts=3), remembered)
    assert (result.delete, result.release) == ([1], [2])
    assert result.drops == [(1, "max_attempts reached")]
    assert remembered.attempts == {row_key(second): 1}  # the dropped row is forgotten
    assert at.CallbackResult(1, 500, dropped=True) in result.failures


def test_a_new_event_given_a_deleted_rows_id_starts_with_no_failures() -> None:
    """SQLite hands a deleted row's id to the next row once the newest rows are gone
    (deleted by another process, say): the new event must not inherit the old one's
    attempts or record."""
    policy = at.RetryPolicy(max_attempts=2, poison_after=2)
    remembered = RowMemory()
    old = at.EventRow(5, {"e": "pv", "eid": "old"})
    settle([Outcome([old], 500), Outcome(rows(6), 200)], policy, remembered)
    assert remembered.attempts == {row_key(old): 1}
    assert remembered.records[row_key(old)].alone == 1
    new = at.EventRow(5, {"e": "pv", "eid": "new"})  # old was deleted elsewhere
    result = settle([Outcome([new], 500), Outcome(rows(7), 200)], policy, remembered)
    assert (result.delete, result.release) == ([7], [5])  # a first failure: kept
    assert remembered.attempts[row_key(new)] == remembered.records[row_key(new)].alone == 1


def test_statuses_made_retryable_by_the_policy_are_kept() -> None:
    policy = at.RetryPolicy(non_retryable_statuses=frozenset())
    result = settle([Outcome(rows(1), 400)], policy, memory())
    assert (result.delete, result.release) == ([], [1])


def test_the_odds_of_a_lone_failure_record_are_hypergeometric() -> None:
    # 10 lone failures, 10 other requests that all succeeded: 1 / C(20, 10).
    assert lone_failure_odds(10, 10, 0) == pytest.approx(1 / 184_756)
    # Everything failed: no evidence at all.
    assert lone_failure_odds(10, 0, 50) == pytest.approx(1.0)
    assert lone_failure_odds(0, 5, 5) == 1.0


def test_a_chunk_failing_while_others_succeed_is_halved_then_its_lone_event_is_poison() -> None:
    remembered = RowMemory()
    policy = at.RetryPolicy(poison_after=2)
    result = settle([Outcome(rows(1, 2, 3, 4), 500), Outcome(rows(5), 200)], policy, remembered)
    assert result.release == [1, 2, 3, 4]
    assert [len(c) for c in remembered.chunks(rows(1, 2, 3, 4, 6), 40_000)] == [1, 2, 2]
    sends = 0
    while not result.drops:
        sends += 1
        # The lone event fails while three other requests of its send succeed.
        others = [Outcome(rows(100 + 3 * sends + k), 200) for k in range(3)]
        result = settle([Outcome(rows(1), 500), *others], policy, remembered)
    # Dropped only once random failures could not explain it, never before.
    assert lone_failure_odds(sends, 3 * sends, 0) < POISON_ODDS
    assert lone_failure_odds(sends - 1, 3 * (sends - 1), 0) >= POISON_ODDS
    assert result.drops == [(1, result.failures[0].detail)]
    [poison] = [r for r in result.failures if r.dropped]
    assert poison.reason == "poison"
    assert row_key(rows(1)[0]) not in remembered.suspects


def test_an_outage_splits_a_chunk_once_and_then_neither_halves_nor_drops() -> None:
    remembered = RowMemory()
    policy = at.RetryPolicy(poison_after=1)
    stored = rows(1, 2, 3, 4, 9)
    for _ in range(40):
        chunks = remembered.chunks(stored, 40_000)
        result = settle([Outcome(chunk, 500) for chunk in chunks], policy, remembered)
        assert result.delete == []
    assert [len(c) for c in remembered.chunks(stored, 40_000)] == [3, 2]


def test_random_failures_at_any_rate_never_make_poison() -> None:
    """A balancer failing requests at random: isolation sends events alone, but no
    event is dropped, at 50%, 70% or 90% failures (the old rule dropped 27 of 10,000
    at 70%)."""
    generator = random.Random(19)
    policy = at.RetryPolicy()
    for rate in (0.5, 0.7, 0.9):
        remembered = RowMemory()
        stored = rows(*range(1, 2001))
        dropped = 0
        while stored:
            chunks = remembered.chunks(stored[:500], 4_000)
            outcomes = [Outcome(c, 500 if generator.random() < rate else 200) for c in chunks]
            result = settle(outcomes, policy, remembered)
            dropped += sum(count for count, _ in result.drops)
            gone = set(result.delete)
            stored = [row for row in stored if row.id not in gone]
        assert dropped == 0, rate


def test_a_lone_failing_chunk_is_split_so_a_poison_event_can_be_found() -> None:
    remembered = RowMemory()
    policy = at.RetryPolicy(poison_after=2)
    stored = rows(1, 2, 3, 4, 5, 6, 7, 8)
    poison = 6
    dropped = []
    for n in range(60):
        chunks = remembered.chunks(stored, 40_000)
        outcomes = [Outcome(c, 500 if any(r.id == poison for r in c) else 200) for c in chunks]
        result = settle(outcomes, policy, remembered)
        dropped += [f.reason for f in result.failures if f.dropped]
        stored = [row for row in stored if row.id not in result.delete] + rows(100 + n)
        if dropped:
            break
    assert dropped == ["poison"]
    assert poison not in {row.id for row in stored}
    assert remembered.records == {}  # forgotten once dropped


@pytest.mark.parametrize("status", [429, 503], ids=str)
def test_load_shedding_makes_no_suspects(status: int) -> None:
    remembered = RowMemory()
    settle([Outcome(rows(1, 2), status), Outcome(rows(3), 200)], at.RetryPolicy(), remembered)
    assert remembered.suspects == set()
