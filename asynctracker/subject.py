"""Subject: who and where an event is about (user, device, network).

A Subject is a small mutable bag of protocol fields. The tracker holds one for all its
events; a ``track_*`` call's ``subject=`` replaces it for that one event, and an event
object's ``event_subject`` is merged over it (see :class:`asynctracker.Tracker`).
"""

from __future__ import annotations

import re
from typing import Any

from ._checks import INT32_MAX, int32, platform, setting_text
from .exceptions import ConfigurationError

__all__ = ["Subject"]

_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
#: Enrich's limit for ``os_timezone``; IANA names are at most about 30 characters.
_MAX_TIMEZONE_LENGTH = 255


def _check_positive(name: str, *values: int) -> None:
    """Positive 32-bit ints: Enrich stores sizes, colour depth and session index as int32."""
    for value in values:
        int32(name, value, minimum=1, error=ConfigurationError)


class Subject:
    """The user, device and network an event is attributed to.

    Every setter returns the Subject, so calls chain:
    ``Subject().set_user_id("u-1").set_language("en")``. Keywords to the constructor
    do the same as the setters. Empty values are not sent. The setters have
    snowplow-tracker's names (``set_lang`` is ``set_language``), so its Subject code
    runs unchanged.
    """

    __slots__ = ("_fields",)

    def __init__(
        self,
        *,
        user_id: str | None = None,
        screen_resolution: tuple[int, int] | None = None,
        viewport: tuple[int, int] | None = None,
        color_depth: int | None = None,
        timezone: str | None = None,
        language: str | None = None,
        ip_address: str | None = None,
        useragent: str | None = None,
        domain_user_id: str | None = None,
        domain_session_id: str | None = None,
        domain_session_index: int | None = None,
        network_user_id: str | None = None,
        platform: str | None = None,
    ) -> None:
        self._fields: dict[str, str] = {}
        if platform is not None:
            self.set_platform(platform)
        if user_id is not None:
            self.set_user_id(user_id)
        if screen_resolution is not None:
            self.set_screen_resolution(*screen_resolution)
        if viewport is not None:
            self.set_viewport(*viewport)
        if color_depth is not None:
            self.set_color_depth(color_depth)
        if timezone is not None:
            self.set_timezone(timezone)
        if language is not None:
            self.set_language(language)
        if ip_address is not None:
            self.set_ip_address(ip_address)
        if useragent is not None:
            self.set_useragent(useragent)
        if domain_user_id is not None:
            self.set_domain_user_id(domain_user_id)
        if domain_session_id is not None:
            self.set_domain_session_id(domain_session_id)
        if domain_session_index is not None:
            self.set_domain_session_index(domain_session_index)
        if network_user_id is not None:
            self.set_network_user_id(network_user_id)

    def _set(self, key: str, value: str) -> Subject:
        if value:
            self._fields[key] = value
        else:
            self._fields.pop(key, None)
        return self

    def set_platform(self, value: str) -> Subject:
        """The platform code (``p``) of this Subject's events, one of ``"web"``, ``"mob"``,
        ``"pc"``, ``"srv"``, ``"app"``, ``"tv"``, ``"cnsl"``, ``"iot"``; it wins over
        the tracker's ``platform``."""
        return self._set("p", platform(value))

    def set_user_id(self, user_id: str) -> Subject:
        """Your own id for the user (``uid``)."""
        return self._set("uid", setting_text("user_id", user_id))

    def set_screen_resolution(self, width: int, height: int) -> Subject:
        """Device screen size in pixels (``res`` = ``"WxH"``)."""
        _check_positive("screen_resolution", width, height)
        return self._set("res", f"{width}x{height}")

    def set_viewport(self, width: int, height: int) -> Subject:
        """Browser viewport size in pixels (``vp`` = ``"WxH"``)."""
        _check_positive("viewport", width, height)
        return self._set("vp", f"{width}x{height}")

    def set_color_depth(self, depth: int) -> Subject:
        """Screen colour depth in bits (``cd``)."""
        _check_positive("color_depth", depth)
        return self._set("cd", str(depth))

    def set_timezone(self, timezone: str) -> Subject:
        """IANA time zone name such as ``"Europe/London"`` (``tz``), at most 255 characters."""
        if len(setting_text("timezone", timezone)) > _MAX_TIMEZONE_LENGTH:
            raise ConfigurationError(
                f"timezone must be at most {_MAX_TIMEZONE_LENGTH} characters, got {len(timezone)}"
            )
        return self._set("tz", timezone)

    def set_language(self, language: str) -> Subject:
        """Language tag such as ``"en-GB"`` (``lang``)."""
        return self._set("lang", setting_text("language", language))

    def set_lang(self, lang: str) -> Subject:
        """snowplow-tracker's name for :meth:`set_language`."""
        return self.set_language(lang)

    def set_ip_address(self, ip_address: str) -> Subject:
        """The user's IP address (``ip``); the collector uses it instead of the sender's."""
        return self._set("ip", setting_text("ip_address", ip_address))

    def set_useragent(self, useragent: str) -> Subject:
        """The user's User-Agent header (``ua``)."""
        return self._set("ua", setting_text("useragent", useragent))

    def set_domain_user_id(self, domain_user_id: str) -> Subject:
        """First-party cookie user id set by the JavaScript tracker (``duid``)."""
        return self._set("duid", setting_text("domain_user_id", domain_user_id))

    def set_domain_session_id(self, domain_session_id: str) -> Subject:
        """The JavaScript tracker's session id (``sid``): a UUID, as Enrich requires."""
        setting_text("domain_session_id", domain_session_id)
        if domain_session_id and not _UUID.fullmatch(domain_session_id):
            raise ConfigurationError(
                f"domain_session_id must be a UUID string, got {domain_session_id!r}"
            )
        return self._set("sid", domain_session_id)

    def set_domain_session_index(self, domain_session_index: int) -> Subject:
        """The JavaScript tracker's session count (``vid``), 1 .. 2**31 - 1."""
        _check_positive("domain_session_index", domain_session_index)
        return self._set("vid", str(domain_session_index))

    def set_network_user_id(self, network_user_id: str) -> Subject:
        """The collector's third-party cookie id (``tnuid``)."""
        return self._set("tnuid", setting_text("network_user_id", network_user_id))

    def from_id_cookie(self, value: str) -> Subject:
        """Take ``duid``, ``vid`` and ``sid`` from the JavaScript tracker's ``_sp_id`` cookie.

        The cookie is dot-separated: part 0 is the domain user id, part 2 the session
        index and part 5 the session id. Parts that are missing or malformed are skipped,
        because a cookie is user input and must never break tracking (only parts that are
        ASCII, and a session id that is a UUID, are taken).
        """
        if not isinstance(value, str):
            raise ConfigurationError(f"id cookie must be a str, got {type(value).__name__}")
        parts = value.split(".")
        if len(parts[0]) == 36 and parts[0].isascii():
            self._set("duid", parts[0])
        if (
            len(parts) > 2
            and parts[2].isascii()
            and parts[2].isdigit()
            and len(parts[2]) <= 10
            and 0 < int(parts[2]) <= INT32_MAX
        ):
            self._set("vid", str(int(parts[2])))
        if len(parts) > 5 and _UUID.fullmatch(parts[5]):
            self._set("sid", parts[5])
        return self

    @property
    def fields(self) -> dict[str, str]:
        """A copy of the protocol fields this Subject adds to an event."""
        return dict(self._fields)

    def __eq__(self, other: Any) -> bool:
        return isinstance(other, Subject) and other._fields == self._fields

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Subject({self._fields!r})"
