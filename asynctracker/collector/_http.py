"""HTTP/1.1 for the collector: h11's state machine on asyncio streams, with limits.

h11 does the parsing and framing (keep-alive, chunked bodies, ``Expect: 100-continue``,
and refusing requests that carry both ``Content-Length`` and ``Transfer-Encoding``, the
classic request-smuggling shape). This module adds what a server left running on a
developer's machine needs on top: a deadline for the request head, for the body and for
an idle keep-alive connection, and a cap on the body size, so that slow or huge clients
cannot hold sockets or memory. Everything that goes wrong on the wire ends in an answer
(400, 408, 413, 431) or a closed connection, never in an exception for the caller.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import resource
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus

import h11

__all__ = [
    "BUSY",
    "NOSNIFF",
    "Connection",
    "Limits",
    "Request",
    "Response",
    "accept_backlog",
    "default_max_connections",
    "error_body",
    "json_response",
    "serve_connection",
]

_READ_SIZE = 65536


def error_body(*messages: str) -> bytes:
    """The collector's JSON error body, ``{"errors": [...]}`` (ASCII: every value escaped)."""
    return json.dumps({"errors": list(messages)}, ensure_ascii=True).encode()


#: On every answer of the collector's own routes: never sniffed, never cached.
NOSNIFF = {"x-content-type-options": "nosniff", "cache-control": "no-store"}


@dataclass(frozen=True, slots=True)
class Limits:
    """Deadlines (seconds) and sizes that bound what one connection can cost."""

    #: From the first byte of a request until its head is complete.
    header_timeout: float = 10.0
    #: For the whole body, once the head arrived.
    body_timeout: float = 30.0
    #: How long a keep-alive connection may wait for its next request.
    idle_timeout: float = 30.0
    max_body_bytes: int = 10 * 1024 * 1024
    max_head_bytes: int = 64 * 1024


@dataclass(frozen=True, slots=True)
class Request:
    """A complete request: header names are lower-case, repeated headers joined by ``, ``."""

    method: str
    target: str
    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True, slots=True)
class Response:
    """An answer; framing headers (``Content-Length``) are always computed here."""

    status: int
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)


def json_response(status: int, value: object, headers: Mapping[str, str] | None = None) -> Response:
    """A JSON answer that is valid ASCII whatever ``value`` holds."""
    body = json.dumps(value, ensure_ascii=True).encode("ascii")
    return Response(
        status, body, {**NOSNIFF, "content-type": "application/json", **(headers or {})}
    )


Handler = Callable[[Request], Awaitable[Response]]
_FRAMING = frozenset({"content-length", "transfer-encoding"})


def _reason(status: int) -> bytes:
    try:
        return HTTPStatus(status).phrase.encode("ascii")
    except ValueError:
        return b""


