"""asynctracker.testing, used the way a user would: to test their own tracking code."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import pytest
from iglu import check_event

import asynctracker as at
from asynctracker.testing import (
    COLLECTOR_URL,
    CapturedEvents,
    CapturingTransport,
    TrackerCapture,
    capture_tracker,
)

pytest_plugins = ["pytester"]

SIGNUP = "iglu:com.acme/signup/jsonschema/1-0-0"
PLAN = "iglu:com.acme/plan/jsonschema/1-0-0"
TP2 = "/com.snowplowanalytics.snowplow/tp2"


# -- the "user's code" under test ----------------------------------------------------------


async def checkout(tracker: at.Tracker, user_id: str, cart: dict[str, tuple[float, int]]) -> str:
    """A service function as a user would write it: it tracks what happened."""
    subject = at.Subject(user_id=user_id)
    await tracker.track_struct_event("checkout", "start", subject=subject)
    total = sum(price * quantity for price, quantity in cart.values())
    return await tracker.track_ecommerce_transaction(
        order_id=f"order-{user_id}",
        total_value=total,
        currency="EUR",
        items=[
            at.EcommerceItem(sku=sku, price=price, quantity=quantity)
            for sku, (price, quantity) in cart.items()
        ],
        subject=subject,
    )


async def signup(tracker: at.Tracker, name: str, plan: str) -> None:
    """Another one, tracking a self-describing event with a context."""
    await tracker.track_self_describing_event(
        at.SelfDescribingJson(SIGNUP, {"name": name}),
        contexts=[at.SelfDescribingJson(PLAN, {"plan": plan})],
    )


# -- capture_tracker -------------------------------------------------------------------------


async def test_capture_tracker_records_what_user_code_sends() -> None:
    async with capture_tracker(app_id="shop") as (tracker, events):
        order_eid = await checkout(tracker, "u-1", {"mug": (9.5, 2), "pen": (1.25, 4)})
        assert await tracker.flush() == 0

    assert [event["e"] for event in events] == ["se", "tr", "ti", "ti"]
    (transaction,) = events.of_type("tr")
    assert transaction["eid"] == order_eid
    assert transaction["tr_tt"] == "24.00"
    assert transaction["aid"] == "shop"
    assert transaction["uid"] == "u-1"
    assert sorted(item["ti_sk"] for item in events.of_type("ti")) == ["mug", "pen"]
    events.assert_valid()
    for event in events:
        check_event(event)


@pytest.mark.parametrize("base64_encode", [True, False], ids=["base64", "raw-json"])
async def test_decoded_events_read_the_same_whatever_the_encoding(base64_encode: bool) -> None:
    async with capture_tracker(base64_encode=base64_encode) as (tracker, events):
        await signup(tracker, "alice", "pro")
        await tracker.flush()

    (event,) = events.with_schema(SIGNUP)
    assert event["unstruct_event"] == {"schema": SIGNUP, "data": {"name": "alice"}}
    assert event["contexts"] == [{"schema": PLAN, "data": {"plan": "pro"}}]
    assert events.with_schema("iglu:com.acme/signup/jsonschema") == [event]
    assert events.with_schema("iglu:com.acme/signup/jsonschema/2-0-0") == []
    assert events.with_context(PLAN) == [event]
    assert events.decoded() == [event]
    assert ("ue_px" in events[0]) is base64_encode
    events.assert_valid()


async def test_get_requests_are_captured_from_the_query_string() -> None:
    async with capture_tracker(request_type="GET") as (tracker, events):
        await tracker.track_page_view("https://acme.test/a?b=c d", page_title="Ä title")
        await tracker.track_screen_view(name="home")
        await tracker.flush()

    assert len(events) == 2
    assert events.of_type("pv")[0]["url"] == "https://acme.test/a?b=c d"
    assert events.of_type("pv")[0]["page"] == "Ä title"
    screen = events.with_schema("iglu:com.snowplowanalytics.snowplow/screen_view/jsonschema")
    assert screen[0]["unstruct_event"] == {
        "schema": "iglu:com.snowplowanalytics.snowplow/screen_view/jsonschema/1-0-0",
        "data": {"name": "home"},
    }
    events.assert_valid()


async def test_events_arrive_without_flush_and_wait_for_sees_them() -> None:
    async with capture_tracker() as (tracker, events):
        await tracker.track_struct_event("a", "b")
        await events.wait_for(1)
        assert events.of_type("se")[0]["se_ca"] == "a"
        with pytest.raises(TimeoutError, match="for 2 event"):
            await events.wait_for(2, timeout=0.05)


async def test_a_failing_collector_captures_nothing_and_reports_to_the_callback() -> None:
    seen: list[tuple[list[at.CallbackResult], list[at.CallbackResult]]] = []

    def callback(ok: list[at.CallbackResult], failed: list[at.CallbackResult]) -> None:
        seen.append((ok, failed))

    async with capture_tracker(status=400, callback=callback) as (tracker, events):
        await tracker.track_struct_event("a", "b")
        assert await tracker.flush() == 0  # 400 is not retryable: dropped

    assert len(events) == 0
    assert seen == [([], [at.CallbackResult(1, 400, dropped=True)])]


async def test_clear_forgets_setup_events() -> None:
    async with capture_tracker() as (tracker, events):
        await tracker.track_struct_event("setup", "noise")
        await tracker.flush()
        events.clear()
        await tracker.track_struct_event("real", "thing")
        await tracker.flush()
    assert [event["se_ca"] for event in events] == ["real"]
    assert "se" in repr(events)


# -- assert_valid on what a broken tracker would send ---------------------------------------


async def test_assert_valid_lists_every_problem_of_every_event() -> None:
    transport = CapturingTransport()
    bad_event = {"e": "pv", "p": "srv", "tv": "py-x", "eid": "nope", "dtm": "17", "zz": "1"}
    body = {"schema": "iglu:com.acme/wrong/jsonschema/1-0-0", "data": [bad_event, {"e": "se"}]}
    async with httpx.AsyncClient(transport=transport) as client:
        response = await client.post(f"{COLLECTOR_URL}{TP2}", json=body)
    assert response.status_code == 200
    events = transport.events
    assert len(events) == 2
    assert len(transport.requests) == 1

    with pytest.raises(AssertionError) as caught:
        events.assert_valid()
    message = str(caught.value)
    for expected in (
        "request body: body schema must be",
        "event #0 (e='pv', eid='nope'): 'eid' is not a UUID",
        "event #0 (e='pv', eid='nope'): 'dtm' is not a 13-digit",
        "event #0 (e='pv', eid='nope'): unknown key 'zz'",
        "event #0 (e='pv', eid='nope'): event type 'pv' needs 'url'",
        "event #1 (e='se', eid=None): missing required key 'eid'",
        "event #1 (e='se', eid=None): event type 'se' needs 'se_ca'",
    ):
        assert expected in message
    assert events.problems() == message.split("\n  ")[1:]


async def test_an_unusable_post_body_is_answered_400_like_a_collector() -> None:
    transport = CapturingTransport()
    async with httpx.AsyncClient(transport=transport) as client:
        response = await client.post(
            "https://c.test/com.snowplowanalytics.snowplow/tp2", content=b"{"
        )
    assert response.status_code == 400
    assert len(transport.events) == 0


def users_pytest(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    """Run pytest in a fresh process, as a user's project with asyncio_mode=auto would."""
    return pytester.runpytest_subprocess(
        "-p",
        "no:cacheprovider",
        "-W",
        "error",
        "-o",
        "asyncio_mode=auto",
        "-o",
        "asyncio_default_fixture_loop_scope=function",
        *args,
    )


