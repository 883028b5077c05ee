"""Consent and error events: the Node tracker's consent builders and the mobile trackers'
exception event.

A consent event carries the consent document as an entity (``consent_document`` 1-0-0),
sent before the event's own ``context``, as ``buildConsentGranted`` and
``buildConsentWithdrawn`` of ``@snowplow/tracker-core`` return it. The error event is
``application_error`` 1-0-2, the version the iOS and Android trackers send (the
JavaScript tracker's plugin sends 1-0-1, which 1-0-2 extends); its text is cut to the
schema's lengths rather than refused, because an error report must not fail for being
long.
"""

from __future__ import annotations

import threading
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar, Literal, TypeAlias

from ._checks import INT32_MAX
from ._event import Event, TrueTimestamp, bounded, count, optional_text, required_text
from .exceptions import InvalidEventError
from .payload import JSONValue, SelfDescribingJson
from .subject import Subject

__all__ = ["ApplicationError", "ConsentGranted", "ConsentWithdrawn", "ProgrammingLanguage"]

_SNOWPLOW = "iglu:com.snowplowanalytics.snowplow"
CONSENT_DOCUMENT_SCHEMA = f"{_SNOWPLOW}/consent_document/jsonschema/1-0-0"


def _document(
    id_: object, version: object, name: object, description: object
) -> SelfDescribingJson:
    """The consent document entity, checked against consent_document 1-0-0's limits."""
    data: dict[str, JSONValue] = {
        "id": bounded("id_", id_, 36),
        "version": bounded("version", version, 36),
    }
    if name is not None:
        data["name"] = bounded("name", name, 60)
    if description is not None:
        data["description"] = bounded("description", description, 10000)
    return SelfDescribingJson(CONSENT_DOCUMENT_SCHEMA, data)


@dataclass(frozen=True, slots=True)
class ConsentGranted(Event):
    """Consent granted to a document (``consent_granted`` 1-0-0, with the document).

    ``id_`` and ``version`` (at most 36 characters each) name the document; ``name``
    (at most 60) and ``description`` describe it; ``expiry`` is when the consent ends
    (an aware datetime, or a date-time string such as ``"2030-01-01T00:00:00Z"``).
    """

    id_: str
    version: str
    name: str | None = None
    description: str | None = None
    expiry: datetime | str | None = None
    event_subject: Subject | None = None
    context: Sequence[SelfDescribingJson] | None = None
    true_timestamp: TrueTimestamp | None = None

    SCHEMA: ClassVar[str] = f"{_SNOWPLOW}/consent_granted/jsonschema/1-0-0"

    def __post_init__(self) -> None:
        document = _document(self.id_, self.version, self.name, self.description)
        expiry = self.expiry
        data: dict[str, JSONValue] = {}
        if isinstance(expiry, datetime):
            if expiry.tzinfo is None or expiry.utcoffset() is None:
                raise InvalidEventError(
                    "expiry must be timezone-aware (a naive datetime is ambiguous)"
                )
            data["expiry"] = expiry.isoformat()
        elif expiry is not None:
            data["expiry"] = required_text("expiry", expiry)
        self._finish(
            "ue", self_describing=SelfDescribingJson(self.SCHEMA, data), entities=(document,)
        )


@dataclass(frozen=True, slots=True)
class ConsentWithdrawn(Event):
    """Consent withdrawn (``consent_withdrawn`` 1-0-0): ``all_=True`` for every document,
    or the document's ``id_`` and ``version`` (sent as its entity, as for
    ConsentGranted)."""

    all_: bool = False
    id_: str | None = None
    version: str | None = None
    name: str | None = None
    description: str | None = None
    event_subject: Subject | None = None
    context: Sequence[SelfDescribingJson] | None = None
    true_timestamp: TrueTimestamp | None = None

    SCHEMA: ClassVar[str] = f"{_SNOWPLOW}/consent_withdrawn/jsonschema/1-0-0"

    def __post_init__(self) -> None:
        if not isinstance(self.all_, bool):
            raise InvalidEventError(f"all_ must be True or False, got {self.all_!r}")
        entities: tuple[SelfDescribingJson, ...] = ()
        if self.id_ is not None or self.version is not None:
            entities = (_document(self.id_, self.version, self.name, self.description),)
        elif self.name is not None or self.description is not None:
            raise InvalidEventError("a document's name or description needs its id_ and version")
        elif not self.all_:
            raise InvalidEventError("withdraw all_ consent, or name the document (id_, version)")
        self._finish(
            "ue",
            self_describing=SelfDescribingJson(self.SCHEMA, {"all": self.all_}),
            entities=entities,
        )


