"""Every event type asynctracker sends validates against the official Iglu Central schemas.

The schemas are not part of the repository (see ``tests/iglu.py``): this module runs where
a copy is found and is skipped, with the reason, elsewhere. The project's own protocol
checks run in every other test regardless.
"""

from __future__ import annotations

import pytest
from iglu import IGLU_FOUND, IGLU_MISSING_REASON, check_event, validator
from test_snapshots import EVENTS, stored_payloads

pytestmark = pytest.mark.skipif(not IGLU_FOUND, reason=IGLU_MISSING_REASON)

SNOWPLOW_SCHEMAS = [
    "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4",
    "iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-1",
    "iglu:com.snowplowanalytics.snowplow/unstruct_event/jsonschema/1-0-0",
    "iglu:com.snowplowanalytics.snowplow/screen_view/jsonschema/1-0-0",
    "iglu:com.snowplowanalytics.snowplow/timing/jsonschema/1-0-0",
]


@pytest.mark.parametrize("uri", SNOWPLOW_SCHEMAS)
def test_the_schemas_we_emit_are_in_the_copy(uri: str) -> None:
    assert validator(uri) is not None


@pytest.mark.parametrize("base64_encode", [True, False], ids=["base64", "raw"])
@pytest.mark.parametrize("kind", list(EVENTS))
async def test_every_event_type_validates_against_iglu_central(
    kind: str, base64_encode: bool
) -> None:
    events = await stored_payloads(EVENTS[kind], base64_encode=base64_encode)
    assert events
    for event in events:
        check_event(event)


def test_a_payload_breaking_payload_data_is_rejected() -> None:
    """The Iglu layer is live: an event Iglu Central forbids fails the check."""
    found = validator("iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4")
    assert found is not None
    assert list(found.iter_errors([{"e": "pv", "p": "srv", "tv": "x", "eid": "x", "vid": 1}]))