# -- the pytest plugin's fixtures ----------------------------------------------------------


async def test_fixtures_share_one_capture(
    tracker_capture: TrackerCapture,
    capturing_tracker: at.Tracker,
    tracked_events: CapturedEvents,
) -> None:
    assert capturing_tracker is tracker_capture.tracker
    assert tracked_events is tracker_capture.events
    await signup(capturing_tracker, "bob", "free")
    await capturing_tracker.flush()
    (event,) = tracked_events.with_schema(SIGNUP)
    assert event["unstruct_event"] == {"schema": SIGNUP, "data": {"name": "bob"}}
    assert event["aid"] == "test-app"
    assert event["tna"] == "test"
    tracked_events.assert_valid()


@pytest.mark.parametrize("mode", ["strict", "auto"])
def test_plugin_fixtures_work_in_a_users_own_test_run(pytester: pytest.Pytester, mode: str) -> None:
    """A fresh pytest process with asynctracker installed finds the fixtures by itself."""
    marker = "@pytest.mark.asyncio" if mode == "strict" else ""
    pytester.makepyfile(
        test_user=textwrap.dedent(
            f"""
            import pytest

            {marker}
            async def test_tracked(capturing_tracker, tracked_events):
                await capturing_tracker.track_page_view("https://acme.test/")
                await capturing_tracker.flush()
                assert tracked_events.of_type("pv")[0]["url"] == "https://acme.test/"
                tracked_events.assert_valid()
            """
        )
    )
    result = pytester.runpytest_subprocess(
        "-p",
        "no:cacheprovider",
        "-W",
        "error",
        "-o",
        f"asyncio_mode={mode}",
        "-o",
        "asyncio_default_fixture_loop_scope=function",
    )
    result.assert_outcomes(passed=1)


