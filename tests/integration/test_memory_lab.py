"""Memory-safe deploys on a small server: one lab server started with `--memory 1g` (its own
lab, `<lab name>1g`, so the session's two-server `lab` is untouched), the `hungry` hello
variant (520 MB resident) deployed as two versions (two tags of the same image):

(a) a normal `dockyard deploy` of the second version is refused before anything changes, with
    the numbers; the running container is never OOM-killed and keeps serving;
(b) `dockyard deploy --strategy swap` under a bounded request loop: zero failed requests, no
    OOM kill, the new version runs;
(c) a swap deploy of the `broken` variant fails its health check: the old version is started
    again and serves, the command exits non-zero.

The tests run in file order and share one project (module fixture)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from lab.cluster import SESSION_ENV, Paths, session_lock
from lab.locks import exclusive
from lab.paths import LAB_NAME, SHARED_STATE_DIR
from lab.state import LabDoc
from lab.testing import LabSsh
from tests.integration.support import (
    REPO,
    LoadLoop,
    Project,
    build_proxy_image,
    deploy_yml,
    get,
    lab_pushes,
    make_app,
    out,
    push_images,
    run,
    unavailable,
    write_ssh_config,
)

pytestmark = pytest.mark.integration

#: A lab of our own next to the session's: one server with 1 GB of memory (and no swap).
SMALL_LAB = f"{LAB_NAME}1g"[:12] if LAB_NAME else "small1g"
HUNGRY_MB = 520


def _lab(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return run(
        [sys.executable, "-m", "lab", *args],
        env={SESSION_ENV: "held", "DOCKYARD_LAB_NAME": SMALL_LAB},
        cwd=REPO,
        timeout=timeout,
    )


def _tail(text: str, lines: int = 30) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


@pytest.fixture(scope="module")
def small_lab() -> Iterator[LabDoc]:
    """`python -m lab up --servers 1 --memory 1g` under the lab name SMALL_LAB; down after."""
    engine = _lab("engine", timeout=900)
    if engine.returncode != 0:
        unavailable(f"no Docker engine for the lab: {_tail(engine.stderr, 8)}")
    lock = session_lock(Paths(SHARED_STATE_DIR / "named" / SMALL_LAB))
    lock.parent.mkdir(parents=True, exist_ok=True)
    with exclusive(lock, wait=1800, what=f"the lab {SMALL_LAB} (another test session)"):
        try:
            build = _lab("build", "hello", timeout=1800)
            if build.returncode != 0:
                pytest.fail(f"`python -m lab build hello` failed:\n{_tail(build.stderr)}")
            up = _lab("up", "--servers", "1", "--memory", "1g", timeout=1800)
            if up.returncode != 0:
                pytest.fail(f"`python -m lab up --memory 1g` failed:\n{_tail(up.stderr)}")
            yield LabDoc.from_json(up.stdout)
        finally:
            down = _lab("down", timeout=300)
            if down.returncode != 0:
                sys.stderr.write(f"python -m lab down failed:\n{_tail(down.stderr)}\n")


@dataclass
class MemoryProject(Project):
    ssh: LabSsh

    @property
    def address(self) -> str:
        return self.lab.servers[0].address

    def on_server(self, *argv: str) -> str:
        result = self.ssh(self.address, *argv)
        return str(result.stdout)

    def containers(self) -> dict[str, dict[str, object]]:
        """The app's containers on the server: name -> status, OOMKilled, RestartCount, exit."""
        names = self.on_server(
            "docker", "ps", "-a", "--filter", "label=service=hello", "--format", "{{.Names}}"
        ).split()
        if not names:
            return {}
        fmt = (
            '{"name": "{{.Name}}", "status": "{{.State.Status}}", '
            '"oom": {{.State.OOMKilled}}, "restarts": {{.RestartCount}}, '
            '"exit": {{.State.ExitCode}}}'
        )
        out = self.on_server("docker", "inspect", "--format", fmt, *names)
        rows = [json.loads(line) for line in out.splitlines() if line.strip()]
        return {str(r["name"]).lstrip("/"): r for r in rows}

    def oom_kills(self) -> int:
        """The server's own cgroup: how many processes the kernel OOM-killed in it so far."""
        text = self.on_server("cat", "/sys/fs/cgroup/memory/memory.oom_control")
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
        raise AssertionError(f"no oom_kill in memory.oom_control: {text!r}")


