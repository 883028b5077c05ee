"""The local collector: a loopback HTTP server that records and validates tracker traffic.

It is the real network edge for the delivery and fault tests (a ``responder`` can make it
fail, throttle or hang), the backend of ``python -m asynctracker demo`` and of
``asynctracker collector``. Routes:

- ``POST .../com.snowplowanalytics.snowplow/tp2`` and ``GET .../i``: tracker traffic;
  events are validated and recorded, the answer is 200 with an empty body. CORS as
  Snowplow's collectors do it: preflights answered, the Origin echoed, credentials allowed.
- ``GET /``: the page; ``GET /events``, ``/events/good``, ``/events/bad``: pages of events
  as JSON; ``POST /reset``; ``GET /health``; Snowplow Micro's ``/micro/...`` API
  (:mod:`._api`).

Every request must name this machine in its Host header, state-changing routes refuse
cross-site requests (:mod:`._guard`), and connections are bounded in time, size and number
(:mod:`._http`). Only tracker routes (and unknown paths) go through the ``responder`` and
into :attr:`Collector.requests`; the inspection routes never do, so polling them cannot
disturb a fault-injection script.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import inspect
import logging
import os
import secrets
import warnings
from collections.abc import AsyncGenerator, Callable, Iterable
from dataclasses import replace
from types import TracebackType
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from .._loop_end import call_at_loop_end
from ._api import Site, route
from ._guard import HostCheck, cors_headers, preflight_headers
from ._hooks import ReceivedRequest, Reply, Responder
from ._http import (
    BUSY,
    Connection,
    Limits,
    Request,
    Response,
    accept_backlog,
    default_max_connections,
    error_body,
    json_response,
    serve_connection,
)
from ._iglu import IgluRegistry, validation_mode
from ._store import MEMORY_EVENTS, EventLog, ReceivedEvent
from ._tracker import is_tracker_route, track

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = ["Collector"]

logger = logging.getLogger("asynctracker")

#: How many requests :attr:`Collector.requests` keeps; bodies are kept too, and a benchmark
#: sends thousands of requests per second.
MAX_RECORDED_REQUESTS = 10_000
#: ... and at most this many body bytes in all, so that big batches cannot pile up memory.
MAX_RECORDED_BYTES = 16 * 1024 * 1024
_JSON = "application/json"


class Collector:
    """A Snowplow collector on loopback that keeps and validates what it receives.

    Use ``async with Collector() as collector:`` and point a tracker at
    ``collector.url``. Events are kept in SQLite (``db_path``, reloaded on start, or a
    temporary file), the newest ``memory_events`` of them in memory too. The collector
    can be stopped and started again; it then listens on the same port, so a tracker sees
    an outage rather than a new address.

    ``allowed_hosts`` adds Host names to loopback and the bound address (``"*"``: any);
    ``iglu`` is a folder in Iglu's registry layout to validate self-describing data
    against (needs ``jsonschema``: raises :class:`RuntimeError` without it, and
    ``NotADirectoryError`` when the folder is missing). ``max_connections`` (default: a
    quarter of the open-file limit, at most 256) and the ``*_timeout`` deadlines (seconds:
    to finish a request head, a body, and between requests on a kept-alive connection)
    bound what slow or greedy clients can hold.
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
        allowed_hosts: Iterable[str] = (),
        iglu: str | os.PathLike[str] | None = None,
        max_connections: int | None = None,
        header_timeout: float = 10.0,
        body_timeout: float = 30.0,
        idle_timeout: float = 30.0,
        memory_events: int = MEMORY_EVENTS,
    ) -> None:
        self._host = host
        self._port = port
        self._limits = Limits(
            header_timeout=header_timeout,
            body_timeout=body_timeout,
            idle_timeout=idle_timeout,
            max_body_bytes=max_body_bytes,
        )
        self._max_connections = max_connections or default_max_connections()
        self._hosts = HostCheck(host, allowed_hosts)
        self.iglu = None if iglu is None else IgluRegistry(iglu)
        #: Embedded in the page; a browser's state-changing request must send it back.
        self.token = secrets.token_urlsafe(24)
        self.responder = responder
        self._log = EventLog(db_path, on_event, memory_events=memory_events)
        self._requests: collections.deque[ReceivedRequest] = collections.deque(
            maxlen=MAX_RECORDED_REQUESTS
        )
        self._request_bytes = 0
        self._server: asyncio.Server | None = None
        #: Stops a collector still running when its event loop shuts down (see start()).
        self._loop_end: AsyncGenerator[None, None] | None = None
        #: Each serving task and its connection (None until it registered itself).
        self._connections: dict[asyncio.Task[object], Connection | None] = {}

    @property
    def validation_mode(self) -> str:
        """One line saying what events are checked against."""
        return validation_mode(self.iglu)

    # -- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        """Load stored events (if any) and start listening.

        Raises ``RuntimeError`` if already started, ``OSError`` if the port is taken or
        the database cannot be opened. A collector still running when its event loop
        shuts down (``asyncio.run`` returning) is stopped then, with a
        ``ResourceWarning``: its database thread would otherwise keep the program from
        exiting.
        """
        if self._server is not None:
            raise RuntimeError("collector is already running")
        await self._log.open()
        try:
            server = await asyncio.start_server(
                self._serve_connection,
                self._host,
                self._port,
                reuse_address=True,
                backlog=accept_backlog(),
            )
        except BaseException:
            await self._log.close()
            raise
        self._server = server
        # Remember the port picked for port=0, so that a restart comes back at the same URL.
        self._port = server.sockets[0].getsockname()[1]
        self._loop_end = await call_at_loop_end(self._loop_ended)
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
        hook, self._loop_end = self._loop_end, None
        if hook is not None:
            await hook.aclose()  # calls _loop_ended, which finds nothing left to stop

    async def _loop_ended(self) -> None:
        """The loop is shutting down with this collector running: stop it while the loop
        still runs (closing its database ends aiosqlite's thread, which is no daemon)."""
        if self._server is None:
            return
        self._loop_end = None  # this very hook is running: stop() must not close it
        running = repr(self)
        await self.stop()
        warnings.warn(
            f"unclosed {running} stopped as its event loop shut down; "
            "use 'async with' or await stop()",
            ResourceWarning,
            stacklevel=1,
        )

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
        return f"<Collector {where} {state}, {self._log.total} events>"

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
    def counts(self) -> dict[str, int]:
        """Exact counts: ``total``, ``good``, ``bad``, as ``/micro/all`` serves them."""
        log = self._log
        return {"total": log.total, "good": log.good, "bad": log.bad}

    @property
    def events(self) -> list[ReceivedEvent]:
        """Every accepted event, in arrival order (a copy; older ones are read from SQLite)."""
        return self._log.events

    @property
    def good(self) -> list[ReceivedEvent]:
        """Accepted events that follow the tracker protocol (and the Iglu schemas)."""
        return [event for event in self._log.events if event.valid]

    @property
    def bad(self) -> list[ReceivedEvent]:
        """Accepted events with validation errors."""
        return [event for event in self._log.events if not event.valid]

    @property
    def requests(self) -> list[ReceivedRequest]:
        """The most recent tracker requests (up to 10,000 and 16 MiB of bodies), answered
        ones only."""
        return list(self._requests)

    def reset(self) -> None:
        """Forget all events (in SQLite too) and requests."""
        self._log.clear()
        self._requests.clear()
        self._request_bytes = 0

    async def wait_for_events(self, count: int, timeout: float = 10.0) -> list[ReceivedEvent]:
        """Wait until at least ``count`` events were accepted; raises ``TimeoutError``."""
        return await self._log.wait_for(count, timeout)

    # -- HTTP ------------------------------------------------------------------------

    async def _serve_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """Serve one connection; over the cap, make room by closing an idle one, or refuse."""
        task = asyncio.current_task()
        if task is None or self._server is None:
            writer.close()
            return
        if len(self._connections) >= self._max_connections and not self._evict_idle():
            writer.write(BUSY)
            writer.close()
            return
        self._connections[task] = None
        try:
            await serve_connection(
                reader,
                writer,
                self._handle,
                self._limits,
                lambda connection: self._connections.__setitem__(task, connection),
            )
        except asyncio.CancelledError:
            # stop() ends connections by cancelling them. This task is ours and ends
            # here; re-raising would make asyncio's stream callback log it as an error.
            pass
        except Exception:
            logger.exception("collector failed while serving a connection")
        finally:
            self._connections.pop(task, None)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    def _evict_idle(self) -> bool:
        """Close the oldest connection waiting for a request; False if none is idle."""
        for task, connection in self._connections.items():
            if connection is not None and connection.idle:
                task.cancel()
                del self._connections[task]
                return True
        return False

    def _site(self) -> Site:
        return Site(log=self._log, token=self.token, iglu=self.iglu, reset=self.reset)

    async def _handle(self, request: Request) -> Response:
        """Route one request (the Host check first) and answer it."""
        if not self._hosts.accepts(request.headers.get("host")):
            host = request.headers.get("host", "")
            return json_response(
                421, {"errors": [f"Host {host!r} is not this collector (see --allow-host)"]}
            )
        target = request.target
        if not target.startswith("/"):  # absolute-form, as sent through proxies
            parts = urlsplit(target)
            target = f"{parts.path or '/'}?{parts.query}"
        path, _, query = target.partition("?")
        tracker = is_tracker_route(path)
        if request.method == "OPTIONS":
            if tracker:
                return Response(200, b"", preflight_headers(request.headers))
            return Response(204, b"", {"allow": "GET, HEAD, POST"})
        if not tracker:
            answer = await route(self._site(), request, path, query)
            if answer is not None:
                return answer
        response = await self._tracker_route(request, path, query)
        if tracker:
            cors = cors_headers(request.headers)
            if cors:
                return replace(response, headers={**response.headers, **cors})
        return response

    async def _tracker_route(self, raw: Request, path: str, query: str) -> Response:
        request = ReceivedRequest(raw.method, path, query, raw.headers, raw.body, 0)
        if self.responder is not None:
            reply = await self._ask_responder(request)
            if reply is not None:
                self._remember(replace(request, status=reply.status))
                return Response(reply.status, reply.body, reply.headers)
        status, body = track(self._log, self.iglu, raw.method, path, query, raw.body)
        self._remember(replace(request, status=status))
        headers = {"content-type": _JSON} if body else {}
        return Response(status, body, headers)

    def _remember(self, request: ReceivedRequest) -> None:
        """Keep ``request`` for :attr:`requests`, within the count and byte budgets."""
        requests = self._requests
        if len(requests) == requests.maxlen:
            self._request_bytes -= len(requests[0].body)
        requests.append(request)
        self._request_bytes += len(request.body)
        while self._request_bytes > MAX_RECORDED_BYTES and len(requests) > 1:
            self._request_bytes -= len(requests.popleft().body)

    async def _ask_responder(self, request: ReceivedRequest) -> Reply | None:
        assert self.responder is not None
        try:
            result = self.responder(request)
            if inspect.isawaitable(result):
                result = await result
        except Exception as exc:
            logger.exception("collector responder failed")
            body = error_body(f"responder raised {exc!r}")
            return Reply(500, {"content-type": _JSON}, body)
        if result is not None and not isinstance(result, Reply):
            body = error_body(f"responder returned {result!r}")
            return Reply(500, {"content-type": _JSON}, body)
        return result
