"""Turning stored rows into HTTP requests: endpoints, POST chunking, bodies, GET queries.

Rows carry their payload as compact ASCII JSON (see ``_encoded.encode_event``), so a
POST body is built by string joins and measured with ``len``: no event is decoded or
re-encoded on the way out. ``stm`` (the send time) is spliced into each event here,
because the protocol wants it set when the request leaves, never stored.
"""

from __future__ import annotations

import email.utils
import json
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlencode

import httpx

from .exceptions import ConfigurationError
from .payload import PAYLOAD_DATA_SCHEMA
from .storage.base import EventRow

__all__ = [
    "Endpoints",
    "chunk_rows",
    "get_query",
    "parse_retry_after",
    "post_body",
    "redact",
    "scrub",
]

POST_PATH = "/com.snowplowanalytics.snowplow/tp2"
GET_PATH = "/i"
POST_HEADERS = {"Content-Type": "application/json; charset=utf-8"}

_BODY_PREFIX = '{"schema":"' + PAYLOAD_DATA_SCHEMA + '","data":['
_BODY_SUFFIX = "]}"
# "http:/host", "https:host": a scheme without "//" (a host:port never has a letter first).
_SCHEME_TYPO = re.compile(r"(?i)https?:(?!\d)")
_LABEL = re.compile(rb"[A-Za-z0-9_-]{1,63}")
_STM_DIGITS = 13  # epoch milliseconds have 13 digits until the year 2286
_STM_EXTRA = len(',"stm":""') + _STM_DIGITS


@dataclass(frozen=True, slots=True)
class Endpoints:
    """The collector's POST and GET URLs, derived once from the emitter's options.

    ``shown`` is the collector URL with any ``user:password@`` removed: the only form
    that may appear in a repr or a log line.
    """

    post: str
    get: str
    shown: str = ""

    @classmethod
    def parse(
        cls,
        collector_uri: str,
        protocol: str,
        *,
        post_path: str | None = None,
        get_path: str | None = None,
    ) -> Endpoints:
        """Accept ``host[:port][/prefix]`` or a full ``http(s)://`` URL.

        ``post_path``/``get_path`` replace the protocol's standard paths (appended to
        the URL's own path, a proxy prefix). Raises ConfigurationError naming what is
        wrong, so a typo fails at startup instead of as endless connection errors in
        the background.
        """
        if not isinstance(collector_uri, str) or not collector_uri.strip():
            raise ConfigurationError("collector_uri must be a host name or URL, got an empty value")
        post_suffix = _check_path("post_path", post_path, POST_PATH)
        get_suffix = _check_path("get_path", get_path, GET_PATH)
        uri = collector_uri.strip()
        shown_input = redact(uri)
        if "://" in uri:
            scheme = uri.split("://", 1)[0].lower()
            if scheme not in ("http", "https"):
                raise ConfigurationError(
                    f"collector_uri scheme must be http or https, got {scheme!r} in {shown_input!r}"
                )
        elif _SCHEME_TYPO.match(uri):
            raise ConfigurationError(
                f"collector_uri {shown_input!r} looks like a URL with a malformed scheme; "
                "write http://host or https://host"
            )
        else:
            uri = f"{protocol}://{uri}"
        try:
            url = httpx.URL(uri)
            base = str(url.copy_with(path=url.path.rstrip("/") or "/")).rstrip("/")
            # Building a request encodes the host (IDNA) the way sending will.
            httpx.Request("POST", base + post_suffix)
        except (httpx.InvalidURL, ValueError) as exc:  # UnicodeError (idna) is a ValueError
            raise ConfigurationError(f"collector_uri {shown_input!r} is malformed: {exc}") from exc
        if not url.host or any(ch.isspace() for ch in uri) or not _valid_host(url.raw_host):
            raise ConfigurationError(f"collector_uri {shown_input!r} has no valid host")
        if url.port is not None and not 0 < url.port < 65536:
            # httpx accepts any integer port; without this check a typo would only
            # show up later as endless connection errors in the background.
            raise ConfigurationError(
                f"collector_uri {shown_input!r} has port {url.port}; use 1-65535"
            )
        if url.query or url.fragment:
            raise ConfigurationError(
                f"collector_uri {shown_input!r} must not have a query or fragment"
            )
        return cls(post=base + post_suffix, get=base + get_suffix, shown=redact(base))

    def identity(self, request_type: str, headers: Mapping[str, str]) -> str:
        """Everything that decides who receives this emitter's events and who is
        billed: the endpoint it sends to (normalised, so one endpoint written two ways
        is one destination), its credentials and its extra headers. Holds secrets:
        storages keep only a keyed hash of it."""
        url = httpx.URL(self.post if request_type == "POST" else self.get)
        return json.dumps(
            [
                url.scheme,
                url.host,
                url.port,
                url.raw_path.decode("ascii"),
                url.userinfo.decode("latin-1"),
                sorted((name.lower(), value) for name, value in headers.items()),
            ],
            separators=(",", ":"),
        )


