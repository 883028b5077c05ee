"""What users install: the built wheel, its extras, the git-URL form, and the examples.

The wheel is built the way ``pip install .`` builds it, offline (``--no-index``, hatchling
from the test environment), so these tests never leave the machine. Each example must
run with nothing but its extra installed: its third-party imports are checked against
that extra's requirements in the wheel's metadata, and it is run as a script, as the
README tells users to, against a real collector on 127.0.0.1.
"""

from __future__ import annotations

import ast
import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import zipfile
from email.message import Message
from email.parser import Parser
from importlib.metadata import packages_distributions
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # hatchling, which the tests need anyway, brings tomli on 3.10
    import tomli as tomllib

import httpx
import pytest
from examples_support import EXAMPLES, ROOT
from packaging.requirements import Requirement
from packaging.version import Version

from asynctracker.collector import Collector

#: The extra that makes each example run (``pip install ".[<extra>]"``).
EXAMPLE_EXTRAS = {"fastapi_app": "fastapi", "aiohttp_app": "aiohttp"}
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_EXTRA = re.compile(r"""extra\s*==\s*["']([^"']+)["']""")


def normalise(name: str) -> str:
    """A distribution name as pip compares them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


PIP_WHEEL = ("-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index")


def build_wheel(source: str, out: Path) -> Path:
    result = subprocess.run(
        [sys.executable, *PIP_WHEEL, "-w", str(out), source],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    (wheel,) = out.glob("asynctracker-*.whl")
    return wheel


def read_metadata(wheel: Path, name: str) -> str:
    with zipfile.ZipFile(wheel) as archive:
        (path,) = [p for p in archive.namelist() if p.endswith(f".dist-info/{name}")]
        return archive.read(path).decode()


def requirements(metadata: Message, extra: str | None) -> set[str]:
    """The distributions the wheel requires, with ``extra`` or (None) always."""
    found = set()
    for line in metadata.get_all("Requires-Dist") or []:
        requirement, _, marker = line.partition(";")
        match = _EXTRA.search(marker)
        if (match.group(1) if match else None) == extra:
            name = _NAME.match(requirement.strip())
            assert name is not None, line
            found.add(normalise(name.group()))
    return found


def third_party_imports(path: Path) -> set[str]:
    """Top-level modules a file imports that are neither stdlib nor asynctracker."""
    modules: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            modules.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            modules.add(node.module.split(".")[0])
    return {m for m in modules if m not in sys.stdlib_module_names and m != "asynctracker"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_wheel(str(ROOT), tmp_path_factory.mktemp("wheel"))


@pytest.fixture(scope="module")
def metadata(wheel: Path) -> Message:
    return Parser().parsestr(read_metadata(wheel, "METADATA"))


def test_every_example_has_an_extra() -> None:
    assert sorted(path.stem for path in EXAMPLES.glob("*.py")) == sorted(EXAMPLE_EXTRAS)


@pytest.mark.parametrize("example", sorted(EXAMPLE_EXTRAS))
def test_each_examples_imports_are_installed_by_its_extra(example: str, metadata: Message) -> None:
    extra = EXAMPLE_EXTRAS[example]
    assert extra in (metadata.get_all("Provides-Extra") or [])
    installed = requirements(metadata, extra) | requirements(metadata, None)
    distributions = packages_distributions()
    imported = third_party_imports(EXAMPLES / f"{example}.py")
    assert imported, "an example with no framework import is not what this test is about"
    for module in sorted(imported):
        provided_by = {normalise(d) for d in distributions.get(module, [module])}
        assert provided_by & installed, (
            f"examples/{example}.py imports {module}, which "
            f'pip install ".[{extra}]" does not install (extra: {sorted(installed)})'
        )


def test_the_wheel_holds_the_package_the_plugin_and_the_entry_points(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    assert {"asynctracker/__init__.py", "asynctracker/py.typed", "pytest_asynctracker.py"} <= names
    assert not any(name.startswith(("tests/", "examples/")) for name in names)
    entry_points = read_metadata(wheel, "entry_points.txt")
    assert "asynctracker = pytest_asynctracker" in entry_points
    assert "asynctracker = asynctracker.cli:main" in entry_points


def test_the_wheel_declares_its_license_and_ships_its_text(wheel: Path, metadata: Message) -> None:
    assert Version(metadata["Metadata-Version"]) >= Version("2.4")
    assert metadata["License-Expression"] == "Apache-2.0"
    assert metadata.get_all("License-File") == ["LICENSE"]
    # PEP 639: the expression replaces the free-text field and the license classifiers.
    assert metadata["License"] is None
    assert not [c for c in metadata.get_all("Classifier") or [] if c.startswith("License ::")]
    assert read_metadata(wheel, "licenses/LICENSE") == (ROOT / "LICENSE").read_text()
    assert metadata["Description-Content-Type"] == "text/markdown"


def test_every_hatchling_the_project_builds_with_writes_the_license() -> None:
    """hatchling writes License-Expression from 1.27 (core metadata 2.4 by default);
    1.26.0 wrote no license field at all, so neither the build nor the offline build of
    the tests (the test extra's hatchling) may accept an older one."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    requirements = [
        *pyproject["build-system"]["requires"],
        *pyproject["project"]["optional-dependencies"]["test"],
    ]
    hatchlings = [r for r in map(Requirement, requirements) if r.name == "hatchling"]

    assert len(hatchlings) == 2
    for requirement in hatchlings:
        assert "1.27.0" in requirement.specifier, requirement
        assert "1.26.3" not in requirement.specifier, requirement


