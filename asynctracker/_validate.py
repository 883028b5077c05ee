"""Check events against the Snowplow tracker protocol, without touching the disk or network.

The local collector runs every event it receives through :func:`validate_event` so that a
test (or a person watching ``asynctracker collector``) learns *which* field of *which*
event is wrong, rather than that "some event failed a JSON schema". The checks mirror the
Iglu schemas in ``iglu/com.snowplowanalytics.snowplow`` (payload_data 1-0-4, unstruct_event
1-0-0, contexts 1-0-0/1-0-1) plus the rules from SPEC section 2 that the schemas cannot
express (event types, timestamps, per-type required keys). The schema key set is copied
here rather than read at run time so that the package never depends on that folder.

Everything is pure and cheap enough to run on the collector's request path
(``benchmarks/collector.py`` measures it).
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import re
from collections.abc import Mapping
from typing import cast

from .payload import MAX_JSON_DEPTH, nesting_exceeds

__all__ = ["decode_event", "validate_event", "validate_post_body"]

#: Property names of ``payload_data/jsonschema/1-0-4``. Anything else is a tracker bug:
#: the real pipeline would silently drop it.
KNOWN_KEYS: frozenset[str] = frozenset(
    {
        "ad_ad", "ad_ba", "ad_ca", "ad_uid", "aid", "cd", "co", "cookie", "cs", "ctype",
        "cx", "ds", "dtm", "duid", "e", "eid", "f_ag", "f_dir", "f_fla", "f_gears",
        "f_java", "f_pdf", "f_qt", "f_realp", "f_wma", "fp", "ip", "lang", "mac", "nuid",
        "p", "page", "pp_max", "pp_may", "pp_mix", "pp_miy", "refr", "res", "sa", "se_ac",
        "se_ca", "se_la", "se_pr", "se_va", "sid", "sn", "sp", "st", "stm", "ti_ca",
        "ti_cu", "ti_id", "ti_na", "ti_nm", "ti_pr", "ti_qu", "ti_sk", "tid", "tna",
        "tnuid", "tr_af", "tr_ci", "tr_co", "tr_cu", "tr_id", "tr_sh", "tr_st", "tr_tt",
        "tr_tx", "ttm", "tv", "tz", "ua", "ue_na", "ue_pr", "ue_px", "uid", "url", "vid",
        "vp",
    }
)  # fmt: skip

REQUIRED_KEYS: tuple[str, ...] = ("e", "p", "tv", "eid", "dtm")
#: Human names of the protocol's event types (``e``), for the page and the CLI.
EVENT_NAMES: dict[str, str] = {
    "pv": "page view",
    "pp": "page ping",
    "se": "structured",
    "ue": "self-describing",
    "tr": "transaction",
    "ti": "transaction item",
}
EVENT_TYPES: frozenset[str] = frozenset(EVENT_NAMES)
PLATFORMS: frozenset[str] = frozenset({"web", "mob", "pc", "srv", "app", "tv", "cnsl", "iot"})

#: Keys each event type cannot do without; ``ue`` is special-cased (either of two keys).
_TYPE_REQUIRED: dict[str, tuple[str, ...]] = {
    "pv": ("url",),
    "se": ("se_ca", "se_ac"),
    "tr": ("tr_id", "tr_tt"),
    "ti": ("ti_id", "ti_sk", "ti_pr", "ti_qu"),
}
_TIMESTAMP_KEYS = ("dtm", "stm", "ttm")

PAYLOAD_DATA_PREFIX = "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/"
PAYLOAD_DATA_SCHEMAS: frozenset[str] = frozenset(
    f"{PAYLOAD_DATA_PREFIX}1-0-{minor}" for minor in range(5)
)
UNSTRUCT_EVENT_SCHEMA = "iglu:com.snowplowanalytics.snowplow/unstruct_event/jsonschema/1-0-0"
CONTEXTS_SCHEMA_1_0_0 = "iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-0"
CONTEXTS_SCHEMA_1_0_1 = "iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-1"

# fullmatch() is used with these: "$" alone would also accept a trailing newline.
IGLU_URI = re.compile(r"^iglu:[a-zA-Z0-9._-]+/[a-zA-Z0-9_-]+/[a-zA-Z0-9_-]+/[0-9]+-[0-9]+-[0-9]+$")
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
# Trackers disagree on the base64 alphabet and on padding; accept both alphabets by mapping
# the URL-safe characters onto the standard ones before a strict decode. (bytes.translate:
# str.translate with a dict is much slower, and this runs for every event.)
_URLSAFE_TO_STD = bytes.maketrans(b"-_", b"+/")
_SELF_DESCRIBING_KEYS = ("ue_px", "ue_pr", "cx", "co")
#: Values longer than this are not cached, to bound the cache's memory.
_CACHEABLE_LENGTH = 4096


class _DecodeError(ValueError):
    """A ``ue_px``/``cx``/``ue_pr``/``co`` value that is not the JSON it should carry."""


def _b64_json(value: str) -> object:
    """Decode base64 (either alphabet, padding optional) holding UTF-8 JSON."""
    try:
        text = value.encode("ascii").translate(_URLSAFE_TO_STD)
    except UnicodeEncodeError:
        raise _DecodeError("is not valid base64 (non-ASCII characters)") from None
    text += b"=" * (-len(text) % 4)
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise _DecodeError(f"is not valid base64 ({exc})") from None
    try:
        decoded = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise _DecodeError("does not decode to UTF-8 text") from None
    return _json(decoded)


#: JSON nested deeper than this is refused: walking a 1,000-deep value (to show, store
#: or validate it) would hit Python's recursion limit. It is the library's own limit on
#: self-describing data plus the envelopes around it ({"schema", "data": [{"schema",
#: "data": ...}]} for contexts), so every event the library sends passes.
MAX_DEPTH = MAX_JSON_DEPTH + 3


def _json(value: str) -> object:
    try:
        loaded = json.loads(value)
    except (ValueError, RecursionError) as exc:  # includes JSONDecodeError
        raise _DecodeError(f"is not valid JSON ({exc})") from None
    if nesting_exceeds(loaded, MAX_DEPTH):
        raise _DecodeError(f"nests deeper than {MAX_DEPTH} levels")
    return loaded


def _load(key: str, value: str) -> object:
    """Decode the JSON carried by a self-describing key, whichever encoding the key implies."""
    return _b64_json(value) if key in ("ue_px", "cx") else _json(value)


def _self_describing_problems(where: str, obj: object) -> list[str]:
    """Problems with one ``{"schema": <iglu uri>, "data": ...}`` object."""
    if not isinstance(obj, dict):
        return [f"{where} must be an object with 'schema' and 'data'"]
    problems = []
    schema = obj.get("schema")
    if not isinstance(schema, str) or not IGLU_URI.fullmatch(schema):
        problems.append(f"{where}.schema is not an Iglu URI: {schema!r}")
    if "data" not in obj:
        problems.append(f"{where} has no 'data'")
    extra = sorted(set(obj) - {"schema", "data"})
    if extra:
        problems.append(f"{where} has unexpected keys {extra}")
    return problems


def _unstruct_problems(key: str, obj: object) -> list[str]:
    if not isinstance(obj, dict) or obj.get("schema") != UNSTRUCT_EVENT_SCHEMA:
        return [f"{key!r} must be wrapped in {UNSTRUCT_EVENT_SCHEMA}"]
    problems = _self_describing_problems(key, obj)
    if "data" in obj:
        problems += _self_describing_problems(f"{key}.data", obj["data"])
    return problems


def _contexts_problems(key: str, obj: object) -> list[str]:
    if not isinstance(obj, dict) or obj.get("schema") not in (
        CONTEXTS_SCHEMA_1_0_0,
        CONTEXTS_SCHEMA_1_0_1,
    ):
        return [f"{key!r} must be wrapped in {CONTEXTS_SCHEMA_1_0_1} (or 1-0-0)"]
    problems = _self_describing_problems(key, obj)
    entities = obj.get("data")
    if not isinstance(entities, list):
        return [*problems, f"{key}.data must be an array of self-describing objects"]
    if not entities and obj["schema"] == CONTEXTS_SCHEMA_1_0_0:
        problems.append(f"{key}.data must not be empty under contexts 1-0-0")
    for index, entity in enumerate(entities):
        problems += _self_describing_problems(f"{key}.data[{index}]", entity)
    return problems


def _encoded_problems(key: str, value: str) -> tuple[str, ...]:
    """Problems with the self-describing JSON in ``ue_px``/``ue_pr``/``cx``/``co``."""
    try:
        obj = _load(key, value)
    except _DecodeError as exc:
        return (f"{key!r} {exc}",)
    if key.startswith("ue"):
        return tuple(_unstruct_problems(key, obj))
    return tuple(_contexts_problems(key, obj))


# A tracker usually attaches the same contexts to every event, so decoding them once per
# distinct value instead of once per event saves most of the validator's cost.
_cached_encoded_problems = functools.lru_cache(maxsize=1024)(_encoded_problems)


def validate_event(event: Mapping[str, object]) -> list[str]:
    """Return human-readable problems with one tracker-protocol event; empty means valid.

    Every problem is reported (not just the first) so that one look at the collector
    page shows everything a tracker change broke.
    """
    problems = [f"missing required key {key!r}" for key in REQUIRED_KEYS if key not in event]
    if not KNOWN_KEYS.issuperset(event):
        problems += [f"unknown key {key!r}" for key in sorted(event.keys() - KNOWN_KEYS)]
    strings: Mapping[str, object] = event
    for value in event.values():
        if value.__class__ is not str or not value:  # the fast path: str, non-empty
            # Slow path: report, then go on checking only the usable string values.
            strings = {k: v for k, v in event.items() if isinstance(v, str) and v}
            for k, v in event.items():
                if not isinstance(v, str):
                    problems.append(f"{k!r} must be a string, got {type(v).__name__}")
                elif not v:
                    problems.append(f"{k!r} is empty (empty values must be left out)")
            break
    problems += _value_problems(cast("Mapping[str, str]", strings))
    return problems


def _value_problems(strings: Mapping[str, str]) -> list[str]:
    """Per-value and per-event-type checks on an event whose values are all strings."""
    problems: list[str] = []

    e = strings.get("e")
    if e is not None and e not in EVENT_TYPES:
        problems.append(f"'e' is not a known event type: {e!r}")
    p = strings.get("p")
    if p is not None and p not in PLATFORMS:
        problems.append(f"'p' is not a known platform: {p!r}")
    eid = strings.get("eid")
    if eid is not None and not _UUID.fullmatch(eid):
        problems.append(f"'eid' is not a UUID: {eid!r}")
    for key in _TIMESTAMP_KEYS:
        stamp = strings.get(key)
        if stamp is not None and not (len(stamp) == 13 and stamp.isascii() and stamp.isdigit()):
            problems.append(f"{key!r} is not a 13-digit epoch-milliseconds string: {stamp!r}")

    for key in _SELF_DESCRIBING_KEYS:
        raw = strings.get(key)
        if raw is not None:
            if len(raw) <= _CACHEABLE_LENGTH:
                problems += _cached_encoded_problems(key, raw)
            else:
                problems += _encoded_problems(key, raw)

    if e == "ue":
        if "ue_px" not in strings and "ue_pr" not in strings:
            problems.append("self-describing event ('ue') needs 'ue_px' or 'ue_pr'")
    elif e is not None:
        problems += [
            f"event type {e!r} needs {key!r}"
            for key in _TYPE_REQUIRED.get(e, ())
            if key not in strings
        ]
    return problems


def decode_event(event: Mapping[str, str]) -> dict[str, object]:
    """Return a copy of ``event`` with its self-describing JSON decoded, for people to read.

    ``ue_px``/``ue_pr`` become ``unstruct_event`` (the inner ``{"schema", "data"}``) and
    ``cx``/``co`` become ``contexts`` (the list of entities). A value that cannot be decoded
    is left as it was, so a broken event still shows what arrived.
    """
    decoded: dict[str, object] = dict(event)
    for keys, name, kind in (
        (("ue_px", "ue_pr"), "unstruct_event", dict),
        (("cx", "co"), "contexts", list),
    ):
        for key in keys:
            raw = event.get(key)
            if not isinstance(raw, str):
                continue
            try:
                obj = _load(key, raw)
            except _DecodeError:
                continue
            if isinstance(obj, dict) and isinstance(obj.get("data"), kind):
                del decoded[key]
                decoded[name] = obj["data"]
                break
    return decoded


def validate_post_body(body: bytes) -> tuple[list[dict[str, str]], list[str]]:
    """Parse a tp2 POST body into its events and the problems with the body itself.

    The returned events list is empty whenever the body is structurally unusable (not JSON,
    not an object, ``data`` not an array of objects): the collector answers those with 400
    and records nothing. A wrong or missing ``schema`` still returns the events, because
    showing them (as bad) is more useful than hiding them. Events are returned as they
    arrived; values are only *meant* to be strings, and :func:`validate_event` says which
    are not.
    """
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError) as exc:  # includes UnicodeDecodeError
        return [], [f"body is not valid JSON ({exc})"]
    if nesting_exceeds(doc, MAX_DEPTH):
        return [], [f"body nests deeper than {MAX_DEPTH} levels"]
    if not isinstance(doc, dict):
        return [], ["body must be a JSON object with 'schema' and 'data'"]
    data = doc.get("data")
    if not isinstance(data, list):
        return [], ["body 'data' must be an array of events"]
    not_objects = [index for index, item in enumerate(data) if not isinstance(item, dict)]
    if not_objects:
        return [], [f"body 'data' items {not_objects[:10]} are not objects"]
    problems = []
    schema = doc.get("schema")
    if schema not in PAYLOAD_DATA_SCHEMAS:
        problems.append(f"body schema must be {PAYLOAD_DATA_PREFIX}1-0-0 .. 1-0-4, got {schema!r}")
    extra = sorted(set(doc) - {"schema", "data"})
    if extra:
        problems.append(f"body has unexpected keys {extra}")
    return data, problems
