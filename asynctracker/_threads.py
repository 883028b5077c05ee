"""Handing a worker thread's outcome back to the event loop that waits for it.

The SQLite storage's thread, the dev collector's database thread and the CLI's reader
thread all run a function off the loop and settle an asyncio future with its result or
exception. Settled on the future's loop (futures are not thread-safe), only if nobody
settled it meanwhile (a cancelled waiter), and dropped if that loop has closed: nobody
waits for the reply any more, and the thread must not die of it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["run_and_reply"]

logger = logging.getLogger("asynctracker")

_T = TypeVar("_T")


def _set_result(future: asyncio.Future[Any], result: object) -> None:
    if not future.done():
        future.set_result(result)


def _set_exception(future: asyncio.Future[Any], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)


def run_and_reply(future: asyncio.Future[_T], function: Callable[[], _T]) -> None:
    """On a worker thread: run ``function``, then settle ``future`` with its outcome on
    the future's loop (see the module)."""
    try:
        result = function()
    except BaseException as exc:  # handed to the awaiting task, never lost
        _reply(future, _set_exception, exc)
    else:
        _reply(future, _set_result, result)


def _reply(future: asyncio.Future[Any], setter: Callable[..., None], value: object) -> None:
    try:
        future.get_loop().call_soon_threadsafe(setter, future, value)
    except RuntimeError:  # the loop closed: nobody waits for this reply any more
        logger.debug("a worker thread's reply to a closed event loop was dropped")
