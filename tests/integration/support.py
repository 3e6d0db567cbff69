"""Helpers shared by the lab's integration tests (a plain module; import it as
`from tests.integration.support import ...`, which works for a single file and the full run).

- `run`, `out`: a subprocess with the test's extra environment, and the tail of its output;
- `get`, `LoadLoop`: plain HTTP without the host's proxies, and a bounded request loop in a thread
  that records every failed or unexpected answer;
- `build_proxy_image`, `lab_pushes`, `push_images`: the images a project deploys, pushed to the
  lab registry under a throw-away DOCKER_CONFIG (the host's docker login stays untouched);
- `login_on_server`: a lab server's own docker logged in to the lab registry;
- `write_ssh_config`, `make_app`, `deploy_yml`: a project directory with the lab's known_hosts,
  `.kamal/secrets` and the common `config/deploy.yml`; `prepare_app` does the usual sequence;
- `Project`: such a project, with `dockyard(*args)` (`python -m dockyard` inside it) and
  `answers()` (what every server's port 80 says)."""

from __future__ import annotations

import http.client
import os
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

import pytest

from dockyard.remote.options import SshOptions
from lab.state import LabDoc
from lab.testing import LabSsh

REPO = Path(__file__).resolve().parents[2]
PYTHON = REPO / ".venv" / "bin" / "python"
#: The tag the proxy image gets in the lab registry (Kamal refuses one below its minimum).
PROXY_VERSION = "v0.9.2"
#: The proxy image `python -m lab build proxy` builds on the host.
PROXY_IMAGE = "dockyard-proxy:lab"
#: The hello app's image on the host (tags v1, v2, broken, ...).
HELLO_IMAGE = "dockyard-lab/hello"


def unavailable(reason: str) -> NoReturn:
    """Something a test needs is not here: a skip on a developer's machine, a failure in CI
    (CI=true), where scripts/test installs or builds everything, so a skip would hide a broken
    set-up."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI needs this, but: {reason}")
    pytest.skip(reason)


def run(
    argv: Sequence[str],
    *,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    input: str | None = None,
    timeout: float = 600,
) -> subprocess.CompletedProcess[str]:
    """Runs `argv` with the host's environment plus `env`, capturing text output; stdin is
    `input`, or nothing (never the terminal)."""
    return subprocess.run(
        list(argv),
        env={**os.environ, **(env or {})},
        cwd=cwd,
        input=input,
        stdin=None if input is not None else subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def out(proc: subprocess.CompletedProcess[str], limit: int = 5000) -> str:
    """The last `limit` characters of stdout + stderr, for an assertion message."""
    return (proc.stdout + proc.stderr)[-limit:]


def get(url: str, timeout: float = 5) -> tuple[int, str]:
    """GETs `url` without the host's HTTP proxies: (status, body), also for error statuses.
    Connection errors raise OSError."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=timeout) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@dataclass
class LoadLoop:
    """A bounded request loop in a thread while the `with` block runs: GETs every URL in turn
    and counts the answers that are 200 with a body in `allowed` (`seen`: how many of each);
    anything else (another status, another body, a connection error) is recorded in `errors`.
    Stops at the end of the block; reaching `max_seconds` first is an error too (the rest of
    the block would run without load). Optionally sleeps `pause` seconds after each answer and
    `error_pause` after each connection error (to bound the rate); `slowest` is the longest
    answer's time; `ok_in_block` the answers after the warm-up."""

    urls: list[str]
    allowed: tuple[str, ...]
    max_seconds: float = 120
    timeout: float = 5
    warmup: float = 0.3  # seconds the loop runs before the block starts
    pause: float = 0.0
    error_pause: float = 0.0
    join_timeout: float = 30
    slowest: float = 0.0
    ok: int = 0
    ok_at_enter: int = 0
    seen: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    @property
    def ok_in_block(self) -> int:
        return self.ok - self.ok_at_enter

    def _loop(self) -> None:
        deadline = time.monotonic() + self.max_seconds
        while not self._stop.is_set():
            if time.monotonic() >= deadline:
                self.errors.append(
                    f"the load loop reached its {self.max_seconds} s limit before the block "
                    "ended: the rest of the block ran without load"
                )
                return
            for url in self.urls:
                started = time.monotonic()
                try:
                    status, body = get(url, self.timeout)
                except (OSError, http.client.HTTPException) as exc:  # e.g. IncompleteRead
                    self.errors.append(f"{url}: {exc!r}")
                    if self.error_pause:
                        time.sleep(self.error_pause)
                    continue
                self.slowest = max(self.slowest, time.monotonic() - started)
                if status != 200 or body not in self.allowed:
                    self.errors.append(f"{url}: {status} {body[:80]}")
                else:
                    self.ok += 1
                    self.seen[body] += 1
                if self.pause:
                    time.sleep(self.pause)

    def __enter__(self) -> LoadLoop:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        time.sleep(self.warmup)
        self.ok_at_enter = self.ok
        return self

    def _run(self) -> None:
        try:
            self._loop()
        except BaseException as exc:  # a loop that died must not look like one without errors
            self.errors.append(f"the load loop died: {exc!r}")
            raise

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join(self.join_timeout)
        if self._thread.is_alive():
            self.errors.append(f"the load loop did not stop within {self.join_timeout} s")


