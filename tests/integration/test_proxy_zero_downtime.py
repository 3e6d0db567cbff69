"""dockyard-proxy end to end, as local processes on loopback: zero-downtime deploys under load,
drain of slow in-flight requests, and `kill -9` + restart from the saved state.

The proxy runs as `python -m dockyard.proxy.cli run` (the same entry point as the image's
`kamal-proxy run`) and is driven through its CLI, exactly as Kamal drives kamal-proxy.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import http.client
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


# -- a loopback backend: keep-alive HTTP/1.1, /up, echo, slow, and a WebSocket-style tunnel -----


@dataclass
class Backend:
    name: str
    port: int = 0
    served: int = 0
    slow_in_flight: int = 0  # /slow requests being answered now
    _loop: asyncio.AbstractEventLoop = field(default_factory=asyncio.new_event_loop)
    _thread: threading.Thread | None = None
    _server: asyncio.Server | None = None

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> Backend:
        async def boot() -> None:
            self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
            self.port = self._server.sockets[0].getsockname()[1]

        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        asyncio.run_coroutine_threadsafe(boot(), self._loop).result(5)
        return self

    def stop(self) -> None:
        if self._loop.is_closed():
            return

        async def down() -> None:
            if self._server is not None:
                self._server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(down(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(5)
        self._loop.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
                lines = head.split("\r\n")
                method, target, _ = lines[0].split(" ", 2)
                headers = {}
                for line in lines[1:]:
                    if ":" in line:
                        k, _, v = line.partition(":")
                        headers[k.strip().lower()] = v.strip()
                body = b""
                if "content-length" in headers:
                    body = await reader.readexactly(int(headers["content-length"]))
                path, _, query = target.partition("?")
                if headers.get("upgrade", "").lower() == "websocket":
                    writer.write(
                        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                        b"Connection: Upgrade\r\n\r\n"
                    )
                    while data := await reader.read(65536):  # a byte tunnel: echo everything
                        writer.write(data)
                        await writer.drain()
                    return
                if path == "/slow":
                    self.slow_in_flight += 1
                    try:
                        await asyncio.sleep(float(query.split("=", 1)[1]))
                    finally:
                        self.slow_in_flight -= 1
                reply = body if method == "POST" else f"{self.name} {path}".encode()
                self.served += 1
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                    b"Content-Length: %d\r\n\r\n%s" % (len(reply), reply)
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
        except asyncio.CancelledError:  # stop(): end quietly, the loop is going away
            pass
        finally:
            writer.close()


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    """Poll `condition` until it holds; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting until {what}")
        time.sleep(0.02)


@pytest.fixture
def backends() -> Iterator[tuple[Backend, Backend]]:
    a, b = Backend("blue").start(), Backend("green").start()
    try:
        yield a, b
    finally:
        a.stop()
        b.stop()


# -- the proxy as a process ---------------------------------------------------------------------


