"""Validation of self-describing events and contexts against a local Iglu registry folder.

The folder has Iglu's static layout, ``vendor/name/jsonschema/version`` (Iglu Central's
copy, or a team's own schemas). As in Snowplow Micro, an event whose schema is not in the
registry is bad, with the reason; so is one whose data fails its schema. ``jsonschema`` is
an optional dependency (``pip install 'asynctracker[collector]'``): the tracker itself never
needs it, and without ``--iglu`` the collector checks the tracker protocol only.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._validate import IGLU_URI, decode_event

if TYPE_CHECKING:
    from jsonschema.protocols import Validator

__all__ = ["IgluRegistry", "MissingDependency", "validation_mode"]

_INSTALL = "pip install 'asynctracker[collector]'"


class MissingDependency(RuntimeError):
    """``--iglu`` was asked for but ``jsonschema`` is not installed."""


class IgluRegistry:
    """Schemas read (once each) from a folder in Iglu's static-registry layout.

    Raises :class:`MissingDependency` without ``jsonschema`` and ``NotADirectoryError``
    when ``root`` is not a folder.
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        try:
            import jsonschema
        except ImportError:
            raise MissingDependency(f"--iglu needs jsonschema: {_INSTALL}") from None
        self._jsonschema = jsonschema
        self.root = Path(root)
        if not self.root.is_dir():
            raise NotADirectoryError(f"Iglu registry folder {str(self.root)!r} does not exist")
        self._validator = lru_cache(maxsize=512)(self._load)

    def __repr__(self) -> str:
        return f"IgluRegistry({str(self.root)!r})"

    def schema(self, vendor: str, name: str, version: str) -> bytes | None:
        """The schema file's bytes, for ``/micro/iglu/...``; ``None`` when not there."""
        uri = f"iglu:{vendor}/{name}/jsonschema/{version}"
        if not IGLU_URI.fullmatch(uri):
            return None
        path = self.root / vendor / name / "jsonschema" / version
        return path.read_bytes() if path.is_file() else None

    def _load(self, uri: str) -> Validator | str:
        """A validator for ``uri``, or the reason there is none."""
        if not IGLU_URI.fullmatch(uri):
            return f"{uri!r} is not an Iglu URI"
        path = self.root / uri.removeprefix("iglu:")
        if not path.is_file():
            return f"schema {uri} not found in the Iglu registry at {self.root}"
        try:
            schema = json.loads(path.read_bytes())
            cls = self._jsonschema.validators.validator_for(
                schema, default=self._jsonschema.Draft4Validator
            )
            cls.check_schema(schema)
        except (ValueError, self._jsonschema.SchemaError) as exc:
            return f"schema {uri} in the Iglu registry is not a valid JSON schema ({exc})"
        validator: Validator = cls(schema)
        return validator

    def _check(self, where: str, entity: Mapping[str, Any]) -> list[str]:
        uri = entity.get("schema")
        if not isinstance(uri, str):
            return []  # the protocol checks already report a missing schema
        found = self._validator(uri)
        if isinstance(found, str):
            return [f"{where}: {found}"]
        return [
            f"{where} does not match {uri} at {error.json_path}: {error.message}"
            for error in sorted(found.iter_errors(entity.get("data")), key=str)[:10]
        ]

    def problems(self, payload: Mapping[str, str]) -> list[str]:
        """Why the event's self-describing data or contexts fail their schemas."""
        decoded = decode_event(payload)
        problems: list[str] = []
        unstruct = decoded.get("unstruct_event")
        if isinstance(unstruct, dict):
            problems += self._check("event", unstruct)
        contexts = decoded.get("contexts")
        if isinstance(contexts, list):
            for index, context in enumerate(contexts):
                if isinstance(context, dict):
                    problems += self._check(f"context {index}", context)
        return problems


def validation_mode(registry: IgluRegistry | None) -> str:
    """One line saying what events are checked against."""
    if registry is None:
        return (
            "Checking the tracker protocol only; self-describing data is not validated "
            "(start with --iglu DIR to validate it against an Iglu registry)."
        )
    return (
        "Validating self-describing events and contexts against the Iglu registry at "
        f"{registry.root}."
    )
