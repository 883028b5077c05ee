"""Building blocks of the Snowplow tracker protocol: self-describing JSON and encoding.

Everything here is pure (no I/O) so that it can run on the event loop in the hot path of
every ``track_*`` call. A payload is a flat ``dict[str, str]``: the protocol sends every
value as a string and never sends empty values.
"""

from __future__ import annotations

import base64
import json
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

from . import _process
from ._checks import finite_number, utf8_problem
from .exceptions import InvalidEventError

__all__ = [
    "CONTEXTS_SCHEMA",
    "PAYLOAD_DATA_SCHEMA",
    "SCREEN_VIEW_SCHEMA",
    "TIMING_SCHEMA",
    "UNSTRUCT_EVENT_SCHEMA",
    "MAX_JSON_DEPTH",
    "JSONValue",
    "JsonEncoder",
    "SelfDescribingJson",
    "encode_json",
]

PAYLOAD_DATA_SCHEMA = "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4"
CONTEXTS_SCHEMA = "iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-1"
UNSTRUCT_EVENT_SCHEMA = "iglu:com.snowplowanalytics.snowplow/unstruct_event/jsonschema/1-0-0"
SCREEN_VIEW_SCHEMA = "iglu:com.snowplowanalytics.snowplow/screen_view/jsonschema/1-0-0"
TIMING_SCHEMA = "iglu:com.snowplowanalytics.snowplow/timing/jsonschema/1-0-0"

JSONValue: TypeAlias = (
    "bool | int | float | str | Sequence[JSONValue] | Mapping[str, JSONValue] | None"
)

#: A tracker's ``json_encoder``: like ``json.dumps``' ``default=``, it is called with each
#: value JSON cannot encode (a datetime, a Decimal, a UUID) and returns one it can, or
#: raises TypeError.
JsonEncoder: TypeAlias = Callable[[Any], object]

_IGLU_URI = re.compile(r"iglu:[a-zA-Z0-9._-]+/[a-zA-Z0-9_-]+/[a-zA-Z0-9_-]+/[0-9]+-[0-9]+-[0-9]+")


#: How deep the data of a SelfDescribingJson may nest (``{"a": [1]}`` is 2 deep).
#: Collectors parse JSON recursively and fail near 1,000 levels, dropping the whole
#: request with every other event in it; no real schema comes near 100.
MAX_JSON_DEPTH = 100


def encode_json(
    value: object,
    *,
    name: str = "data",
    max_depth: int = MAX_JSON_DEPTH,
    default: JsonEncoder | None = None,
) -> str:
    """Compact, key-sorted JSON: the form the protocol sends inside ``ue_px``/``cx``.

    ``default`` is a tracker's ``json_encoder``, called for values JSON cannot encode
    (None: the C encoder alone, as fast as without one). Raises InvalidEventError,
    naming ``name``, for values the pipeline cannot take: objects neither JSON nor the
    encoder can encode (and any error the encoder raises), NaN and infinities, integers
    of more than 4,300 digits, nesting deeper than ``max_depth``, and text that is not
    valid UTF-8 (lone surrogates, in keys or values). The checks cost almost nothing for
    ordinary data: the depth is only measured when the text is long and holds more than
    ``max_depth`` brackets, and ASCII text is never re-encoded.
    """
    try:
        text = json.dumps(
            value,
            separators=(",", ":"),
            sort_keys=True,
            ensure_ascii=False,
            allow_nan=False,
            default=default,
        )
    except RecursionError:
        raise InvalidEventError(f"{name} is nested deeper than {max_depth} levels") from None
    except (TypeError, ValueError) as exc:
        raise InvalidEventError(f"{name} is not JSON-serialisable: {exc}") from exc
    except Exception as exc:  # only a json_encoder raises anything else
        raise InvalidEventError(
            f"{name}: the json_encoder raised {type(exc).__name__}: {exc}"
        ) from exc
    # Each level of nesting takes two brackets, so short text is shallow enough; and
    # each level opens one, so few brackets means shallow data too (brackets inside
    # strings only make the count larger). Only then is the depth measured.
    if (
        len(text) > 2 * max_depth
        and text.count("{") + text.count("[") > max_depth
        and nesting_exceeds(value, max_depth)
    ):
        raise InvalidEventError(f"{name} is nested deeper than {max_depth} levels")
    if not text.isascii():
        problem = utf8_problem(text)
        if problem is not None:
            raise InvalidEventError(f"{name} (as JSON) {problem}")
    return text


