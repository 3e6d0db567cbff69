"""The lab for integration tests: one registry + two servers per test session.

`lab` yields the parsed `python -m lab up` document and tears the lab down afterwards, even
when setup failed half-way. Without a Docker engine the tests skip, except in CI (CI=true),
where that is a failure. `lab_ssh` runs a command on a server over SSH with the lab's key,
checking the host key against the lab's known_hosts."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab.cluster import SESSION_ENV, Paths, session_lock
from lab.locks import exclusive
from lab.paths import STATE_DIR
from lab.state import LabDoc
from lab.testing import LabSsh
from tests.integration.support import unavailable

REPO = Path(__file__).resolve().parents[2]
SERVERS = 2
SESSION_LOCK = session_lock(Paths(STATE_DIR))


def _lab(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lab", *args],
        env={**os.environ, SESSION_ENV: "held"},  # this session holds the session lock
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def _tail(text: str, lines: int = 30) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


@pytest.fixture(scope="session")
def lab() -> Iterator[LabDoc]:
    engine = _lab("engine", timeout=900)
    if engine.returncode != 0:
        unavailable(f"no Docker engine for the lab: {_tail(engine.stderr, 8)}")
    # One lab per Docker engine: test sessions sharing a machine take turns.
    with exclusive(SESSION_LOCK, wait=1800, what="the lab (another test session)"):
        yield from _lab_session()


#: The session's lab while it is up (for the per-module clean-up below).
_UP: list[LabDoc] = []

#: Leaves a server as `lab up` made it, apart from images (kept: pulls stay cheap).
_WIPE = (
    "docker ps -aq | xargs -r docker rm -f -v >/dev/null; "
    "docker volume ls -q | xargs -r docker volume rm -f >/dev/null; "
    "docker network rm kamal >/dev/null 2>&1; rm -rf .kamal; true"
)


def _lab_session() -> Iterator[LabDoc]:
    try:
        build = _lab("build", "hello", timeout=1800)  # cached: seconds when up to date
        if build.returncode != 0:
            pytest.fail(f"`python -m lab build hello` failed:\n{_tail(build.stderr)}")
        up = _lab("up", "--servers", str(SERVERS), timeout=1800)
        if up.returncode != 0:
            pytest.fail(f"`python -m lab up` failed:\n{_tail(up.stderr)}")
        doc = LabDoc.from_json(up.stdout)
        _UP.append(doc)
        yield doc
    finally:
        _UP.clear()
        down = _lab("down", timeout=300)
        if down.returncode != 0:
            sys.stderr.write(f"python -m lab down failed:\n{_tail(down.stderr)}\n")


@pytest.fixture(scope="session")
def lab_ssh(lab: LabDoc) -> LabSsh:
    return LabSsh(lab)


@pytest.fixture(autouse=True, scope="module")
def _fresh_servers_after_each_module() -> Iterator[None]:
    """Every test module starts from servers as `lab up` made them: whatever a module deployed
    (containers, the proxy and its services, volumes, .kamal files) is wiped when it ends, so
    that one module's leftovers (e.g. a catch-all service in the proxy) cannot break the next."""
    yield
    if not _UP:
        return
    ssh = LabSsh(_UP[0])
    for server in _UP[0].servers:
        ssh(server.address, "sh", "-c", _WIPE, check=False, timeout=180)
