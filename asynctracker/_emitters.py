"""A tracker's emitters: one or several, each storing and sending every event.

snowplow-tracker's Tracker takes a list of emitters; so does this one. Every event goes
to each emitter under the same event id. An emitter that fails (its storage raising,
the emitter closed) never keeps the others from getting the event: all are tried, the
first error is raised afterwards and the others are logged. Opening, flushing and
closing reach every emitter; flushing and closing run at the same time, so one slow
collector does not hold back the others' deadlines.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Mapping, Sequence
from typing import TypeVar

from .emitter import Emitter
from .exceptions import ConfigurationError

__all__ = ["EmitterGroup", "each"]

logger = logging.getLogger("asynctracker")

_T = TypeVar("_T")


def _checked(given: object) -> tuple[Emitter, ...]:
    """The ``emitters`` argument: one Emitter or a non-empty list of distinct ones."""
    if isinstance(given, Emitter):
        return (given,)
    if isinstance(given, str):
        raise ConfigurationError(
            "the Tracker's first argument is its emitter(s); pass namespace= by keyword "
            "(snowplow-tracker's Tracker(namespace, emitters) order does not apply)"
        )
    if not isinstance(given, Sequence) or not given:
        raise ConfigurationError("emitters must be an asynctracker.Emitter or a list of them")
    for index, emitter in enumerate(given):
        if not isinstance(emitter, Emitter):
            raise ConfigurationError(
                f"emitters[{index}] must be an asynctracker.Emitter, got {type(emitter).__name__}"
            )
    if len({id(emitter) for emitter in given}) != len(given):
        raise ConfigurationError("emitters holds the same Emitter twice")
    return tuple(given)


async def each(calls: list[Awaitable[_T]]) -> list[_T]:
    """Await every call at the same time; then raise the first error, if any."""
    results = await asyncio.gather(*calls, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results  # type: ignore[return-value]  # no exception among them


class EmitterGroup:
    """The emitters of one tracker, in the order given."""

    __slots__ = ("members",)

    def __init__(self, given: object) -> None:
        self.members = _checked(given)

    def added(self, emitter: object) -> EmitterGroup:
        """This group and ``emitter`` (ConfigurationError if it is not new)."""
        return EmitterGroup([*self.members, emitter])

    @property
    def closed(self) -> bool:
        """True when every emitter was closed: nothing could store an event."""
        return all(emitter.closed for emitter in self.members)

    async def open(self) -> None:
        """Open every emitter; when one fails, close those opened and raise."""
        opened: list[Emitter] = []
        try:
            for emitter in self.members:
                await emitter.open()
                opened.append(emitter)
        except BaseException:
            await asyncio.gather(*(emitter.aclose() for emitter in opened), return_exceptions=True)
            raise

    async def exit(self, *exc_info: object) -> None:
        """Leave ``async with`` for every emitter: flush (each within its
        ``close_timeout``) and close."""
        await each([emitter.__aexit__(*exc_info) for emitter in self.members])

    async def flush(self, timeout: float | None) -> int:
        """Flush every emitter; the events still stored, in all."""
        return sum(await each([emitter.flush(timeout) for emitter in self.members]))

    async def aclose(self) -> None:
        """Close every emitter."""
        await each([emitter.aclose() for emitter in self.members])

    async def add(self, payloads: Sequence[Mapping[str, str]], *, together: bool) -> None:
        """Store the events in each emitter in turn (``together``: with ``add_many``,
        all or none); the first error is raised once all were tried.

        With several emitters on a running loop, a cancellation never stops the storing
        half-way (the emitter it struck may or may not have stored the events): every
        emitter finishes, then the cancellation goes on, so the emitters agree.
        """
        if len(self.members) == 1 or not _loop_running():
            await self._add_each(payloads, together)
            return
        storing = asyncio.ensure_future(self._add_each(payloads, together))
        try:
            await asyncio.shield(storing)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):  # the cancellation is what the caller gets
                await asyncio.shield(storing)
            raise

    async def _add_each(self, payloads: Sequence[Mapping[str, str]], together: bool) -> None:
        first: Exception | None = None
        for emitter in self.members:
            try:
                if together:
                    await emitter.add_many(payloads)
                else:
                    await emitter.add(payloads[0])
            except Exception as exc:
                if first is None:
                    first = exc
                else:
                    logger.warning("%r also failed to store events: %s", emitter, exc)
        if first is not None:
            raise first


def _loop_running() -> bool:
    """False in asynctracker.sync's calling threads, which drive a track call without
    a loop (their emitters' inserts never suspend, so nothing can cancel them)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True
