"""Which Subject an event gets: ``event_subject`` merges (snowplow-tracker 1.x), the
``subject=`` of ``track_*`` and ``bind_subject`` replace; and a Subject's platform."""

from __future__ import annotations

from typing import Any

import pytest
from event_support import kept_tracker, rows

import asynctracker as at

SUBJECT_KEYS = {"uid", "lang", "ip", "ua", "tz", "res", "vp", "cd", "duid", "sid", "vid", "tnuid"}


def subject_fields(event: dict[str, str]) -> dict[str, str]:
    return {key: value for key, value in event.items() if key in SUBJECT_KEYS}


def tracker_subject() -> at.Subject:
    return at.Subject().set_user_id("tracker-user").set_lang("en").set_ip_address("10.0.0.1")


async def stored_subject(event: at.Event, **options: Any) -> tuple[dict[str, str], str]:
    async with kept_tracker(**options) as (tracker, [storage]):
        await tracker.track(event)
        [stored] = await rows(storage)
        return subject_fields(stored), stored["p"]


async def test_event_subject_merges_over_the_trackers_its_fields_winning() -> None:
    event_subject = at.Subject().set_user_id("event-user").set_timezone("Europe/Paris")
    fields, _ = await stored_subject(
        at.PageView("https://a/", event_subject=event_subject), subject=tracker_subject()
    )
    assert fields == {"uid": "event-user", "lang": "en", "ip": "10.0.0.1", "tz": "Europe/Paris"}


async def test_event_subject_alone_when_the_tracker_has_none() -> None:
    fields, _ = await stored_subject(
        at.PageView("https://a/", event_subject=at.Subject().set_user_id("u"))
    )
    assert fields == {"uid": "u"}


async def test_merging_changes_neither_subject() -> None:
    mine, theirs = at.Subject().set_user_id("e"), tracker_subject()
    before = (mine.fields, theirs.fields)
    await stored_subject(at.PageView("https://a/", event_subject=mine), subject=theirs)
    assert (mine.fields, theirs.fields) == before


async def test_event_subject_merges_over_the_bound_subject_which_replaces_the_trackers() -> None:
    bound = at.Subject().set_user_id("request-user").set_useragent("Browser/1")
    async with kept_tracker(subject=tracker_subject()) as (tracker, [storage]):
        with at.bind_subject(bound):
            await tracker.track(at.PageView("https://a/"))
            await tracker.track(
                at.PageView("https://a/", event_subject=at.Subject().set_lang("fr"))
            )
        plain, merged = [subject_fields(event) for event in await rows(storage)]
    assert plain == {"uid": "request-user", "ua": "Browser/1"}
    assert merged == {"uid": "request-user", "ua": "Browser/1", "lang": "fr"}


async def test_track_calls_subject_still_replaces_everything() -> None:
    async with kept_tracker(subject=tracker_subject()) as (tracker, [storage]):
        with at.bind_subject(at.Subject().set_useragent("Browser/1")):
            await tracker.track_page_view("https://a/", subject=at.Subject().set_user_id("own"))
        [stored] = await rows(storage)
    assert subject_fields(stored) == {"uid": "own"}


async def test_a_subjects_platform_wins_over_the_trackers() -> None:
    _, platform = await stored_subject(
        at.PageView("https://a/"), subject=at.Subject().set_platform("web"), platform="srv"
    )
    assert platform == "web"


async def test_an_event_subjects_platform_wins_over_the_tracker_subjects() -> None:
    _, platform = await stored_subject(
        at.PageView("https://a/", event_subject=at.Subject().set_platform("mob")),
        subject=at.Subject().set_platform("web"),
    )
    assert platform == "mob"


async def test_an_event_subject_without_platform_keeps_the_trackers() -> None:
    """Unlike snowplow-tracker, whose every Subject carries p=pc (docs/migrating.md)."""
    _, platform = await stored_subject(
        at.PageView("https://a/", event_subject=at.Subject().set_user_id("u")),
        subject=at.Subject().set_platform("web"),
    )
    assert platform == "web"


def test_set_lang_is_set_language_and_set_platform_checks_its_value() -> None:
    assert at.Subject().set_lang("fr").fields == at.Subject(language="fr").fields == {"lang": "fr"}
    assert at.Subject(platform="tv").fields == {"p": "tv"}
    with pytest.raises(at.ConfigurationError, match="platform must be one of"):
        at.Subject().set_platform("desktop")


# -- the Tracker's constructor, as snowplow-tracker's is called ---------------------------


async def test_snowplow_trackers_keyword_names_build_the_same_tracker() -> None:
    storage = at.MemoryStorage()
    async with kept_tracker(storage, encode_base64=False, subject=at.Subject()) as (tracker, _):
        assert tracker.base64_encode is False
        await tracker.track(at.SelfDescribing(at.SelfDescribingJson(CTX_SCHEMA, {"a": 1})))
        [stored] = await rows(storage)
    assert "ue_pr" in stored


def test_a_namespace_given_first_as_snowplow_tracker_takes_it_is_explained() -> None:
    with pytest.raises(at.ConfigurationError, match="namespace= by keyword"):
        at.Tracker("my-namespace")  # type: ignore[arg-type]


CTX_SCHEMA = "iglu:com.acme/thing/jsonschema/1-0-0"
