"""Who may talk to the collector: Host checks, CSRF checks and CORS headers.

The collector listens on loopback, but a web page in the developer's browser can still
reach it. Two attacks matter:

- **DNS rebinding**: a page at ``attacker.example`` re-points its name to 127.0.0.1 and
  reads ``/events`` as "same-origin". The browser then sends ``Host: attacker.example``,
  so any request whose Host is not a name of this machine's loopback (or one the user
  allowed) is refused with 421.
- **CSRF**: any page can *send* a request (a form, ``fetch`` with ``no-cors``) to wipe the
  events. Browsers label such requests with ``Origin`` and/or ``Sec-Fetch-Site``, headers
  no page can set. A state-changing request that a browser sent must come from the
  collector's own page (``Origin`` naming this collector; ``Sec-Fetch-Site``, when sent,
  ``same-origin``) *and* carry the token that page embeds, which other origins cannot
  read. Requests with neither header come from scripts and command-line tools (Micro
  users call ``/micro/reset`` with curl) and are accepted, unless a ``Referer`` names
  another page (an older browser).

``Origin: null`` needs a word. It means the browser withheld or could not name the
origin: a page whose referrer policy is ``no-referrer`` (the collector's own page sent
that policy, so a real click on its reset button arrived as ``null`` and was refused), a
sandboxed frame, a ``file:`` or ``data:`` page, a redirect across origins. Any site can
produce it at will, so it proves nothing either way: it is accepted only together with
``Sec-Fetch-Site: same-origin``, which the browser computes from the real initiator (an
opaque origin is cross-site to everything), and still only with the token; ``null``
without Fetch Metadata is refused. The page now sends ``Referrer-Policy: same-origin``,
so browsers name its origin in the first place (those without Fetch Metadata too), while
other sites still get no referrer from it.

CORS (Snowplow collectors and Micro do this) lets a JavaScript tracker on any origin send
events: only the tracker routes answer preflights and allow credentials; inspection and
reset routes never send CORS headers, so other origins cannot read them.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable, Mapping
from urllib.parse import parse_qsl

__all__ = ["TOKEN_HEADER", "HostCheck", "cors_headers", "csrf_problem", "preflight_headers"]

#: The header the page's scripts send the token in.
TOKEN_HEADER = "x-collector-token"
_LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]", "::1")


def _strip_port(host: str) -> str:
    host = host.strip().lower()
    if host.startswith("["):
        end = host.find("]")
        return host[: end + 1] if end != -1 else host
    name, _, _ = host.partition(":")
    return name


class HostCheck:
    """Accepts Host headers naming loopback, the bound address or an allowed name.

    ``"*"`` among ``allowed`` accepts any Host (for a collector deliberately exposed).
    """

    def __init__(self, bound: str, allowed: Iterable[str] = ()) -> None:
        names = {*_LOOPBACK_NAMES, bound.lower()}
        if ":" in bound and not bound.startswith("["):
            names.add(f"[{bound.lower()}]")
        extra = [_strip_port(name) if name != "*" else name for name in allowed]
        self.any = "*" in extra
        self.names = frozenset(names | set(extra))

    def accepts(self, host: str | None) -> bool:
        """Whether a request with this Host header may be served (HTTP/1.0: none sent)."""
        if host is None or self.any:
            return True
        name = _strip_port(host)
        return name in self.names or name.endswith(".localhost")


def csrf_problem(headers: Mapping[str, str], body: bytes, token: str) -> str | None:
    """Why a state-changing request must be refused, or ``None`` when it may proceed."""
    origin = headers.get("origin")
    site = headers.get("sec-fetch-site")
    host = headers.get("host", "")
    referer = headers.get("referer")
    if origin is None and site is None:
        # Not labelled by a browser: curl, CI scripts, the Python API, or an older browser
        # loading <img src=".../micro/reset">, which at least names the page it came from.
        if referer is not None and not referer.lower().startswith(f"http://{host.lower()}/"):
            return f"request from another page ({referer!r}) refused"
        return None
    if origin is None and site == "none":
        return None  # the user typed the URL or used a bookmark
    if origin == "null":
        # A hidden origin: only the browser's own Sec-Fetch-Site can vouch for it.
        if site is None:
            return "request from a page with a hidden origin ('null') refused"
    elif origin is not None and origin.lower() != f"http://{host.lower()}":
        return f"cross-origin request from {origin!r} refused"
    if site is not None and site != "same-origin":
        return f"request from a {site} page refused"
    sent = headers.get(TOKEN_HEADER)
    if sent is None and headers.get("content-type", "").startswith(
        "application/x-www-form-urlencoded"
    ):
        sent = dict(parse_qsl(body.decode("latin-1"))).get("token")
    if sent is None or not hmac.compare_digest(sent.encode("latin-1"), token.encode("latin-1")):
        return f"missing or wrong {TOKEN_HEADER} (the collector's page sends it)"
    return None


def cors_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """CORS answer headers for a tracker route: echo the Origin, allow credentials."""
    origin = headers.get("origin")
    if origin is None:
        return {}
    return {
        "access-control-allow-origin": origin,
        "access-control-allow-credentials": "true",
        "vary": "Origin",
    }


def preflight_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The answer to an ``OPTIONS`` preflight on a tracker route."""
    return {
        **cors_headers(headers),
        "access-control-allow-methods": "POST, GET, OPTIONS",
        "access-control-allow-headers": "Content-Type, SP-Anonymous",
        "access-control-max-age": "3600",
    }