ProgrammingLanguage: TypeAlias = Literal[
    "JAVA", "SCALA", "KOTLIN", "GROOVY", "RUBY", "GOLANG", "JAVASCRIPT", "PHP", "PYTHON",
    "OBJECTIVEC", "SWIFT", "C", "CPLUSPLUS", "CSHARP", "ACTIONSCRIPT", "LUA", "RUST",
    "HASKELL", "CLOJURE", "ERLANG", "ELIXIR", "CRYSTAL", "PONY", "NIM",
]  # fmt: skip
_LANGUAGES = frozenset(ProgrammingLanguage.__args__)  # type: ignore[attr-defined]


def _head(value: object, name: str, limit: int) -> str | None:
    """Optional text cut to its first ``limit`` characters."""
    checked = optional_text(name, value)
    return None if checked is None else checked[:limit]


def _tail(value: object, name: str, limit: int) -> str | None:
    """Optional text cut to its last ``limit`` characters: a Python traceback ends with
    the innermost frame and the exception, the lines worth keeping."""
    checked = optional_text(name, value)
    return None if checked is None else checked[-limit:]


@dataclass(frozen=True, slots=True)
class ApplicationError(Event):
    """An error in the application (``application_error`` 1-0-2).

    ``message`` is required. Text longer than the schema allows is cut: the message and
    names to their first 2,048 and 1,024 characters, stack traces to their last 8,192.
    :meth:`from_exception` fills everything from a caught exception.
    """

    message: str
    exception_name: str | None = None
    stack_trace: str | None = None
    cause_stack_trace: str | None = None
    line_number: int | None = None
    line_column: int | None = None
    file_name: str | None = None
    class_name: str | None = None
    thread_name: str | None = None
    thread_id: int | None = None
    is_fatal: bool | None = None
    programming_language: ProgrammingLanguage = "PYTHON"
    event_subject: Subject | None = None
    context: Sequence[SelfDescribingJson] | None = None
    true_timestamp: TrueTimestamp | None = None

    SCHEMA: ClassVar[str] = f"{_SNOWPLOW}/application_error/jsonschema/1-0-2"

    def __post_init__(self) -> None:
        if self.programming_language not in _LANGUAGES:
            raise InvalidEventError(
                f"programming_language must be one of {sorted(_LANGUAGES)}, "
                f"got {self.programming_language!r}"
            )
        if self.is_fatal is not None and not isinstance(self.is_fatal, bool):
            raise InvalidEventError(f"is_fatal must be True, False or None, got {self.is_fatal!r}")
        data: dict[str, JSONValue] = {
            "programmingLanguage": self.programming_language,
            "message": required_text("message", self.message)[:2048],
            "exceptionName": _head(self.exception_name, "exception_name", 1024),
            "stackTrace": _tail(self.stack_trace, "stack_trace", 8192),
            "causeStackTrace": _tail(self.cause_stack_trace, "cause_stack_trace", 8192),
            "lineNumber": count("line_number", self.line_number),
            "lineColumn": count("line_column", self.line_column),
            "fileName": _head(self.file_name, "file_name", 1024),
            "className": _head(self.class_name, "class_name", 1024),
            "threadName": _head(self.thread_name, "thread_name", 1024),
            "threadId": count("thread_id", self.thread_id),
            "isFatal": self.is_fatal,
        }
        sent = {key: value for key, value in data.items() if value is not None}
        self._finish("ue", self_describing=SelfDescribingJson(self.SCHEMA, sent))

    @classmethod
    def from_exception(
        cls,
        exc: BaseException,
        *,
        is_fatal: bool | None = None,
        event_subject: Subject | None = None,
        context: Sequence[SelfDescribingJson] | None = None,
        true_timestamp: TrueTimestamp | None = None,
    ) -> ApplicationError:
        """The error event of a caught exception: its message (or its type's name when it
        has none), type, traceback, cause's traceback, and the file and line it was
        raised at; the current thread's name."""
        if not isinstance(exc, BaseException):
            raise InvalidEventError(f"from_exception takes an exception, got {type(exc).__name__}")
        kind = type(exc)
        module = kind.__module__
        name = kind.__qualname__ if module == "builtins" else f"{module}.{kind.__qualname__}"
        frames = traceback.extract_tb(exc.__traceback__)
        cause = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
        line = frames[-1].lineno if frames else None
        return cls(
            message=str(exc) or kind.__name__,
            exception_name=name,
            stack_trace=_format(exc),
            cause_stack_trace=None if cause is None else _format(cause),
            line_number=line if line is not None and 0 <= line <= INT32_MAX else None,
            file_name=frames[-1].filename if frames else None,
            thread_name=threading.current_thread().name,
            is_fatal=is_fatal,
            event_subject=event_subject,
            context=context,
            true_timestamp=true_timestamp,
        )


def _format(exc: BaseException) -> str:
    """One exception's traceback, without its chain (the cause has its own field)."""
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__, chain=False))
