"""What a fault-injection ``responder`` sees of a tracker request, and what it returns."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

__all__ = ["ReceivedRequest", "Reply", "Responder"]


@dataclass(frozen=True, slots=True)
class ReceivedRequest:
    """One request to a tracker route (or an unknown path), as the collector saw it.

    ``status`` is what the collector answered; the copy handed to a responder has
    ``status=0`` because the answer is not decided yet.
    """

    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes
    status: int


@dataclass(frozen=True, slots=True)
class Reply:
    """A response a responder wants sent instead of the default handling.

    ``headers`` can carry anything (``Retry-After``, ``Connection: close``); framing
    headers (``Content-Length``) are always computed by the collector.
    """

    status: int = 200
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""


#: Called before default handling of each tracker request. Return a :class:`Reply` to
#: answer with it (no events are recorded), or ``None`` to handle normally. May be async,
#: and may sleep (to simulate a slow collector) or never return (a hung one).
Responder = Callable[[ReceivedRequest], "Reply | Awaitable[Reply | None] | None"]