class Proxy:
    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        self.tmp = tmp
        self.env = {
            **os.environ,
            "XDG_RUNTIME_DIR": str(tmp / "run"),
            "XDG_CONFIG_HOME": str(tmp / "config"),
            "DOCKYARD_PROXY_BIND": "127.0.0.1",
            "PYTHONPATH": str(REPO / "src"),
        }
        (tmp / "run").mkdir(exist_ok=True)
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = tmp / "proxy.log"

    @property
    def state_file(self) -> Path:
        return self.tmp / "config" / "kamal-proxy" / "kamal-proxy.state"

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "dockyard.proxy.cli", "run", f"--http-port={self.port}"],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"proxy exited: {self.log.read_text()[-2000:]}")
            if self.cli("list", check=False).returncode == 0:
                with (
                    contextlib.suppress(OSError),
                    socket.create_connection(("127.0.0.1", self.port), timeout=1),
                ):
                    return
            time.sleep(0.05)
        raise AssertionError(f"proxy did not start: {self.log.read_text()[-2000:]}")

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [sys.executable, "-m", "dockyard.proxy.cli", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
            stdin=subprocess.DEVNULL,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"{args} failed: {proc.stderr}")
        return proc

    def kill(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None


@pytest.fixture
def proxy(tmp_path: Path) -> Iterator[Proxy]:
    p = Proxy(tmp_path)
    p.start()
    try:
        yield p
    finally:
        p.kill()


def get(port: int, path: str, host: str = "app.test", timeout: float = 10) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Host": host})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


# -- load ---------------------------------------------------------------------------------------


@dataclass
class Load:
    port: int
    stop: threading.Event = field(default_factory=threading.Event)
    ok: int = 0
    errors: list[str] = field(default_factory=list)
    ws_cycles: int = 0
    ws_cut_by_drain: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def _record(self, error: str | None) -> None:
        with self.lock:
            if error is None:
                self.ok += 1
            else:
                self.errors.append(error)

    def keepalive(self, method: str) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=20)
        n = 0
        while not self.stop.is_set():
            n += 1
            body = f"payload-{n}-".encode() * 50 if method == "POST" else None
            try:
                conn.request(method, f"/k/{n}", body=body, headers={"Host": "app.test"})
                resp = conn.getresponse()
                data = resp.read()
                if resp.status != 200:
                    self._record(f"keep-alive {method} {n}: {resp.status} {data[:100]!r}")
                elif body is not None and data != body:
                    self._record(f"keep-alive POST {n}: body mismatch")
                else:
                    self._record(None)
                if resp.will_close:
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=20)
            except (OSError, http.client.HTTPException) as exc:
                self._record(f"keep-alive {method} {n}: {exc!r}")
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=20)
        conn.close()

    def fresh(self) -> None:
        n = 0
        while not self.stop.is_set():
            n += 1
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=20)
            try:
                if n % 2:
                    conn.request("GET", f"/n/{n}", headers={"Host": "app.test"})
                else:
                    conn.request("POST", "/n", body=b"x" * 70_000, headers={"Host": "app.test"})
                resp = conn.getresponse()
                data = resp.read()
                bad = resp.status != 200 or (n % 2 == 0 and len(data) != 70_000)
                self._record(f"new-conn {n}: {resp.status}" if bad else None)
            except (OSError, http.client.HTTPException) as exc:
                self._record(f"new-conn {n}: {exc!r}")
            finally:
                conn.close()

    def websocket(self) -> None:
        """Open a WebSocket (101), exchange messages, close; repeat. A drain cancels upgraded
        connections at once (kamal-proxy does the same), so a cut mid-exchange is counted apart;
        a failed handshake is an error."""
        while not self.stop.is_set():
            try:
                sock = socket.create_connection(("127.0.0.1", self.port), timeout=10)
            except OSError as exc:
                self._record(f"ws connect: {exc!r}")
                continue
            with sock:
                key = base64.b64encode(os.urandom(16)).decode()
                sock.sendall(
                    (
                        "GET /ws HTTP/1.1\r\nHost: app.test\r\nUpgrade: websocket\r\n"
                        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                        "Sec-WebSocket-Version: 13\r\n\r\n"
                    ).encode()
                )
                head = b""
                try:
                    while b"\r\n\r\n" not in head:
                        chunk = sock.recv(4096)
                        if not chunk:
                            break
                        head += chunk
                except OSError as exc:
                    self._record(f"ws handshake: {exc!r}")
                    continue
                if not head.startswith(b"HTTP/1.1 101"):
                    self._record(f"ws handshake: {head[:80]!r}")
                    continue
                self._record(None)
                try:
                    for i in range(5):
                        message = f"hello {i}".encode()
                        sock.sendall(message)
                        got = b""
                        while len(got) < len(message):
                            chunk = sock.recv(4096)
                            if not chunk:
                                raise ConnectionResetError("closed")
                            got += chunk
                        if got != message:
                            self._record(f"ws echo mismatch: {got!r}")
                        time.sleep(0.02)
                    with self.lock:
                        self.ws_cycles += 1
                except TimeoutError as exc:  # a hang is not a drain's cut
                    self._record(f"ws echo timed out: {exc!r}")
                except OSError:
                    with self.lock:
                        self.ws_cut_by_drain += 1

    def guarded(self, work: Callable[..., None], *args: object) -> None:
        """Run one load worker; any exception it dies of is an error, not a silent stop."""
        try:
            work(*args)
        except BaseException as exc:
            self._record(f"a load worker died: {exc!r}")
            raise