def _out(proc: subprocess.CompletedProcess[str]) -> str:
    return out(proc, 6000)


@pytest.fixture(scope="module")
def project(small_lab: LabDoc) -> Iterator[MemoryProject]:
    # $DOCKYARD_TEST_PROXY_SOURCE: another local proxy image (see test_deploy_lab.py).
    proxy_source = os.environ.get("DOCKYARD_TEST_PROXY_SOURCE")
    if not proxy_source:
        proxy_source = build_proxy_image()
    lab = small_lab
    reg = lab.registry.address
    with tempfile.TemporaryDirectory(prefix="dockyard-memory-") as tmp:
        root = Path(tmp)
        pushes = [
            *lab_pushes(lab, (), proxy_source),
            # two versions of the same hungry image, and the broken variant
            ("dockyard-lab/hello:hungry", f"{reg}/hello:h1"),
            ("dockyard-lab/hello:hungry", f"{reg}/hello:h2"),
            ("dockyard-lab/hello:broken", f"{reg}/hello:broken"),
        ]
        env = push_images(lab, root, pushes)
        ssh_config = write_ssh_config(root, lab)
        app = make_app(root / "app", lab)
        (app / "config" / "deploy.yml").write_text(
            deploy_yml(
                lab,
                hosts=[lab.servers[0].address],
                builder="  driver: docker\n",
                ssh_config=ssh_config,
                extra=f"""env:
  clear:
    HUNGRY_MB: {HUNGRY_MB}
deploy_timeout: 15
drain_timeout: 5
""",
            )
        )
        yield MemoryProject(app, env, lab, LabSsh(lab))


def _loop(project: MemoryProject) -> LoadLoop:
    """A bounded request loop against the server's port 80 (about 30 requests a second at
    most); records failures and the slowest answer (the latency bump of a paused proxy)."""
    return LoadLoop(
        [f"http://{project.address}/"],
        ("hungry",),
        max_seconds=180,
        timeout=90,
        warmup=0.5,
        pause=0.02,
        error_pause=0.05,
        join_timeout=120,
    )


def _running(project: MemoryProject) -> dict[str, dict[str, object]]:
    return {n: c for n, c in project.containers().items() if c["status"] == "running"}


def test_first_version_deploys(project: MemoryProject) -> None:
    setup = project.dockyard("setup", "-P", "--version", "h1", timeout=900)
    assert setup.returncode == 0, _out(setup)
    assert get(f"http://{project.address}/", 60) == (200, "hungry")
    assert list(_running(project)) == ["hello-web-h1"]


def test_a_normal_deploy_that_does_not_fit_is_refused_before_anything_changes(
    project: MemoryProject,
) -> None:
    oom_before = project.oom_kills()
    before = project.containers()
    refused = project.dockyard("deploy", "-P", "--version", "h2")
    out = _out(refused)
    assert refused.returncode != 0, out
    assert "memory check" in out and "nothing was changed" in out, out
    assert project.address in out
    assert "measured: hello-web-h1" in out  # what the new one needs, and from where
    assert "cgroup v1" in out and "of 1.0 GiB" in out  # the server's own limit, not /proc
    assert "--strategy swap" in out  # the options
    # nothing changed: no h2 container, h1 untouched, never OOM-killed
    after = project.containers()
    assert "hello-web-h2" not in after
    assert after == before
    h1 = after["hello-web-h1"]
    assert h1["status"] == "running" and h1["oom"] is False and h1["restarts"] == 0
    assert project.oom_kills() == oom_before
    assert get(f"http://{project.address}/", 60) == (200, "hungry")
    sys.stderr.write(f"\nrefusal:\n{out}\n")


