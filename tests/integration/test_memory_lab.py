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
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from lab.cluster import SESSION_ENV, Paths, session_lock
from lab.locks import exclusive
from lab.paths import LAB_NAME, SHARED_STATE_DIR
from lab.state import LabDoc
from lab.testing import LabSsh

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
PYTHON = REPO / ".venv" / "bin" / "python"
PROXY_VERSION = "v0.9.2"
#: A lab of our own next to the session's: one server with 1 GB of memory (and no swap).
SMALL_LAB = f"{LAB_NAME}1g"[:12] if LAB_NAME else "small1g"
HUNGRY_MB = 520


def _run(
    argv: list[str],
    *,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    input: str | None = None,
    timeout: float = 600,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv,
        env={**os.environ, **(env or {})},
        cwd=cwd,
        input=input,
        stdin=None if input is not None else subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _lab(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return _run(
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
        reason = f"no Docker engine for the lab: {_tail(engine.stderr, 8)}"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
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


def get(url: str, timeout: float = 60) -> tuple[int, str]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=timeout) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@dataclass
class Project:
    root: Path
    env: dict[str, str]
    lab: LabDoc
    ssh: LabSsh

    @property
    def address(self) -> str:
        return self.lab.servers[0].address

    def dockyard(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return _run(
            [str(PYTHON), "-m", "dockyard", *args], env=self.env, cwd=self.root, timeout=timeout
        )

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
    return (proc.stdout + proc.stderr)[-6000:]


@pytest.fixture(scope="module")
def project(small_lab: LabDoc) -> Iterator[Project]:
    # $DOCKYARD_TEST_PROXY_SOURCE: another local proxy image (see test_deploy_lab.py).
    proxy_source = os.environ.get("DOCKYARD_TEST_PROXY_SOURCE")
    if not proxy_source:
        proxy_source = "dockyard-proxy:lab"
        build = _run([str(PYTHON), "-m", "lab", "build", "proxy"], cwd=REPO, timeout=1800)
        assert build.returncode == 0, build.stderr[-3000:]
    lab = small_lab
    reg = lab.registry.address
    with tempfile.TemporaryDirectory(prefix="dockyard-memory-") as tmp:
        root = Path(tmp)
        env = {"DOCKER_CONFIG": str(root / "docker")}
        login = _run(
            ["docker", "login", reg, "-u", lab.registry.username, "--password-stdin"],
            env=env,
            input=lab.registry.password,
        )
        assert login.returncode == 0, login.stderr
        pushes = [
            (proxy_source, f"{reg}/dockyard-proxy:{PROXY_VERSION}"),
            # two versions of the same hungry image, and the broken variant
            ("dockyard-lab/hello:hungry", f"{reg}/hello:h1"),
            ("dockyard-lab/hello:hungry", f"{reg}/hello:h2"),
            ("dockyard-lab/hello:broken", f"{reg}/hello:broken"),
        ]
        for source, ref in pushes:
            assert _run(["docker", "tag", source, ref], env=env).returncode == 0
            pushed = _run(["docker", "push", ref], env=env)
            assert pushed.returncode == 0, pushed.stderr
        ssh_config = root / "ssh_config"
        ssh_config.write_text(
            f"Host *\n  UserKnownHostsFile {lab.ssh.known_hosts}\n  StrictHostKeyChecking yes\n"
        )
        app = root / "app"
        (app / "config").mkdir(parents=True)
        (app / ".kamal").mkdir()
        (app / ".kamal" / "secrets").write_text(
            f"KAMAL_REGISTRY_PASSWORD={lab.registry.password}\n"
        )
        (app / "config" / "deploy.yml").write_text(
            f"""service: hello
image: hello
servers:
  web:
    - {lab.servers[0].address}
registry:
  server: {reg}
  username: {lab.registry.username}
  password:
    - KAMAL_REGISTRY_PASSWORD
env:
  clear:
    HUNGRY_MB: {HUNGRY_MB}
builder:
  arch: amd64
  driver: docker
deploy_timeout: 15
drain_timeout: 5
proxy:
  app_port: 80
  healthcheck:
    interval: 1
  run:
    registry: {reg}
    repository: dockyard-proxy
    version: {PROXY_VERSION}
ssh:
  user: {lab.ssh.user}
  keys_only: true
  keys:
    - {lab.ssh.key}
  config: {ssh_config}
"""
        )
        yield Project(app, env, lab, LabSsh(lab))


@dataclass
class LoadLoop:
    """A bounded request loop against the server's port 80 in a thread; records failures and
    the slowest answer (the latency bump of a paused proxy)."""

    url: str
    max_seconds: float = 180
    ok: int = 0
    errors: list[str] = field(default_factory=list)
    slowest: float = 0.0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def _loop(self) -> None:
        deadline = time.monotonic() + self.max_seconds
        while not self._stop.is_set() and time.monotonic() < deadline:
            started = time.monotonic()
            try:
                status, body = get(self.url, timeout=90)
            except OSError as exc:
                self.errors.append(f"{exc!r}")
                time.sleep(0.05)
                continue
            self.slowest = max(self.slowest, time.monotonic() - started)
            if status != 200 or body != "hungry":
                self.errors.append(f"{status} {body[:80]}")
            else:
                self.ok += 1
            time.sleep(0.02)  # bounded: about 30 requests a second at most

    def __enter__(self) -> LoadLoop:
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        time.sleep(0.5)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join(timeout=120)


def _running(project: Project) -> dict[str, dict[str, object]]:
    return {n: c for n, c in project.containers().items() if c["status"] == "running"}


def test_first_version_deploys(project: Project) -> None:
    setup = project.dockyard("setup", "-P", "--version", "h1", timeout=900)
    assert setup.returncode == 0, _out(setup)
    assert get(f"http://{project.address}/") == (200, "hungry")
    assert list(_running(project)) == ["hello-web-h1"]


def test_a_normal_deploy_that_does_not_fit_is_refused_before_anything_changes(
    project: Project,
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
    assert get(f"http://{project.address}/") == (200, "hungry")
    sys.stderr.write(f"\nrefusal:\n{out}\n")


def test_a_swap_deploy_under_load_fails_no_request_and_kills_nothing(project: Project) -> None:
    oom_before = project.oom_kills()
    with LoadLoop(f"http://{project.address}/") as loop:
        started = time.monotonic()
        swapped = project.dockyard("deploy", "-P", "--version", "h2", "--strategy", "swap")
        seconds = time.monotonic() - started
        time.sleep(1.0)
    assert swapped.returncode == 0, _out(swapped)
    assert loop.errors == [], loop.errors[:10]
    assert loop.ok > 10
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


def test_a_failed_swap_restores_the_old_version(project: Project) -> None:
    oom_before = project.oom_kills()
    with LoadLoop(f"http://{project.address}/") as loop:
        failed = project.dockyard("deploy", "-P", "--version", "broken", "--strategy", "swap")
        time.sleep(1.0)
    out = _out(failed)
    assert failed.returncode != 0, out
    assert "health check on" in out and "hello-web-broken did not become healthy" in out, out
    assert "hello-web-h2 was started again" in out, out
    assert list(_running(project)) == ["hello-web-h2"]
    assert project.containers()["hello-web-broken"]["status"] == "exited"
    assert get(f"http://{project.address}/") == (200, "hungry")
    assert project.oom_kills() == oom_before
    assert loop.errors == [], loop.errors[:10]  # held during the failed attempt, then served
    sys.stderr.write(
        f"\nfailed swap: {loop.ok} requests ok, {len(loop.errors)} failed, "
        f"slowest {loop.slowest:.2f} s\n{out}\n"
    )


def test_rollback_by_swap(project: Project) -> None:
    """h1 still exists (stopped): a normal rollback would start it next to h2 and is refused;
    `rollback --strategy swap` swaps it in under load."""
    refused = project.dockyard("rollback", "h1")
    assert refused.returncode != 0, _out(refused)
    assert "memory check" in _out(refused) and "nothing was changed" in _out(refused)
    assert list(_running(project)) == ["hello-web-h2"]
    oom_before = project.oom_kills()
    with LoadLoop(f"http://{project.address}/") as loop:
        rolled = project.dockyard("rollback", "h1", "--strategy", "swap")
        time.sleep(1.0)
    assert rolled.returncode == 0, _out(rolled)
    assert loop.errors == [], loop.errors[:10]
    assert list(_running(project)) == ["hello-web-h1"]
    assert project.oom_kills() == oom_before
    sys.stderr.write(
        f"\nrollback by swap: {loop.ok} requests ok, 0 failed, slowest {loop.slowest:.2f} s\n"
    )
