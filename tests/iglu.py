"""Validate what asynctracker sends: the project's protocol rules always, Iglu Central where found.

Two layers of checks:

* The project's own tracker-protocol rules (``asynctracker._validate``: payload_data keys,
  types, timestamps, self-describing envelopes). They ship with the package, so they run
  on every machine, a fresh clone included.
* The official Iglu Central JSON schemas (Draft 4). They are *not* part of the repository:
  they are looked up in ``$ASYNCTRACKER_IGLU_DIR`` or, as CI lays it out, in
  ``../shared/iglu`` beside the clone. Where no copy is found these checks are skipped,
  and pytest's header and ``tests/test_iglu_central.py`` say so with the reason. Set
  ``ASYNCTRACKER_REQUIRE_IGLU=1`` (``.ci/run`` does in CI) to turn a missing copy into an error.

Only tests read the schemas: the library never depends on that folder.
"""

from __future__ import annotations

import base64
import json
import os
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft4Validator

from asynctracker._validate import validate_event

_ENV = "ASYNCTRACKER_IGLU_DIR"
IGLU_DIR = Path(os.environ.get(_ENV) or Path(__file__).resolve().parents[2] / "shared" / "iglu")
IGLU_FOUND = (IGLU_DIR / "com.snowplowanalytics.snowplow").is_dir()
IGLU_MISSING_REASON = (
    f"Iglu Central schemas not found at {IGLU_DIR}: set {_ENV} to a copy of Iglu Central "
    "(the folder holding com.snowplowanalytics.snowplow/) to run these checks; "
    "the project's own protocol checks still run"
)
IGLU_REQUIRED = os.environ.get("ASYNCTRACKER_REQUIRE_IGLU", "") not in ("", "0")


@cache
def validator(uri: str) -> Draft4Validator | None:
    """The Draft 4 validator of an ``iglu:`` URI, or None when the schema is not vendored."""
    if not IGLU_FOUND:
        return None
    path = IGLU_DIR / uri.removeprefix("iglu:")
    if not path.is_file():
        if uri.startswith("iglu:com.snowplowanalytics."):
            raise AssertionError(f"Snowplow schema {uri} missing from {IGLU_DIR}")
        return None
    schema = json.loads(path.read_text())
    Draft4Validator.check_schema(schema)
    return Draft4Validator(schema)


def _check(uri: str, instance: Any) -> None:
    found = validator(uri)
    if found is not None:
        errors = sorted(found.iter_errors(instance), key=str)
        assert not errors, f"{uri}: {[e.message for e in errors]} in {instance!r}"


def _decode_b64(value: str) -> Any:
    return json.loads(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)))


def check_self_describing(instance: Any) -> None:
    """Validate a ``{"schema", "data"}`` envelope and, when known, its data."""
    assert isinstance(instance, dict), instance
    assert set(instance) == {"schema", "data"}, instance
    assert isinstance(instance["schema"], str), instance
    assert instance["schema"].startswith("iglu:"), instance
    _check(instance["schema"], instance["data"])


def check_event(event: dict[str, str]) -> None:
    """Validate one event: protocol rules, payload_data 1-0-4, its ue and contexts JSON."""
    problems = validate_event(event)
    assert not problems, f"{problems} in {event!r}"
    _check("iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4", [event])
    unstruct = _embedded(event, "ue_px", "ue_pr")
    if unstruct is not None:
        check_self_describing(unstruct)
        check_self_describing(unstruct["data"])
    contexts = _embedded(event, "cx", "co")
    if contexts is not None:
        check_self_describing(contexts)
        for context in contexts["data"]:
            check_self_describing(context)


def _embedded(event: dict[str, str], encoded_key: str, raw_key: str) -> Any:
    """The JSON an event carries base64url-encoded or raw, or None."""
    if encoded_key in event:
        return _decode_b64(event[encoded_key])
    if raw_key in event:
        return json.loads(event[raw_key])
    return None


def check_post_body(body: bytes | str) -> list[dict[str, str]]:
    """Validate a whole POST body and every event in it; return the events."""
    document = json.loads(body)
    check_self_describing(document)
    for event in document["data"]:
        check_event(event)
    events: list[dict[str, str]] = document["data"]
    return events


def check_received(received: list[Any]) -> None:
    """Every event a Collector accepted is protocol-valid (its checks) and Iglu-valid."""
    assert received, "the collector received nothing"
    for event in received:
        assert event.valid, event.errors
        check_event(event.payload)
