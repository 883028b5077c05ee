"""Where events wait for delivery: the Storage protocol and the built-in storages."""

from .base import EventRow, Storage
from .memory import MemoryStorage
from .sqlite import SQLiteStorage, WaitingEvents

__all__ = ["EventRow", "MemoryStorage", "SQLiteStorage", "Storage", "WaitingEvents"]