def _check_path(name: str, path: object, default: str) -> str:
    if path is None:
        return default
    if (
        not isinstance(path, str)
        or not path.startswith("/")
        or not path.isascii()
        or any(ch in path for ch in "?#%\\")
        or any(not ch.isprintable() or ch.isspace() for ch in path)
    ):
        raise ConfigurationError(
            f"{name} must be an absolute URL path like {default!r} (printable ASCII, "
            f"no query, fragment or escapes), got {path!r}"
        )
    return path


def _valid_host(raw_host: bytes) -> bool:
    """A host name (after IDNA) is letters, digits, ``-``, ``_`` in non-empty labels of
    at most 63 characters; IP addresses pass."""
    if b":" in raw_host:  # an IPv6 literal; httpx has checked it
        return True
    labels = raw_host.rstrip(b".").split(b".")
    return len(raw_host) <= 253 and all(_LABEL.fullmatch(label) for label in labels)


def _userinfo(url: str) -> tuple[str, str, str]:
    """``url`` cut around its ``user:password`` part: (before, userinfo, after)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    authority, slash, tail = rest.partition("/")
    if "@" not in authority:
        return url, "", ""
    userinfo, _, host = authority.rpartition("@")
    return f"{scheme}{sep}", userinfo, f"@{host}{slash}{tail}"


def redact(url: str) -> str:
    """``url`` without the ``user:password@`` part, for reprs and logs."""
    before, userinfo, after = _userinfo(url)
    return f"{before}***{after}" if userinfo else url


def scrub(text: str, url: str) -> str:
    """``text`` (an error message that may quote ``url``) without its credentials."""
    _, userinfo, _ = _userinfo(url)
    return text.replace(userinfo, "***") if userinfo else text


def event_size(row: EventRow) -> int:
    """Bytes this row adds to a POST body, ``stm`` included (commas not included)."""
    raw = row.raw
    size = len(raw) if raw.isascii() else len(raw.encode("utf-8"))
    return size + _STM_EXTRA


def chunk_rows(rows: Sequence[EventRow], byte_limit: int) -> list[list[EventRow]]:
    """Split rows, in order, into POST chunks whose whole body fits ``byte_limit``.

    A row too big to fit any body on its own gets a chunk of its own: it is still
    sent (never silently dropped) and the collector's answer decides its fate.
    """
    overhead = len(_BODY_PREFIX) + len(_BODY_SUFFIX)
    chunks: list[list[EventRow]] = []
    current: list[EventRow] = []
    size = overhead
    for row in rows:
        added = event_size(row) + (1 if current else 0)
        if current and size + added > byte_limit:
            chunks.append(current)
            current = []
            size = overhead
            added -= 1
        current.append(row)
        size += added
    if current:
        chunks.append(current)
    return chunks


def now_ms() -> str:
    return str(int(time.time() * 1000))


def _with_stm(raw: str, stm: str) -> str:
    if raw == "{}":
        return '{"stm":"' + stm + '"}'
    return raw[:-1] + ',"stm":"' + stm + '"}'


def post_body(rows: Sequence[EventRow], stm: str) -> bytes:
    """The payload_data 1-0-4 body for these rows, each with the same ``stm``."""
    events = ",".join(_with_stm(row.raw, stm) for row in rows)
    return (_BODY_PREFIX + events + _BODY_SUFFIX).encode("utf-8")


def get_query(row: EventRow, stm: str) -> str:
    """The form-encoded query string of one GET request."""
    event = row.event
    event["stm"] = stm
    return urlencode(event)


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - time.time()
    if seconds != seconds:  # NaN
        return None
    return max(seconds, 0.0)
