"""``before_track`` hooks: see, change or drop each event before it is stored.

A hook is a plain function taking a :class:`TrackedEvent`: the event's flat protocol
fields, its self-describing data and its contexts, decoded. It changes them in place
(redacting personal data, say) or calls ``drop()``, and returns None. Hooks run in the
order given, after the payload is built and before any emitter stores it, so every
emitter stores the same, changed event.

Without hooks nothing here runs: the tracker stores the payload text it wrote. With
hooks, each event is decoded once, handed to every hook, and written again with the
tracker's encoding (base64 or not, its ``json_encoder``). A hook that raises, returns
something, or leaves the event unsendable makes the ``track*`` call raise
BeforeTrackError naming it; nothing is stored.
"""

from __future__ import annotations

import base64
import inspect
import json
import typing
from collections.abc import Sequence
from typing import TypeAlias

from ._checks import text
from ._encoded import EncodedPayload, quote
from .exceptions import BeforeTrackError, ConfigurationError, InvalidEventError
from .payload import (
    MAX_JSON_DEPTH,
    UNSTRUCT_EVENT_SCHEMA,
    JsonEncoder,
    SelfDescribingJson,
    check_contexts,
    contexts_json,
    entity_json,
    json_field,
    json_text_field,
)

__all__ = ["BeforeTrack", "TrackedEvent", "checked_hooks", "run_hooks"]

#: Keys a hook reaches through ``self_describing`` and ``contexts``, never ``fields``.
_JSON_KEYS = frozenset({"ue_px", "ue_pr", "cx", "co"})


class TrackedEvent:
    """One event on its way to storage, for a ``before_track`` hook to change or drop.

    Attributes:
        fields: the flat protocol fields, str to str: ``e``, ``eid``, ``dtm``, ``p``,
            ``tv``, ``tna``, ``aid``, the subject's (``uid``, ``ip``, ``ua``, ...) and the
            event's own (``url``, ``se_ca``, ...). Set a key to change it; delete it (or
            set it to ``""``) to leave it out. ``e`` and ``eid`` cannot change: the
            call returns the id, and every emitter stores the event under it.
        self_describing: a self-describing event's schema and data (``e == "ue"``),
            decoded from ``ue_px``/``ue_pr``; None for other events. Change its data in
            place or assign another SelfDescribingJson.
        contexts: the event's entities, decoded from ``cx``/``co``, in the order they
            are sent; remove, replace or add SelfDescribingJson.
    """

    __slots__ = ("_dropped", "contexts", "fields", "self_describing")

    def __init__(
        self,
        fields: dict[str, str],
        self_describing: SelfDescribingJson | None = None,
        contexts: list[SelfDescribingJson] | None = None,
    ) -> None:
        self.fields = fields
        self.self_describing = self_describing
        self.contexts = [] if contexts is None else contexts
        self._dropped = False

    @property
    def event_type(self) -> str:
        """The protocol's event type: ``pv``, ``pp``, ``se``, ``ue``, ``tr`` or ``ti``."""
        return self.fields["e"]

    @property
    def event_id(self) -> str:
        """The event id (``eid``) the ``track*`` call returns."""
        return self.fields["eid"]

    @property
    def dropped(self) -> bool:
        """True once :meth:`drop` was called."""
        return self._dropped

    def drop(self) -> None:
        """Store nothing for this event (the call still returns its id); hooks after
        this one do not see it."""
        self._dropped = True

    def __repr__(self) -> str:
        dropped = " dropped" if self._dropped else ""
        return (
            f"<TrackedEvent{dropped} fields={self.fields!r} "
            f"self_describing={self.self_describing!r} contexts={self.contexts!r}>"
        )


#: A ``before_track`` hook: a plain (not async) function changing the event in place.
#: (``typing.Callable``: see ``_contexts.ContextProvider``.)
BeforeTrack: TypeAlias = typing.Callable[[TrackedEvent], None]


def checked_hooks(given: Sequence[BeforeTrack] | None) -> tuple[BeforeTrack, ...]:
    """The tracker's ``before_track=`` option, checked: a list of callables."""
    if given is None:
        return ()
    if callable(given) or isinstance(given, (str, bytes)) or not isinstance(given, Sequence):
        raise ConfigurationError("before_track must be a list of callables")
    for index, hook in enumerate(given):
        if not callable(hook):
            raise ConfigurationError(
                f"before_track[{index}] must be callable, got {type(hook).__name__}"
            )
        if inspect.iscoroutinefunction(hook):
            raise ConfigurationError(
                f"before_track[{index}] ({_name(hook)}) is async; hooks must be plain functions"
            )
    return tuple(given)