def test_twenty_deploys_under_load_fail_no_request(
    proxy: Proxy, backends: tuple[Backend, Backend]
) -> None:
    blue, green = backends
    common = ["--host=app.test", "--health-check-interval=100ms", "--drain-timeout=5s"]
    proxy.cli("deploy", "app", f"--target={blue.target}", *common)
    load = Load(proxy.port)
    workers = [
        threading.Thread(target=load.guarded, args=(load.keepalive, "GET")),
        threading.Thread(target=load.guarded, args=(load.keepalive, "POST")),
        threading.Thread(target=load.guarded, args=(load.fresh,)),
        threading.Thread(target=load.guarded, args=(load.websocket,)),
    ]
    for w in workers:
        w.start()
    deploy_times = []
    try:
        time.sleep(0.3)
        for i in range(20):
            target = green if i % 2 == 0 else blue
            started = time.monotonic()
            answered = load.ok
            result = proxy.cli("deploy", "app", f"--target={target.target}", *common, check=False)
            deploy_times.append(time.monotonic() - started)
            assert result.returncode == 0, result.stderr
            # the load ran through this switch (not only before the first one)
            assert load.ok > answered, f"no answer during deploy {i + 1}"
            status, body = get(proxy.port, "/which")
            assert status == 200 and body.startswith(target.name.encode())
        time.sleep(0.3)
    finally:
        load.stop.set()
        for w in workers:
            w.join(30)
    assert not [w for w in workers if w.is_alive()], "a load worker did not stop within 30 s"
    assert load.errors == []
    assert load.ok > 200
    assert blue.served > 50 and green.served > 50
    assert load.ws_cycles > 0
    print(
        f"\n{load.ok} requests ok, 0 errors; websocket: {load.ws_cycles} full cycles, "
        f"{load.ws_cut_by_drain} cut by a drain; deploy wall time: "
        f"median {sorted(deploy_times)[10]:.2f}s, max {max(deploy_times):.2f}s"
    )


def test_slow_inflight_request_completes_within_drain_timeout(
    proxy: Proxy, backends: tuple[Backend, Backend]
) -> None:
    blue, green = backends
    proxy.cli("deploy", "app", f"--target={blue.target}", "--health-check-interval=100ms")
    results: dict[str, tuple[int, bytes]] = {}
    answered_at: dict[str, float] = {}

    def slow(name: str, seconds: float) -> None:
        results[name] = get(proxy.port, f"/slow?s={seconds}")
        answered_at[name] = time.monotonic()

    short = threading.Thread(target=slow, args=("short", 1.0))
    long = threading.Thread(target=slow, args=("long", 5.0))
    short.start()
    long.start()
    wait_until(lambda: blue.slow_in_flight == 2, "both slow requests reached blue")
    proxy.cli(
        "deploy",
        "app",
        f"--target={green.target}",
        "--health-check-interval=100ms",
        "--drain-timeout=2s",
    )
    deployed_at = time.monotonic()
    short.join(10)
    long.join(10)
    assert results["short"] == (200, b"blue /slow")  # finished on the old target
    assert results["long"][0] == 504  # cancelled by the drain
    # The deploy returned only after the drain: after the short request's answer, and after
    # the long one was cut at the drain timeout (order of events, not a clock's bounds).
    assert answered_at["short"] <= deployed_at and answered_at["long"] <= deployed_at
    assert get(proxy.port, "/after")[1] == b"green /after"


