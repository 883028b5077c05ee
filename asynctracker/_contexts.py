"""Tracker-wide contexts: static entities and providers added to every event.

A tracker may carry entities that belong on every event (service name, deployment) and
*context providers*: callables, sync or async, asked once per ``track_*`` call for the
entities of the moment (a request id from a context variable, a feature flag). Both
are added after the call's own contexts, static ones first, then each provider's in
the order given. Static entities are encoded once, when the tracker is made; a
provider's, each time it gives them.

A provider runs on the event loop inside the ``track_*`` call, so it must be quick (a
context variable lookup, not a network call). One that raises, or returns anything but
a SelfDescribingJson, a sequence of them or None, makes the call raise
ContextProviderError naming it; nothing is stored.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Awaitable, Iterable, Mapping, Sequence
from typing import TypeAlias

from .exceptions import ConfigurationError, ContextProviderError, InvalidEventError
from .payload import JsonEncoder, SelfDescribingJson, entity_json

__all__ = ["ContextProvider", "ProvidedContexts", "provide", "providers", "static_json"]

#: What a context provider returns: one entity, several, or None for none this time.
ProvidedContexts: TypeAlias = SelfDescribingJson | Sequence[SelfDescribingJson] | None
#: A callable taking no arguments, sync or async, returning ProvidedContexts.
#: (``typing.Callable``: on Python 3.10 a ``collections.abc.Callable[...]`` alias passes
#: ``inspect.isclass``, so it would look like a class of another module.)
ContextProvider: TypeAlias = typing.Callable[[], ProvidedContexts | Awaitable[ProvidedContexts]]


def static_json(
    contexts: Iterable[SelfDescribingJson] | None, default: JsonEncoder | None = None
) -> tuple[str, ...]:
    """The tracker's ``contexts=`` option as JSON text, written once for every event
    (``default``: the tracker's ``json_encoder``).

    ConfigurationError names a bad entry. Being written here, a static entity's data
    is what it was when the tracker was made; entities that change belong in a provider.
    """
    if contexts is None:
        return ()
    if isinstance(contexts, (str, bytes, Mapping, SelfDescribingJson)) or not isinstance(
        contexts, Iterable
    ):
        raise ConfigurationError("contexts must be a list of SelfDescribingJson")
    texts = []
    for index, context in enumerate(contexts):
        if not isinstance(context, SelfDescribingJson):
            raise ConfigurationError(
                f"contexts[{index}] must be a SelfDescribingJson, got {type(context).__name__}"
            )
        try:
            texts.append(entity_json(context, name=f"contexts[{index}]", default=default))
        except InvalidEventError as exc:
            raise ConfigurationError(str(exc)) from exc
    return tuple(texts)


def providers(given: Iterable[ContextProvider] | None) -> tuple[ContextProvider, ...]:
    """The tracker's ``context_providers=`` option, checked: each must be callable."""
    if given is None:
        return ()
    if isinstance(given, (str, bytes, Mapping)) or not isinstance(given, Iterable):
        raise ConfigurationError("context_providers must be a list of callables")
    checked = tuple(given)
    for index, provider in enumerate(checked):
        if not callable(provider):
            raise ConfigurationError(
                f"context_providers[{index}] must be callable, got {type(provider).__name__}"
            )
    return checked


def _name(provider: ContextProvider) -> str:
    return getattr(provider, "__qualname__", None) or repr(provider)


async def provide(
    given: tuple[ContextProvider, ...], default: JsonEncoder | None = None
) -> list[str]:
    """Ask every provider for its entities now; their JSON text, in order (``default``:
    the tracker's ``json_encoder``)."""
    found: list[str] = []
    for provider in given:
        try:
            result = provider()
            if inspect.isawaitable(result):
                result = await result
        except Exception as exc:
            raise ContextProviderError(
                f"context provider {_name(provider)} raised {type(exc).__name__}: {exc}"
            ) from exc
        if result is None:
            continue
        if isinstance(result, SelfDescribingJson):
            found.append(
                entity_json(
                    result, name=f"the entity of provider {_name(provider)}", default=default
                )
            )
            continue
        if isinstance(result, Sequence) and not isinstance(result, (str, bytes)):
            for entity in result:
                if not isinstance(entity, SelfDescribingJson):
                    break
                found.append(
                    entity_json(
                        entity, name=f"an entity of provider {_name(provider)}", default=default
                    )
                )
            else:
                continue
        raise ContextProviderError(
            f"context provider {_name(provider)} must return a SelfDescribingJson, a list "
            f"of them or None, got {_describe(result)}"
        )
    return found


def _describe(result: object) -> str:
    if isinstance(result, Sequence) and not isinstance(result, (str, bytes)):
        kinds = sorted({type(item).__name__ for item in result})
        return f"a {type(result).__name__} holding {', '.join(kinds)}"
    return type(result).__name__