def _name(hook: object) -> str:
    return getattr(hook, "__qualname__", None) or repr(hook)


def _decode(key: str, raw: str) -> dict[str, typing.Any]:
    if key in ("ue_px", "cx"):
        raw = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode("utf-8")
    decoded: dict[str, typing.Any] = json.loads(raw)
    return decoded


def decode(payload: EncodedPayload) -> TrackedEvent:
    """The event a payload the tracker wrote carries, its JSON decoded."""
    fields: dict[str, str] = json.loads(payload.raw)
    event = TrackedEvent(fields)
    for key in ("ue_px", "ue_pr"):
        raw = fields.pop(key, None)
        if raw is not None:
            inner = _decode(key, raw)["data"]
            event.self_describing = SelfDescribingJson(inner["schema"], inner["data"])
    for key in ("cx", "co"):
        raw = fields.pop(key, None)
        if raw is not None:
            event.contexts = [
                SelfDescribingJson(entity["schema"], entity["data"])
                for entity in _decode(key, raw)["data"]
            ]
    return event


def _check(event: TrackedEvent, hook: BeforeTrack, eid: str, kind: str) -> None:
    """What a hook left must still be an event: BeforeTrackError naming it if not."""
    fields = event.fields
    if not isinstance(fields, dict):
        raise BeforeTrackError(f"before_track hook {_name(hook)} replaced fields with a non-dict")
    try:
        for key, value in list(fields.items()):
            if not isinstance(key, str) or key in _JSON_KEYS:
                raise InvalidEventError(
                    f"field {key!r} cannot be set: change self_describing or contexts instead"
                )
            if text(f"field {key!r}", value) is None:
                del fields[key]
        if fields.get("eid") != eid or fields.get("e") != kind:
            raise InvalidEventError("the event's type (e) and id (eid) cannot change")
        if event.self_describing is not None and not isinstance(
            event.self_describing, SelfDescribingJson
        ):
            raise InvalidEventError("self_describing must be a SelfDescribingJson or None")
        check_contexts(event.contexts)
    except InvalidEventError as exc:
        raise BeforeTrackError(f"before_track hook {_name(hook)} left a bad event: {exc}") from exc


def encode(event: TrackedEvent, *, base64_encode: bool, json_encoder: JsonEncoder | None) -> str:
    """The payload text of an event a hook may have changed (InvalidEventError if its
    data cannot be written)."""
    members = [f"{quote(key)}:{quote(value)}" for key, value in event.fields.items()]
    if event.self_describing is not None:
        key, value = json_field(
            {"schema": UNSTRUCT_EVENT_SCHEMA, "data": event.self_describing.to_dict()},
            base64_encode=base64_encode,
            encoded_key="ue_px",
            raw_key="ue_pr",
            name="the event's data",
            max_depth=MAX_JSON_DEPTH + 2,
            default=json_encoder,
        )
        members.append(f"{quote(key)}:{quote(value)}")
    if event.contexts:
        texts = [
            entity_json(entity, name=f"contexts[{index}]", default=json_encoder)
            for index, entity in enumerate(event.contexts)
        ]
        key, value = json_text_field(
            contexts_json(texts), base64_encode=base64_encode, encoded_key="cx", raw_key="co"
        )
        members.append(f"{quote(key)}:{quote(value)}")
    return "{" + ",".join(members) + "}"


def run_hooks(
    payload: EncodedPayload,
    hooks: tuple[BeforeTrack, ...],
    *,
    base64_encode: bool,
    json_encoder: JsonEncoder | None,
) -> EncodedPayload | None:
    """The payload after every hook, or None when one dropped it."""
    event = decode(payload)
    kind = event.fields["e"]
    for hook in hooks:
        try:
            result: object = hook(event)
        except Exception as exc:
            raise BeforeTrackError(
                f"before_track hook {_name(hook)} raised {type(exc).__name__}: {exc}"
            ) from exc
        if result is not None:
            if inspect.iscoroutine(result):
                result.close()
            raise BeforeTrackError(
                f"before_track hook {_name(hook)} returned {type(result).__name__}: a hook "
                "changes the event in place and returns None (event.drop() drops it)"
            )
        if event.dropped:
            return None
        _check(event, hook, payload.eid, kind)
    try:
        raw = encode(event, base64_encode=base64_encode, json_encoder=json_encoder)
    except InvalidEventError as exc:
        names = ", ".join(_name(hook) for hook in hooks)
        raise BeforeTrackError(f"after the before_track hooks ({names}): {exc}") from exc
    return EncodedPayload(raw, payload.eid)
