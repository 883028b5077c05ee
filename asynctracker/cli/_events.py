"""The events the command line sends, from ``track``'s flags or a line of ``send``'s input.

Both go through :func:`parse_event`, so a line of a file and a ``track`` call accept the
same shapes and fail with the same messages (an ``InvalidEventError`` naming the key or
the flag). Text that cannot be encoded as UTF-8 (a lone surrogate, from a non-UTF-8
argument or a ``\\ud800`` escape) is refused here, before it reaches storage, because a
collector cannot decode an event that carries it.
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass

from .._checks import finite_number, text, utf8_problem
from ..exceptions import InvalidEventError
from ..payload import MAX_JSON_DEPTH, JSONValue, SelfDescribingJson
from ..tracker import Tracker

__all__ = [
    "MAX_DEPTH",
    "StructEvent",
    "UnstructEvent",
    "check_text_options",
    "event_from_args",
    "load_json",
    "parse_contexts",
    "parse_event",
]

_STRUCT_KEYS = frozenset({"category", "action", "label", "property", "value", "contexts"})
_UNSTRUCT_KEYS = frozenset({"schema", "data", "contexts"})
#: Deepest JSON nesting accepted in a line (objects and arrays, the outermost is level
#: 1): what track_* accepts in self-describing data (``MAX_JSON_DEPTH``) plus the line's
#: own envelope around a context's data ({"contexts": [{"data": ...}]}), so a line is
#: refused here exactly when the tracker would refuse it, with the line's number.
MAX_DEPTH = MAX_JSON_DEPTH + 3
#: Options of ``track`` and ``send`` whose text ends up in an event.
_TEXT_OPTIONS = ("collector", "app_id", "namespace", "schema", "json", "contexts", "category",
                 "action", "label", "property")  # fmt: skip


def check_text_options(args: argparse.Namespace) -> None:
    """InvalidEventError naming the first option whose text is not valid UTF-8.

    The shell hands over bytes; Python keeps the ones that are not UTF-8 as lone
    surrogates, which would be stored, sent, and break whatever decodes the event.
    """
    for name in _TEXT_OPTIONS:
        value = getattr(args, name, None)
        if isinstance(value, str) and utf8_problem(value) is not None:
            option = "--" + name.replace("_", "-")
            raise InvalidEventError(
                f"{option} is not valid UTF-8 text (check the terminal's encoding)"
            )


@dataclass(frozen=True, slots=True)
class StructEvent:
    """A structured event (``e=se``) parsed from flags or a line."""

    category: str
    action: str
    label: str | None = None
    property: str | None = None
    value: float | None = None
    contexts: tuple[SelfDescribingJson, ...] = ()

    async def track(self, tracker: Tracker) -> str:
        return await tracker.track_struct_event(
            self.category,
            self.action,
            self.label,
            self.property,
            self.value,
            contexts=list(self.contexts) or None,
        )


@dataclass(frozen=True, slots=True)
class UnstructEvent:
    """A self-describing event (``e=ue``) parsed from flags or a line."""

    event: SelfDescribingJson
    contexts: tuple[SelfDescribingJson, ...] = ()

    async def track(self, tracker: Tracker) -> str:
        return await tracker.track_self_describing_event(
            self.event, contexts=list(self.contexts) or None
        )


def _string(obj: dict[str, object], key: str, *, required: bool = False) -> str | None:
    return text(repr(key), obj.get(key), required=required)


def parse_contexts(value: object) -> tuple[SelfDescribingJson, ...]:
    """A JSON array of ``{"schema", "data"}`` objects as entities; errors name the index."""
    if value is None:
        return ()
    if not isinstance(value, list):
        raise InvalidEventError('contexts must be a JSON array of {"schema": ..., "data": ...}')
    contexts = []
    for index, item in enumerate(value):
        if not isinstance(item, dict) or set(item) != {"schema", "data"}:
            raise InvalidEventError(
                f'contexts[{index}] must be an object with exactly "schema" and "data"'
            )
        try:
            contexts.append(SelfDescribingJson(item["schema"], item["data"]))
        except InvalidEventError as exc:
            raise InvalidEventError(f"contexts[{index}]: {exc}") from exc
    return tuple(contexts)


def parse_event(obj: object) -> StructEvent | UnstructEvent:
    """Turn one JSON object into an event, or raise InvalidEventError saying what to fix.

    ``{"schema", "data", "contexts"?}`` is self-describing; ``{"category", "action",
    "label"?, "property"?, "value"?, "contexts"?}`` is structured. Unknown keys are refused
    rather than ignored, because a typo (``"lable"``) would otherwise lose data silently.
    """
    if not isinstance(obj, dict):
        raise InvalidEventError(f"an event must be a JSON object, got {type(obj).__name__}")
    if "schema" in obj:
        unknown = sorted(set(obj) - _UNSTRUCT_KEYS)
        if unknown:
            raise InvalidEventError(f"unknown keys {unknown} in a self-describing event")
        if "data" not in obj:
            raise InvalidEventError('a self-describing event needs "data"')
        data: JSONValue = obj["data"]
        return UnstructEvent(
            SelfDescribingJson(obj["schema"], data), parse_contexts(obj.get("contexts"))
        )
    if "category" in obj or "action" in obj:
        unknown = sorted(set(obj) - _STRUCT_KEYS)
        if unknown:
            raise InvalidEventError(f"unknown keys {unknown} in a structured event")
        value = _struct_value(obj.get("value"))
        return StructEvent(
            category=_string(obj, "category", required=True) or "",
            action=_string(obj, "action", required=True) or "",
            label=_string(obj, "label"),
            property=_string(obj, "property"),
            value=value,
            contexts=parse_contexts(obj.get("contexts")),
        )
    raise InvalidEventError(
        'expected {"schema": ..., "data": ...} (self-describing) or '
        '{"category": ..., "action": ...} (structured)'
    )


def _struct_value(value: object) -> float | None:
    """``"value"`` as a number a float can hold (a 400-digit integer cannot)."""
    if value is None:
        return None
    finite_number('"value"', value)
    assert isinstance(value, (int, float))  # finite_number refused anything else
    return value


def _refuse_constant(name: str) -> object:
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e400 parses as infinity
        raise ValueError(f"the number {text[:20]}{'...' if len(text) > 20 else ''} is "
                         "too large for a float")  # fmt: skip
    return value


def _check_tree(value: object) -> str | None:
    """What makes a parsed JSON value unsendable, or None: nesting deeper than
    MAX_DEPTH, or a lone surrogate in a string or key. Iterative, so no depth can
    exhaust the stack."""
    stack: list[tuple[object, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            if depth >= MAX_DEPTH:
                return f"nested more than {MAX_DEPTH} levels deep"
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
            if isinstance(item, dict) and any(utf8_problem(key) is not None for key in item):
                return "a key holds a lone surrogate (\\ud800-\\udfff), which is not text"
        elif isinstance(item, str) and utf8_problem(item) is not None:
            return "a string holds a lone surrogate (\\ud800-\\udfff), which is not text"
    return None


def load_json(text: str, what: str) -> object:
    """Parse ``text`` as JSON that can be sent; InvalidEventError naming ``what`` if not.

    Plain ``json.loads`` accepts NaN, numbers that overflow to infinity, lone
    surrogates and (until the stack runs out) any nesting; each of those would fail
    later, far from the input, or break the collector that decodes the event. The tree
    is only walked when the text could hold a problem: a ``\\u`` escape (text that
    decoded as UTF-8 has no surrogates otherwise) or more brackets than MAX_DEPTH.
    """
    try:
        value = json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
    except ValueError as exc:  # JSONDecodeError, NaN, 1e400, more digits than Python reads
        raise InvalidEventError(f"{what} is not valid JSON: {exc}") from None
    except RecursionError:
        raise InvalidEventError(f"{what}: nested more than {MAX_DEPTH} levels deep") from None
    if "\\u" in text or text.count("[") + text.count("{") > MAX_DEPTH:
        problem = _check_tree(value)
        if problem is not None:
            raise InvalidEventError(f"{what}: {problem}")
    return value


def event_from_args(args: argparse.Namespace) -> StructEvent | UnstructEvent:
    """The event described by ``track``'s flags; InvalidEventError for bad combinations."""
    contexts = load_json(args.contexts, "--contexts") if args.contexts is not None else None
    structured = args.category is not None or args.action is not None
    if args.schema is not None and structured:
        raise InvalidEventError("give either --schema/--json or --category/--action, not both")
    if args.schema is not None:
        data = load_json(args.json, "--json") if args.json is not None else {}
        return parse_event({"schema": args.schema, "data": data, "contexts": contexts})
    if args.json is not None:
        raise InvalidEventError("--json needs --schema (the Iglu URI that describes it)")
    if not structured:
        raise InvalidEventError(
            "say what to send: --schema URI --json DATA, or --category C --action A"
        )
    if args.category is None or args.action is None:
        raise InvalidEventError("a structured event needs both --category and --action")
    fields = {"category": args.category, "action": args.action, "label": args.label,
              "property": args.property, "value": args.value, "contexts": contexts}  # fmt: skip
    return parse_event(fields)
