"""`kamal-proxy run`: restore state, start the HTTP listener and the control socket, serve until
SIGTERM/SIGINT, then shut down with a 10 s grace period."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, cast

from dockyard.errors import ProxyError
from dockyard.proxy.control.heap import release_free_memory
from dockyard.proxy.control.log import event
from dockyard.proxy.control.router import ProxyRouter
from dockyard.proxy.control.rpc import RpcServer
from dockyard.proxy.control.state import STATE_NAME, StateStore, data_dir, socket_path
from dockyard.proxy.control.tls import TlsRegistry
from dockyard.proxy.quick import SOCKET_NAME

if TYPE_CHECKING:
    from dockyard.proxy.metrics import ProxyMetrics

if TYPE_CHECKING:
    from dockyard.proxy.control.options import ServiceConfig
    from dockyard.proxy.dataplane.server import ConnectionFactory
    from dockyard.proxy.tls.certs import CertifiedKey

logger = logging.getLogger("dockyard.proxy.control")

SHUTDOWN_GRACE = 10.0
#: Not a kamal-proxy setting (it always binds every interface): lets tests bind loopback only.
BIND_ENV = "DOCKYARD_PROXY_BIND"


@dataclass(frozen=True, slots=True)
class RunSettings:
    http_port: int = 80
    https_port: int = 443
    metrics_port: int = 0
    debug: bool = False
    http3: bool = False
    bind: str = "0.0.0.0"
    socket: Path | None = None
    state_file: Path | None = None


class LazyTls:
    """A `TlsRegistry` made on first need: the TLS machinery (the `cryptography` package, ~9 MiB
    of RSS) is imported only once a TLS service is deployed or restored, or a connection reaches
    the HTTPS port. Until then there is nothing to select or validate."""

    def __init__(self, cache_root: Path) -> None:
        self._cache_root = cache_root
        self._real: TlsRegistry | None = None

    def real(self) -> TlsRegistry:
        if self._real is None:
            self._real = TlsRegistry(self._cache_root)
        return self._real

    async def validate(self, config: ServiceConfig) -> CertifiedKey | None:
        if self._real is None and not config.tls_enabled:
            return None
        return await self.real().validate(config)

    def apply(
        self,
        services: Iterable[tuple[str, ServiceConfig]],
        certificates: dict[str, CertifiedKey | None] | None = None,
    ) -> None:
        services = list(services)
        if self._real is None and not any(cfg.tls_enabled for _, cfg in services):
            return
        self.real().apply(services, certificates)

    def restore_certificate(self, name: str, config: ServiceConfig) -> None:
        if self._real is None and not config.tls_enabled:
            return
        self.real().restore_certificate(name, config)

    def http01_response(self, host: str, path: str) -> bytes | None:
        return None if self._real is None else self._real.http01_response(host, path)

    async def aclose(self) -> None:
        if self._real is not None:
            await self._real.aclose()

    def __getattr__(self, name: str) -> object:
        return getattr(self.real(), name)


async def _when_readable(sock: socket.socket) -> None:
    """Wait until a listening socket has a connection to accept (without accepting it)."""
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()
    fd = sock.fileno()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_reader(fd, wake)
    try:
        await ready
    finally:
        loop.remove_reader(fd)


async def serve(settings: RunSettings, stop: asyncio.Event | None = None) -> None:
    """Run the proxy until `stop` is set (or SIGTERM/SIGINT arrives)."""
    from dockyard.proxy.dataplane import AccessLogWriter, serve_http
    from dockyard.proxy.dataplane.server import connection_factory

    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)

    state_file = settings.state_file or data_dir() / STATE_NAME
    lazy_tls = LazyTls(state_file.parent / "certs")
    tls = cast(TlsRegistry, lazy_tls)
    router = ProxyRouter(StateStore(state_file), tls=tls)
    router.restore()
    metrics: ProxyMetrics | None = None
    if settings.metrics_port:
        from dockyard.proxy.metrics import ProxyMetrics

        metrics = ProxyMetrics(targets=lambda: target_counts(router))
    if settings.http3:
        event(logger, "HTTP/3 is not yet supported; --http3 ignored", level=logging.WARNING)

    access_log = AccessLogWriter(1)  # one writer for both listeners: whole lines, one stream
    try:
        http = await serve_http(
            router,
            sock=listen_socket(settings.bind, settings.http_port),
            log_port=settings.http_port,
            access_log=access_log,
            acme_http01=tls.http01_response,
            metrics=metrics,
            on_idle=release_free_memory,  # what a burst of connections left in the heap
        )
    except OSError as exc:
        await router.close()
        await tls.aclose()
        raise ProxyError(
            f"unable to listen on {settings.bind}:{settings.http_port}: {exc.strerror or exc}"
        ) from exc
    https_factory = connection_factory(
        router,
        tls=True,
        log_port=settings.https_port,
        access_log=access_log,
        acme_http01=tls.http01_response,
        metrics=metrics,
        on_idle=release_free_memory,
    )
    rpc = RpcServer(
        router,
        settings.socket or socket_path(),
        metrics=metrics,
        # the name Dockyard looks for in the state volume (remote.engine.proxy_socket)
        door=state_file.parent / SOCKET_NAME,
    )
    https_task: asyncio.Task[None] | None = None
    https_sock: socket.socket | None = None
    metrics_server: asyncio.Server | None = None
    try:
        if metrics is not None:
            from dockyard.proxy.metrics import serve_metrics

            try:
                metrics_server = await serve_metrics(metrics, settings.bind, settings.metrics_port)
            except OSError as exc:
                raise ProxyError(
                    f"unable to listen on {settings.bind}:{settings.metrics_port} for metrics: "
                    f"{exc.strerror or exc}"
                ) from exc
        try:
            https_sock = listen_socket(settings.bind, settings.https_port)
        except OSError as exc:
            raise ProxyError(
                f"unable to listen on {settings.bind}:{settings.https_port}: {exc.strerror or exc}"
            ) from exc
        https_task = loop.create_task(_serve_https(lazy_tls, https_factory, https_sock))
        try:
            await rpc.start()
        except OSError as exc:
            raise ProxyError(
                f"unable to open the control socket {rpc.path}: {exc.strerror or exc}"
            ) from exc
        event(
            logger,
            "Server started",
            http=settings.http_port,
            https=settings.https_port,
            metrics=settings.metrics_port,
            bound=http.port,
            socket=str(rpc.path),
            pid=os.getpid(),
        )
        release_free_memory()  # what start-up freed (imports, the restored state)
        await stop.wait()
    finally:
        await rpc.close()
        if metrics_server is not None:
            metrics_server.close()
        if https_task is not None:
            https_task.cancel()
            await asyncio.gather(https_task, return_exceptions=True)
        if https_sock is not None:
            https_sock.close()
        await asyncio.gather(http.shutdown(SHUTDOWN_GRACE), https_factory.shutdown(SHUTDOWN_GRACE))
        await router.close()
        await tls.aclose()
        event(logger, "Server stopped")


async def _serve_https(tls: LazyTls, factory: ConnectionFactory, sock: socket.socket) -> None:
    """The HTTPS accept loop, set up when the first connection arrives (see `LazyTls`)."""
    await _when_readable(sock)
    from dockyard.proxy.tls.accept import TlsAcceptor

    await TlsAcceptor(tls.real().selector, factory).serve(sock)


def target_counts(router: ProxyRouter) -> list[tuple[str, str, int]]:
    """(service, state, count) for the metrics' target gauge, active and rollout slots."""
    rows: list[tuple[str, str, int]] = []
    for name, service in router.services.items():
        counts: dict[str, int] = {}
        slots = [service.active] + ([service.rollout] if service.rollout is not None else [])
        for slot in slots:
            for target in slot.targets:
                counts[target.state.value] = counts.get(target.state.value, 0) + 1
        rows.extend((name, state, count) for state, count in counts.items())
    return rows


def listen_socket(host: str, port: int, backlog: int = 2048) -> socket.socket:
    """A listening TCP socket (IPv6 when `host` is an IPv6 address), non-blocking."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(backlog)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def run(settings: RunSettings) -> None:
    """Blocking entry point: uvloop when available, else the default loop."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve(settings))
        return
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(serve(settings))
