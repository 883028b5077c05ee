"""The Emitter's options, checked once, when it is made.

A bad option raises ConfigurationError before anything is opened, naming the option,
so a typo fails at startup instead of as endless errors in the background.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import httpx

from ._headers import check_headers
from ._retry import RetryPolicy
from ._wire import Endpoints
from .exceptions import ConfigurationError
from .storage.base import Storage

__all__ = ["Options", "positive_int"]

# Requests in flight by default. A GET carries one event, and httpx's CPU per request
# grows with the connections in flight, while a real network's round trip wants a few
# in flight (benchmarks/README.md).
_DEFAULT_CONCURRENCY = {"POST": 16, "GET": 8}


def positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigurationError(f"{name} must be a positive integer, got {value!r}")
    return value


def _flag(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise ConfigurationError(f"{name} must be True or False, got {value!r}")
    return value


def _seconds(name: str, value: object, *, zero: bool) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not (value >= 0 if zero else value > 0)
    ):
        kind = ">= 0" if zero else "positive"
        raise ConfigurationError(f"{name} must be {kind} seconds, got {value!r}")
    return float(value)


@dataclass(frozen=True, slots=True)
class Options:
    """An Emitter's options, checked (see ``Emitter`` for what each means)."""

    endpoints: Endpoints
    request_type: str
    send_limit: int
    byte_limit_get: int
    byte_limit_post: int
    headers: dict[str, str]
    timeout: float
    close_timeout: float
    max_concurrent_requests: int
    retry: RetryPolicy
    trust_env: bool

    @classmethod
    def check(
        cls,
        collector_uri: str,
        *,
        request_type: str,
        protocol: str,
        send_limit: int,
        byte_limit_get: int,
        byte_limit_post: int,
        storage: Storage | None,
        callback: object,
        http_client: object,
        timeout: float,
        retry: RetryPolicy | None,
        overflow: str,
        close_timeout: float,
        max_concurrent_requests: int | None,
        headers: Mapping[str, str] | None,
        anonymous: bool,
        post_path: str | None,
        get_path: str | None,
        trust_env: bool,
    ) -> Options:
        if request_type not in ("GET", "POST"):
            raise ConfigurationError(f"request_type must be 'GET' or 'POST', got {request_type!r}")
        if protocol not in ("http", "https"):
            raise ConfigurationError(f"protocol must be 'http' or 'https', got {protocol!r}")
        endpoints = Endpoints.parse(collector_uri, protocol, post_path=post_path, get_path=get_path)
        if storage is not None and not isinstance(storage, Storage):
            raise ConfigurationError(
                "storage must implement the Storage protocol (add_event_row, "
                "delete_all_event_rows, delete_event_rows, get_all_event_rows, "
                "get_event_rows_within_range)"
            )
        if http_client is not None and not isinstance(http_client, httpx.AsyncClient):
            raise ConfigurationError("http_client must be an httpx.AsyncClient")
        if callback is not None and not callable(callback):
            raise ConfigurationError("callback must be callable")
        if overflow not in ("drop_oldest", "drop_newest", "raise"):
            raise ConfigurationError(
                f"overflow must be 'drop_oldest', 'drop_newest' or 'raise', got {overflow!r}"
            )
        if retry is None:
            retry = RetryPolicy()
        if not isinstance(retry, RetryPolicy):
            raise ConfigurationError("retry must be a RetryPolicy")
        return cls(
            endpoints=endpoints,
            request_type=request_type,
            send_limit=positive_int("send_limit", send_limit),
            byte_limit_get=positive_int("byte_limit_get", byte_limit_get),
            byte_limit_post=positive_int("byte_limit_post", byte_limit_post),
            headers=check_headers(headers, anonymous=_flag("anonymous", anonymous)),
            timeout=_seconds("timeout", timeout, zero=False),
            close_timeout=_seconds("close_timeout", close_timeout, zero=True),
            max_concurrent_requests=positive_int(
                "max_concurrent_requests",
                _DEFAULT_CONCURRENCY[request_type]
                if max_concurrent_requests is None
                else max_concurrent_requests,
            ),
            retry=retry,
            trust_env=_flag("trust_env", trust_env),
        )
