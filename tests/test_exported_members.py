"""The public surface: everything users need is importable from ``asynctracker``."""

from __future__ import annotations

import importlib
import inspect
import typing

import pytest

import asynctracker


def test_all_is_sorted() -> None:
    assert asynctracker.__all__ == sorted(asynctracker.__all__)


def test_all_has_no_duplicates() -> None:
    assert len(asynctracker.__all__) == len(set(asynctracker.__all__))


def test_all_lists_every_public_name_in_the_namespace() -> None:
    public = {
        name
        for name, value in vars(asynctracker).items()
        if not name.startswith("_") and not inspect.ismodule(value)
    }
    assert public <= set(asynctracker.__all__), public - set(asynctracker.__all__)


@pytest.mark.parametrize("name", asynctracker.__all__)
def test_every_listed_name_is_importable(name: str) -> None:
    module = importlib.import_module("asynctracker")
    assert getattr(module, name) is not None
    namespace: dict[str, object] = {}
    exec(f"from asynctracker import {name}", namespace)
    assert namespace[name] is getattr(asynctracker, name)


def _is_class(value: object) -> bool:
    """A class, not a type alias (``Callable[[Any], object]`` passes ``isclass`` on 3.10)."""
    return inspect.isclass(value) and typing.get_origin(value) is None


@pytest.mark.parametrize(
    "name", [n for n in asynctracker.__all__ if _is_class(getattr(asynctracker, n))]
)
def test_public_classes_say_they_belong_to_asynctracker(name: str) -> None:
    assert getattr(asynctracker, name).__module__.startswith("asynctracker")
