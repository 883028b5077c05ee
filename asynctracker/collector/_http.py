"""Just enough HTTP/1.1 for a collector, on asyncio streams.

No framework: the collector has to stay importable with only the runtime dependencies and
fast enough for benchmarks, and a tracker speaks a tiny, well-behaved subset of HTTP
(keep-alive, ``Content-Length`` or chunked bodies, no pipelining surprises). Anything that
does not parse becomes an :class:`HTTPError`, which the server answers and then closes the
connection, because after a framing error the byte stream can no longer be trusted.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping
from dataclasses import dataclass
from http import HTTPStatus

__all__ = ["HTTPError", "RawRequest", "discard_body", "read_request", "render_response"]

#: Sent as-is for the overwhelmingly common answer, to keep the hot path allocation-free.
OK_EMPTY = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"
OK_EMPTY_CLOSE = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class HTTPError(Exception):
    """The request cannot be served; answer ``status`` and close the connection.

    ``unread`` is how many body bytes the client is still sending (``-1``: unknown, as for
    chunked bodies), so that the server can drain them before closing; see
    :func:`discard_body`.
    """

    def __init__(self, status: int, message: str, *, unread: int = 0) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.unread = unread


@dataclass(slots=True)
class RawRequest:
    """A parsed request before routing."""

    method: str
    target: str
    headers: dict[str, str]
    body: bytes
    keep_alive: bool


async def read_request(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, max_body_bytes: int
) -> RawRequest | None:
    """Read one request; ``None`` when the client closed the connection between requests.

    Raises :class:`HTTPError` for anything malformed or too large, and
    ``asyncio.IncompleteReadError``/``ConnectionError`` when the client vanishes mid-request.
    """
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if exc.partial.strip():
            raise HTTPError(400, "incomplete request head") from None
        return None
    except asyncio.LimitOverrunError:
        raise HTTPError(431, "request head too large") from None
    # RFC 9112 2.2: ignore empty lines before the request line.
    lines = head.lstrip(b"\r\n").split(b"\r\n")
    try:
        method, target, version = lines[0].decode("ascii").split(" ")
    except (UnicodeDecodeError, ValueError):
        raise HTTPError(400, "malformed request line") from None
    if version not in ("HTTP/1.1", "HTTP/1.0"):
        raise HTTPError(505, f"unsupported HTTP version {version!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(b":")
        if not sep or not name or name != name.strip():
            raise HTTPError(400, "malformed header line")
        key = name.decode("latin-1").lower()
        text = value.strip().decode("latin-1")
        headers[key] = f"{headers[key]}, {text}" if key in headers else text

    connection = headers.get("connection", "").lower()
    # HTTP/1.1 keeps connections open unless told otherwise; HTTP/1.0 only when asked.
    keep_alive = "close" not in connection if version == "HTTP/1.1" else "keep-alive" in connection

    if "transfer-encoding" in headers:
        if headers["transfer-encoding"].lower() != "chunked":
            raise HTTPError(501, "only chunked transfer-encoding is supported", unread=-1)
        _continue(headers, writer)
        body = await _read_chunked(reader, max_body_bytes)
    elif "content-length" in headers:
        length_text = headers["content-length"]
        if not (length_text.isascii() and length_text.isdigit()):
            raise HTTPError(400, "malformed content-length")
        length = int(length_text)
        if length > max_body_bytes:
            unread = 0 if _expects_continue(headers) else length
            raise HTTPError(413, f"body over {max_body_bytes} bytes", unread=unread)
        _continue(headers, writer)
        body = await reader.readexactly(length) if length else b""
    else:
        body = b""
    return RawRequest(method, target, headers, body, keep_alive)


def _expects_continue(headers: Mapping[str, str]) -> bool:
    return headers.get("expect", "").lower() == "100-continue"


def _continue(headers: Mapping[str, str], writer: asyncio.StreamWriter) -> None:
    """Tell a client that waits for permission to send its body to go ahead."""
    if _expects_continue(headers):
        writer.write(_CONTINUE)


async def _read_chunked(reader: asyncio.StreamReader, max_body_bytes: int) -> bytes:
    chunks: list[bytes] = []
    total = 0
    while True:
        try:
            size_line = await reader.readuntil(b"\r\n")
        except asyncio.LimitOverrunError:
            raise HTTPError(400, "chunk size line too long", unread=-1) from None
        size_text = size_line.split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise HTTPError(400, "malformed chunk size", unread=-1) from None
        if size < 0:
            raise HTTPError(400, "malformed chunk size", unread=-1)
        if size == 0:
            break
        total += size
        if total > max_body_bytes:
            raise HTTPError(413, f"body over {max_body_bytes} bytes", unread=-1)
        chunks.append(await reader.readexactly(size))
        if await reader.readexactly(2) != b"\r\n":
            raise HTTPError(400, "chunk not terminated by CRLF", unread=-1)
    # Trailer fields, if any, end with an empty line; they carry nothing we need.
    while True:
        try:
            line = await reader.readuntil(b"\r\n")
        except asyncio.LimitOverrunError:
            raise HTTPError(400, "trailer line too long", unread=-1) from None
        if line == b"\r\n":
            return b"".join(chunks)


async def discard_body(reader: asyncio.StreamReader, unread: int, *, deadline: float = 2.0) -> None:
    """Drain (without keeping) body bytes the client is still sending, for a bounded time.

    Closing a socket with unread input makes the kernel send a RST, which can destroy the
    error response before the client reads it; clients such as httpx only read the
    response after sending the whole body. So after answering 413 we swallow up to
    ``unread`` bytes (until a short lull when the length is unknown) and only then close.
    Nothing is buffered, so an oversize body still never lands in memory.
    """
    if unread == 0:
        return
    end = time.monotonic() + deadline
    remaining = unread if unread > 0 else None
    with contextlib.suppress(ConnectionError, asyncio.TimeoutError, OSError):
        while remaining is None or remaining > 0:
            left = end - time.monotonic()
            if left <= 0:
                return
            wait = left if remaining is not None else min(left, 0.2)
            want = 65536 if remaining is None else min(remaining, 65536)
            data = await asyncio.wait_for(reader.read(want), wait)
            if not data:
                return
            if remaining is not None:
                remaining -= len(data)


def render_response(
    status: int,
    body: bytes = b"",
    headers: Mapping[str, str] | None = None,
    *,
    content_type: str | None = None,
    keep_alive: bool = True,
) -> bytes:
    """Serialise a response; framing headers are always ours, whatever ``headers`` say."""
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = "Unknown"
    lines = [f"HTTP/1.1 {status} {reason}"]
    seen_type = False
    for name, value in (headers or {}).items():
        lower = name.lower()
        if lower in ("content-length", "transfer-encoding", "connection"):
            continue
        seen_type = seen_type or lower == "content-type"
        lines.append(f"{name}: {value}")
    if content_type is not None and not seen_type:
        lines.append(f"content-type: {content_type}")
    lines.append(f"content-length: {len(body)}")
    if not keep_alive:
        lines.append("connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
