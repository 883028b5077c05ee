"""asynctracker: an asyncio-native Snowplow tracker with durable SQLite delivery.

Everything users need is imported from here: ``import asynctracker as at``.
"""

from ._request_scope import bind_subject, bound_subject
from ._retry import RetryPolicy
from ._settle import CallbackResult, EmitterStats, FailureReason
from ._version import __version__
from .emitter import Emitter
from .exceptions import (
    AsyncTrackerError,
    ClosedError,
    ConfigurationError,
    InvalidEventError,
    QueueFullError,
    StorageError,
)
from .payload import SelfDescribingJson
from .storage import EventRow, MemoryStorage, SQLiteStorage, Storage
from .subject import Subject
from .tracker import EcommerceItem, Tracker

__all__ = [
    "AsyncTrackerError",
    "CallbackResult",
    "ClosedError",
    "ConfigurationError",
    "EcommerceItem",
    "Emitter",
    "EmitterStats",
    "EventRow",
    "FailureReason",
    "InvalidEventError",
    "MemoryStorage",
    "QueueFullError",
    "RetryPolicy",
    "SQLiteStorage",
    "SelfDescribingJson",
    "Storage",
    "StorageError",
    "Subject",
    "Tracker",
    "__version__",
    "bind_subject",
    "bound_subject",
]
