"""Benchmark: dockyard-proxy's data plane against Caddy and nginx, on loopback, interleaved.

    .venv/bin/python bench/proxy.py [--duration 5] [--rounds 3] [--connections 50]
    .venv/bin/python bench/proxy.py --micro 20000   # in-process Python CPU per request only
                                                    # (compiled and interpreted)

An nginx origin (1 worker) serves `GET /` (2 bytes), `GET /100k` (102,400 bytes) and `/up`.
Each proxy forwards to it over upstream keep-alive:

* direct  - wrk straight to the origin (the ceiling)
* dockyard - `dockyard-proxy run` + `dockyard-proxy deploy` (uvloop, one process), its JSON
  access log (always on, as in production) to /dev/null, with the data plane compiled by mypyc
  as the image ships it (built here into build/native when out of date); `--dockyard inbench`
  runs the data plane alone behind a one-service Router built into this script
* dockyard-py - the same, interpreted (the plain sources)
* probe   - the floor: a bare Python proxy (uvloop + httptools + stdlib ssl, keep-alive pool,
  forwarding headers) with none of dockyard-proxy's features
* caddy   - `reverse_proxy` with defaults, access log off
* nginx   - 2 workers, `upstream { keepalive 64; }`, access log off

Scenarios: `small` (keep-alive), `100k` (keep-alive, 100 KB body), `close` (a new TCP
connection per request), `tls` (HTTPS keep-alive, `GET /` for Host `localhost`) and `tls-close`
(HTTPS, a handshake per request: wrk resumes each TLS 1.3 session with the ticket of its
previous connection on that slot, as a returning browser does). For TLS every proxy serves
the same self-signed ECDSA P-256 certificate, generated here with `cryptography`: dockyard-proxy
through `deploy --tls --tls-certificate-path/--tls-private-key-path` (a second service for host
`localhost`), Caddy and nginx with their own TLS defaults. `direct` has no TLS.

Within each round every target runs every scenario once, so drift hits
all targets alike. Reported per scenario: median req/s, p99 latency, proxy CPU per request
(utime+stime of the proxy's process tree from /proc, divided by completed requests), errors
and non-2xx, and the ratios of dockyard to Caddy and nginx (of the medians, and the range and
median of each round's own ratio); plus each proxy's idle RSS.

Loopback only; every run is bounded by --duration. This is a benchmark, never a test.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on 127.0.0.1:{port}")


def tree_pids(pid: int) -> list[int]:
    """pid and all its descendants."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def cpu_seconds(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of the process tree."""
    user = system = 0
    for p in tree_pids(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        user += int(fields[11])
        system += int(fields[12])
    return user / CLK_TCK, system / CLK_TCK


def rss_mib(pid: int) -> float:
    total = 0
    for p in tree_pids(pid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


# --- the dockyard process (in-bench Router) ------------------------------------------------


def serve_dockyard(port: int, origin_port: int) -> None:
    """Run the data plane with a one-service Router pointing at the origin."""
    import uvloop

    from dockyard.proxy.contract import Match, ServiceOptions, ServiceState
    from dockyard.proxy.dataplane import AccessLogWriter, serve_http

    class Handle:
        __slots__ = ()

        def hijacked(self) -> None:
            pass

        def done(self) -> None:
            pass

    handle = Handle()

    class Target:
        name = f"127.0.0.1:{origin_port}"
        host = "127.0.0.1"
        port = origin_port

        def begin_request(self, cancel: object) -> Handle:
            return handle

    target = Target()

    class Service:
        name = "bench"
        options = ServiceOptions()
        state: ServiceState = "running"
        stop_message = ""

        async def wait_until_running(self) -> ServiceState:
            return "running"

        def pick_target(self, *, read: bool, cookies: str | None) -> Target:
            return target

    match = Match(service=Service(), prefix="/")

    class Router:
        def match(self, host: str, path: str) -> Match:
            return match

    async def main() -> None:
        if os.environ.get("DOCKYARD_BENCH_GC_OFF"):
            import gc

            gc.disable()
        devnull = os.open(os.devnull, os.O_WRONLY)
        log = None if os.environ.get("DOCKYARD_BENCH_NO_ACCESS_LOG") else AccessLogWriter(devnull)
        server = await serve_http(Router(), host="127.0.0.1", port=port, access_log=log)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGINT, stop.set)
        await stop.wait()
        await server.shutdown(1.0)

    uvloop.run(main())


# --- the floor: a bare Python proxy -------------------------------------------------------


def serve_probe(port: int, origin_port: int, tls: list[str] | None = None) -> None:
    """The least a Python reverse proxy on uvloop + httptools does per keep-alive request, as a
    floor measured in the same run: one Host lookup, hop-by-hop headers dropped,
    X-Forwarded-For/Proto/Host added, an upstream keep-alive pool, one write per direction.
    No routing table, access log, request id, timeouts, error pages, HEAD/1xx/upgrade
    handling or back-pressure: a lower bound on cost, never a design. `tls` (TLS port,
    certificate, key): also HTTPS there, with the stdlib `ssl` on uvloop (TLS 1.2+, h2 and
    http/1.1 offered by ALPN, as dockyard-proxy's context)."""
    import httptools
    import uvloop

    hop = {b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer"}
    hop |= {b"transfer-encoding", b"upgrade"}
    routes = {b"127.0.0.1": origin_port}
    idle: list[Upstream] = []

    class Upstream(asyncio.Protocol):
        def __init__(self) -> None:
            self.parser = httptools.HttpResponseParser(self)
            self.client: Client | None = None
            self.out: list[bytes] = []
            self.transport: asyncio.Transport | None = None

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport  # type: ignore[assignment]

        def data_received(self, data: bytes) -> None:
            self.parser.feed_data(data)
            if self.out and self.client is not None:  # a body read that did not complete it
                self.client.write(b"".join(self.out))
                self.out.clear()

        def on_header(self, name: bytes, value: bytes) -> None:
            if name.lower() not in hop:
                self.out.append(name + b": " + value + b"\r\n")

        def on_headers_complete(self) -> None:
            head = b"HTTP/1.1 %d OK\r\n" % self.parser.get_status_code()
            self.out.insert(0, head)
            if self.client is not None and not self.client.keep_alive:
                self.out.append(b"Connection: close\r\n")
            self.out.append(b"\r\n")

        def on_body(self, body: bytes) -> None:
            self.out.append(body)

        def on_message_complete(self) -> None:
            client, self.client = self.client, None
            if client is not None:
                client.write(b"".join(self.out))
                if not client.keep_alive and client.transport is not None:
                    client.transport.close()
            self.out.clear()
            idle.append(self)

    class Client(asyncio.Protocol):
        def __init__(self) -> None:
            self.parser = httptools.HttpRequestParser(self)
            self.lines: list[bytes] = []
            self.url = b""
            self.host = b""
            self.peer = b""
            self.keep_alive = True
            self.transport: asyncio.Transport | None = None

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport  # type: ignore[assignment]
            self.peer = str(transport.get_extra_info("peername")[0]).encode()

        def connection_lost(self, exc: Exception | None) -> None:
            self.transport = None

        def write(self, data: bytes) -> None:
            if self.transport is not None:
                self.transport.write(data)

        def data_received(self, data: bytes) -> None:
            self.parser.feed_data(data)

        def on_url(self, url: bytes) -> None:
            self.url += url

        def on_header(self, name: bytes, value: bytes) -> None:
            lower = name.lower()
            if lower == b"host":
                self.host = value
            elif lower not in hop:
                self.lines.append(name + b": " + value + b"\r\n")

        def on_headers_complete(self) -> None:
            port = routes.get(self.host.partition(b":")[0], origin_port)
            self.keep_alive = self.parser.should_keep_alive()
            head = b"".join(
                [
                    self.parser.get_method(),
                    b" ",
                    self.url,
                    b" HTTP/1.1\r\nHost: ",
                    self.host,
                    b"\r\n",
                    *self.lines,
                    b"X-Forwarded-For: ",
                    self.peer,
                    b"\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Host: ",
                    self.host,
                    b"\r\n\r\n",
                ]
            )
            self.lines = []
            self.url = b""
            if idle:
                up = idle.pop()
                up.client = self
                assert up.transport is not None
                up.transport.write(head)
            else:
                asyncio.get_running_loop().create_task(self.connect(port, head))

        async def connect(self, port: int, head: bytes) -> None:
            loop = asyncio.get_running_loop()
            transport, up = await loop.create_connection(Upstream, "127.0.0.1", port)
            up.client = self
            transport.write(head)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(Client, "127.0.0.1", port, backlog=2048)
        if tls is not None:
            import ssl

            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
            ctx.set_alpn_protocols(["h2", "http/1.1"])
            ctx.load_cert_chain(tls[1], tls[2])
            await loop.create_server(Client, "127.0.0.1", int(tls[0]), ssl=ctx, backlog=2048)
        stop = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
        server.close()

    uvloop.run(main())


# --- in-process Python cost per request (no sockets) -----------------------------------------


def micro(requests: int) -> None:
    """`micro_one` on the compiled data plane and on the interpreted one, in turn."""
    trees = {"compiled (mypyc)": compiled_tree(), "interpreted": REPO / "src"}
    cost: dict[str, float] = {}
    for label, tree in trees.items():
        out = subprocess.run(
            [sys.executable, __file__, "--micro-one", str(requests)],
            env=dict(os.environ, PYTHONPATH=str(tree)),
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        cost[label] = float(out.split()[-1])
        print(f"in-process, {label}: {cost[label]:.2f} us of Python CPU per keep-alive request")
    ratio = cost["compiled (mypyc)"] / cost["interpreted"]
    print(f"compiled/interpreted: x{ratio:.2f} (each the best of 7 batches)")


def micro_one(requests: int) -> None:
    """Drive the real client and upstream Protocols with fake transports and the real router
    (one service deployed, as `dockyard-proxy deploy` makes it): the data plane's Python CPU per
    keep-alive request (routing, head rewriting, access log to /dev/null) without any syscall.
    Much steadier than wrk on a loaded machine; best of 7 batches."""
    import gc

    import uvloop

    from dockyard.proxy.control.options import DeployRequest
    from dockyard.proxy.control.router import ProxyRouter
    from dockyard.proxy.dataplane.accesslog import AccessLogWriter
    from dockyard.proxy.dataplane.server import ClientConnection, Plane
    from dockyard.proxy.dataplane.upstream import UpstreamConnection

    class FakeTransport:
        def __init__(self) -> None:
            self.last = b""

        def write(self, data: bytes) -> None:
            self.last = data

        def get_extra_info(self, name: str, default: object = None) -> object:
            return ("127.0.0.1", 51234) if name == "peername" else default

        def pause_reading(self) -> None: ...

        def resume_reading(self) -> None: ...

        def close(self) -> None: ...

        def abort(self) -> None: ...

    request = b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUser-Agent: wrk\r\n\r\n"
    response = (
        b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Sat, 28 Nov 2026 10:00:00 GMT\r\n"
        b"Content-Type: text/plain\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok"
    )

    async def main() -> None:
        loop = asyncio.get_running_loop()
        devnull = os.open(os.devnull, os.O_WRONLY)
        router = ProxyRouter(None)  # the control plane `dockyard-proxy run` uses
        await router.deploy(DeployRequest("bench", ("127.0.0.1:9000",), force=True))
        plane = Plane(router, loop, tls=False, log_port=80, access_log=AccessLogWriter(devnull))
        client = ClientConnection(plane)
        ct = FakeTransport()
        client.connection_made(ct)  # type: ignore[arg-type]
        up = UpstreamConnection(plane.pool, ("127.0.0.1", 9000))
        ut = FakeTransport()
        up.connection_made(ut)  # type: ignore[arg-type]
        plane.pool.put(up)
        gc.freeze()
        gc.set_threshold(20_000, 50, 100)

        async def batch(n: int) -> float:
            start = time.process_time_ns()
            for i in range(n):
                client.data_received(request)
                up.data_received(response)
                if i % 50 == 49:
                    await asyncio.sleep(0)  # lets the access log flush, as the loop would
            await asyncio.sleep(0)
            return (time.process_time_ns() - start) / n / 1000

        await batch(2000)
        if not (ut.last.startswith(b"GET / ") and ct.last.endswith(b"\r\n\r\nok")):
            raise RuntimeError("the in-process exchange did not complete")
        best = min([await batch(requests) for _ in range(7)])
        print(f"{best:.2f}")

    uvloop.run(main())


# --- processes ------------------------------------------------------------------------------


@dataclass
class Proc:
    name: str
    port: int
    popen: subprocess.Popen[bytes] | None  # None: direct to the origin (CPU is the origin's)
    pid: int
    tls_port: int | None = None  # HTTPS listener for `localhost` (None: no TLS scenarios)
    #: Idle RSS before a TLS service existed (dockyard loads its TLS machinery lazily).
    rss_before_tls: float | None = None


TLS_HOST = "localhost"


def make_certificate(work: Path) -> tuple[Path, Path]:
    """A self-signed ECDSA P-256 certificate for `localhost` (and 127.0.0.1), PEM files."""
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, TLS_HOST)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName(TLS_HOST), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = work / "tls-cert.pem", work / "tls-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o644)  # nginx workers run unprivileged
    return cert_path, key_path


def start_origin(work: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    (work / "www").mkdir()
    (work / "www" / "100k").write_bytes(os.urandom(102_400))
    conf = work / "origin.conf"
    conf.write_text(
        f"""
worker_processes 1;
daemon off;
pid {work}/origin.pid;
error_log {work}/origin-error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  keepalive_requests 1000000;
  keepalive_timeout 120s;
  client_body_temp_path {work}/ob; proxy_temp_path {work}/op; fastcgi_temp_path {work}/of;
  uwsgi_temp_path {work}/ou; scgi_temp_path {work}/os;
  server {{
    listen 127.0.0.1:{port} backlog=4096;
    location = / {{ default_type text/plain; return 200 "ok"; }}
    location = /up {{ default_type text/plain; return 200 "up"; }}
    location = /100k {{ root {work}/www; }}
  }}
}}
"""
    )
    popen = subprocess.Popen(["nginx", "-c", str(conf), "-p", str(work)], stderr=subprocess.PIPE)
    wait_port(port)
    return popen, port


def start_nginx_proxy(work: Path, origin: int, cert: tuple[Path, Path] | None = None) -> Proc:
    port = free_port()
    tls_port = free_port() if cert else None
    tls_listen = (
        f"listen 127.0.0.1:{tls_port} ssl backlog=4096; "
        f"ssl_certificate {cert[0]}; ssl_certificate_key {cert[1]};"
        if cert
        else ""
    )
    conf = work / "proxy-nginx.conf"
    conf.write_text(
        f"""
worker_processes 2;
daemon off;
pid {work}/proxy-nginx.pid;
error_log {work}/proxy-nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  keepalive_requests 1000000;
  client_body_temp_path {work}/pb; proxy_temp_path {work}/pp; fastcgi_temp_path {work}/pf;
  uwsgi_temp_path {work}/pu; scgi_temp_path {work}/ps;
  upstream origin {{ server 127.0.0.1:{origin}; keepalive 64; }}
  server {{
    listen 127.0.0.1:{port} backlog=4096;
    {tls_listen}
    location / {{
      proxy_pass http://origin;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto $scheme;
      proxy_buffers 32 8k;
    }}
  }}
}}
"""
    )
    popen = subprocess.Popen(["nginx", "-c", str(conf), "-p", str(work)], stderr=subprocess.PIPE)
    wait_port(port)
    return Proc("nginx", port, popen, popen.pid, tls_port)


def start_caddy(work: Path, origin: int, cert: tuple[Path, Path] | None = None) -> Proc:
    port = free_port()
    tls_port = free_port() if cert else None
    tls_site = (
        f"""https://{TLS_HOST}:{tls_port} {{
  tls {cert[0]} {cert[1]}
  reverse_proxy 127.0.0.1:{origin}
}}
"""
        if cert
        else ""
    )
    conf = work / "Caddyfile"
    conf.write_text(
        f"""{{
  admin off
  auto_https disable_redirects
  skip_install_trust
}}
http://127.0.0.1:{port} {{
  reverse_proxy 127.0.0.1:{origin}
}}
{tls_site}"""
    )
    env = dict(os.environ, HOME=str(work), XDG_DATA_HOME=str(work), XDG_CONFIG_HOME=str(work))
    popen = subprocess.Popen(
        ["caddy", "run", "--config", str(conf), "--adapter", "caddyfile"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    wait_port(port)
    if tls_port:
        wait_port(tls_port)
    return Proc("caddy", port, popen, popen.pid, tls_port)


REPO = Path(__file__).resolve().parent.parent
NATIVE = REPO / "build" / "native"


def compiled_tree() -> Path:
    """build/native: the package with its hot modules compiled by mypyc, (re)built if stale."""
    sys.path.insert(0, str(REPO / "src"))
    from dockyard.proxy import native

    print("compiling the proxy's data plane (mypyc) unless build/native is up to date", flush=True)
    native.build(REPO / "src", NATIVE)
    return NATIVE


def start_dockyard_cli(
    work: Path,
    origin: int,
    cert: tuple[Path, Path] | None = None,
    *,
    name: str = "dockyard",
    compiled: Path | None = None,
) -> Proc:
    """The real thing: `dockyard-proxy run`, then `dockyard-proxy deploy` to the origin (and a
    second, TLS service for `localhost` with the bench's certificate). `compiled`: a tree of
    `dockyard.proxy.native build` put first on PYTHONPATH."""
    port, https = free_port(), free_port()
    exe = Path(sys.executable).with_name("dockyard-proxy")
    home = work / name / "home"
    run_dir = work / name / "run"
    home.mkdir(parents=True, exist_ok=True)
    run_dir.mkdir(mode=0o700, exist_ok=True)
    env = dict(
        os.environ, HOME=str(home), XDG_RUNTIME_DIR=str(run_dir), DOCKYARD_PROXY_BIND="127.0.0.1"
    )
    if compiled is not None:
        env["PYTHONPATH"] = str(compiled)
    popen = subprocess.Popen(
        [str(exe), "run", f"--http-port={port}", f"--https-port={https}"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_port(port)
    subprocess.run(
        [str(exe), "deploy", "bench", f"--target=127.0.0.1:{origin}", "--health-check-path=/up"],
        env=env,
        check=True,
        timeout=60,
        stdout=subprocess.DEVNULL,
    )
    rss_before_tls = None
    if cert is not None:
        time.sleep(1.0)
        rss_before_tls = rss_mib(popen.pid)
        subprocess.run(
            [
                str(exe),
                "deploy",
                "benchtls",
                f"--target=127.0.0.1:{origin}",
                "--health-check-path=/up",
                f"--host={TLS_HOST}",
                "--tls",
                f"--tls-certificate-path={cert[0]}",
                f"--tls-private-key-path={cert[1]}",
            ],
            env=env,
            check=True,
            timeout=60,
            stdout=subprocess.DEVNULL,
        )
    tls_port = https if cert is not None else None
    return Proc(name, port, popen, popen.pid, tls_port, rss_before_tls)


def start_dockyard(origin: int) -> Proc:
    port = free_port()
    src = str(Path(__file__).resolve().parent.parent / "src")
    env = dict(os.environ, PYTHONPATH=src)
    popen = subprocess.Popen(
        [sys.executable, __file__, "--serve-dockyard", str(port), str(origin)],
        env=env,
        stdout=subprocess.DEVNULL,
    )
    wait_port(port)
    return Proc("dockyard", port, popen, popen.pid)


def start_probe(origin: int, cert: tuple[Path, Path] | None = None) -> Proc:
    port = free_port()
    tls_port = free_port() if cert is not None else None
    tls = [] if cert is None else ["--probe-tls", str(tls_port), str(cert[0]), str(cert[1])]
    popen = subprocess.Popen(
        [sys.executable, __file__, "--serve-probe", str(port), str(origin), *tls],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_port(port)
    if tls_port is not None:
        wait_port(tls_port)
    return Proc("probe", port, popen, popen.pid, tls_port)


def stop(popen: subprocess.Popen[bytes]) -> None:
    if popen.poll() is None:
        args = popen.args
        first = args[0] if isinstance(args, list | tuple) else args
        popen.send_signal(signal.SIGQUIT if first == "nginx" else signal.SIGTERM)
        try:
            popen.wait(5)
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait()


# --- wrk ------------------------------------------------------------------------------------


@dataclass
class Run:
    rps: float
    p99_ms: float
    cpu_us: float
    sys_us: float
    requests: int
    errors: int
    non2xx: int


@dataclass
class Series:
    runs: list[Run] = field(default_factory=list)


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def median_known(values: Iterable[float]) -> float:
    """Median of the values that are numbers (wrk occasionally prints no percentile)."""
    known = [v for v in values if not math.isnan(v)]
    return statistics.median(known) if known else float("nan")


def parse_latency(text: str) -> float:
    m = re.match(r"([\d.]+)(us|ms|s|m)", text)
    return float(m.group(1)) * _UNITS[m.group(2)] if m else float("nan")


def wrk(url: str, *, duration: int, connections: int, close: bool, pid: int) -> Run:
    args = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency"]
    if close:
        args += ["-H", "Connection: close"]
    before = cpu_seconds(pid)
    out = subprocess.run(
        [*args, url], capture_output=True, text=True, timeout=duration + 30, check=True
    ).stdout
    after = cpu_seconds(pid)
    used, kernel = sum(after) - sum(before), after[1] - before[1]
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p99 = re.search(r"99%\s+(\S+)", out)
    errors = 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        errors = sum(int(x) for x in m.groups())
    n2 = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return Run(
        rps=rps,
        p99_ms=parse_latency(p99.group(1)) if p99 else float("nan"),
        cpu_us=used / max(requests, 1) * 1e6,
        sys_us=kernel / max(requests, 1) * 1e6,
        requests=requests,
        errors=errors,
        non2xx=int(n2.group(1)) if n2 else 0,
    )


#: scenario -> (path, Connection: close, HTTPS)
SCENARIOS = {
    "small": ("/", False, False),
    "100k": ("/100k", False, False),
    "close": ("/", True, False),
    "tls": ("/", False, True),
    "tls-close": ("/", True, True),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--targets", default="direct,dockyard,dockyard-py,probe,caddy,nginx")
    parser.add_argument("--scenarios", default="small,100k,close,tls,tls-close")
    parser.add_argument(
        "--dockyard",
        choices=("cli", "inbench"),
        default="cli",
        help="cli: `dockyard-proxy run` + `deploy` (default); inbench: the data plane with a "
        "one-service Router built into this script",
    )
    parser.add_argument("--micro-one", type=int, metavar="N", help=argparse.SUPPRESS)
    parser.add_argument("--serve-dockyard", nargs=2, type=int, metavar=("PORT", "ORIGIN"))
    parser.add_argument("--serve-probe", nargs=2, type=int, metavar=("PORT", "ORIGIN"))
    parser.add_argument("--probe-tls", nargs=3, metavar=("PORT", "CERT", "KEY"))
    parser.add_argument(
        "--micro",
        type=int,
        metavar="N",
        help="only measure the in-process Python CPU per request (N requests per batch, no "
        "sockets, no peers); steadier than wrk on a busy machine",
    )
    args = parser.parse_args()
    if args.micro:
        micro(args.micro)
        return 0
    if args.micro_one:
        micro_one(args.micro_one)
        return 0
    if args.serve_dockyard:
        serve_dockyard(*args.serve_dockyard)
        return 0
    if args.serve_probe:
        port, origin = args.serve_probe
        serve_probe(port, origin, tls=args.probe_tls)
        return 0
    for tool in ("wrk", "nginx", "caddy"):
        if shutil.which(tool) is None:
            print(f"error: {tool} is not installed", file=sys.stderr)
            return 1
    wanted = args.targets.split(",")
    scenarios = args.scenarios.split(",")
    work = Path(tempfile.mkdtemp(prefix="dockyard-bench-"))
    work.chmod(0o755)  # nginx workers run unprivileged and serve /100k from here
    procs: list[Proc] = []
    origin_popen, origin_port = start_origin(work)
    cert = make_certificate(work) if any(SCENARIOS[sc][2] for sc in scenarios) else None
    try:
        starters = {
            "direct": lambda: Proc("direct", origin_port, None, origin_popen.pid),
            "dockyard": (
                (lambda: start_dockyard_cli(work, origin_port, cert, compiled=compiled_tree()))
                if args.dockyard == "cli"
                else (lambda: start_dockyard(origin_port))
            ),
            "dockyard-py": lambda: start_dockyard_cli(work, origin_port, cert, name="dockyard-py"),
            "probe": lambda: start_probe(origin_port, cert),
            "caddy": lambda: start_caddy(work, origin_port, cert),
            "nginx": lambda: start_nginx_proxy(work, origin_port, cert),
        }
        for name in wanted:
            procs.append(starters[name]())
        time.sleep(1.0)
        idle_rss = {p.name: rss_mib(p.pid) for p in procs}
        for p in procs:  # warm-up (also fills upstream pools)
            wrk(
                f"http://127.0.0.1:{p.port}/",
                duration=args.warmup,
                connections=args.connections,
                close=False,
                pid=p.pid,
            )
            if p.tls_port is not None:
                wrk(
                    f"https://{TLS_HOST}:{p.tls_port}/",
                    duration=args.warmup,
                    connections=args.connections,
                    close=False,
                    pid=p.pid,
                )
        results: dict[tuple[str, str], Series] = {}
        ran: dict[str, list[Proc]] = {}
        for rnd in range(args.rounds):
            for scenario in scenarios:
                path, close, tls = SCENARIOS[scenario]
                ran[scenario] = [p for p in procs if p.tls_port is not None or not tls]
                for p in ran[scenario]:
                    url = (
                        f"https://{TLS_HOST}:{p.tls_port}{path}"
                        if tls
                        else f"http://127.0.0.1:{p.port}{path}"
                    )
                    run = wrk(
                        url,
                        duration=args.duration,
                        connections=args.connections,
                        close=close,
                        pid=p.pid,
                    )
                    results.setdefault((scenario, p.name), Series()).runs.append(run)
                    print(
                        f"round {rnd + 1} {scenario:9} {p.name:11} {run.rps:10.0f} req/s "
                        f"p99 {run.p99_ms:7.2f} ms  cpu {run.cpu_us:6.1f} us/req "
                        f"(kernel {run.sys_us:5.1f}) "
                        f"err {run.errors} non2xx {run.non2xx}",
                        flush=True,
                    )
        print()
        print(
            f"wrk -t1 -c{args.connections} -d{args.duration}s, {args.rounds} rounds, "
            f"median; CPU is the proxy process tree's (the origin's for direct), "
            "kernel its system part"
        )
        print(
            f"{'scenario':9} {'target':11} {'req/s':>9} {'p99 ms':>8} {'CPU us/req':>10} "
            f"{'kernel':>6} "
            f"{'errors':>6} {'non2xx':>6}"
        )
        for scenario in scenarios:
            for p in ran[scenario]:
                runs = results[(scenario, p.name)].runs
                print(
                    f"{scenario:9} {p.name:11} {statistics.median(r.rps for r in runs):9.0f} "
                    f"{median_known(r.p99_ms for r in runs):8.2f} "
                    f"{statistics.median(r.cpu_us for r in runs):10.1f} "
                    f"{statistics.median(r.sys_us for r in runs):6.1f} "
                    f"{sum(r.errors for r in runs):6d} {sum(r.non2xx for r in runs):6d}"
                )
        if "dockyard" in wanted:
            print()
            for scenario in scenarios:
                if (scenario, "dockyard") not in results:
                    continue
                ours = results[(scenario, "dockyard")].runs
                o_rps = statistics.median(r.rps for r in ours)
                o_cpu = statistics.median(r.cpu_us for r in ours)
                for other in ("caddy", "nginx", "probe", "dockyard-py"):
                    if (scenario, other) not in results:
                        continue
                    theirs = results[(scenario, other)].runs
                    t_rps = statistics.median(r.rps for r in theirs)
                    t_cpu = statistics.median(r.cpu_us for r in theirs)
                    # The same round's runs, a few minutes apart, see the same drift of this
                    # shared machine: their ratio is the steadier figure when rounds differ.
                    paired = sorted(a.rps / b.rps for a, b in zip(ours, theirs, strict=True))
                    middle = statistics.median(paired)
                    print(
                        f"{scenario:9} dockyard/{other:11}: req/s x{o_rps / t_rps:.2f}, "
                        f"CPU/req x{o_cpu / t_cpu:.2f}; req/s per round "
                        f"x{paired[0]:.2f}..x{paired[-1]:.2f} (median x{middle:.2f})"
                    )
        print()
        print("idle RSS (MiB): " + ", ".join(f"{k} {v:.1f}" for k, v in idle_rss.items()))
        for p in procs:
            if p.rss_before_tls is not None:
                print(f"{p.name} idle RSS before its first TLS service: {p.rss_before_tls:.1f} MiB")
    finally:
        for p in procs:
            if p.popen is not None:
                stop(p.popen)
        stop(origin_popen)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
