"""The control protocol: JSON lines over a Unix socket, one call per connection.

Request:  `{"method": "deploy", "params": {...}}\\n`
Response: `{"ok": true, "result": ...}\\n` or `{"ok": false, "error": "<message>"}\\n`

This module is the server side, which dispatches to `ProxyRouter`; `client` is the blocking
client side the CLI uses.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dockyard.errors import ProxyError
from dockyard.proxy.control.balancer import TargetsUnhealthyError
from dockyard.proxy.control.health import explain_unhealthy
from dockyard.proxy.control.heap import release_free_memory
from dockyard.proxy.control.options import (
    DeployRequest,
    HealthCheckConfig,
    ServiceConfig,
    TargetAddress,
    parse_targets,
)
from dockyard.proxy.control.router import ProxyRouter

if TYPE_CHECKING:
    from dockyard.proxy.metrics import ProxyMetrics

logger = logging.getLogger("dockyard.proxy.control")

MAX_LINE = 1 << 20


async def dispatch(
    router: ProxyRouter,
    method: str,
    params: dict[str, Any],
    *,
    metrics: ProxyMetrics | None = None,
) -> Any:
    """Run one call against the router; raises `ProxyError` with a user message on failure.

    ``cli``: a client subcommand's command line as typed (``dockyard.proxy.quick``), parsed
    and checked here by the CLI's own parser, then run as the call it stands for."""
    if method == "cli":
        from dockyard.proxy.cli import UsageError, parse_client

        argv = params["argv"]
        # without them, the call is read as `docker exec` would run it here: this process's
        # environment and directory (the container's)
        env = params.get("env")
        env = dict(os.environ) if env is None else env
        if not isinstance(argv, list) or not isinstance(env, dict):
            raise ValueError("argv must be a list and env an object")
        words = [str(a) for a in argv]
        if {"-h", "--help"} & set(words):  # help prints and exits: the client's own business
            raise ProxyError("help is not available through the control socket")
        try:
            inner, inner_params = parse_client(
                words,
                {str(k): str(v) for k, v in env.items()},
                str(params.get("cwd") or os.getcwd()),
            )
        except UsageError as exc:
            raise ProxyError(str(exc)) from None
        except SystemExit:  # argparse exits only for help, refused above; never the server
            raise ProxyError("that command line cannot be run through the control socket") from None
        return await dispatch(router, inner, inner_params, metrics=metrics)
    if method == "deploy":
        request = DeployRequest.from_json(params)
        ok = False
        try:
            request.config.validate()  # before any health check starts
            try:
                await router.deploy(request)
            except TargetsUnhealthyError as exc:
                raise _explained(
                    exc,
                    parse_targets(request.targets + request.readers),
                    request.config.health_check,
                    request.deploy_timeout,
                ) from None
            ok = True
        finally:
            if metrics is not None:
                metrics.deployed(request.service, ok)
        return True
    if method == "remove":
        await router.remove(str(params["service"]))
        return True
    if method == "pause":
        await router.pause(
            str(params["service"]), int(params["drain_timeout"]), int(params["max_pause"])
        )
        return True
    if method == "stop":
        await router.stop(
            str(params["service"]), int(params["drain_timeout"]), str(params.get("message", ""))
        )
        return True
    if method == "resume":
        await router.resume(str(params["service"]))
        return True
    if method == "list":
        rows = [asdict(row) for row in router.rows()]
        services = router.services
        for row in rows:
            service = services.get(row["service"])
            if service is not None:
                row["access"] = access_summary(service.config)
        return rows
    if method == "rollout_deploy":
        name = str(params["service"])
        targets = tuple(str(t) for t in params.get("targets") or ())
        readers = tuple(str(t) for t in params.get("readers") or ())
        deploy_timeout = int(params["deploy_timeout"])
        try:
            await router.rollout_deploy(
                name, targets, readers, deploy_timeout, int(params["drain_timeout"])
            )
        except TargetsUnhealthyError as exc:
            health_check = router.service(name).config.health_check
            raise _explained(
                exc, parse_targets(targets + readers), health_check, deploy_timeout
            ) from None
        return True
    if method == "rollout_set":
        await router.rollout_set(
            str(params["service"]),
            int(params.get("percent", 0)),
            tuple(str(v) for v in params.get("allowlist") or ()),
        )
        return True
    if method == "rollout_stop":
        await router.rollout_stop(str(params["service"]))
        return True
    raise ProxyError(f"unknown method {method!r}")


