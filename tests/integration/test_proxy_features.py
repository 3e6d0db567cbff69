"""Access gates, metrics and health-gate errors through a really running `dockyard-proxy run`
(a subprocess under uvloop, JSON logs), driven by the `dockyard-proxy` CLI as Kamal drives it.
Loopback only: the proxy binds 127.0.0.1 (DOCKYARD_PROXY_BIND), the backend is a thread here."""

from __future__ import annotations

import base64
import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import bcrypt
import pytest
from test_proxy_image import APP_IMAGE, Net, exec_proxy, images, net, wait_for  # noqa: F401

pytestmark = pytest.mark.integration

LOOPBACK = "127.0.0.1"
CLI = [sys.executable, "-m", "dockyard.proxy.cli"]
PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


class _Echo(BaseHTTPRequestHandler):
    """Answers with the path and the headers it got, as JSON; /up is the health check."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        body = json.dumps({"path": self.path, "headers": dict(self.headers.items())}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@dataclass
class Backend:
    server: ThreadingHTTPServer
    thread: threading.Thread

    @property
    def target(self) -> str:
        return f"{LOOPBACK}:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


def start_backend() -> Backend:
    server = ThreadingHTTPServer((LOOPBACK, 0), _Echo)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return Backend(server, thread)


@dataclass
class RunningProxy:
    """`dockyard-proxy run` as a process; `cli()` runs client subcommands against it."""

    tmp: Path
    http_port: int
    https_port: int
    metrics_port: int = 0
    extra_env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in PROXY_VARS}
        env.update(
            XDG_RUNTIME_DIR=str(self.tmp / "run"),
            XDG_CONFIG_HOME=str(self.tmp / "cfg"),
            DOCKYARD_PROXY_BIND=LOOPBACK,
            NO_PROXY="*",
            **self.extra_env,
        )
        return env

    @property
    def log(self) -> Path:
        return self.tmp / "run.log"

    def start(self) -> None:
        (self.tmp / "run").mkdir(exist_ok=True)
        started = self.log.read_bytes().count(b'"msg":"Server started"') if self.log.exists() else 0
        argv = [
            *CLI,
            "run",
            f"--http-port={self.http_port}",
            f"--https-port={self.https_port}",
        ]
        if self.metrics_port:
            argv.append(f"--metrics-port={self.metrics_port}")
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                argv, env=self.env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        deadline = time.monotonic() + 20
        while self.log.read_bytes().count(b'"msg":"Server started"') == started:
            assert self.process.poll() is None, self.log.read_text()
            assert time.monotonic() < deadline, "the proxy did not start"
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(20)
            self.process = None

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [*CLI, *args], env=self.env, capture_output=True, text=True, timeout=120
        )
        if check:
            assert result.returncode == 0, result.stderr
        return result


@pytest.fixture
def backend() -> Iterator[Backend]:
    b = start_backend()
    try:
        yield b
    finally:
        b.close()


@pytest.fixture
def proxy(tmp_path: Path) -> Iterator[RunningProxy]:
    running = RunningProxy(tmp_path, free_port(), free_port(), free_port())
    running.start()
    try:
        yield running
    finally:
        running.stop()


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.body)
        return data


def http_get(port: int, host: str, path: str, headers: dict[str, str] | None = None) -> Reply:
    lines = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    raw = f"GET {path} HTTP/1.1\r\nHost: {host}\r\n{lines}Connection: close\r\n\r\n"
    with socket.create_connection((LOOPBACK, port), timeout=10) as sock:
        sock.sendall(raw.encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    parsed = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in header_lines)}
    return Reply(int(status_line.split(" ")[1]), parsed, body)


def scrape(port: int) -> dict[str, float]:
    """`name{labels}` -> value from the metrics listener."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(f"http://{LOOPBACK}:{port}/metrics", timeout=10) as resp:
        assert resp.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
        text = resp.read().decode()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            samples[key] = float(value)
    return samples


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


# -- tests ---------------------------------------------------------------------------------------