def test_a_git_url_builds_an_installable_wheel(tmp_path: Path) -> None:
    """``pip install "asynctracker[fastapi] @ git+https://..."``, with this clone's URL."""
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout (an sdist): there is no git URL to install from")
    wheel = build_wheel(f"asynctracker[fastapi] @ git+file://localhost{ROOT}", tmp_path)
    metadata = Parser().parsestr(read_metadata(wheel, "METADATA"))
    assert {"fastapi", "aiohttp"} <= set(metadata.get_all("Provides-Extra") or [])
    with zipfile.ZipFile(wheel) as archive:
        assert "pytest_asynctracker.py" in archive.namelist()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.mark.parametrize("example", sorted(EXAMPLE_EXTRAS))
async def test_each_example_runs_as_a_script_and_delivers_on_sigterm(
    example: str, collector: Collector, tmp_path: Path
) -> None:
    port = free_port()
    env = {
        **os.environ,
        "ASYNCTRACKER_COLLECTOR_URL": collector.url,
        "ASYNCTRACKER_DB_PATH": str(tmp_path / "events.db"),
        "HOST": "127.0.0.1",
        "PORT": str(port),
    }
    log = tmp_path / "example.log"
    with log.open("wb") as output:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            str(EXAMPLES / f"{example}.py"),
            cwd=tmp_path,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            for _ in range(600):
                try:
                    home = await client.get("/")
                    break
                except httpx.TransportError:
                    assert process.returncode is None, log.read_text()
                    await asyncio.sleep(0.05)
            else:
                pytest.fail(f"examples/{example}.py did not answer: {log.read_text()}")
            assert home.json() == {"hello": "shop"}
            cart = await client.post("/cart/mug", params={"quantity": 2})
            assert cart.status_code == 200, cart.text
        process.send_signal(signal.SIGTERM)
        returncode = await asyncio.wait_for(process.wait(), timeout=60)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()

    # uvicorn re-raises the SIGTERM it handled once it has shut down cleanly.
    assert returncode in (0, -signal.SIGTERM), log.read_text()
    # Stopping the app flushed the tracker: both events are at the collector.
    assert sorted(event.payload["e"] for event in collector.events) == ["pv", "ue"]
    assert {event.payload["aid"] for event in collector.events} == {f"{example[:-4]}-example"}