def nesting_exceeds(value: object, limit: int) -> bool:
    """Whether ``value`` nests dicts/lists deeper than ``limit`` containers (walked
    without recursion, so any depth is safe to ask about; it stops at the limit)."""
    stack: list[tuple[object, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Iterable[object] = item.values()
        elif isinstance(item, (list, tuple)):
            children = item
        else:
            continue
        if depth >= limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


class _EventIds:
    """UUID v4 strings, made 256 at a time from one ``os.urandom`` call.

    ``str(uuid.uuid4())`` costs a system call and a UUID object per event; this is the
    same randomness source and format (version 4, RFC 4122 variant) at a fraction of the
    cost, on the hot path of every ``track_*`` call. No Python code runs per id:
    each of the five groups of all 256 ids is hex-encoded and split in one C call
    each, the version and variant bits are set by ``translate`` on a whole column, and
    ``"-".join`` over ``zip`` assembles the ids.
    """

    __slots__ = ("_ready",)

    def __init__(self) -> None:
        self._ready: list[str] = []
        # A forked child must not reuse the parent's unused ids.
        _process.at_fork(after_in_child=self._ready.clear)

    def __call__(self) -> str:
        # pop() and extend() are each atomic: threads (the sync API) may race for the
        # last id of a batch, and the loser makes the next batch.
        ready = self._ready
        while True:
            try:
                return ready.pop()
            except IndexError:
                ready.extend(_uuid4_batch())


_BATCH = 256
# The first byte of the third group holds the version (4) in its high nibble, the
# first byte of the fourth the variant (binary 10) in its two high bits.
_SET_VERSION = bytes((byte & 0x0F) | 0x40 for byte in range(256))
_SET_VARIANT = bytes((byte & 0x3F) | 0x80 for byte in range(256))
# A UUID's five groups (8-4-4-4-12 hex digits) as bytes, and the table that fixes the
# first byte of each, if any. A batch's random bytes are cut into one column per group.
_GROUPS = ((4, None), (2, None), (2, _SET_VERSION), (2, _SET_VARIANT), (6, None))


def _uuid4_batch() -> Iterator[str]:
    random = os.urandom(16 * _BATCH)
    columns: list[list[str]] = []
    offset = 0
    for size, fix_first_byte in _GROUPS:
        column = bytearray(random[offset : offset + size * _BATCH])
        offset += size * _BATCH
        if fix_first_byte is not None:
            column[::size] = column[::size].translate(fix_first_byte)
        # hex(sep, n): a "-" after every n bytes, so split() gives one group per id.
        columns.append(column.hex("-", size).split("-"))
    return map("-".join, zip(*columns, strict=True))


#: A new random (version 4) UUID string.
new_event_id = _EventIds()


def base64url(text: str) -> str:
    """URL-safe base64 of the UTF-8 text (padding kept, as the Python tracker sends it)."""
    return base64.urlsafe_b64encode(text.encode("utf-8")).decode("ascii")


@dataclass(frozen=True, slots=True)
class SelfDescribingJson:
    """A JSON value paired with the Iglu schema that describes it.

    Used for self-describing events and for contexts (entities). The schema must be an
    ``iglu:vendor/name/format/M-R-A`` URI: checked here, when the value is made, so the
    mistake surfaces at the line that wrote it. The data is checked when it is tracked
    (see :func:`encode_json`: JSON, or values the tracker's ``json_encoder`` turns into
    JSON; no NaN or infinity; valid UTF-8; at most ``MAX_JSON_DEPTH`` levels deep): the
    ``track`` call raises InvalidEventError and stores nothing. So the data may hold a
    datetime, a Decimal or a UUID for a tracker whose ``json_encoder`` encodes them.
    """

    schema: str
    data: JSONValue

    def __post_init__(self) -> None:
        if not isinstance(self.schema, str) or not _IGLU_URI.fullmatch(self.schema):
            raise InvalidEventError(
                f"schema must be an Iglu URI like 'iglu:com.acme/event/jsonschema/1-0-0', "
                f"got {self.schema!r}"
            )

    def to_dict(self) -> dict[str, JSONValue]:
        """The ``{"schema": ..., "data": ...}`` form sent on the wire."""
        return {"schema": self.schema, "data": self.data}

    def to_json(self, json_encoder: JsonEncoder | None = None) -> str:
        """Compact, key-sorted JSON of :meth:`to_dict`; InvalidEventError when the data
        is not JSON (``json_encoder``: as a tracker's, for values JSON cannot encode)."""
        return entity_json(
            self, name=f"SelfDescribingJson data ({self.schema})", default=json_encoder
        )


#: The text that closes a contexts array: its members are written as text (see below).
_CONTEXTS_END = f'],"schema":"{CONTEXTS_SCHEMA}"}}'


def entity_json(
    entity: SelfDescribingJson, *, name: str, default: JsonEncoder | None = None
) -> str:
    """One entity's ``{"data":...,"schema":...}`` text, its data checked as it is written
    (``default``: the tracker's ``json_encoder``)."""
    return encode_json(entity.to_dict(), name=name, max_depth=MAX_JSON_DEPTH + 1, default=default)


def contexts_json(entities: Sequence[str]) -> str:
    """The contexts wrapper around entities already written as text.

    The same text ``encode_json`` would make of the whole (keys sorted: ``data`` before
    ``schema``), so that entities written once, like a tracker's static contexts, are
    not encoded again for every event.
    """
    return '{"data":[' + ",".join(entities) + _CONTEXTS_END


def check_contexts(
    contexts: Sequence[SelfDescribingJson] | None, *, name: str = "contexts"
) -> None:
    """Reject anything but a sequence of SelfDescribingJson, naming the bad position."""
    if contexts is None:
        return
    if isinstance(contexts, (str, bytes, Mapping)) or not isinstance(contexts, Sequence):
        raise InvalidEventError(f"{name} must be a list of SelfDescribingJson")
    for index, context in enumerate(contexts):
        if not isinstance(context, SelfDescribingJson):
            raise InvalidEventError(
                f"{name}[{index}] must be a SelfDescribingJson, got {type(context).__name__}"
            )


def json_text_field(
    text: str, *, base64_encode: bool, encoded_key: str, raw_key: str
) -> tuple[str, str]:
    """JSON text as a payload field: ``(encoded_key, base64url)`` or ``(raw_key, text)``."""
    if base64_encode:
        return encoded_key, base64url(text)
    return raw_key, text


def json_field(
    value: object,
    *,
    base64_encode: bool,
    encoded_key: str,
    raw_key: str,
    name: str,
    max_depth: int,
    default: JsonEncoder | None = None,
) -> tuple[str, str]:
    """A JSON value as a payload field: ``(encoded_key, base64url)`` or ``(raw_key, json)``."""
    return json_text_field(
        encode_json(value, name=name, max_depth=max_depth, default=default),
        base64_encode=base64_encode,
        encoded_key=encoded_key,
        raw_key=raw_key,
    )


def format_number(value: float, *, name: str) -> str:
    """A number the pipeline can hold as a double, as the protocol's string.

    Bools, NaN, infinities and integers beyond the float range are refused.
    """
    finite_number(name, value)
    return str(value)


def format_money(value: float, *, name: str) -> str:
    """A money amount with two decimals, as every Snowplow tracker formats it."""
    return f"{finite_number(name, value):.2f}"