class _Refused(Exception):
    """The request cannot be served; answer ``status`` (when possible) and close."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class Connection:
    """One client connection; :attr:`idle` tells the server it may be closed to make room."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, limits: Limits
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.limits = limits
        self.h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=limits.max_head_bytes)
        #: True while waiting for a request that has not started to arrive.
        self.idle = True

    async def _event(
        self, deadline: float, timeout_status: int
    ) -> h11.Event | type[h11.PAUSED] | type[h11.NEED_DATA]:
        """The next h11 event, reading from the socket as needed until ``deadline``."""
        while True:
            event = self.h11.next_event()
            if event is not h11.NEED_DATA:
                return event
            left = deadline - time.monotonic()
            if left <= 0:
                raise _Refused(timeout_status, "request timed out")
            try:
                data = await asyncio.wait_for(self.reader.read(_READ_SIZE), left)
            except asyncio.TimeoutError:
                raise _Refused(timeout_status, "request timed out") from None
            self.h11.receive_data(data)

    async def read_request(self) -> Request | None:
        """The next request, or ``None`` when the client closed or idled out between them."""
        limits = self.limits
        self.idle = True
        event = self.h11.next_event()  # a pipelined request may be buffered already
        if event is h11.NEED_DATA:
            try:
                data = await asyncio.wait_for(self.reader.read(_READ_SIZE), limits.idle_timeout)
            except asyncio.TimeoutError:
                return None
            self.h11.receive_data(data)  # b"" is EOF: h11 turns it into ConnectionClosed
            self.idle = False
            event = await self._event(time.monotonic() + limits.header_timeout, 408)
        self.idle = False
        if isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
            return None
        if not isinstance(event, h11.Request):
            raise _Refused(400, "expected a request")
        headers: dict[str, str] = {}
        for raw_name, raw_value in event.headers:
            name = raw_name.decode("latin-1")
            value = raw_value.decode("latin-1")
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        length = headers.get("content-length")
        if length is not None and "transfer-encoding" in headers:
            # RFC 9112 6.3: a request smuggling attempt, or a broken proxy; either way the
            # connection's framing can no longer be trusted (h11 would let TE win).
            raise _Refused(400, "both Content-Length and Transfer-Encoding")
        if length is not None and int(length) > limits.max_body_bytes:
            raise _Refused(413, f"body over {limits.max_body_bytes} bytes")
        body = await self._body()
        return Request(
            event.method.decode("latin-1"), event.target.decode("latin-1"), headers, body
        )

    async def _body(self) -> bytes:
        if self.h11.they_are_waiting_for_100_continue:
            await self._send(h11.InformationalResponse(status_code=100, headers=[]))
        deadline = time.monotonic() + self.limits.body_timeout
        chunks: list[bytes] = []
        size = 0
        while True:
            event = await self._event(deadline, 408)
            if isinstance(event, h11.Data):
                size += len(event.data)
                if size > self.limits.max_body_bytes:
                    raise _Refused(413, f"body over {self.limits.max_body_bytes} bytes")
                chunks.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                return b"".join(chunks)
            else:  # ConnectionClosed mid-body
                raise ConnectionResetError("client closed the connection mid-request")

    async def _send(self, *events: h11.Event) -> None:
        for event in events:
            data = self.h11.send(event)
            if data:
                self.writer.write(data)
        await self.writer.drain()

    async def respond(self, response: Response, *, head: bool = False) -> None:
        """Send ``response``; for a HEAD request, its headers only."""
        headers = [
            (name, value)
            for name, value in response.headers.items()
            if name.lower() not in _FRAMING
        ]
        headers.append(("content-length", str(len(response.body))))
        await self._send(
            h11.Response(
                status_code=response.status, headers=headers, reason=_reason(response.status)
            ),
            h11.Data(data=b"" if head else response.body),
            h11.EndOfMessage(),
        )

    async def refuse(self, status: int, message: str) -> None:
        """Answer an error if the protocol state still allows it; the caller then closes."""
        if self.h11.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return
        body = error_body(message)
        headers = {"content-type": "application/json", "connection": "close"}
        with contextlib.suppress(h11.LocalProtocolError, ConnectionError):
            await self.respond(Response(status, body, headers))
        if status == 413:
            await self._drain()

    async def _drain(self, deadline: float = 2.0) -> None:
        """Swallow what the client is still sending, briefly, before closing.

        Closing a socket with unread input makes the kernel send a RST, which can destroy
        the error response before the client reads it (httpx reads the answer only after
        sending the whole body). Nothing is kept, so an oversize body never lands in memory.
        """
        end = time.monotonic() + deadline
        with contextlib.suppress(ConnectionError, asyncio.TimeoutError, OSError):
            while (left := end - time.monotonic()) > 0:
                if not await asyncio.wait_for(self.reader.read(_READ_SIZE), min(left, 0.2)):
                    return


async def serve_connection(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    handler: Handler,
    limits: Limits,
    register: Callable[[Connection], None] = lambda connection: None,
) -> None:
    """Serve requests on one connection until it closes, times out or breaks the protocol.

    ``register`` receives the connection object first, so that a server can see whether it
    is idle. Cancellation (the server stopping) propagates to the caller.
    """
    connection = Connection(reader, writer, limits)
    register(connection)
    try:
        while True:
            try:
                request = await connection.read_request()
            except _Refused as exc:
                await connection.refuse(exc.status, str(exc))
                return
            except h11.RemoteProtocolError as exc:
                await connection.refuse(exc.error_status_hint, f"malformed request: {exc}")
                return
            except ValueError:  # a Content-Length h11 accepted but int() did not
                await connection.refuse(400, "malformed content-length")
                return
            if request is None:
                return
            response = await handler(request)
            await connection.respond(response, head=request.method == "HEAD")
            if (
                connection.h11.our_state is not h11.DONE
                or connection.h11.their_state is not h11.DONE
            ):
                return
            connection.h11.start_next_cycle()
    except (ConnectionError, asyncio.IncompleteReadError, h11.LocalProtocolError):
        pass  # the client went away, or the response could not be sent; nothing to do


def _open_file_limit() -> int:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return 4096 if soft == resource.RLIM_INFINITY else soft


def default_max_connections() -> int:
    """A quarter of the open-file limit (at most 256): the rest stays for SQLite, logs,
    the process's own sockets and sockets accepted but not yet closed (see
    :func:`accept_backlog`), so accept() never fails with "Too many open files"."""
    return max(8, min(256, _open_file_limit() // 4))


def accept_backlog() -> int:
    """The listen backlog, which is also how many sockets asyncio accepts in one go.

    Sockets over the connection cap are closed a few loop iterations after they were
    accepted (asyncio hands each to a task first), while every iteration can accept
    another backlog; so a burst briefly holds about five backlogs' worth of descriptors
    on top of the cap. A sixteenth of the open-file limit (at most 100, asyncio's
    default) keeps that well within the limit.
    """
    return max(8, min(100, _open_file_limit() // 16))


#: Sent to a connection over the cap when no idle one can be closed to make room.
_BUSY_BODY = error_body("too many connections, try again soon")
BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n"
    b"connection: close\r\ncontent-length: %d\r\n\r\n%s" % (len(_BUSY_BODY), _BUSY_BODY)
)
