"""The local collector: a loopback HTTP server that records and validates tracker traffic.

It is the real network edge for the delivery and fault tests (a ``responder`` can make it
fail, throttle or hang), the backend of ``python -m asynctracker demo`` and of
``asynctracker collector``. Routes:

- ``POST .../com.snowplowanalytics.snowplow/tp2`` and ``GET .../i``: tracker traffic;
  events are validated and recorded, the answer is 200 with an empty body.
- ``GET /``: an HTML page of the events; ``GET /events``, ``/events/good``,
  ``/events/bad``: the same as JSON; ``POST /reset``; ``GET /health``.

Only tracker routes (and unknown paths) go through the ``responder`` and into
:attr:`Collector.requests`; the inspection routes above never do, so polling them cannot
disturb a fault-injection script.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import inspect
import json
import logging
import os
import time
import warnings
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from types import TracebackType
from typing import TYPE_CHECKING, Literal
from urllib.parse import parse_qsl, urlsplit

from .._validate import validate_post_body
from ._http import (
    OK_EMPTY,
    OK_EMPTY_CLOSE,
    HTTPError,
    RawRequest,
    discard_body,
    read_request,
    render_response,
)
from ._page import render_page
from ._store import EventLog, ReceivedEvent

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = ["Collector", "ReceivedRequest", "Reply", "Responder"]

logger = logging.getLogger("asynctracker")

TP2_SUFFIX = "/com.snowplowanalytics.snowplow/tp2"
#: How many requests :attr:`Collector.requests` keeps; bodies are kept too, and a benchmark
#: sends thousands of requests per second.
MAX_RECORDED_REQUESTS = 10_000
_JSON = "application/json"


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


class Collector:
    """A Snowplow collector on loopback that keeps and validates what it receives.

    Use ``async with Collector() as collector:`` and point a tracker at
    ``collector.url``. Events are kept in memory (and in SQLite when ``db_path`` is
    given, reloaded on start). The collector can be stopped and started again; it then
    listens on the same port, so a tracker sees an outage rather than a new address.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        db_path: str | os.PathLike[str] | None = None,
        max_body_bytes: int = 10 * 1024 * 1024,
        responder: Responder | None = None,
        on_event: Callable[[ReceivedEvent], None] | None = None,
    ) -> None:
        self._host = host
        self._port = port
        self._max_body_bytes = max_body_bytes
        self.responder = responder
        self._log = EventLog(db_path, on_event)
        self._requests: collections.deque[ReceivedRequest] = collections.deque(
            maxlen=MAX_RECORDED_REQUESTS
        )
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[object]] = set()

    # -- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        """Load stored events (if any) and start listening.

        Raises ``RuntimeError`` if already started and ``OSError`` if the port is taken.
        """
        if self._server is not None:
            raise RuntimeError("collector is already running")
        await self._log.open()
        try:
            server = await asyncio.start_server(
                self._serve_connection, self._host, self._port, reuse_address=True
            )
        except BaseException:
            await self._log.close()
            raise
        self._server = server
        # Remember the port picked for port=0, so that a restart comes back at the same URL.
        self._port = server.sockets[0].getsockname()[1]
        logger.debug("collector listening on %s", self.url)

    async def stop(self) -> None:
        """Stop listening, drop every open connection (keep-alive or hung), flush SQLite.

        Idempotent. Events stay readable after stop.
        """
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        await asyncio.sleep(0)  # let just-accepted connections start, so we can cancel them
        while self._connections:
            tasks = list(self._connections)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()
        await self._log.close()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def __repr__(self) -> str:
        state = "running" if self._server is not None else "stopped"
        where = f"{self._host}:{self._port}" if self._port else self._host
        return f"<Collector {where} {state}, {len(self._log.events)} events>"

    def __del__(self, _warn: Callable[..., object] = warnings.warn) -> None:
        # A collector left running holds a port and a database; say so loudly (tests run
        # with warnings as errors) rather than leaking quietly.
        if getattr(self, "_server", None) is not None:
            _warn(f"unclosed {self!r}; use 'async with' or await stop()", ResourceWarning)

    # -- what was received -----------------------------------------------------------

    @property
    def port(self) -> int:
        """The listening port (known before start only when given explicitly)."""
        if self._port == 0:
            raise RuntimeError("collector has not been started, so it has no port yet")
        return self._port

    @property
    def url(self) -> str:
        """Base URL for a tracker's ``endpoint``, e.g. ``http://127.0.0.1:50123``."""
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self.port}"

    @property
    def events(self) -> list[ReceivedEvent]:
        """Every accepted event, in arrival order (a copy)."""
        return list(self._log.events)

    @property
    def good(self) -> list[ReceivedEvent]:
        """Accepted events that follow the tracker protocol."""
        return [event for event in self._log.events if event.valid]

    @property
    def bad(self) -> list[ReceivedEvent]:
        """Accepted events with validation errors."""
        return [event for event in self._log.events if not event.valid]

    @property
    def requests(self) -> list[ReceivedRequest]:
        """The most recent tracker requests (up to 10,000), answered ones only."""
        return list(self._requests)

    def reset(self) -> None:
        """Forget all events (in SQLite too) and requests."""
        self._log.clear()
        self._requests.clear()

    async def wait_for_events(self, count: int, timeout: float = 10.0) -> list[ReceivedEvent]:
        """Wait until at least ``count`` events were accepted; raises ``TimeoutError``."""
        return await self._log.wait_for(count, timeout)

    # -- HTTP ------------------------------------------------------------------------

    async def _serve_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """Serve requests on one connection until the client or :meth:`stop` ends it."""
        task = asyncio.current_task()
        if task is None or self._server is None:
            writer.close()
            return
        self._connections.add(task)
        try:
            keep_alive = True
            while keep_alive:
                keep_alive = await self._serve_one(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client went away mid-request; nothing to answer
        except asyncio.CancelledError:
            # stop() ends connections by cancelling them. This task is ours and ends
            # here; re-raising would make asyncio's stream callback log it as an error.
            pass
        except Exception:
            logger.exception("collector failed while serving a connection")
        finally:
            self._connections.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _serve_one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Serve one request; return whether the connection stays open."""
        try:
            raw = await read_request(reader, writer, self._max_body_bytes)
        except HTTPError as exc:
            body = json.dumps({"errors": [exc.message]}).encode()
            writer.write(render_response(exc.status, body, content_type=_JSON, keep_alive=False))
            if writer.can_write_eof():
                writer.write_eof()
            await writer.drain()
            await discard_body(reader, exc.unread)
            return False
        if raw is None:
            return False
        response, keep_alive = await self._respond(raw)
        writer.write(response)
        await writer.drain()
        return keep_alive

    async def _respond(self, raw: RawRequest) -> tuple[bytes, bool]:
        """Route one request; return the serialised response and whether to keep alive."""
        keep_alive = raw.keep_alive
        target = raw.target
        if not target.startswith("/"):  # absolute-form, as sent through proxies
            parts = urlsplit(target)
            target = f"{parts.path or '/'}?{parts.query}"
        path, _, query = target.partition("?")
        inspection = self._inspect(raw.method, path)
        if inspection is not None:
            status, body, content_type = inspection
            return render_response(
                status, body, content_type=content_type, keep_alive=keep_alive
            ), keep_alive

        request = ReceivedRequest(raw.method, path, query, raw.headers, raw.body, 0)
        if self.responder is not None:
            reply = await self._ask_responder(request)
            if reply is not None:
                self._requests.append(replace(request, status=reply.status))
                if any(
                    k.lower() == "connection" and v.lower() == "close"
                    for k, v in reply.headers.items()
                ):
                    keep_alive = False
                response = render_response(
                    reply.status, reply.body, reply.headers, keep_alive=keep_alive
                )
                return response, keep_alive

        status, body = self._track(raw.method, path, query, raw.body)
        self._requests.append(replace(request, status=status))
        if status == 200 and not body:
            return (OK_EMPTY if keep_alive else OK_EMPTY_CLOSE), keep_alive
        return render_response(status, body, content_type=_JSON, keep_alive=keep_alive), keep_alive

    async def _ask_responder(self, request: ReceivedRequest) -> Reply | None:
        assert self.responder is not None
        try:
            result = self.responder(request)
            if inspect.isawaitable(result):
                result = await result
        except Exception as exc:
            logger.exception("collector responder failed")
            body = json.dumps({"errors": [f"responder raised {exc!r}"]}).encode()
            return Reply(500, {"content-type": _JSON}, body)
        if result is not None and not isinstance(result, Reply):
            body = json.dumps({"errors": [f"responder returned {result!r}"]}).encode()
            return Reply(500, {"content-type": _JSON}, body)
        return result

    def _track(self, method: str, path: str, query: str, body: bytes) -> tuple[int, bytes]:
        """Default handling of tracker routes: validate, record, answer 200."""
        if path.endswith(TP2_SUFFIX):
            if method != "POST":
                return 405, b""
            payloads, problems = validate_post_body(body)
            if problems and not payloads:
                return 400, json.dumps({"errors": problems}).encode()
            now = time.time()
            self._log.add(
                [
                    ReceivedEvent.check(p, "POST", extra_errors=problems, received_at=now)
                    for p in payloads
                ]
            )
            return 200, b""
        if path == "/i" or path.endswith("/i"):
            if method != "GET":
                return 405, b""
            pairs = parse_qsl(query, keep_blank_values=True)
            if not pairs:
                return 400, json.dumps({"errors": ["no event in the query string"]}).encode()
            self._log.add([ReceivedEvent.check(dict(pairs), "GET")])
            return 200, b""
        return 404, json.dumps({"errors": [f"no route for {method} {path}"]}).encode()

    def _inspect(self, method: str, path: str) -> tuple[int, bytes, str] | None:
        """Serve the collector's own routes; ``None`` for anything else."""
        if path not in _INSPECTION_ROUTES:
            return None
        expected = _INSPECTION_ROUTES[path]
        if method != expected:
            return 405, json.dumps({"errors": [f"use {expected} {path}"]}).encode(), _JSON
        if path == "/":
            return 200, render_page(self._log.events), "text/html; charset=utf-8"
        if path == "/reset":
            self.reset()
            return 200, b'{"ok":true}', _JSON
        if path == "/health":
            counts = {"ok": True, "events": len(self._log.events), "bad": len(self.bad)}
            return 200, json.dumps(counts).encode(), _JSON
        selected = {"/events": self.events, "/events/good": self.good, "/events/bad": self.bad}
        data = [event.to_json() for event in selected[path]]
        return 200, json.dumps(data, ensure_ascii=False).encode("utf-8"), _JSON


_INSPECTION_ROUTES: dict[str, Literal["GET", "POST"]] = {
    "/": "GET",
    "/events": "GET",
    "/events/good": "GET",
    "/events/bad": "GET",
    "/reset": "POST",
    "/health": "GET",
}
