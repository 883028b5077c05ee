"""Celery: a tracker in every worker process, flushed before the process exits.

In the module that makes your Celery app::

    from celery import Celery
    from asynctracker import sync
    from asynctracker.integrations.celery import get_tracker, setup_tracking

    app = Celery("shop", broker="redis://localhost")

    def make_tracker() -> sync.Tracker:
        return sync.Tracker(sync.Emitter("collector.acme.com"), app_id="shop-worker")

    setup_tracking(make_tracker)

    @app.task
    def send_receipt(order_id: str) -> None:
        ...
        get_tracker().track_struct_event("order", "receipt-sent", label=order_id)

Why the signals: a prefork pool child ends with ``os._exit()``, which skips the exit
flush that ``asynctracker.sync`` runs for other programs. So :func:`setup_tracking`
connects ``worker_process_init`` (in each child, after the fork: make the tracker and
open it, so events an earlier run left in SQLite start sending) and
``worker_process_shutdown`` (in each child, before it exits: flush within the
emitters' ``close_timeout``, then close). Other pools (``solo``, ``threads``) run tasks
in the worker's main process, which exits normally: there the tracker is made on
first use and flushed at exit.

Only Celery is imported, and only when this module is.
"""

from __future__ import annotations

import logging

from celery import signals

from ..exceptions import ConfigurationError
from ..sync import Tracker
from ._sync import LazyTracker, SyncTrackerSource

__all__ = ["get_tracker", "setup_tracking"]

logger = logging.getLogger("asynctracker")

_tracker: LazyTracker | None = None
_close_timeout: float | None = None


def setup_tracking(tracker: SyncTrackerSource, *, close_timeout: float | None = None) -> None:
    """Give this process's tasks ``tracker`` (a sync Tracker, or a function returning
    one, called once in each worker process) and connect the worker signals.

    ``close_timeout`` bounds the flush when a pool child shuts down (default: each
    emitter's own ``close_timeout``). Call it once, at import of your Celery app's
    module; a second call replaces the tracker (the signals stay connected once).
    Raises ConfigurationError for anything but a sync Tracker or a function.
    """
    global _tracker, _close_timeout
    _tracker = LazyTracker(tracker, "setup_tracking")
    _close_timeout = close_timeout
    signals.worker_process_init.connect(
        _open_in_child, weak=False, dispatch_uid="asynctracker.worker_process_init"
    )
    signals.worker_process_shutdown.connect(
        _close_in_child, weak=False, dispatch_uid="asynctracker.worker_process_shutdown"
    )


def get_tracker() -> Tracker:
    """This process's tracker, for tasks. Raises ConfigurationError when
    :func:`setup_tracking` was not called in this process (the worker imports your
    app's module, which should call it)."""
    if _tracker is None:
        raise ConfigurationError(
            "no tracker: call asynctracker.integrations.celery.setup_tracking(...) "
            "where your Celery app is made"
        )
    return _tracker.get()


def _open_in_child(**kwargs: object) -> None:
    """``worker_process_init``: make the tracker in this pool child and open it. A
    failure is logged: the child still runs its tasks (whose track calls then raise)."""
    try:
        for emitter in get_tracker().emitters:
            emitter.open()
    except Exception:
        logger.exception("asynctracker could not open the tracker in a Celery worker process")


def _close_in_child(**kwargs: object) -> None:
    """``worker_process_shutdown``: flush and close before the child's ``os._exit()``."""
    made = _tracker.made if _tracker is not None else None
    if made is None:
        return
    try:
        made.close(_close_timeout)
    except Exception:
        logger.exception("asynctracker could not close the tracker in a Celery worker process")
