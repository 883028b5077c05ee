"""SelfDescribingJson, JSON/base64 encoding and Subject: the pure building blocks."""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

import asynctracker as at
from asynctracker._encoded import encode_event
from asynctracker.payload import base64url, encode_json

GOOD_SCHEMA = "iglu:com.acme/click/jsonschema/1-0-0"
DUID = "d1f3c4e2-8a4b-4c5d-9e6f-0a1b2c3d4e5f"
SID = "5a6b7c8d-1e2f-4a3b-8c4d-5e6f7a8b9c0d"


# -- SelfDescribingJson -------------------------------------------------------------------


@pytest.mark.parametrize(
    "schema",
    [
        pytest.param("iglu:com.acme/click/jsonschema/1-0-0", id="plain"),
        pytest.param("iglu:com.acme-inc.web/click_2/jsonschema/12-3-45", id="dots-dashes"),
    ],
)
def test_self_describing_json_accepts_iglu_uris(schema: str) -> None:
    sdj = at.SelfDescribingJson(schema, {"x": 1})
    assert sdj.to_dict() == {"schema": schema, "data": {"x": 1}}


@pytest.mark.parametrize(
    "schema",
    [
        pytest.param("", id="empty"),
        pytest.param("com.acme/click/jsonschema/1-0-0", id="no-iglu-prefix"),
        pytest.param("iglu:com.acme/click/jsonschema/1-0", id="two-part-version"),
        pytest.param("iglu:com.acme/click/jsonschema", id="no-version"),
        pytest.param("iglu:com.acme/click/1-0-0", id="no-format"),
        pytest.param("iglu:com.acme/click/jsonschema/1-0-x", id="letter-in-version"),
        pytest.param("iglu:com acme/click/jsonschema/1-0-0", id="space"),
        pytest.param(" iglu:com.acme/click/jsonschema/1-0-0", id="leading-space"),
        pytest.param("iglu:com.acme/click/jsonschema/1-0-0\n", id="trailing-newline"),
        pytest.param("http://iglucentral.com/schemas/x/1-0-0", id="http-url"),
        pytest.param(None, id="none"),
        pytest.param(42, id="int"),
    ],
)
def test_self_describing_json_rejects_bad_schema(schema: Any) -> None:
    with pytest.raises(at.InvalidEventError, match="Iglu URI") as info:
        at.SelfDescribingJson(schema, {"x": 1})
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(object(), id="object"),
        pytest.param({"when": Decimal("1.5")}, id="decimal"),
        pytest.param({"ids": {1, 2}}, id="set"),
        pytest.param({"raw": b"bytes"}, id="bytes"),
        pytest.param({(1, 2): "tuple-key"}, id="tuple-key"),
        pytest.param({"x": math.nan}, id="nan"),
        pytest.param({"x": math.inf}, id="inf"),
        pytest.param({"x": [-math.inf]}, id="minus-inf-in-list"),
        pytest.param(math.nan, id="bare-nan"),
    ],
)
def test_self_describing_json_data_json_cannot_carry_is_refused_when_written(data: Any) -> None:
    """The data is checked when it is written (tracked, or to_json), not when the value is
    made: a tracker's json_encoder may make it JSON (tests/test_json_encoder.py)."""
    sdj = at.SelfDescribingJson(GOOD_SCHEMA, data)
    with pytest.raises(at.InvalidEventError) as info:
        sdj.to_json()
    assert isinstance(info.value, ValueError)


def test_self_describing_json_is_frozen() -> None:
    sdj = at.SelfDescribingJson(GOOD_SCHEMA, {"x": 1})
    with pytest.raises(AttributeError):
        sdj.schema = "iglu:com.acme/other/jsonschema/1-0-0"  # type: ignore[misc]


