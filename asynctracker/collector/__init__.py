"""A local Snowplow collector for tests, the demo and ``asynctracker collector``.

See :mod:`asynctracker.collector._server` for the routes and the responder hook.
"""

from __future__ import annotations

from ._hooks import ReceivedRequest, Reply, Responder
from ._server import Collector
from ._store import ReceivedEvent

__all__ = ["Collector", "ReceivedEvent", "ReceivedRequest", "Reply", "Responder"]