def access_summary(config: ServiceConfig) -> str:
    """The `Access` cell of `list` (ours): what guards the service, "" when nothing does."""
    parts = []
    if config.basic_auth_user:
        parts.append(f"auth:{config.basic_auth_user}")
    if config.allow_ips:
        parts.append("ip:" + ",".join(config.allow_ips))
    if config.client_ip_header:
        parts.append(f"client-ip:{config.client_ip_header}")
    return " ".join(parts)


def _explained(
    exc: TargetsUnhealthyError,
    targets: tuple[TargetAddress, ...],
    health_check: HealthCheckConfig,
    deploy_timeout: int,
) -> ProxyError:
    """kamal-proxy's first line, then what the probes saw and the likely causes."""
    details = explain_unhealthy(targets, health_check, deploy_timeout)
    return TargetsUnhealthyError(f"{exc.message}\n{details}" if details else exc.message)


class RpcServer:
    """Listens on the control socket; each connection carries one call.

    ``door``: the same calls on a second socket, best effort (no error when it cannot be made).
    ``run`` puts one in the state directory: Kamal keeps that directory in a volume, so the
    host's root reaches it with no ``docker exec`` (Dockyard's deploys use it:
    ``dockyard.remote.engine``)."""

    def __init__(
        self,
        router: ProxyRouter,
        path: Path,
        *,
        metrics: ProxyMetrics | None = None,
        door: Path | None = None,
    ) -> None:
        self.router = router
        self.path = path
        self.door = door
        self.metrics = metrics
        self._servers: dict[Path, asyncio.Server] = {}
        self._calls: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        await self._listen(self.path)
        if self.door is not None and self.door != self.path:
            try:
                await self._listen(self.door)
            except OSError as exc:
                logger.info("No control socket at %s: %s", self.door, exc.strerror or exc)

    async def _listen(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()  # a stale socket from a previous run
        server = await asyncio.start_unix_server(self._handle, path=str(path), limit=MAX_LINE)
        self._servers[path] = server
        os.chmod(path, 0o600)

    async def close(self) -> None:
        servers, self._servers = self._servers, {}
        for server in servers.values():
            server.close()
        for server in servers.values():
            await server.wait_closed()
        for task in list(self._calls):
            task.cancel()
        for path in servers:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._calls.add(task)
        try:
            try:
                line = await reader.readline()
                request = json.loads(line)
                method = str(request["method"])
                params = request.get("params") or {}
                if not isinstance(params, dict):
                    raise ValueError("params must be an object")
            except (ValueError, KeyError, TypeError) as exc:
                response: dict[str, Any] = {"ok": False, "error": f"bad request: {exc}"}
            else:
                try:
                    result = await dispatch(self.router, method, params, metrics=self.metrics)
                    response = {"ok": True, "result": result}
                except ProxyError as exc:
                    response = {"ok": False, "error": exc.message}
                except (KeyError, ValueError, TypeError) as exc:
                    response = {"ok": False, "error": f"bad request: {exc}"}
                except Exception as exc:
                    logger.exception("Control call failed")
                    response = {"ok": False, "error": f"internal error: {exc}"}
            writer.write(json.dumps(response).encode() + b"\n")
            with contextlib.suppress(OSError):
                await writer.drain()
        finally:
            if task is not None:
                self._calls.discard(task)
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            if not self._calls:
                release_free_memory()  # what the call freed, once no other call runs