def test_self_describing_json_to_json_is_compact_and_sorted() -> None:
    sdj = at.SelfDescribingJson(GOOD_SCHEMA, {"b": 1, "a": {"d": [1, 2], "c": "é"}})
    assert sdj.to_json() == (
        '{"data":{"a":{"c":"é","d":[1,2]},"b":1},"schema":"' + GOOD_SCHEMA + '"}'
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param({"b": 2, "a": 1}, '{"a":1,"b":2}', id="sorted-keys"),
        pytest.param({"a": [1, {"z": 0, "y": None}]}, '{"a":[1,{"y":null,"z":0}]}', id="nested"),
        pytest.param({"t": "ünï €"}, '{"t":"ünï €"}', id="utf8-not-escaped"),
        pytest.param([True, False, 1.5], "[true,false,1.5]", id="list"),
    ],
)
def test_encode_json_is_compact_sorted_utf8(value: object, expected: str) -> None:
    assert encode_json(value) == expected


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("", id="empty"),
        pytest.param('{"a":1}', id="json"),
        pytest.param("???>>>~~~", id="chars-that-need-url-safe-alphabet"),
        pytest.param("ünïcødé ✓", id="unicode"),
    ],
)
def test_base64url_is_url_safe_and_round_trips(text: str) -> None:
    encoded = base64url(text)
    assert "+" not in encoded
    assert "/" not in encoded
    assert base64.urlsafe_b64decode(encoded).decode("utf-8") == text


def test_base64url_uses_the_url_safe_alphabet_not_the_standard_one() -> None:
    assert base64url("???>>>") == base64.urlsafe_b64encode(b"???>>>").decode()
    assert base64url("???>>>") != base64.b64encode(b"???>>>").decode()


def test_encoded_self_describing_json_round_trips() -> None:
    sdj = at.SelfDescribingJson(GOOD_SCHEMA, {"x": 1, "s": "ok"})
    assert json.loads(base64.urlsafe_b64decode(base64url(sdj.to_json()))) == sdj.to_dict()


# -- Subject ------------------------------------------------------------------------------

SETTERS = [
    pytest.param("set_user_id", ("u-1",), {"uid": "u-1"}, id="user_id"),
    pytest.param("set_screen_resolution", (1920, 1080), {"res": "1920x1080"}, id="resolution"),
    pytest.param("set_viewport", (800, 600), {"vp": "800x600"}, id="viewport"),
    pytest.param("set_color_depth", (24,), {"cd": "24"}, id="color_depth"),
    pytest.param("set_timezone", ("Europe/London",), {"tz": "Europe/London"}, id="timezone"),
    pytest.param("set_language", ("en-GB",), {"lang": "en-GB"}, id="language"),
    pytest.param("set_ip_address", ("10.0.0.1",), {"ip": "10.0.0.1"}, id="ip_address"),
    pytest.param("set_useragent", ("Mozilla/5.0",), {"ua": "Mozilla/5.0"}, id="useragent"),
    pytest.param("set_domain_user_id", (DUID,), {"duid": DUID}, id="domain_user_id"),
    pytest.param("set_domain_session_id", (SID,), {"sid": SID}, id="domain_session_id"),
    pytest.param("set_domain_session_index", (3,), {"vid": "3"}, id="domain_session_index"),
    pytest.param("set_network_user_id", ("n-1",), {"tnuid": "n-1"}, id="network_user_id"),
]


@pytest.mark.parametrize(("setter", "args", "fields"), SETTERS)
def test_subject_setter_sets_its_protocol_field(
    setter: str, args: tuple[Any, ...], fields: dict[str, str]
) -> None:
    subject = at.Subject()
    assert getattr(subject, setter)(*args) is subject
    assert subject.fields == fields


@pytest.mark.parametrize(("setter", "args", "fields"), SETTERS)
def test_subject_keyword_does_what_its_setter_does(
    setter: str, args: tuple[Any, ...], fields: dict[str, str]
) -> None:
    keyword = setter.removeprefix("set_")
    value = args if len(args) == 2 else args[0]
    assert at.Subject(**{keyword: value}).fields == fields


def test_subject_setters_chain() -> None:
    subject = (
        at.Subject()
        .set_user_id("u-1")
        .set_language("en")
        .set_screen_resolution(10, 20)
        .set_domain_session_index(2)
    )
    assert subject.fields == {"uid": "u-1", "lang": "en", "res": "10x20", "vid": "2"}
    same = at.Subject(user_id="u-1", language="en", screen_resolution=(10, 20))
    assert subject == same.set_domain_session_index(2)


def test_subject_empty_value_removes_the_field() -> None:
    subject = at.Subject(user_id="u-1").set_user_id("")
    assert subject.fields == {}


def test_subject_fields_is_a_copy() -> None:
    subject = at.Subject(user_id="u-1")
    subject.fields["uid"] = "changed"
    assert subject.fields == {"uid": "u-1"}