def test_access_gates_set_by_the_cli_are_enforced_and_survive_a_restart(
    proxy: RunningProxy, backend: Backend
) -> None:
    password_hash = bcrypt.hashpw(b"hunter2", bcrypt.gensalt(5)).decode()
    proxy.cli(
        "deploy",
        "admin",
        f"--target={backend.target}",
        "--host=admin.test",
        "--basic-auth-user=ops",
        f"--basic-auth-password-hash={password_hash}",
        "--deploy-timeout=10s",
    )
    proxy.cli(
        "deploy",
        "internal",
        f"--target={backend.target}",
        "--host=internal.test",
        "--allow-ip=203.0.113.0/24,2001:db8::/32",
        "--client-ip-header=CF-Connecting-IP",
        "--forward-headers",
        "--deploy-timeout=10s",
    )
    port = proxy.http_port

    def check_all() -> None:
        missing = http_get(port, "admin.test", "/a")
        assert missing.status == 401
        assert missing.headers["www-authenticate"] == 'Basic realm="admin", charset="UTF-8"'
        assert http_get(port, "admin.test", "/a", basic("ops", "wrong")).status == 401
        ok = http_get(port, "admin.test", "/a", basic("ops", "hunter2"))
        assert ok.status == 200 and "Authorization" not in ok.json()["headers"]

        inside = http_get(port, "internal.test", "/i", {"CF-Connecting-IP": "203.0.113.50"})
        assert inside.status == 200
        assert inside.json()["headers"]["X-Forwarded-For"] == "203.0.113.50"
        v6 = http_get(port, "internal.test", "/i", {"CF-Connecting-IP": "2001:db8::7"})
        assert v6.status == 200
        assert http_get(port, "internal.test", "/i", {"CF-Connecting-IP": "8.8.8.8"}).status == 403
        assert http_get(port, "internal.test", "/i").status == 403  # peer 127.0.0.1: outside

    check_all()
    state = json.loads((proxy.tmp / "cfg" / "kamal-proxy" / "kamal-proxy.state").read_text())
    saved = {s["name"]: s["options"] for s in state}
    assert saved["internal"]["allow_ips"] == ["203.0.113.0/24", "2001:db8::/32"]
    assert saved["admin"]["basic_auth_user"] == "ops"
    proxy.stop()
    proxy.start()
    check_all()  # restored from the state file
    log = proxy.log.read_text()
    assert "hunter2" not in log and "Basic " not in log

    bad = proxy.cli(
        "deploy", "x", f"--target={backend.target}", "--allow-ip=10.0.0.0/99", check=False
    )
    assert bad.returncode == 1
    assert bad.stderr.startswith("Error: invalid --allow-ip value '10.0.0.0/99'")


def test_metrics_are_scraped_after_requests_and_deploys(
    proxy: RunningProxy, backend: Backend
) -> None:
    proxy.cli("deploy", "web", f"--target={backend.target}", "--host=web.test")
    dead = free_port()
    failed = proxy.cli(
        "deploy",
        "web",
        f"--target={LOOPBACK}:{dead}",
        "--host=web.test",
        "--deploy-timeout=500ms",
        "--health-check-interval=100ms",
        check=False,
    )
    assert failed.returncode == 1
    for _ in range(4):
        assert http_get(proxy.http_port, "web.test", "/hello").status == 200
    assert http_get(proxy.http_port, "nobody.test", "/").status == 404
    samples = scrape(proxy.metrics_port)
    # kamal-proxy v0.9.2's families and labels (status is the code).
    ok = 'service="web",method="GET",status="200"'
    assert samples[f"kamal_proxy_http_requests_total{{{ok}}}"] == 4
    assert samples['kamal_proxy_http_requests_total{service="",method="GET",status="404"}'] == 1
    assert samples[f"kamal_proxy_http_request_duration_seconds_count{{{ok}}}"] == 4
    assert samples[f'kamal_proxy_http_request_duration_seconds_bucket{{{ok},le="+Inf"}}'] == 4
    assert samples['kamal_proxy_http_in_flight_requests{service="web"}'] == 0
    assert samples['dockyard_proxy_deploys_total{service="web",result="success"}'] == 1
    assert samples['dockyard_proxy_deploys_total{service="web",result="failure"}'] == 1
    assert samples['dockyard_proxy_targets{service="web",state="healthy"}'] == 1
    assert samples["process_resident_memory_bytes"] > 0


