"""Web framework integrations: open the tracker with the app, attribute events to requests.

The framework modules are opt-in and import their framework only when imported
themselves, so ``import asynctracker`` never needs any of those frameworks:

- :mod:`asynctracker.integrations.fastapi`: FastAPI and Starlette (the ``fastapi`` extra,
  or ``starlette`` for Starlette alone).
- :mod:`asynctracker.integrations.aiohttp`: aiohttp.web (the ``aiohttp`` extra).
- :mod:`asynctracker.integrations.flask`, :mod:`~asynctracker.integrations.django` and
  :mod:`~asynctracker.integrations.celery`: synchronous code, with
  :mod:`asynctracker.sync` (the ``flask``, ``django`` and ``celery`` extras).

See the README's "Installation" for installing with an extra.

This module holds what the integrations share and what any other framework can reuse:
turning a request's peer address and headers into a :class:`~asynctracker.Subject`, the
filters that decide which requests are page views (:class:`PageViewFilter`, with its
defaults and their reasons), and the flush a shutdown hook runs before the app closes
what the emitters send with. No framework imports.

Which address is the user's? The immediate peer, unless that peer is one of your
``trusted_proxies``: only then is ``X-Forwarded-For`` believed, read from the right, hop by
hop, while the hops are trusted proxies too. The first untrusted hop is the user. Reading
the leftmost entry instead would let any client choose its own IP by sending the header.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TypeAlias

from .._checks import lossy_utf8
from ..exceptions import ConfigurationError
from ..subject import Subject
from ..tracker import Tracker
from ._page_views import (
    DEFAULT_EXCLUDED_PATHS,
    DEFAULT_METHODS,
    DEFAULT_STATUSES,
    PageViewFilter,
    PathRule,
)

__all__ = [
    "DEFAULT_EXCLUDED_PATHS",
    "DEFAULT_METHODS",
    "DEFAULT_STATUSES",
    "PageViewFilter",
    "PathRule",
    "ProxyNetwork",
    "TrustedProxies",
    "client_ip",
    "first_language",
    "flush_open_emitters",
    "id_cookie",
    "parse_trusted_proxies",
    "resolve_tracker",
    "subject_from_parts",
]

IPAddress: TypeAlias = "ipaddress.IPv4Address | ipaddress.IPv6Address"
#: One trusted proxy: an address or network as text (``"10.0.0.0/8"``), or an ipaddress network.
ProxyNetwork: TypeAlias = "str | ipaddress.IPv4Network | ipaddress.IPv6Network"
#: The parsed form of ``trusted_proxies`` (see :func:`parse_trusted_proxies`).
TrustedProxies: TypeAlias = "tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]"

#: The JavaScript tracker names its id cookie ``_sp_id.<domain hash>`` (or plain ``_sp_id``).
ID_COOKIE_PREFIX = "_sp_id"
_LANGUAGE_TAG = re.compile(r"[A-Za-z]{1,8}(?:-[A-Za-z0-9]{1,8})*")


def resolve_tracker(tracker: Tracker | Callable[[], Tracker], needed_by: str) -> Tracker:
    """``tracker``, or what calling it returns (a factory run when the app starts);
    ConfigurationError, naming ``needed_by``, for anything else."""
    made = tracker if isinstance(tracker, Tracker) else tracker()
    if not isinstance(made, Tracker):
        raise ConfigurationError(f"{needed_by} needs a Tracker or a function returning one")
    return made


async def flush_open_emitters(tracker: Tracker) -> None:
    """Flush what the tracker's emitters still hold, for up to the longest
    ``close_timeout`` among those not closed: a shutdown hook's flush, before the app
    closes what they send with (the tracker is closed later)."""
    open_emitters = [emitter for emitter in tracker.emitters if not emitter.closed]
    if open_emitters:
        await tracker.flush(timeout=max(emitter.close_timeout for emitter in open_emitters))


def parse_trusted_proxies(proxies: Iterable[ProxyNetwork]) -> TrustedProxies:
    """Parse ``trusted_proxies`` once, when the middleware is made.

    Raises ConfigurationError for an entry that is not an address or network, so a typo
    fails at startup rather than silently trusting nobody.
    """
    if isinstance(proxies, str):
        raise ConfigurationError("trusted_proxies must be a list of addresses or networks")
    parsed: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    for proxy in proxies:
        if isinstance(proxy, (ipaddress.IPv4Network, ipaddress.IPv6Network)):
            parsed.append(proxy)
            continue
        try:
            parsed.append(ipaddress.ip_network(str(proxy).strip(), strict=False))
        except ValueError as exc:
            raise ConfigurationError(
                f"trusted_proxies entry {proxy!r} is not an IP address or network"
            ) from exc
    return tuple(parsed)


def _parse_ip(value: str | None) -> IPAddress | None:
    """An address from a peer or an X-Forwarded-For hop; ports and brackets are removed."""
    if not value:
        return None
    text = value.strip()
    if text.startswith("["):  # "[2001:db8::1]:8080"
        text = text[1 : text.find("]")] if "]" in text else ""
    elif text.count(":") == 1:  # "203.0.113.7:51234"
        text = text.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _trusted(address: IPAddress, proxies: TrustedProxies) -> bool:
    return any(address.version == net.version and address in net for net in proxies)


def client_ip(
    peer: str | None,
    forwarded_for: Sequence[str] = (),
    trusted_proxies: TrustedProxies = (),
) -> str | None:
    """The user's IP address, or None when the peer is not an IP (a Unix socket, a test).

    ``forwarded_for`` holds the raw ``X-Forwarded-For`` header values (a request may carry
    several); they are used only when ``peer`` is a trusted proxy. A malformed hop ends the
    walk at the last address a trusted proxy vouched for.
    """
    address = _parse_ip(peer)
    if address is None:
        return None
    if not forwarded_for or not _trusted(address, trusted_proxies):
        return str(address)
    hops = [hop for value in forwarded_for for hop in value.split(",") if hop.strip()]
    for hop in reversed(hops):
        parsed = _parse_ip(hop)
        if parsed is None:
            break
        address = parsed
        if not _trusted(address, trusted_proxies):
            break
    return str(address)


def first_language(accept_language: str | None) -> str | None:
    """The first language tag of an ``Accept-Language`` header (``"en-GB"``), or None.

    Browsers list the preferred language first; ``*`` and malformed tags give None rather
    than sending junk in ``lang``.
    """
    if not accept_language:
        return None
    tag = accept_language.split(",", 1)[0].split(";", 1)[0].strip()
    return tag if _LANGUAGE_TAG.fullmatch(tag) else None


def id_cookie(cookies: Mapping[str, str]) -> str | None:
    """The value of the JavaScript tracker's ``_sp_id`` / ``_sp_id.<hash>`` cookie, if any."""
    for name, value in cookies.items():
        if name == ID_COOKIE_PREFIX or name.startswith(ID_COOKIE_PREFIX + "."):
            return value
    return None


def subject_from_parts(
    *,
    peer: str | None,
    forwarded_for: Sequence[str] = (),
    user_agent: str | None = None,
    accept_language: str | None = None,
    cookies: Mapping[str, str] | None = None,
    trusted_proxies: TrustedProxies = (),
) -> Subject:
    """Build the Subject of one request from what every framework exposes.

    Sets ``ip`` (see :func:`client_ip`), ``ua``, ``lang`` (first Accept-Language tag) and,
    from the ``_sp_id`` cookie, ``duid``/``vid``/``sid``, so that server-side events join
    the same user and session as the JavaScript tracker's. Missing parts are left out.
    """
    subject = Subject()
    ip = client_ip(peer, forwarded_for, trusted_proxies)
    if ip:
        subject.set_ip_address(ip)
    if user_agent:  # a header: bytes that are not UTF-8 must not break the request
        subject.set_useragent(lossy_utf8(user_agent))
    language = first_language(accept_language)
    if language:
        subject.set_language(language)
    cookie = id_cookie(cookies or {})
    if cookie:
        subject.from_id_cookie(cookie)
    return subject