def test_a_swap_deploy_under_load_fails_no_request_and_kills_nothing(
    project: MemoryProject,
) -> None:
    oom_before = project.oom_kills()
    with _loop(project) as loop:
        started = time.monotonic()
        swapped = project.dockyard("deploy", "-P", "--version", "h2", "--strategy", "swap")
        seconds = time.monotonic() - started
        answered = loop.ok
        time.sleep(1.0)
    assert swapped.returncode == 0, _out(swapped)
    assert loop.errors == [], loop.errors[:10]
    assert loop.ok_in_block > 10
    # Both versions answer "hungry": answers after the deploy returned came from h2, the only
    # one running then (the warm-up's came from h1).
    assert loop.ok > answered
    containers = project.containers()
    assert list(_running(project)) == ["hello-web-h2"]
    for name in ("hello-web-h1", "hello-web-h2"):
        assert containers[name]["oom"] is False, containers
        assert containers[name]["restarts"] == 0, containers
    assert containers["hello-web-h1"]["exit"] == 0  # stopped by us, not killed
    assert project.oom_kills() == oom_before
    sys.stderr.write(
        f"\nswap deploy: {seconds:.1f} s, {loop.ok} requests ok, 0 failed, "
        f"slowest {loop.slowest:.2f} s\n"
    )


def test_a_failed_swap_restores_the_old_version(project: MemoryProject) -> None:
    oom_before = project.oom_kills()
    with _loop(project) as loop:
        failed = project.dockyard("deploy", "-P", "--version", "broken", "--strategy", "swap")
        answered = loop.ok
        time.sleep(1.0)
    out = _out(failed)
    assert failed.returncode != 0, out
    assert "health check on" in out and "hello-web-broken did not become healthy" in out, out
    assert "hello-web-h2 was started again" in out, out
    assert list(_running(project)) == ["hello-web-h2"]
    assert project.containers()["hello-web-broken"]["status"] == "exited"
    assert get(f"http://{project.address}/", 60) == (200, "hungry")
    assert project.oom_kills() == oom_before
    assert loop.errors == [], loop.errors[:10]  # held during the failed attempt, then served
    assert loop.ok_in_block > 0
    assert loop.ok > answered  # h2, started again, answers after the failed deploy returned
    sys.stderr.write(
        f"\nfailed swap: {loop.ok} requests ok, {len(loop.errors)} failed, "
        f"slowest {loop.slowest:.2f} s\n{out}\n"
    )


def test_rollback_by_swap(project: MemoryProject) -> None:
    """h1 still exists (stopped): a normal rollback would start it next to h2 and is refused;
    `rollback --strategy swap` swaps it in under load."""
    refused = project.dockyard("rollback", "h1")
    assert refused.returncode != 0, _out(refused)
    assert "memory check" in _out(refused) and "nothing was changed" in _out(refused)
    assert list(_running(project)) == ["hello-web-h2"]
    oom_before = project.oom_kills()
    with _loop(project) as loop:
        rolled = project.dockyard("rollback", "h1", "--strategy", "swap")
        answered = loop.ok
        time.sleep(1.0)
    assert rolled.returncode == 0, _out(rolled)
    assert loop.errors == [], loop.errors[:10]
    assert loop.ok_in_block > 0
    assert loop.ok > answered  # h1, the only one running after the rollback, answers
    assert list(_running(project)) == ["hello-web-h1"]
    assert project.oom_kills() == oom_before
    sys.stderr.write(
        f"\nrollback by swap: {loop.ok} requests ok, 0 failed, slowest {loop.slowest:.2f} s\n"
    )
