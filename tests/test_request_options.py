"""Request options (issue 15, point 5): custom headers, server-side anonymisation and
custom paths, seen by a real collector; bad values fail at construction."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import asynctracker as at
from asynctracker.collector import Collector, ReceivedRequest, Reply

TP2 = "/com.snowplowanalytics.snowplow/tp2"


@pytest.mark.parametrize("request_type", ["POST", "GET"])
async def test_custom_headers_and_sp_anonymous_go_with_every_request(
    collector: Collector, db_path: Path, request_type: str
) -> None:
    emitter = at.Emitter(
        collector.url,
        request_type=request_type,
        db_name=db_path,
        headers={"X-Api-Key": "k-123", "User-Agent": "shop/1.0"},
        anonymous=True,
    )
    async with at.Tracker(emitter) as tracker:
        for n in range(3):
            await tracker.track_struct_event("shop", f"view-{n}")
        assert await tracker.flush(timeout=10) == 0
    assert len(collector.good) == 3
    for request in collector.requests:
        assert request.headers["x-api-key"] == "k-123"
        assert request.headers["user-agent"] == "shop/1.0"
        assert request.headers["sp-anonymous"] == "*"


async def test_without_anonymous_no_sp_anonymous_header_is_sent(
    collector: Collector, db_path: Path
) -> None:
    async with at.Tracker(at.Emitter(collector.url, db_name=db_path)) as tracker:
        await tracker.track_struct_event("shop", "view")
        assert await tracker.flush(timeout=10) == 0
    assert "sp-anonymous" not in collector.requests[0].headers


@pytest.mark.parametrize(
    ("request_type", "option", "path"),
    [
        pytest.param("POST", "post_path", "/collect", id="post"),
        pytest.param("GET", "get_path", "/pixel.gif", id="get"),
    ],
)
async def test_custom_paths_behind_a_proxy_prefix(
    collector: Collector, db_path: Path, request_type: str, option: str, path: str
) -> None:
    seen: list[ReceivedRequest] = []

    def proxy(request: ReceivedRequest) -> Reply | None:
        seen.append(request)
        return Reply(200) if request.path == "/proxy" + path else Reply(404)

    collector.responder = proxy
    options: dict[str, Any] = {option: path}
    emitter = at.Emitter(
        collector.url + "/proxy", request_type=request_type, db_name=db_path, **options
    )
    async with at.Tracker(emitter) as tracker:
        await tracker.track_struct_event("shop", "view")
        assert await tracker.flush(timeout=10) == 0
    assert [r.path for r in seen] == ["/proxy" + path]
    assert seen[0].method == request_type
    carried = seen[0].body if request_type == "POST" else seen[0].query.encode()
    assert b"se_ac" in carried


async def test_the_default_paths_keep_the_proxy_prefix(collector: Collector, db_path: Path) -> None:
    emitter = at.Emitter(collector.url + "/proxy", db_name=db_path)
    async with at.Tracker(emitter) as tracker:
        await tracker.track_struct_event("shop", "view")
        assert await tracker.flush(timeout=10) == 0
    assert collector.requests[0].path == "/proxy" + TP2


@pytest.mark.parametrize(
    ("options", "argument"),
    [
        pytest.param({"headers": {"Bad Name": "x"}}, "headers", id="header-name-space"),
        pytest.param({"headers": {"X-A": "1\r\nX-B: 2"}}, "headers", id="header-value-crlf"),
        pytest.param({"headers": {"X-A": "caf\u20ac"}}, "headers", id="header-value-not-latin1"),
        pytest.param({"headers": {"Content-Length": "1"}}, "headers", id="framing-header"),
        pytest.param({"headers": {"X-A": 1}}, "headers", id="header-value-not-str"),
        pytest.param({"headers": [("X-A", "1")]}, "headers", id="headers-not-mapping"),
        pytest.param({"anonymous": "yes"}, "anonymous", id="anonymous-not-bool"),
        pytest.param({"post_path": "collect"}, "post_path", id="post-path-relative"),
        pytest.param({"post_path": "/a?b=1"}, "post_path", id="post-path-query"),
        pytest.param({"get_path": "/a b"}, "get_path", id="get-path-space"),
        pytest.param({"get_path": 5}, "get_path", id="get-path-not-str"),
    ],
)
def test_bad_request_options_raise_configuration_error_naming_the_argument(
    options: dict[str, Any], argument: str
) -> None:
    with pytest.raises(at.ConfigurationError, match=argument):
        at.Emitter("http://127.0.0.1:9", storage=at.MemoryStorage(), **options)


@pytest.mark.parametrize(("request_type", "expected"), [("POST", 16), ("GET", 8)])
def test_requests_in_flight_default_by_request_type(request_type: str, expected: int) -> None:
    emitter = at.Emitter("127.0.0.1:9", request_type=request_type, storage=at.MemoryStorage())  # type: ignore[arg-type]
    assert emitter.max_concurrent_requests == expected
    assert (
        at.Emitter(
            "127.0.0.1:9",
            request_type=request_type,
            max_concurrent_requests=3,
            storage=at.MemoryStorage(),
        ).max_concurrent_requests
        == 3
    )  # type: ignore[arg-type]
