"""asynctracker: an asyncio-native Snowplow tracker with durable SQLite delivery.

Everything users need is imported from here: ``import asynctracker as at``.
"""

from ._checks import MAX_TIMESTAMP_MS, MIN_TIMESTAMP_MS
from ._contexts import ContextProvider
from ._hooks import BeforeTrack, TrackedEvent
from ._request_scope import bind_subject, bound_subject
from ._retry import RetryPolicy
from ._settle import CallbackResult, EmitterStats, FailureReason
from ._version import __version__
from .emitter import Emitter
from .events import (
    AddToCart,
    ApplicationError,
    ConsentGranted,
    ConsentWithdrawn,
    Event,
    FormChange,
    FormElement,
    FormSubmit,
    LinkClick,
    PagePing,
    PageView,
    RemoveFromCart,
    ScreenView,
    SelfDescribing,
    SiteSearch,
    StructuredEvent,
)
from .exceptions import (
    AsyncTrackerError,
    BeforeTrackError,
    BlockingCallError,
    ClosedError,
    ConfigurationError,
    ContextProviderError,
    InvalidEventError,
    QueueFullError,
    StorageError,
)
from .payload import MAX_JSON_DEPTH, JsonEncoder, SelfDescribingJson
from .storage import EventRow, MemoryStorage, SQLiteStorage, Storage, WaitingEvents
from .subject import Subject
from .tracker import EcommerceItem, Tracker

__all__ = [
    "AddToCart",
    "ApplicationError",
    "AsyncTrackerError",
    "BeforeTrack",
    "BeforeTrackError",
    "BlockingCallError",
    "CallbackResult",
    "ClosedError",
    "ConfigurationError",
    "ConsentGranted",
    "ConsentWithdrawn",
    "ContextProvider",
    "ContextProviderError",
    "EcommerceItem",
    "Emitter",
    "EmitterStats",
    "Event",
    "EventRow",
    "FailureReason",
    "FormChange",
    "FormElement",
    "FormSubmit",
    "InvalidEventError",
    "JsonEncoder",
    "LinkClick",
    "MAX_JSON_DEPTH",
    "MAX_TIMESTAMP_MS",
    "MIN_TIMESTAMP_MS",
    "MemoryStorage",
    "PagePing",
    "PageView",
    "QueueFullError",
    "RemoveFromCart",
    "RetryPolicy",
    "SQLiteStorage",
    "ScreenView",
    "SelfDescribing",
    "SelfDescribingJson",
    "SiteSearch",
    "Storage",
    "StorageError",
    "StructuredEvent",
    "Subject",
    "TrackedEvent",
    "Tracker",
    "WaitingEvents",
    "__version__",
    "bind_subject",
    "bound_subject",
]
