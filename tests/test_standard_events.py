"""The standard events of the JavaScript and Node trackers: the schema and data each
sends, and the schema limits checked when the event is made."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import pytest
from event_support import CTX, decoded, kept_tracker
from iglu import check_event

import asynctracker as at

SNOWPLOW = "iglu:com.snowplowanalytics.snowplow"
DOCUMENT = f"{SNOWPLOW}/consent_document/jsonschema/1-0-0"


async def sent(event: at.Event) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The self-describing event ``event`` stores, and its contexts."""
    async with kept_tracker() as (tracker, [storage]):
        await tracker.track(event)
        [stored] = await decoded(storage)
        return stored["unstruct_event"], stored.get("contexts", [])


EXPECTED = [
    pytest.param(
        at.LinkClick("https://a.example/", "buy", ["btn", "big"], "_blank", "Buy now"),
        f"{SNOWPLOW}/link_click/jsonschema/1-0-1",
        {
            "targetUrl": "https://a.example/",
            "elementId": "buy",
            "elementClasses": ["btn", "big"],
            "elementTarget": "_blank",
            "elementContent": "Buy now",
        },
        id="link-click",
    ),
    pytest.param(
        at.LinkClick("https://a.example/"),
        f"{SNOWPLOW}/link_click/jsonschema/1-0-1",
        {"targetUrl": "https://a.example/"},
        id="link-click-url-only",
    ),
    pytest.param(
        at.AddToCart("sku-1", 2, "Mug", "kitchen", 9.5, "EUR"),
        f"{SNOWPLOW}/add_to_cart/jsonschema/1-0-0",
        {
            "sku": "sku-1",
            "quantity": 2,
            "name": "Mug",
            "category": "kitchen",
            "unitPrice": 9.5,
            "currency": "EUR",
        },
        id="add-to-cart",
    ),
    pytest.param(
        at.RemoveFromCart("sku-1", 1, unit_price=0),
        f"{SNOWPLOW}/remove_from_cart/jsonschema/1-0-0",
        {"sku": "sku-1", "quantity": 1, "unitPrice": 0},
        id="remove-from-cart-zero-price",
    ),
    pytest.param(
        at.FormChange("signup", "email", "INPUT", "a@b.c", "email", ["wide"]),
        f"{SNOWPLOW}/change_form/jsonschema/1-0-0",
        {
            "formId": "signup",
            "elementId": "email",
            "nodeName": "INPUT",
            "value": "a@b.c",
            "type": "email",
            "elementClasses": ["wide"],
        },
        id="form-change",
    ),
    pytest.param(
        at.FormChange("", "", "SELECT", None),
        f"{SNOWPLOW}/change_form/jsonschema/1-0-0",
        {"formId": "", "elementId": "", "nodeName": "SELECT", "value": None},
        id="form-change-null-value",
    ),
    pytest.param(
        at.FormSubmit(
            "signup",
            ["form"],
            [
                at.FormElement("email", "a@b.c", "INPUT", "email"),
                at.FormElement("bio", None, "TEXTAREA"),
            ],
        ),
        f"{SNOWPLOW}/submit_form/jsonschema/1-0-0",
        {
            "formId": "signup",
            "formClasses": ["form"],
            "elements": [
                {"name": "email", "value": "a@b.c", "nodeName": "INPUT", "type": "email"},
                {"name": "bio", "value": None, "nodeName": "TEXTAREA"},
            ],
        },
        id="form-submit",
    ),
    pytest.param(
        at.SiteSearch(["red", "mug"], {"colour": "red", "in_stock": True}, 40, 10),
        f"{SNOWPLOW}/site_search/jsonschema/1-0-0",
        {
            "terms": ["red", "mug"],
            "filters": {"colour": "red", "in_stock": True},
            "totalResults": 40,
            "pageResults": 10,
        },
        id="site-search",
    ),
    pytest.param(
        at.SiteSearch(("mug",), total_results=0),
        f"{SNOWPLOW}/site_search/jsonschema/1-0-0",
        {"terms": ["mug"], "totalResults": 0},
        id="site-search-no-results",
    ),
    pytest.param(
        at.ConsentWithdrawn(all_=True),
        f"{SNOWPLOW}/consent_withdrawn/jsonschema/1-0-0",
        {"all": True},
        id="consent-withdrawn-all",
    ),
    pytest.param(
        at.ApplicationError("boom", "ValueError", line_number=0, is_fatal=False),
        f"{SNOWPLOW}/application_error/jsonschema/1-0-2",
        {
            "programmingLanguage": "PYTHON",
            "message": "boom",
            "exceptionName": "ValueError",
            "lineNumber": 0,
            "isFatal": False,
        },
        id="application-error",
    ),
]


@pytest.mark.parametrize(("event", "schema", "data"), EXPECTED)
async def test_each_event_sends_the_schema_and_data_the_js_trackers_send(
    event: at.Event, schema: str, data: dict[str, Any]
) -> None:
    unstruct, contexts = await sent(event)
    assert unstruct == {"schema": schema, "data": data}
    assert contexts == []


async def test_consent_granted_sends_its_document_before_the_events_context() -> None:
    expiry = datetime(2030, 1, 1, tzinfo=timezone.utc)
    unstruct, contexts = await sent(
        at.ConsentGranted("terms", "2", "Terms", "Our terms", expiry, context=[CTX])
    )
    assert unstruct == {
        "schema": f"{SNOWPLOW}/consent_granted/jsonschema/1-0-0",
        "data": {"expiry": "2030-01-01T00:00:00+00:00"},
    }
    document = {"id": "terms", "version": "2", "name": "Terms", "description": "Our terms"}
    assert contexts == [{"schema": DOCUMENT, "data": document}, CTX.to_dict()]