def server_urls(lab: LabDoc) -> list[str]:
    """`http://<address>/` of every lab server (the proxy's port 80)."""
    return [f"http://{s.address}/" for s in lab.servers]


def build_proxy_image() -> str:
    """Builds the proxy image with `python -m lab build proxy` (seconds when up to date) and
    returns its name."""
    build = run([str(PYTHON), "-m", "lab", "build", "proxy"], cwd=REPO, timeout=1800)
    assert build.returncode == 0, build.stderr[-3000:]
    return PROXY_IMAGE


def lab_pushes(
    lab: LabDoc, hello: Iterable[str], proxy: str | None = PROXY_IMAGE
) -> list[tuple[str, str]]:
    """(source, registry ref) pairs: the proxy image `proxy` (None: none) as
    `<registry>/dockyard-proxy:PROXY_VERSION`, then each hello version as `<registry>/hello:v`."""
    reg = lab.registry.address
    pairs = [(proxy, f"{reg}/dockyard-proxy:{PROXY_VERSION}")] if proxy else []
    return pairs + [(f"{HELLO_IMAGE}:{v}", f"{reg}/hello:{v}") for v in hello]


def push_images(lab: LabDoc, root: Path, pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Logs in to the lab registry with DOCKER_CONFIG=`root`/docker, then tags each local
    `source` as `ref` and pushes it. Returns that environment (`{"DOCKER_CONFIG": ...}`), for
    everything that should use the same login."""
    env = {"DOCKER_CONFIG": str(root / "docker")}
    login = run(
        ["docker", "login", lab.registry.address, "-u", lab.registry.username, "--password-stdin"],
        env=env,
        input=lab.registry.password,
    )
    assert login.returncode == 0, login.stderr
    for source, ref in pairs:
        tagged = run(["docker", "tag", source, ref], env=env)
        assert tagged.returncode == 0, tagged.stderr
        pushed = run(["docker", "push", ref], env=env)
        assert pushed.returncode == 0, pushed.stderr
    return env


def login_on_server(lab: LabDoc, lab_ssh: LabSsh, address: str) -> None:
    """Logs the server at `address` in to the lab registry (its own docker, over SSH)."""
    lab_ssh(
        address,
        "docker",
        "login",
        lab.registry.address,
        "-u",
        lab.registry.username,
        "--password-stdin",
        input=lab.registry.password,
    )


def lab_options(lab: LabDoc, **overrides: object) -> SshOptions:
    """SSH options for the lab's servers (its key and known_hosts), with ``overrides``."""
    return SshOptions(
        user=lab.ssh.user,
        keys=(lab.ssh.key,),
        keys_only=True,
        known_hosts=(lab.ssh.known_hosts,),
        connect_timeout=20,
        **overrides,  # type: ignore[arg-type]
    )


def write_ssh_config(root: Path, lab: LabDoc) -> Path:
    """Writes `root`/ssh_config: every host is checked against the lab's known_hosts."""
    path = root / "ssh_config"
    path.write_text(
        f"Host *\n  UserKnownHostsFile {lab.ssh.known_hosts}\n  StrictHostKeyChecking yes\n"
    )
    return path


def make_app(app: Path, lab: LabDoc, secrets: str = "") -> Path:
    """Creates `app`/config and `app`/.kamal/secrets with KAMAL_REGISTRY_PASSWORD (the lab
    registry's) followed by the `secrets` lines. Returns `app`."""
    (app / "config").mkdir(parents=True, exist_ok=True)
    (app / ".kamal").mkdir(exist_ok=True)
    (app / ".kamal" / "secrets").write_text(
        f"KAMAL_REGISTRY_PASSWORD={lab.registry.password}\n{secrets}"
    )
    return app


def prepare_app(
    lab: LabDoc,
    root: Path,
    *,
    hello: Iterable[str],
    proxy: str | None = PROXY_IMAGE,
    secrets: str = "",
) -> tuple[Path, dict[str, str], Path]:
    """The usual start of a lab project in the empty directory `root`: the proxy image and the
    `hello` versions pushed (`lab_pushes`, `push_images`), `root`/ssh_config
    (`write_ssh_config`) and the project directory `root`/app (`make_app`, with `secrets`).
    Returns (app directory, environment with DOCKER_CONFIG, ssh_config path); writing
    config/deploy.yml (see `deploy_yml`) is left to the caller."""
    env = push_images(lab, root, lab_pushes(lab, hello, proxy))
    ssh_config = write_ssh_config(root, lab)
    return make_app(root / "app", lab, secrets), env, ssh_config


def deploy_yml(
    lab: LabDoc,
    *,
    service: str = "hello",
    hosts: Sequence[str] | None = None,
    roles: str = "",
    builder: str = "",
    proxy: bool = True,
    app_port: int = 80,
    proxy_host: str | None = None,
    ssh_user: str | None = None,
    ssh_key: str | None = None,
    ssh_config: Path | None = None,
    extra: str = "",
    registry: str | None = None,
) -> str:
    """The common `config/deploy.yml` for the lab: `service` (also the image) with a web role
    on `hosts` (default: every lab server) plus the `roles` text (indented as entries of
    `servers:`), the lab registry with the password from KAMAL_REGISTRY_PASSWORD (or instead
    the `registry` text, a whole top-level `registry:` block), an amd64 builder plus the
    `builder` text (indented), with `proxy` the proxy block (`app_port`,
    optional `proxy_host`, a 1 s health-check interval, and `proxy.run` pointing at the lab
    registry's dockyard-proxy:PROXY_VERSION), keys-only SSH as the lab's user and key (or
    `ssh_user` / `ssh_key`) with `ssh_config` if given, and last the top-level `extra` text."""
    reg = lab.registry.address
    if registry is None:
        registry = f"""registry:
  server: {reg}
  username: {lab.registry.username}
  password:
    - KAMAL_REGISTRY_PASSWORD
"""
    web = "\n".join(f"    - {h}" for h in (hosts or [s.address for s in lab.servers]))
    text = f"""service: {service}
image: {service}
servers:
  web:
{web}
{roles}{registry}builder:
  arch: amd64
{builder}"""
    if proxy:
        host_line = f"  host: {proxy_host}\n" if proxy_host else ""
        text += f"""proxy:
  app_port: {app_port}
{host_line}  healthcheck:
    interval: 1
  run:
    registry: {reg}
    repository: dockyard-proxy
    version: {PROXY_VERSION}
"""
    text += f"""ssh:
  user: {ssh_user or lab.ssh.user}
  keys_only: true
  keys:
    - {ssh_key or lab.ssh.key}
"""
    if ssh_config is not None:
        text += f"  config: {ssh_config}\n"
    return text + extra


@dataclass
class Project:
    """A project directory `root` for the lab; `env` is added to every command's environment
    (at least DOCKER_CONFIG, see `push_images`)."""

    root: Path
    env: dict[str, str]
    lab: LabDoc

    def dockyard(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        """`python -m dockyard *args` in the project directory."""
        return run(
            [str(PYTHON), "-m", "dockyard", *args], env=self.env, cwd=self.root, timeout=timeout
        )

    def answers(self) -> list[tuple[int, str]]:
        """(status, body) of `GET /` on every lab server."""
        return [get(url) for url in server_urls(self.lab)]