def test_the_plugin_is_registered_as_a_pytest11_entry_point() -> None:
    from importlib.metadata import entry_points

    (plugin,) = [ep for ep in entry_points(group="pytest11") if ep.name == "asynctracker"]
    assert plugin.value == "pytest_asynctracker"


def test_loading_the_plugin_imports_nothing_of_asynctracker() -> None:
    """Every pytest run loads the plugin: it must not pay for importing the tracker."""
    from importlib.metadata import entry_points

    (plugin,) = [ep for ep in entry_points(group="pytest11") if ep.name == "asynctracker"]
    code = (
        f"import sys, pytest, {plugin.value}\n"
        "heavy = {'asynctracker', 'httpx', 'aiosqlite', 'anyio'}\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "[]"


def test_a_run_that_uses_no_fixture_never_imports_asynctracker(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_other=textwrap.dedent(
            """
            import sys

            def test_unrelated():
                assert "asynctracker" not in sys.modules

            def test_asking_for_a_fixture_imports_it(tracker_options):
                assert tracker_options == {}
                assert "asynctracker" not in sys.modules
            """
        )
    )
    result = users_pytest(pytester)
    result.assert_outcomes(passed=2)


# -- configuring the fixtures ----------------------------------------------------------------


class TestTrackerOptions:
    @pytest.fixture
    def tracker_options(self) -> dict[str, object]:
        return {"app_id": "shop", "namespace": "web", "base64_encode": False}

    async def test_the_tracker_options_fixture_configures_the_tracker(
        self, capturing_tracker: at.Tracker, tracked_events: CapturedEvents
    ) -> None:
        await signup(capturing_tracker, "carol", "pro")
        await capturing_tracker.flush()
        (event,) = tracked_events
        assert (event["aid"], event["tna"]) == ("shop", "web")
        assert "ue_pr" in event
        assert "ue_px" not in event

    @pytest.mark.asynctracker(app_id="checkout", platform="app")
    async def test_a_marker_overrides_the_options_fixture(
        self, capturing_tracker: at.Tracker, tracked_events: CapturedEvents
    ) -> None:
        await capturing_tracker.track_struct_event("a", "b")
        await capturing_tracker.flush()
        (event,) = tracked_events
        assert (event["aid"], event["tna"], event["p"]) == ("checkout", "web", "app")


def test_markers_and_options_in_a_users_own_test_run(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        textwrap.dedent(
            """
            import pytest

            @pytest.fixture
            def tracker_options():
                return {"app_id": "from-conftest", "namespace": "ns"}
            """
        )
    )
    pytester.makepyfile(
        test_user=textwrap.dedent(
            """
            import pytest
            import asynctracker as at

            pytestmark = pytest.mark.asynctracker(app_id="from-module")

            async def _one(tracker, events):
                await tracker.track_struct_event("a", "b")
                await tracker.flush()
                (event,) = events
                return event

            async def test_module_marker(capturing_tracker, tracked_events):
                event = await _one(capturing_tracker, tracked_events)
                assert (event["aid"], event["tna"]) == ("from-module", "ns")

            @pytest.mark.asynctracker(app_id="from-test", subject=at.Subject(user_id="u"))
            async def test_closest_marker_wins(capturing_tracker, tracked_events):
                event = await _one(capturing_tracker, tracked_events)
                assert (event["aid"], event["uid"]) == ("from-test", "u")

            @pytest.mark.asynctracker(appid="typo")
            async def test_unknown_option(tracked_events):
                pass
            """
        )
    )
    result = users_pytest(pytester, "--strict-markers")
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(
        ["*unknown asynctracker tracker option(s) 'appid'*capture_tracker() takes: namespace*"]
    )


# -- forgetting flush() --------------------------------------------------------------------------


async def test_reading_events_before_flush_says_what_is_missing() -> None:
    async with capture_tracker() as (tracker, events):
        await tracker.track_struct_event("a", "b")
        await tracker.track_struct_event("c", "d")
        missing = "2 events still queued in the tracker, not captured yet: await tracker.flush()"
        for read in (
            lambda: events.of_type("se"),
            lambda: events.with_schema(SIGNUP),
            lambda: events.decoded(),
            lambda: events.payloads,
            lambda: events[0],
            lambda: list(events),
            events.assert_valid,
        ):
            with pytest.raises(AssertionError, match=re.escape(missing)):
                read()
        assert "2 still queued: await tracker.flush()" in repr(events)
        assert events.queued == 2
        assert await tracker.flush() == 0
        assert events.queued == 0
        assert [event["se_ca"] for event in events.of_type("se")] == ["a", "c"]
        assert "queued" not in repr(events)


async def test_events_of_a_failing_collector_are_reported_as_queued_not_missing() -> None:
    async with capture_tracker(status=503) as (tracker, events):
        await tracker.track_struct_event("a", "b")
        assert await tracker.flush(timeout=0.2) == 1
        with pytest.raises(AssertionError, match=r"1 event still queued.*answers HTTP 503"):
            events.of_type("se")
        await tracker.emitter.storage.delete_all_event_rows()  # let the capture close quickly


def test_a_forgotten_flush_fails_with_the_reason_in_a_users_test_run(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        test_user=textwrap.dedent(
            """
            async def test_len(capturing_tracker, tracked_events):
                await capturing_tracker.track_page_view("https://acme.test/")
                assert len(tracked_events) == 1

            async def test_read(capturing_tracker, tracked_events):
                await capturing_tracker.track_page_view("https://acme.test/")
                (page_view,) = tracked_events.of_type("pv")
            """
        )
    )
    result = users_pytest(pytester)
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(
        [
            "*where 0 = len(<CapturedEvents 0: []; 1 still queued: await tracker.flush()>)*",
            "*AssertionError: 1 event still queued in the tracker, not captured yet: "
            "await tracker.flush() before reading events*",
        ]
    )


# -- without pytest-asyncio ------------------------------------------------------------------

USES_EVERY_KIND_OF_FIXTURE = """
    async def test_async_test(capturing_tracker, tracked_events):
        await capturing_tracker.track_page_view("https://acme.test/")

    def test_sync_test(tracked_events):
        assert len(tracked_events) == 0

    def test_options_alone_are_sync(tracker_options):
        assert tracker_options == {}

    def test_unrelated():
        pass
"""


def test_without_pytest_asyncio_the_fixtures_fail_naming_what_to_install(
    pytester: pytest.Pytester,
) -> None:
    """``-p no:asyncio`` stands for a user who never installed pytest-asyncio."""
    pytester.makepyfile(test_user=textwrap.dedent(USES_EVERY_KIND_OF_FIXTURE))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:asyncio")
    result.assert_outcomes(passed=2, errors=2)
    message = "*tracker fixtures * are async and need the pytest-asyncio plugin, which is not "
    message += "active in this run. Install it (pip install pytest-asyncio)*"
    result.stdout.fnmatch_lines(
        [
            "*ERROR at setup of test_async_test*",
            message,
            "*ERROR at setup of test_sync_test*",
            message,
        ]
    )
    # pytest's own "async fixture with no plugin" error, and the internal AssertionError
    # it left the next test with, are gone.
    assert "no plugin or hook" not in result.stdout.str()
    assert "AssertionError" not in result.stdout.str()


def test_a_run_without_pytest_asyncio_that_never_asks_for_the_fixtures_passes(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        test_user=textwrap.dedent(
            """
            def test_unrelated(tmp_path):
                assert tmp_path.is_dir()
            """
        )
    )
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "-p", "no:asyncio", "-W", "error"
    )
    result.assert_outcomes(passed=1)


