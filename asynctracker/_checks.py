"""Argument checks shared by the tracker, the Subject and the emitter.

Each check costs next to nothing for good input (a type test, ``str.isascii()``, one
comparison) and does its slower work only to explain bad input: the message names the
argument and, where it can, the likely mistake. Nothing here does I/O.

The limits are the pipeline's, so that an event refused here is one Snowplow Enrich
would have turned into a failed event, or the collector could not have parsed:

* timestamps are epoch milliseconds with 13 digits, 2001-09-09 to 2286-11-20 UTC
  (what the protocol validators accept; seconds, microseconds and nanoseconds are
  recognised and named in the error);
* integers Enrich stores as 32-bit (session index, item quantity, screen and viewport
  sizes, colour depth) are kept within 32 bits;
* text must be encodable as UTF-8 (a lone surrogate such as ``"\\ud800"`` is not).
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone

from .exceptions import ConfigurationError, InvalidEventError

__all__ = [
    "INT32_MAX",
    "INT32_MIN",
    "MAX_TIMESTAMP_MS",
    "MIN_TIMESTAMP_MS",
    "PLATFORMS",
    "epoch_ms",
    "finite_number",
    "flush_timeout",
    "int32",
    "lossy_utf8",
    "platform",
    "text",
    "utf8_problem",
]

INT32_MAX = 2**31 - 1
INT32_MIN = -(2**31)
#: 2001-09-09T01:46:40Z: the first 13-digit epoch-milliseconds value.
MIN_TIMESTAMP_MS = 10**12
#: 2286-11-20T17:46:39.999Z: the last 13-digit one.
MAX_TIMESTAMP_MS = 10**13 - 1

#: The protocol's platform codes (``p``).
PLATFORMS = frozenset({"web", "mob", "pc", "srv", "app", "tv", "cnsl", "iot"})

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_ONE_MS = timedelta(milliseconds=1)
#: Epoch values of the accepted window in other units, with the unit's name.
_OTHER_UNITS = (
    (10**9, 10**10, "seconds"),
    (10**15, 10**16, "microseconds"),
    (10**18, 10**19, "nanoseconds"),
)


def utf8_problem(value: str) -> str | None:
    """Why ``value`` cannot be sent as UTF-8, or None if it can.

    ``str.isascii()`` is constant-time in CPython, so ASCII text costs one call; other
    text is encoded once.
    """
    if value.isascii():
        return None
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        return (
            f"contains {value[exc.start]!r} at index {exc.start}, which cannot be encoded "
            "as UTF-8 (a lone surrogate)"
        )
    return None


def lossy_utf8(value: str) -> str:
    """``value`` with every character UTF-8 cannot encode replaced by ``"?"``.

    For text that comes from a request rather than from code, such as a User-Agent
    header: aiohttp decodes bytes that are not UTF-8 to lone surrogates, and a visitor's
    odd header must never break the request or the tracking.
    """
    if value.isascii():
        return value
    return value.encode("utf-8", "replace").decode("utf-8")


def setting_text(name: str, value: object) -> str:
    """A str setting (a Subject field, a tracker's app_id): ConfigurationError when it
    is not a str or cannot be sent as UTF-8."""
    if not isinstance(value, str):
        raise ConfigurationError(f"{name} must be a str, got {type(value).__name__}")
    problem = utf8_problem(value)
    if problem is not None:
        raise ConfigurationError(f"{name} {problem}")
    return value


def platform(value: object) -> str:
    """A platform code (``p``): ConfigurationError for anything but one of PLATFORMS."""
    if not isinstance(value, str) or value not in PLATFORMS:
        raise ConfigurationError(f"platform must be one of {sorted(PLATFORMS)}, got {value!r}")
    return value


def text(name: str, value: object, *, required: bool = False) -> str | None:
    """A string argument: None/"" allowed unless required; anything else refused."""
    if value is None or value == "":
        if required:
            raise InvalidEventError(f"{name} is required and must be a non-empty str")
        return None
    if not isinstance(value, str):
        raise InvalidEventError(f"{name} must be a str, got {type(value).__name__}")
    if not value.isascii():
        problem = utf8_problem(value)
        if problem is not None:
            raise InvalidEventError(f"{name} {problem}")
    return value


def epoch_ms(name: str, value: object) -> str:
    """A timestamp as 13-digit epoch milliseconds: an int of ms, or an aware datetime."""
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise InvalidEventError(
                f"{name} must be timezone-aware (a naive datetime is ambiguous)"
            )
        # Exact integer arithmetic: ``int(value.timestamp() * 1000)`` goes through a
        # float and is one millisecond short for about 1 datetime in 160.
        ms = (value - _EPOCH) // _ONE_MS
        if not MIN_TIMESTAMP_MS <= ms <= MAX_TIMESTAMP_MS:
            raise InvalidEventError(
                f"{name}={value.isoformat()} is outside the accepted window "
                "2001-09-09 .. 2286-11-20 UTC"
            )
        return str(ms)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidEventError(
            f"{name} must be epoch milliseconds (int) or an aware datetime, "
            f"got {type(value).__name__}"
        )
    if not MIN_TIMESTAMP_MS <= value <= MAX_TIMESTAMP_MS:
        raise InvalidEventError(_timestamp_problem(name, value))
    return str(value)


def _timestamp_problem(name: str, value: int) -> str:
    if value <= 0:
        return f"{name} must be a positive epoch-milliseconds value, got {value}"
    shown = _show_int(value)
    for low, high, unit in _OTHER_UNITS:
        if low <= value < high:
            return f"{name}={shown} looks like {unit}; pass epoch milliseconds (13 digits)"
    return (
        f"{name}={shown} is not 13-digit epoch milliseconds "
        f"(accepted: {MIN_TIMESTAMP_MS} .. {MAX_TIMESTAMP_MS}, 2001-09-09 .. 2286-11-20 UTC)"
    )


def _show_int(value: int) -> str:
    """An int for a message; a huge one by its size (``str()`` refuses > 4,300 digits)."""
    if abs(value) < 10**30:
        return str(value)
    return f"an int of about {int(value.bit_length() * math.log10(2)) + 1} digits"


def finite_number(name: str, value: object) -> float:
    """A number the pipeline can hold as a double: no bool, NaN, infinity or huge int."""
    if type(value) is not float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InvalidEventError(f"{name} must be a number, got {type(value).__name__}")
        try:
            as_float = float(value)
        except OverflowError:
            raise InvalidEventError(
                f"{name} is too large to send as a number (beyond the float range)"
            ) from None
    else:
        as_float = value
    if not math.isfinite(as_float):
        raise InvalidEventError(f"{name} must be a finite number, got {value!r}")
    return as_float


def int32(name: str, value: object, *, minimum: int, error: type[ValueError]) -> int:
    """An int in ``minimum .. 2**31 - 1`` (Enrich stores these as 32-bit integers)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise error(f"{name} must be an int, got {type(value).__name__}")
    if not minimum <= value <= INT32_MAX:
        shown = _show_int(value)
        raise error(f"{name} must be between {minimum} and {INT32_MAX}, got {shown}")
    return value


def flush_timeout(value: object) -> float | None:
    """A flush timeout: None or infinity for no limit, else seconds >= 0 (NaN refused)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigurationError(
            f"timeout must be None or a number of seconds, got {type(value).__name__}"
        )
    try:
        seconds = float(value)
    except OverflowError:  # an int beyond the float range: positive ones wait forever
        seconds = math.inf if value > 0 else -math.inf
    if math.isnan(seconds) or seconds < 0:
        raise ConfigurationError(f"timeout must be None or >= 0 seconds, got {value!r}")
    return None if math.isinf(seconds) else seconds