async def test_consent_withdrawn_of_one_document_sends_it() -> None:
    unstruct, contexts = await sent(at.ConsentWithdrawn(id_="terms", version="2"))
    assert unstruct["data"] == {"all": False}
    assert contexts == [{"schema": DOCUMENT, "data": {"id": "terms", "version": "2"}}]


async def test_application_error_from_an_exception_keeps_its_story() -> None:
    try:
        try:
            {}["missing"]
        except KeyError as cause:
            raise RuntimeError("lookup failed") from cause
    except RuntimeError as exc:
        event = at.ApplicationError.from_exception(exc, is_fatal=True)
    unstruct, _ = await sent(event)
    data = unstruct["data"]
    assert data["message"] == "lookup failed"
    assert data["exceptionName"] == "RuntimeError"
    assert data["stackTrace"].endswith("RuntimeError: lookup failed\n")
    assert data["causeStackTrace"].endswith("KeyError: 'missing'\n")
    assert data["fileName"] == __file__
    assert isinstance(data["lineNumber"], int)
    assert data["threadName"] == "MainThread"
    assert data["isFatal"] is True


async def test_application_error_cuts_long_text_to_the_schemas_lengths() -> None:
    unstruct, _ = await sent(at.ApplicationError("m" * 5000, "n" * 2000, "x" * 9000 + "END"))
    data = unstruct["data"]
    assert data["message"] == "m" * 2048
    assert data["exceptionName"] == "n" * 1024
    # A Python traceback ends with the exception: the end is kept.
    assert data["stackTrace"] == ("x" * 9000 + "END")[-8192:]


BAD = [
    pytest.param(lambda: at.LinkClick(""), "target_url", id="link-no-url"),
    pytest.param(
        lambda: at.LinkClick("u", element_classes="btn"), "element_classes", id="classes-str"
    ),  # type: ignore[arg-type]
    pytest.param(
        lambda: at.LinkClick("u", element_classes=[1]), r"element_classes\[0\]", id="class-int"
    ),  # type: ignore[list-item]
    pytest.param(lambda: at.AddToCart("", 1), "sku", id="cart-no-sku"),
    pytest.param(lambda: at.AddToCart("s", None), "quantity", id="cart-no-quantity"),  # type: ignore[arg-type]
    pytest.param(
        lambda: at.RemoveFromCart("s", 1, unit_price=float("nan")), "unit_price", id="cart-nan"
    ),
    pytest.param(lambda: at.FormChange("f", "e", "DIV", "v"), "node_name", id="change-node"),
    pytest.param(lambda: at.FormChange("f", "e", "INPUT", "v", "TEXT"), "type_", id="change-type"),
    pytest.param(lambda: at.FormChange("f" * 4097, "e", "INPUT", "v"), "4096", id="change-long-id"),
    pytest.param(lambda: at.FormChange(None, "e", "INPUT", "v"), "form_id", id="change-no-form"),  # type: ignore[arg-type]
    pytest.param(
        lambda: at.FormSubmit("f", elements=[{"name": "x"}]), r"elements\[0\]", id="submit-dict"
    ),  # type: ignore[list-item]
    pytest.param(lambda: at.FormElement("n", "v", "input"), "node_name", id="element-node"),
    pytest.param(lambda: at.SiteSearch([]), "terms", id="search-no-terms"),
    pytest.param(lambda: at.SiteSearch("mug"), "terms", id="search-terms-str"),  # type: ignore[arg-type]
    pytest.param(lambda: at.SiteSearch(["m"], {"k": 1}), "filters", id="search-filter-int"),  # type: ignore[dict-item]
    pytest.param(lambda: at.SiteSearch(["m"], total_results=-1), "total_results", id="search-neg"),
    pytest.param(lambda: at.ConsentGranted("i" * 37, "1"), "36", id="granted-long-id"),
    pytest.param(lambda: at.ConsentGranted("i", ""), "version", id="granted-no-version"),
    pytest.param(
        lambda: at.ConsentGranted("i", "1", expiry=datetime(2030, 1, 1)), "timezone", id="naive"
    ),
    pytest.param(lambda: at.ConsentWithdrawn(), "all_", id="withdrawn-nothing"),
    pytest.param(lambda: at.ConsentWithdrawn(id_="i"), "version", id="withdrawn-no-version"),
    pytest.param(lambda: at.ConsentWithdrawn(True, name="n"), "id_", id="withdrawn-name-only"),
    pytest.param(lambda: at.ConsentWithdrawn("yes"), "all_", id="withdrawn-all-str"),  # type: ignore[arg-type]
    pytest.param(lambda: at.ApplicationError(""), "message", id="error-no-message"),
    pytest.param(
        lambda: at.ApplicationError("m", programming_language="COBOL"),  # type: ignore[arg-type]
        "programming_language",
        id="error-language",
    ),
    pytest.param(lambda: at.ApplicationError("m", line_number=-1), "line_number", id="line"),
    pytest.param(lambda: at.ApplicationError.from_exception("x"), "exception", id="not-exc"),  # type: ignore[arg-type]
]


@pytest.mark.parametrize(("make", "named"), BAD)
def test_arguments_outside_the_schema_raise_a_typed_error_naming_them(
    make: Any, named: str
) -> None:
    with pytest.raises(at.InvalidEventError, match=named):
        make()


async def test_every_standard_event_is_a_valid_protocol_event() -> None:
    async with kept_tracker() as (tracker, [storage]):
        for param in EXPECTED:
            await tracker.track(param.values[0])
        for event in [row.event for row in await storage.get_all_event_rows()]:
            check_event(event)