@pytest.mark.parametrize(
    ("setter", "args"),
    [
        pytest.param("set_screen_resolution", (0, 10), id="zero-width"),
        pytest.param("set_viewport", (10, -1), id="negative-height"),
        pytest.param("set_color_depth", (True,), id="bool-depth"),
        pytest.param("set_domain_session_index", ("3",), id="str-index"),
        pytest.param("set_user_id", (12,), id="int-user-id"),
        pytest.param("set_timezone", (None,), id="none-timezone"),
    ],
)
def test_subject_rejects_bad_values_with_configuration_error(
    setter: str, args: tuple[Any, ...]
) -> None:
    with pytest.raises(at.ConfigurationError) as info:
        getattr(at.Subject(), setter)(*args)
    assert isinstance(info.value, ValueError)


def test_from_id_cookie_reads_duid_vid_and_sid() -> None:
    cookie = f"{DUID}.1700000000.7.1700000500.1699990000.{SID}"
    subject = at.Subject().from_id_cookie(cookie)
    assert subject.fields == {"duid": DUID, "vid": "7", "sid": SID}


def test_from_id_cookie_chains() -> None:
    subject = at.Subject(user_id="u").from_id_cookie(DUID).set_language("en")
    assert subject.fields == {"uid": "u", "duid": DUID, "lang": "en"}


@pytest.mark.parametrize(
    ("cookie", "fields"),
    [
        pytest.param("", {}, id="empty"),
        pytest.param("short", {}, id="one-short-part"),
        pytest.param(DUID, {"duid": DUID}, id="only-duid"),
        pytest.param(f"{DUID}.1", {"duid": DUID}, id="two-parts"),
        pytest.param(f"{DUID}.1.4", {"duid": DUID, "vid": "4"}, id="three-parts"),
        pytest.param(f"abc.1.4.x.y.{SID}", {"vid": "4", "sid": SID}, id="short-duid-skipped"),
        pytest.param(f"{DUID}.1.x.3.4.{SID}", {"duid": DUID, "sid": SID}, id="vid-not-int"),
        pytest.param(f"{DUID}.1.-2.3.4.{SID}", {"duid": DUID, "sid": SID}, id="vid-negative"),
        pytest.param(f"{DUID}.1.².3.4.{SID}", {"duid": DUID, "sid": SID}, id="vid-superscript"),
        pytest.param(f"{DUID}.1.٣.3.4.{SID}", {"duid": DUID, "sid": SID}, id="vid-arabic-digit"),
        pytest.param(f"{DUID}.1.5.3.4.short", {"duid": DUID, "vid": "5"}, id="sid-short"),
        pytest.param(f"{DUID}x.1.5", {"vid": "5"}, id="duid-37-chars"),
        pytest.param("......", {}, id="only-dots"),
    ],
)
def test_from_id_cookie_skips_short_or_garbled_parts(cookie: str, fields: dict[str, str]) -> None:
    assert at.Subject().from_id_cookie(cookie).fields == fields


def test_from_id_cookie_keeps_fields_it_cannot_read() -> None:
    subject = at.Subject(domain_user_id="kept").from_id_cookie("garbled")
    assert subject.fields == {"duid": "kept"}


