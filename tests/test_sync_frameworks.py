"""The synchronous integrations as they are deployed: Flask and Django under gunicorn
(sync workers, ``--preload``, ``gthread``), and a Celery prefork worker.

Each app (tests/sync_apps/) runs in its own processes and sends to a real collector on
127.0.0.1, served from a thread of this process. While the requests or tasks run, the
collector answers 503 with a Retry-After of two minutes, so every event is still in the
SQLite file when the server is stopped with SIGTERM, and no emitter would try again
before the test ends: what then reaches the collector, each event exactly once, is what
the workers' exit paths delivered (the exit flush of ``asynctracker.sync`` for gunicorn
workers, the ``worker_process_shutdown`` signal for Celery's pool processes, which end
with ``os._exit()``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sync_support import ThreadedCollector, stored

from asynctracker.collector import Reply

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="gunicorn and prefork fork")

APPS = Path(__file__).resolve().parent / "sync_apps"
REQUESTS = 200


def refuse(request: object) -> Reply:
    """The collector's answer while requests run: come back in two minutes. The emitters
    keep every event and wait; only a flush sends before then."""
    return Reply(503, {"Retry-After": "120"})


@dataclass
class Running:
    process: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> int:
        """SIGTERM, as a deploy stops it; the exit status once it has exited."""
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            pytest.fail(f"did not stop within 60 s of SIGTERM:\n{self.output()}")


def app_env(collector: ThreadedCollector, db_path: Path, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "ASYNCTRACKER_COLLECTOR_URL": collector.url,
        "ASYNCTRACKER_DB_PATH": str(db_path),
        **extra,
    }


@contextlib.contextmanager
def running(args: list[str], env: dict[str, str], log: Path, **popen: object) -> Iterator[Running]:
    with log.open("wb") as output:
        process = subprocess.Popen(
            args,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            **popen,  # type: ignore[call-overload]
        )
    try:
        yield Running(process, log)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@contextlib.contextmanager
def gunicorn(
    app: str, env: dict[str, str], log: Path, *options: str
) -> Iterator[tuple[Running, str]]:
    """gunicorn serving ``app`` on a socket bound here (``fd://``: no port to race for)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(256)
    base_url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    args = [sys.executable, "-m", "gunicorn", f"--bind=fd://{listener.fileno()}"]
    args += ["--pythonpath", str(APPS), "--graceful-timeout=30", *options, app]
    # gunicorn 25.1+ opens a control socket there (else in ~/.gunicorn, shared by all runs).
    env = {**env, "XDG_RUNTIME_DIR": str(log.parent)}
    with listener, running(args, env, log, pass_fds=[listener.fileno()]) as server:
        listener.close()  # gunicorn has its own copy
        yield server, base_url


def serving_pids(server: Running, base_url: str, workers: int) -> set[int]:
    """Ask /health until ``workers`` different processes have answered."""
    pids: set[int] = set()
    deadline = time.monotonic() + 60
    with httpx.Client(base_url=base_url, timeout=10) as client:
        while len(pids) < workers:
            assert server.process.poll() is None, server.output()
            assert time.monotonic() < deadline, f"answered from {pids} only:\n{server.output()}"
            try:
                # A new connection each time: a gthread worker keeps one alive.
                answer = client.get("/health", headers={"Connection": "close"})
                pids.add(answer.json()["pid"])
            except httpx.TransportError:
                time.sleep(0.05)
    return pids


def client_headers(n: int) -> dict[str, str]:
    """Request n's own user agent and forwarded address (the peer, 127.0.0.1, is trusted)."""
    return {"User-Agent": f"shop-client/{n}", "X-Forwarded-For": f"203.0.113.{n % 250}"}


def hammer(base_url: str) -> dict[int, str]:
    """REQUESTS requests from 8 threads: even n buy (one event each, its id returned),
    odd n view /page/n (one page view each). Returns the buys' event ids by n."""

    def request(client: httpx.Client, n: int) -> tuple[int, str | None]:
        if n % 2:
            response = client.get(f"/page/{n}", headers=client_headers(n))
            assert response.status_code == 200, response.text
            return n, None
        response = client.post(f"/buy/{n}", headers=client_headers(n))
        assert response.status_code == 200, response.text
        return n, response.json()["event_id"]

    with httpx.Client(base_url=base_url, timeout=30) as client, ThreadPoolExecutor(8) as pool:
        done = list(pool.map(lambda n: request(client, n), range(REQUESTS)))
    return {n: eid for n, eid in done if eid is not None}


def check_delivered_once(collector: ThreadedCollector, bought: dict[int, str], boots: int) -> None:
    """Every buy arrived once under its id, every page once under its URL, each with its
    own request's subject; nothing else arrived."""
    events = [event.payload for event in collector.collector.events]
    eids = [payload["eid"] for payload in events]
    assert len(eids) == len(set(eids)), "an event arrived twice"
    buys = {int(p["se_la"]): p for p in events if p["e"] == "se" and p["se_ac"] == "buy"}
    pages = [p for p in events if p["e"] == "pv"]
    assert {n: p["eid"] for n, p in buys.items()} == bought
    page_numbers = sorted(int(p["url"].rsplit("/", 1)[1]) for p in pages)
    assert page_numbers == [n for n in range(REQUESTS) if n % 2]
    assert sum(p.get("se_ac") == "boot" for p in events) == boots
    assert len(events) == len(buys) + len(pages) + boots
    for payload in pages:
        n = int(payload["url"].rsplit("/", 1)[1])
        assert (payload["ip"], payload["ua"]) == (f"203.0.113.{n % 250}", f"shop-client/{n}")
    for n, payload in buys.items():  # the subject the extension bound for the request
        assert (payload["ip"], payload["ua"]) == (f"203.0.113.{n % 250}", f"shop-client/{n}")


GUNICORN_FLASK = {
    "sync-workers": ([], {}),
    "preload": (["--preload"], {"SHOP_TRACKER_AT_IMPORT": "1"}),
    "gthread": (["--worker-class=gthread", "--threads=4"], {}),
}


@pytest.mark.parametrize("variant", sorted(GUNICORN_FLASK))
def test_flask_under_gunicorn_delivers_every_event_once_after_sigterm(
    threaded_collector: ThreadedCollector, db_path: Path, tmp_path: Path, variant: str
) -> None:
    options, extra_env = GUNICORN_FLASK[variant]
    threaded_collector.collector.responder = refuse
    env = app_env(threaded_collector, db_path, **extra_env)
    log = tmp_path / "gunicorn.log"
    with gunicorn("flask_shop:app", env, log, "--workers=2", *options) as (server, url):
        serving_pids(server, url, workers=2)
        bought = hammer(url)
        boots = 1 if variant == "preload" else 0  # made and used once, in the master
        assert stored(db_path) == REQUESTS + boots  # nothing delivered yet
        threaded_collector.collector.responder = None
        assert server.stop() == 0, server.output()
    check_delivered_once(threaded_collector, bought, boots)
    assert stored(db_path) == 0


def test_django_under_gunicorn_delivers_every_event_once_with_the_requests_subject(
    threaded_collector: ThreadedCollector, db_path: Path, tmp_path: Path
) -> None:
    threaded_collector.collector.responder = refuse
    env = app_env(threaded_collector, db_path)
    log = tmp_path / "gunicorn.log"
    with gunicorn("django_shop:application", env, log, "--workers=2") as (server, url):
        serving_pids(server, url, workers=2)
        bought = hammer(url)
        with httpx.Client(base_url=url) as client:  # neither is a page anyone saw
            assert client.get("/missing").status_code == 404
            assert client.get("/health").status_code == 200
        assert stored(db_path) == REQUESTS
        threaded_collector.collector.responder = None
        assert server.stop() == 0, server.output()
    check_delivered_once(threaded_collector, bought, boots=0)
    assert stored(db_path) == 0


TASKS = 40


def test_a_celery_prefork_worker_delivers_every_tasks_event_once_after_a_warm_shutdown(
    threaded_collector: ThreadedCollector, db_path: Path, tmp_path: Path
) -> None:
    sys.path.insert(0, str(APPS))
    try:
        from celery_config import make_app
    finally:
        sys.path.remove(str(APPS))
    folder = tmp_path / "celery"
    for sub in ("queue", "results"):
        (folder / sub).mkdir(parents=True)
    threaded_collector.collector.responder = refuse
    env = app_env(threaded_collector, db_path, SHOP_CELERY_DIR=str(folder))
    args = [sys.executable, "-m", "celery", "-A", "celery_shop", "worker", "--pool=prefork"]
    args += ["--concurrency=2", "--loglevel=INFO", "--without-gossip", "--without-mingle"]
    args += ["--without-heartbeat"]
    client = make_app(str(folder))
    with running(args, env, tmp_path / "worker.log", cwd=APPS) as worker:
        sent = [client.send_task("shop.buy", args=[n]) for n in range(TASKS)]
        try:
            results = [result.get(timeout=60, interval=0.05) for result in sent]
        except Exception:
            pytest.fail(f"the tasks did not finish:\n{worker.output()}")
        assert stored(db_path) == TASKS  # nothing delivered yet
        threaded_collector.collector.responder = None
        assert worker.stop() == 0, worker.output()
    client.close()

    assert len({result["pid"] for result in results}) == 2, "both pool processes ran tasks"
    events = [event.payload for event in threaded_collector.collector.events]
    assert sorted(payload["eid"] for payload in events) == sorted(r["event_id"] for r in results)
    assert sorted(int(payload["se_la"]) for payload in events) == list(range(TASKS))
    assert stored(db_path) == 0


EAGER = """
import sys
from celery import Celery
import asynctracker as at
from asynctracker import sync
from asynctracker.integrations.celery import get_tracker, setup_tracking

try:
    get_tracker()
except at.ConfigurationError as exc:
    print("before setup:", exc)
try:
    setup_tracking(at.Tracker(at.Emitter(sys.argv[1], storage=at.MemoryStorage())))
except at.ConfigurationError as exc:
    print("async tracker:", exc)

made = []
def make_tracker():
    made.append(sync.Tracker(sync.Emitter(sys.argv[1], db_name=sys.argv[2])))
    return made[-1]

setup_tracking(make_tracker)
app = Celery("eager", broker="memory://")
app.conf.task_always_eager = True  # tasks run here, as with --pool=solo: no pool signals

@app.task
def buy(n):
    return get_tracker().track_struct_event("shop", "buy", label=str(n))

print("tracked", *[buy.delay(n).get() for n in range(3)], "made", len(made))
"""  # and exits without closing: the exit flush of asynctracker.sync delivers


def test_tasks_run_in_the_workers_own_process_make_the_tracker_on_first_use(
    threaded_collector: ThreadedCollector, db_path: Path
) -> None:
    run = subprocess.run(
        [sys.executable, "-c", EAGER, threaded_collector.url, str(db_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    out, err = run.stdout, run.stderr
    assert run.returncode == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("before setup: no tracker: call")
    assert lines[1].startswith("async tracker: setup_tracking needs an asynctracker.sync.Tracker")
    tracked = lines[2].split()
    assert tracked[0] == "tracked"
    assert tracked[-2:] == ["made", "1"]
    received = [event.payload["eid"] for event in threaded_collector.collector.events]
    assert sorted(received) == sorted(tracked[1:4])
    assert stored(db_path) == 0


LIGHT = """
import sys
import asynctracker, asynctracker.sync, asynctracker.integrations
heavy = {"flask", "werkzeug", "django", "celery", "kombu", "billiard", "gunicorn"}
print(sorted(m for m in sys.modules if m.split(".")[0] in heavy))
"""


def test_importing_asynctracker_imports_no_synchronous_framework() -> None:
    result = subprocess.run(
        [sys.executable, "-c", LIGHT], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "[]"