def test_anyios_plugin_runs_the_fixtures_without_pytest_asyncio(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_user=textwrap.dedent(
            """
            import pytest

            @pytest.fixture
            def anyio_backend():
                return "asyncio"

            @pytest.mark.anyio
            async def test_tracked(capturing_tracker, tracked_events):
                await capturing_tracker.track_page_view("https://acme.test/")
                await capturing_tracker.flush()
                assert tracked_events.of_type("pv")[0]["url"] == "https://acme.test/"
            """
        )
    )
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "-p", "no:asyncio", "-p", "anyio", "-W", "error"
    )
    result.assert_outcomes(passed=1)


# -- each test's own default event queue -------------------------------------------------------


async def test_an_emitter_without_db_name_stores_in_asynctracker_db_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    queue = tmp_path / "queue" / "mine.db"
    queue.parent.mkdir()
    monkeypatch.setenv("ASYNCTRACKER_DB_PATH", str(queue))
    monkeypatch.chdir(tmp_path)
    nobody = "http://127.0.0.1:9"  # refused: the event stays queued
    emitter = at.Emitter(nobody, retry=at.RetryPolicy(auto_retry=False), close_timeout=0)
    assert emitter.storage.location == str(queue)
    async with emitter:
        await emitter.add({"e": "pv", "url": "https://acme.test/"})
        assert await emitter.flush(timeout=5) == 1
    async with at.SQLiteStorage(queue) as storage:
        assert [row.event["url"] for row in await storage.get_all_event_rows()] == [
            "https://acme.test/"
        ]
    assert not (tmp_path / "events.db").exists()

    explicit = at.Emitter(nobody, db_name=tmp_path / "explicit.db")
    assert explicit.storage.location == str(tmp_path / "explicit.db")
    monkeypatch.setenv("ASYNCTRACKER_DB_PATH", "")
    assert at.Emitter(nobody).storage.location == "events.db"