class _JsonLinesStorage:
    """A user-written storage that serialises payloads the obvious way."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    async def add_event_row(self, payload: Mapping[str, str]) -> bool:
        self.lines.append(json.dumps(payload))
        return True

    async def delete_all_event_rows(self) -> int:
        return 0

    async def delete_event_rows(self, ids: Sequence[int]) -> int:
        return 0

    async def get_all_event_rows(self) -> list[at.EventRow]:
        return []

    async def get_event_rows_within_range(self, event_range: int) -> list[at.EventRow]:
        return []


AWKWARD = 'quote " back\\slash \n\t\x00\x1e é ☃ 𝄞 \u2028 end'


@pytest.mark.parametrize("base64_encode", [True, False])
async def test_tracker_payload_text_is_exactly_what_encoding_its_fields_gives(
    base64_encode: bool,
) -> None:
    """The tracker writes payloads as JSON text directly (no dict): that text must be
    byte for byte what encode_event makes of the same fields, in the same order."""
    storage = at.MemoryStorage()  # stores the text it is given, as it is
    emitter = at.Emitter("http://127.0.0.1:9", storage=storage)
    subject = at.Subject(user_id=AWKWARD, ip_address="10.0.0.1", screen_resolution=(1, 2))
    tracker = at.Tracker(
        emitter, namespace=AWKWARD, app_id="app", base64_encode=base64_encode, subject=subject
    )
    context = at.SelfDescribingJson("iglu:com.acme/ctx/jsonschema/1-0-0", {"note": AWKWARD})
    common: dict[str, Any] = {"contexts": [context], "true_timestamp": 1_700_000_000_123}
    await tracker.track_page_view(AWKWARD, AWKWARD, **common)
    await tracker.track_struct_event(AWKWARD, "act", AWKWARD, AWKWARD, 1.5, **common)
    await tracker.track_self_describing_event(
        at.SelfDescribingJson("iglu:com.acme/ev/jsonschema/1-0-0", {"x": AWKWARD}), **common
    )
    await tracker.track_screen_view(AWKWARD, **common)
    await tracker.track_timing("c", "v", 12, AWKWARD, **common)
    await tracker.track_ecommerce_transaction(
        "o-1", 10, city=AWKWARD, items=[at.EcommerceItem("sku", 1.0, name=AWKWARD)], **common
    )
    rows = await storage.get_all_event_rows()
    await emitter.aclose()

    assert len(rows) == 7
    for row in rows:
        fields = row.event
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in fields.items())
        assert row.raw == encode_event(fields)
        assert fields["uid"] == AWKWARD
        assert fields["tna"] == AWKWARD
        assert fields["ttm"] == "1700000000123"
        assert ("cx" in fields) is base64_encode
        assert ("co" in fields) is not base64_encode
    assert [row.event["e"] for row in rows] == ["pv", "se", "ue", "ue", "ue", "tr", "ti"]


async def test_a_user_written_storage_gets_plain_dicts_it_can_serialise() -> None:
    storage = _JsonLinesStorage()
    emitter = at.Emitter("http://127.0.0.1:9", storage=storage)
    tracker = at.Tracker(emitter, app_id="app")
    eid = await tracker.track_struct_event("shop", "view", AWKWARD)
    await tracker.track_ecommerce_transaction("o-1", 10, items=[at.EcommerceItem("sku", 1.0)])
    await emitter.aclose()
    events = [json.loads(line) for line in storage.lines]
    assert [event["e"] for event in events] == ["se", "tr", "ti"]
    assert events[0]["eid"] == eid
    assert events[0]["se_la"] == AWKWARD


class _LoggingMemoryStorage(at.MemoryStorage):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    async def add_event_row(self, payload: Mapping[str, str]) -> bool:
        self.lines.append(json.dumps(payload))
        return await super().add_event_row(payload)


async def test_a_built_in_storage_subclass_that_overrides_inserts_gets_plain_dicts() -> None:
    storage = _LoggingMemoryStorage()
    emitter = at.Emitter("http://127.0.0.1:9", storage=storage)
    eid = await at.Tracker(emitter).track_struct_event("shop", "view")
    assert json.loads(storage.lines[0])["eid"] == eid
    assert len(await storage.get_all_event_rows()) == 1
    await emitter.aclose()


class _LoggingSQLiteStorage(at.SQLiteStorage):
    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.lines: list[str] = []

    async def add_event_row(self, payload: Mapping[str, str]) -> bool:
        self.lines.append(json.dumps(payload))
        return await super().add_event_row(payload)


async def test_an_overridden_sqlite_insert_is_called_for_every_event(tmp_path: Path) -> None:
    # The emitter skips SQLiteStorage.add_event_row's coroutine on its hot path; a
    # subclass that overrides it must still see every event, as a plain dict.
    storage = _LoggingSQLiteStorage(tmp_path / "events.db")
    emitter = at.Emitter("http://127.0.0.1:9", storage=storage, close_timeout=0)
    tracker = at.Tracker(emitter)
    try:
        eids = [await tracker.track_struct_event("shop", "view", f"item-{n}") for n in range(3)]
        assert [json.loads(line)["eid"] for line in storage.lines] == eids
        assert len(await storage.get_all_event_rows()) == 3
    finally:
        await emitter.aclose()  # stops the SQLite thread even when an assert failed
