"""Snowplow Micro's REST API shapes, so that scripts written for Micro work unchanged.

Micro answers ``/micro/all`` with ``{"total", "good", "bad"}``, ``/micro/good`` with a list
of ``{"event", "eventType", "schema", "contexts", "rawEvent", "incomplete"}`` (``event`` being the
enriched event, with the pipeline's column names) and ``/micro/bad`` with
``{"collectorPayload", "rawEvent", "errors"}``. Both listings accept the same filters as a
query string (GET) or a JSON body (POST): ``schema``, ``event_type``, ``contexts`` (all of
them must be attached) and ``limit``. The enrichment here is a translation of the
tracker-protocol fields, not Snowplow's enrichment pipeline: no geo, no user agent parsing.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any
from urllib.parse import parse_qsl

from .._validate import UNSTRUCT_EVENT_SCHEMA, decode_event
from ._store import ReceivedEvent
from ._table import Filters, context_schemas, micro_schema

__all__ = ["bad_json", "good_json", "micro_filters"]

CONTEXTS_SCHEMA = "iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-0"
#: Tracker-protocol ``e`` -> Micro's ``eventType`` (the enriched ``event`` column).
EVENT_TYPES = {
    "pv": "page_view",
    "pp": "page_ping",
    "se": "struct",
    "ue": "unstruct",
    "tr": "transaction",
    "ti": "transaction_item",
}
CODES = {name: code for code, name in EVENT_TYPES.items()}
#: Tracker-protocol field -> enriched event column.
_COLUMNS = {
    "aid": "app_id", "p": "platform", "eid": "event_id", "tv": "v_tracker",
    "tna": "name_tracker", "uid": "user_id", "duid": "domain_userid", "nuid": "network_userid",
    "tnuid": "network_userid", "sid": "domain_sessionid", "vid": "domain_sessionidx",
    "ip": "user_ipaddress", "ua": "useragent", "lang": "br_lang", "tz": "os_timezone",
    "url": "page_url", "page": "page_title", "refr": "page_referrer", "cs": "doc_charset",
    "se_ca": "se_category", "se_ac": "se_action", "se_la": "se_label",
    "se_pr": "se_property", "se_va": "se_value", "tr_id": "tr_orderid",
    "tr_af": "tr_affiliation", "tr_tt": "tr_total", "tr_tx": "tr_tax",
    "tr_sh": "tr_shipping", "tr_ci": "tr_city", "tr_st": "tr_state", "tr_co": "tr_country",
    "tr_cu": "tr_currency", "ti_id": "ti_orderid", "ti_sk": "ti_sku", "ti_nm": "ti_name",
    "ti_ca": "ti_category", "ti_pr": "ti_price", "ti_qu": "ti_quantity", "ti_cu": "ti_currency",
    "pp_mix": "pp_xoffset_min", "pp_max": "pp_xoffset_max", "pp_miy": "pp_yoffset_min",
    "pp_may": "pp_yoffset_max",
}  # fmt: skip
_TIMESTAMPS = {"dtm": "dvce_created_tstamp", "stm": "dvce_sent_tstamp", "ttm": "true_tstamp"}


def _iso(milliseconds: object) -> str | None:
    """An epoch-milliseconds string as ISO 8601, or ``None`` when it is not one."""
    if not (isinstance(milliseconds, str) and milliseconds.isascii() and milliseconds.isdigit()):
        return None
    if len(milliseconds) > 15:
        return None
    try:
        stamp = datetime.fromtimestamp(int(milliseconds) / 1000, tz=timezone.utc)
    except (OverflowError, OSError, ValueError):
        return None
    return stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _raw_event(event: ReceivedEvent) -> dict[str, object]:
    return {
        "api": {
            "vendor": "com.snowplowanalytics.snowplow",
            "version": "tp2" if event.method == "POST" else "i",
        },
        "parameters": event.payload,
        "contentType": "application/json" if event.method == "POST" else None,
        "source": {"name": "asynctracker-collector", "encoding": "UTF-8", "hostname": None},
        "context": {"timestamp": _iso(str(int(event.received_at * 1000)))},
    }


def good_json(event: ReceivedEvent) -> dict[str, object]:
    """One entry of ``/micro/good``."""
    payload = event.payload
    decoded = decode_event(payload)
    code = str(payload.get("e", ""))
    enriched: dict[str, Any] = {
        column: payload[field] for field, column in _COLUMNS.items() if field in payload
    }
    for field, column in _TIMESTAMPS.items():
        if field in payload:
            enriched[column] = _iso(payload[field])
    enriched["event"] = EVENT_TYPES.get(code, code)
    enriched["collector_tstamp"] = _iso(str(int(event.received_at * 1000)))
    enriched["v_collector"] = "asynctracker-collector"
    schema = micro_schema(payload, decoded)
    if schema.startswith("iglu:"):
        vendor, name, form, version = schema[5:].split("/")
        enriched.update(
            event_vendor=vendor, event_name=name, event_format=form, event_version=version
        )
    unstruct = decoded.get("unstruct_event")
    if isinstance(unstruct, dict):
        enriched["unstruct_event"] = {"schema": UNSTRUCT_EVENT_SCHEMA, "data": unstruct}
    contexts = decoded.get("contexts")
    if isinstance(contexts, list):
        enriched["contexts"] = {"schema": CONTEXTS_SCHEMA, "data": contexts}
    return {
        "event": enriched,
        "eventType": enriched["event"],
        "schema": schema,
        "contexts": context_schemas(decoded),
        "rawEvent": _raw_event(event),
        "incomplete": False,
    }


def bad_json(event: ReceivedEvent) -> dict[str, object]:
    """One entry of ``/micro/bad``."""
    raw = _raw_event(event)
    return {
        "collectorPayload": {**raw, "querystring": [], "body": None},
        "rawEvent": raw,
        "errors": list(event.errors),
    }


MAX_LIMIT = 1000


def micro_filters(
    method: str, query: str, body: bytes, *, valid: bool
) -> tuple[Filters, int] | str:
    """Parse Micro's filters from a query string or JSON body; a string is the problem."""
    if method == "POST" and body.strip():
        try:
            spec = json.loads(body)
        except (ValueError, RecursionError):
            return "the filter body is not valid JSON"
        if not isinstance(spec, dict):
            return "the filter body must be a JSON object"
    else:
        pairs = parse_qsl(query, keep_blank_values=False)
        spec = {key: value for key, value in pairs if key != "contexts"}
        contexts = [value for key, value in pairs if key == "contexts"]
        spec["contexts"] = [c for value in contexts for c in value.split(",") if c]
    schema, event_type = spec.get("schema"), spec.get("event_type")
    contexts = spec.get("contexts") or []
    limit = spec.get("limit", MAX_LIMIT)
    if schema is not None and not isinstance(schema, str):
        return "'schema' must be a string"
    if event_type is not None and not isinstance(event_type, str):
        return "'event_type' must be a string"
    if not isinstance(contexts, list) or not all(isinstance(c, str) for c in contexts):
        return "'contexts' must be a list of schema URIs"
    try:
        limit = int(limit)
    except (TypeError, ValueError):
        return "'limit' must be a whole number"
    if limit < 0:
        return "'limit' must not be negative"
    code = CODES.get(event_type, event_type) if event_type is not None else None
    by_method = _bad_method(spec.get("vendor"), spec.get("version")) if not valid else None
    filters = Filters(
        valid=valid, event_type=code, schema=schema, contexts=tuple(contexts), method=by_method
    )
    return filters, min(limit, MAX_LIMIT)


def _bad_method(vendor: object, version: object) -> str | None:
    """Micro filters bad events by the collector payload's ``vendor`` and ``version``
    (``com.snowplowanalytics.snowplow`` and ``tp2`` or ``i`` here): the method they
    came by, or "" (matches nothing) for a vendor or version this collector never has."""
    if vendor is not None and vendor != "com.snowplowanalytics.snowplow":
        return ""
    if version is None:
        return None
    return {"tp2": "POST", "i": "GET"}.get(str(version), "")
