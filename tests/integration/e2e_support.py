"""Helpers for the end-to-end lab tests (test_e2e_lab.py): a project directory shared by
Dockyard and the real Kamal 2.11, and a bounded multi-client load loop.

No pytest import here: plain assertions and values."""

from __future__ import annotations

import http.client
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from lab.state import LabDoc
from tests.integration.support import PROXY_VERSION, PYTHON, REPO, run
from tests.integration.support import out as support_out

KAMAL = REPO / ".cache" / "kamal-venv" / "bin" / "kamal"


def out(proc: subprocess.CompletedProcess[str]) -> str:
    return support_out(proc, limit=6000)


def get(address: str, path: str = "/", host: str | None = None) -> tuple[int, str]:
    """One request on a new connection; (status, body)."""
    conn = http.client.HTTPConnection(address, 80, timeout=10)
    try:
        conn.request("GET", path, headers={"Host": host} if host else {})
        resp = conn.getresponse()
        return resp.status, resp.read().decode()
    finally:
        conn.close()


def config_text(
    lab: LabDoc,
    ssh_config: Path,
    *,
    web: list[str],
    workers: list[str],
    key: str | None = None,
    password_secret: str = "KAMAL_REGISTRY_PASSWORD",
) -> str:
    """The hello app's deploy.yml: a web role behind the proxy and a workers role without it,
    the lab registry, and the proxy image pushed there (`proxy.run`)."""
    reg = lab.registry.address
    web_hosts = "\n".join(f"    - {h}" for h in web)
    worker_hosts = "\n".join(f"      - {h}" for h in workers)
    return f"""service: hello
image: hello
servers:
  web:
{web_hosts}
  workers:
    hosts:
{worker_hosts}
    cmd: python3 /app/app.py
    proxy: false
registry:
  server: {reg}
  username: {lab.registry.username}
  password:
    - {password_secret}
builder:
  arch: amd64
  driver: docker
  args:
    BASE_IMAGE: dockyard-lab/python:base
    VARIANT: built
deploy_timeout: 30
drain_timeout: 5
readiness_delay: 1
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
    - {key or lab.ssh.key}
  config: {ssh_config}
"""


@dataclass
class Project:
    """One project directory (config/deploy.yml, .kamal/secrets, .kamal/hooks) used by both
    tools; `env` keeps the host's docker login untouched."""

    root: Path
    env: dict[str, str]
    lab: LabDoc
    ssh_config: Path

    @property
    def addresses(self) -> list[str]:
        return [s.address for s in self.lab.servers]

    def dockyard(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return run(
            [str(PYTHON), "-m", "dockyard", *args], env=self.env, cwd=self.root, timeout=timeout
        )

    def kamal(
        self, *args: str, version: str = "v1", timeout: float = 900
    ) -> subprocess.CompletedProcess[str]:
        # VERSION: the project is not a git repository, and Kamal needs a version even for
        # its lock (rollback, lock acquire).
        return run(
            [str(KAMAL), *args],
            env={**self.env, "VERSION": version},
            cwd=self.root,
            timeout=timeout,
        )

    def answers(self, host: str | None = None) -> list[tuple[int, str]]:
        return [get(a, host=host) for a in self.addresses]


@dataclass
class LoadLoop:
    """Bounded concurrent clients against port 80 of every server: per server one keep-alive
    client (one connection reused while the server keeps it open) and one client that opens a
    new connection per request. Every exception, non-2xx status or unexpected body counts as
    an error; so does a client that dies, outlives the block's end by 30 s, or reaches
    `max_seconds` before the block ends. `seen` counts the good answers per body."""

    addresses: list[str]
    allowed: tuple[str, ...]
    max_seconds: float = 420
    pause: float = 0.01
    ok: int = 0
    reused: int = 0
    connections: int = 0
    seen: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _record(self, address: str, status: int, body: str, *, reused: bool) -> None:
        with self._lock:
            if 200 <= status < 300 and body in self.allowed:
                self.ok += 1
                self.reused += reused
                self.seen[body] += 1
            else:
                self.errors.append(f"{address}: {status} {body[:80]!r}")

    def _error(self, address: str, exc: BaseException) -> None:
        with self._lock:
            self.errors.append(f"{address}: {exc!r}")

    def _running(self, address: str, deadline: float) -> bool:
        if self._stop.is_set():
            return False
        if time.monotonic() >= deadline:
            with self._lock:
                self.errors.append(
                    f"{address}: a client reached its {self.max_seconds} s limit before the "
                    "block ended (the rest of the block ran without its load)"
                )
            return False
        return True

    def _keep_alive(self, address: str) -> None:
        deadline = time.monotonic() + self.max_seconds
        conn: http.client.HTTPConnection | None = None
        uses = 0
        while self._running(address, deadline):
            if conn is None:
                conn = http.client.HTTPConnection(address, 80, timeout=15)
                uses = 0
                with self._lock:
                    self.connections += 1
            current = conn
            try:
                current.request("GET", "/")
                resp = current.getresponse()
                body = resp.read().decode()
                self._record(address, resp.status, body, reused=uses > 0)
                uses += 1
                if resp.will_close:
                    current.close()
                    conn = None
            except (OSError, http.client.HTTPException) as exc:
                self._error(address, exc)
                current.close()
                conn = None
            time.sleep(self.pause)
        if conn is not None:
            conn.close()

    def _new_connections(self, address: str) -> None:
        deadline = time.monotonic() + self.max_seconds
        while self._running(address, deadline):
            try:
                status, body = get(address)
                with self._lock:
                    self.connections += 1
                self._record(address, status, body, reused=False)
            except (OSError, http.client.HTTPException) as exc:
                self._error(address, exc)
            time.sleep(self.pause)

    def _guarded(self, target: Callable[[str], None], address: str) -> None:
        try:
            target(address)
        except BaseException as exc:  # a client that died must not look like one without errors
            self._error(address, RuntimeError(f"the load client died: {exc!r}"))
            raise

    def __enter__(self) -> LoadLoop:
        for address in self.addresses:
            for target in (self._keep_alive, self._new_connections):
                thread = threading.Thread(target=self._guarded, args=(target, address), daemon=True)
                thread.start()
                self._threads.append(thread)
        time.sleep(0.5)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)
            if thread.is_alive():
                self._error("load", RuntimeError("a load client did not stop within 30 s"))

    def summary(self) -> str:
        return (
            f"{self.ok} ok ({self.reused} on reused keep-alive connections, "
            f"{self.connections} connections), {len(self.errors)} errors"
        )
