"""Extra request headers: checked once, when the emitter is made.

A header that cannot be sent (a name that is no HTTP token, a value with a line
break, text that is not Latin-1) would otherwise fail every request in the
background; one that changes the framing (Content-Length, Host, ...) would corrupt
them. Both raise ConfigurationError at construction instead.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from .exceptions import ConfigurationError

__all__ = ["ANONYMOUS_HEADER", "check_headers"]

#: Asks the collector to drop the IP address and network user id (server-side
#: anonymisation, as the other Snowplow trackers' ``anonymousTracking`` server option).
ANONYMOUS_HEADER = ("SP-Anonymous", "*")

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# Set by httpx from the request itself; a user's value would contradict it.
_RESERVED = frozenset(
    {"host", "content-length", "content-type", "transfer-encoding", "connection", "cookie"}
)


def check_headers(headers: Mapping[str, str] | None, *, anonymous: bool) -> dict[str, str]:
    """The headers every request carries, validated (ConfigurationError otherwise)."""
    if headers is None:
        headers = {}
    if not isinstance(headers, Mapping):
        raise ConfigurationError(f"headers must be a mapping of str to str, got {headers!r}")
    checked: dict[str, str] = {}
    for name, value in headers.items():
        if not isinstance(name, str) or not _TOKEN.fullmatch(name):
            raise ConfigurationError(f"headers: {name!r} is not a valid HTTP header name")
        if name.lower() in _RESERVED:
            raise ConfigurationError(
                f"headers: {name!r} is set by the emitter for each request and cannot be given"
            )
        if (
            not isinstance(value, str)
            or any(ch in value for ch in "\r\n\0")
            or not value.isprintable()
            or not all(ord(ch) < 256 for ch in value)
        ):
            raise ConfigurationError(
                f"headers: the value of {name!r} must be printable Latin-1 text on one line"
            )
        checked[name] = value
    if anonymous:
        name, value = ANONYMOUS_HEADER
        checked = {k: v for k, v in checked.items() if k.lower() != name.lower()}
        checked[name] = value
    return checked