def test_kill_9_and_restart_serves_every_service_from_saved_state(
    proxy: Proxy, backends: tuple[Backend, Backend]
) -> None:
    blue, green = backends
    proxy.cli("deploy", "one", f"--target={blue.target}", "--host=one.test")
    proxy.cli("deploy", "two", f"--target={green.target}", "--host=two.test", "--path-prefix=/api")
    proxy.cli("deploy", "three", f"--target={blue.target}", "--host=three.test")
    proxy.cli("stop", "three", "--message=maintenance")
    before = proxy.cli("list").stdout
    saved = proxy.state_file.read_text()
    proxy.kill(signal.SIGKILL)
    assert proxy.state_file.read_text() == saved
    proxy.start()
    assert proxy.cli("list").stdout == before
    assert get(proxy.port, "/x", host="one.test") == (200, b"blue /x")
    assert get(proxy.port, "/api/x", host="two.test") == (200, b"green /x")
    assert get(proxy.port, "/", host="two.test")[0] == 404
    status, body = get(proxy.port, "/", host="three.test")
    assert status == 503 and b"maintenance" in body
    assert '"msg":"Restored saved state"' in proxy.log.read_text()


# -- maintenance and health through the real processes ------------------------------------------


def test_pause_stop_resume_remove_end_to_end(
    proxy: Proxy, backends: tuple[Backend, Backend]
) -> None:
    blue, _ = backends
    proxy.cli("deploy", "app", f"--target={blue.target}", "--host=app.test")
    assert get(proxy.port, "/x") == (200, b"blue /x")

    proxy.cli("pause", "app", "--max-pause=1s")
    served = blue.served
    assert get(proxy.port, "/held")[0] == 504  # held, then the pause outlasted --max-pause
    assert blue.served == served  # never forwarded
    assert get(proxy.port, "/up")[0] == 200  # health path answered by the proxy while paused

    proxy.cli("pause", "app", "--max-pause=20s")
    results: list[tuple[int, bytes]] = []
    waiter = threading.Thread(target=lambda: results.append(get(proxy.port, "/later")))
    served = blue.served
    waiter.start()
    time.sleep(0.5)  # the request reaches the proxy and is held (nothing observable to poll)
    assert results == [] and blue.served == served  # still held, not forwarded
    proxy.cli("resume", "app")
    waiter.join(10)
    assert results == [(200, b"blue /later")]  # released by resume

    proxy.cli("stop", "app", "--message=Back at noon")
    status, body = get(proxy.port, "/x")
    assert status == 503 and b"Back at noon" in body
    assert get(proxy.port, "/up")[0] == 200
    proxy.cli("resume", "app")
    assert get(proxy.port, "/x") == (200, b"blue /x")

    proxy.cli("remove", "app")
    assert get(proxy.port, "/x")[0] == 404
    result = proxy.cli("remove", "app", check=False)
    assert (result.returncode, result.stderr) == (1, "Error: service not found\n")


def test_multi_target_round_robin_drops_an_unhealthy_target(
    proxy: Proxy, backends: tuple[Backend, Backend]
) -> None:
    blue, green = backends
    proxy.cli(
        "deploy",
        "app",
        f"--target={blue.target},{green.target}",
        "--health-check-interval=100ms",
        "--health-check-timeout=200ms",
    )
    bodies = {get(proxy.port, "/rr")[1] for _ in range(6)}
    assert bodies == {b"blue /rr", b"green /rr"}
    green.stop()
    wait_until(lambda: '"state":"unhealthy"' in proxy.log.read_text(), "green is marked unhealthy")
    answers = [get(proxy.port, "/rr") for _ in range(10)]
    assert answers == [(200, b"blue /rr")] * 10
    assert '"msg":"Target health updated"' in proxy.log.read_text()


def test_failed_deploy_keeps_serving_and_says_why(
    proxy: Proxy, backends: tuple[Backend, Backend]
) -> None:
    blue, _ = backends
    proxy.cli("deploy", "app", f"--target={blue.target}")
    dead = free_port()
    result = proxy.cli(
        "deploy",
        "app",
        f"--target=127.0.0.1:{dead}",
        "--deploy-timeout=500ms",
        "--health-check-interval=100ms",
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr.startswith(  # then what the probe saw and why
        "Error: target failed to become healthy within configured timeout (500ms)\n"
    )
    assert get(proxy.port, "/still") == (200, b"blue /still")
    assert '"msg":"Healthcheck failed"' in proxy.log.read_text()
