"""asynctracker: an asyncio-native Snowplow tracker with durable SQLite delivery.

Everything users need is imported from here: ``import asynctracker as at``.
"""

from ._checks import MAX_TIMESTAMP_MS, MIN_TIMESTAMP_MS
from ._contexts import ContextProvider
from ._request_scope import bind_subject, bound_subject
from ._retry import RetryPolicy
from ._settle import CallbackResult, EmitterStats, FailureReason
from ._version import __version__
from .emitter import Emitter
from .exceptions import (
    AsyncTrackerError,
    ClosedError,
    ConfigurationError,
    ContextProviderError,
    InvalidEventError,
    QueueFullError,
    StorageError,
)
from .payload import MAX_JSON_DEPTH, SelfDescribingJson
from .storage import EventRow, MemoryStorage, SQLiteStorage, Storage
from .subject import Subject
from .tracker import EcommerceItem, Tracker

__all__ = [
    "AsyncTrackerError",
    "CallbackResult",
    "ClosedError",
    "ConfigurationError",
    "ContextProvider",
    "ContextProviderError",
    "EcommerceItem",
    "Emitter",
    "EmitterStats",
    "EventRow",
    "FailureReason",
    "InvalidEventError",
    "MAX_JSON_DEPTH",
    "MAX_TIMESTAMP_MS",
    "MIN_TIMESTAMP_MS",
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