def test_the_plugin_gives_this_test_its_own_default_queue(asynctracker_db_path: Path) -> None:
    assert os.environ["ASYNCTRACKER_DB_PATH"] == str(asynctracker_db_path)
    assert asynctracker_db_path.parent.is_dir()
    assert not asynctracker_db_path.exists()  # made when an emitter opens it, not before


def test_the_default_queue_works_with_the_tmpdir_plugin_off(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fixture is autouse in every run: one without tmp_path must still pass."""
    monkeypatch.delenv("ASYNCTRACKER_DB_PATH")
    pytester.makepyfile(
        test_user=textwrap.dedent(
            """
            import os
            import asynctracker as at

            async def test_default_emitter(asynctracker_db_path):
                assert os.environ["ASYNCTRACKER_DB_PATH"] == str(asynctracker_db_path)
                emitter = at.Emitter("http://127.0.0.1:9", close_timeout=0)
                async with emitter:
                    await emitter.add({"e": "pv"})
                assert asynctracker_db_path.exists()
            """
        )
    )
    result = users_pytest(pytester, "-p", "no:tmpdir")
    result.assert_outcomes(passed=1)
    assert not (pytester.path / "events.db").exists()


TWO_TESTS_ONE_COLLECTOR = """
    import json

    import asynctracker as at

    COLLECTOR = "https://collector.example.test"
    TP2 = COLLECTOR + "/com.snowplowanalytics.snowplow/tp2"


    async def test_a_collector_that_is_down_leaves_an_event_behind(respx_mock):
        respx_mock.post(TP2).respond(503)
        emitter = at.Emitter(COLLECTOR, retry=at.RetryPolicy(auto_retry=False), close_timeout=0)
        async with at.Tracker(emitter) as tracker:
            await tracker.track_page_view("https://acme.test/first")
            assert await tracker.flush() == 1


    async def test_the_next_test_sends_only_its_own_events(respx_mock):
        route = respx_mock.post(TP2).respond(200)
        async with at.Tracker(at.Emitter(COLLECTOR)) as tracker:
            await tracker.track_page_view("https://acme.test/second")
            assert await tracker.flush() == 0
        sent = [
            event["url"]
            for call in route.calls
            for event in json.loads(call.request.content)["data"]
        ]
        assert sent == ["https://acme.test/second"]
"""


def test_two_tests_making_a_default_emitter_no_longer_see_each_others_events(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The user's shell has no ASYNCTRACKER_DB_PATH (this suite's own run sets one).
    monkeypatch.delenv("ASYNCTRACKER_DB_PATH")
    pytester.makepyfile(test_user=textwrap.dedent(TWO_TESTS_ONE_COLLECTOR))
    result = users_pytest(pytester)
    result.assert_outcomes(passed=2)
    assert not (pytester.path / "events.db").exists()

    # The same tests without the plugin share ./events.db: the second one sends the
    # event the first one left behind.
    result = users_pytest(pytester, "-p", "no:asynctracker")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        ["*At index 0 diff: 'https://acme.test/first' != 'https://acme.test/second'"]
    )
    assert (pytester.path / "events.db").exists()
