"""The Subject of the request being handled, carried in a context variable.

Framework integrations bind each request's Subject here for the duration of the handler,
so a plain ``await tracker.track_*()`` inside it is attributed to that request's user
without passing ``subject=`` around. asyncio copies context variables into every task a
handler starts, so background tasks spawned by the handler keep the same Subject.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar

from .subject import Subject

__all__ = ["bind_subject", "bound_subject"]

_SUBJECT: ContextVar[Subject | None] = ContextVar("asynctracker_subject", default=None)


@contextlib.contextmanager
def bind_subject(subject: Subject | None) -> Iterator[None]:
    """Make ``subject`` the current request's Subject inside the ``with`` block.

    Blocks nest: leaving one restores the Subject that was bound before it.
    """
    if subject is not None and not isinstance(subject, Subject):
        raise TypeError(f"bind_subject takes a Subject or None, got {type(subject).__name__}")
    token = _SUBJECT.set(subject)
    try:
        yield
    finally:
        _SUBJECT.reset(token)


def bound_subject() -> Subject | None:
    """The Subject bound by the innermost :func:`bind_subject` of this context, or None."""
    return _SUBJECT.get()