def test_a_failed_health_gate_explains_itself_through_the_cli(
    proxy: RunningProxy, backend: Backend
) -> None:
    proxy.cli("deploy", "web", f"--target={backend.target}")
    dead = free_port()
    result = proxy.cli(
        "deploy",
        "web",
        f"--target={LOOPBACK}:{dead}",
        "--deploy-timeout=500ms",
        "--health-check-interval=100ms",
        check=False,
    )
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert lines[0] == "Error: target failed to become healthy within configured timeout (500ms)"
    assert lines[1].startswith(f"{LOOPBACK}:{dead}: GET http://{LOOPBACK}:{dead}/up: dial tcp")
    assert "connection refused" in lines[1]
    assert any(f"nothing listens on port {dead}" in x for x in lines)
    # The service is untouched.
    assert http_get(proxy.http_port, "any.test", "/still").status == 200


# -- the same in the proxy image (as Kamal runs it) ----------------------------------------------


def test_gates_metrics_and_explained_errors_in_the_proxy_image(
    net: Net,  # noqa: F811  (the image's own fresh --internal network, see test_proxy_image)
) -> None:
    """`kamal-proxy run --metrics-port=9090` in dockyard-proxy:lab (bcrypt from the image's
    wheels), services deployed with `docker exec`, requests and the scrape from the host."""
    app = net.run("app", f"{APP_IMAGE}:v1")
    proxy = net.run_proxy("kamal-proxy", "run", "--metrics-port=9090")
    ip = net.ip(proxy)
    wait_for(lambda: exec_proxy(proxy, "list").returncode == 0)
    password_hash = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(5)).decode()
    deployed = exec_proxy(
        proxy,
        "deploy",
        "hello-admin",
        f"--target={app}:80",
        "--host=admin.test",
        "--basic-auth-user=ops",
        f"--basic-auth-password-hash={password_hash}",
    )
    assert deployed.returncode == 0, deployed.stderr
    deployed = exec_proxy(
        proxy, "deploy", "hello-web", f"--target={app}:80", "--allow-ip=203.0.113.0/24"
    )
    assert deployed.returncode == 0, deployed.stderr

    def request(host: str, headers: dict[str, str] | None = None) -> int:
        conn = http.client.HTTPConnection(ip, 80, timeout=10)
        try:
            conn.request("GET", "/", headers={"Host": host, **(headers or {})})
            resp = conn.getresponse()
            resp.read()
            return resp.status
        finally:
            conn.close()

    assert request("admin.test") == 401
    assert request("admin.test", basic("ops", "s3cret")) == 200
    assert request("web.test") == 403  # the host's bridge address is not in the allowlist

    failed = exec_proxy(proxy, "deploy", "hello-web", "--target=nowhere:80", "--deploy-timeout=1s")
    assert failed.returncode == 1
    lines = failed.stderr.splitlines()
    assert lines[0] == "Error: target failed to become healthy within configured timeout (1s)"
    # Docker's DNS on an --internal network may not answer within 1s: either way it is said.
    err = failed.stderr
    assert "no container or host named nowhere" in err or (
        "still connecting to nowhere:80" in err and "resolving nowhere" in err
    ), err

    conn = http.client.HTTPConnection(ip, 9090, timeout=10)
    try:
        conn.request("GET", "/metrics")
        resp = conn.getresponse()
        text = resp.read().decode()
    finally:
        conn.close()
    assert resp.status == 200
    req = "kamal_proxy_http_requests_total"
    assert f'{req}{{service="hello-admin",method="GET",status="401"}} 1' in text
    assert f'{req}{{service="hello-admin",method="GET",status="200"}} 1' in text
    assert f'{req}{{service="hello-web",method="GET",status="403"}} 1' in text
    assert 'dockyard_proxy_deploys_total{service="hello-web",result="failure"} 1' in text
