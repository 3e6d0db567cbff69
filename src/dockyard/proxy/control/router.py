"""The router (implements `contract.Router`) and every control operation: deploy (health gate,
atomic switch, drain), remove, pause, stop, resume, list, and state save/restore.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from dockyard.errors import ProxyError
from dockyard.proxy.contract import Match
from dockyard.proxy.control.balancer import LoadBalancer
from dockyard.proxy.control.durations import format_duration
from dockyard.proxy.control.health import Probe
from dockyard.proxy.control.log import event
from dockyard.proxy.control.options import DeployRequest, ServiceConfig, parse_targets
from dockyard.proxy.control.routing import RoutingTable
from dockyard.proxy.control.service import ProxyService, RolloutSplit, ServiceNotFoundError
from dockyard.proxy.control.state import SavedService, StateFileError, StateStore
from dockyard.proxy.control.tls import TlsRegistry, check_tls_options, load_custom_certificate

if TYPE_CHECKING:
    from dockyard.proxy.tls.certs import CertifiedKey

logger = logging.getLogger("dockyard.proxy.control")


class HostConflictError(ProxyError):
    def __init__(self) -> None:
        super().__init__("host settings conflict with another service")


class RolloutNotSetError(ProxyError):
    def __init__(self) -> None:
        super().__init__("rollout target not set")


@dataclass(frozen=True, slots=True)
class ServiceRow:
    """One line of `list`."""

    service: str
    host: str
    path: str
    target: str
    state: str
    tls: str


def _claims(config: ServiceConfig) -> Iterator[tuple[str, str]]:
    for host in config.hosts or ("",):
        for prefix in config.path_prefixes:
            yield host, prefix


class ProxyRouter:
    """Implements `contract.Router`; owns the services and the routing table."""

    def __init__(
        self,
        store: StateStore | None = None,
        *,
        probe: Probe | None = None,
        tls: TlsRegistry | None = None,
    ) -> None:
        self._store = store
        #: The HTTPS listener's certificates; None (tests of the router alone): TLS options
        #: are still checked and custom certificates loaded, but nothing is served.
        self.tls = tls
        self._probe = probe
        self._services: dict[str, ProxyService] = {}
        #: host, prefix -> the `Match` handed to the data plane (made once per table).
        self._table: RoutingTable[Match] = RoutingTable()
        self._locks: dict[str, asyncio.Lock] = {}

    # -- the data plane's view -----------------------------------------------------------------

    def match(self, host: str, path: str) -> Match | None:
        binding = self._table.lookup(host, path)
        if binding is None:
            return None
        return binding.service

    def service(self, name: str) -> ProxyService:
        try:
            return self._services[name]
        except KeyError:
            raise ServiceNotFoundError() from None

    @property
    def services(self) -> dict[str, ProxyService]:
        return dict(self._services)

    # -- deploy --------------------------------------------------------------------------------

    def _lock(self, name: str) -> asyncio.Lock:
        lock = self._locks.get(name)
        if lock is None:
            lock = self._locks[name] = asyncio.Lock()
        return lock

    def _balancer(
        self, name: str, targets: tuple[str, ...], readers: tuple[str, ...], cfg: ServiceConfig
    ) -> LoadBalancer:
        return LoadBalancer(
            parse_targets(targets),
            parse_targets(readers),
            cfg.health_check,
            service=name,
            probe=self._probe,
        )

    async def deploy(self, request: DeployRequest) -> None:
        """Health-gate the new targets, switch atomically, then drain the old ones."""
        name = request.service
        config = request.config.normalized()
        if not request.targets:
            raise ProxyError("no targets given", hint="pass at least one --target")
        async with self._lock(name):
            # Before anything changes: a bad certificate fails the deploy, service untouched.
            if self.tls is not None:
                certified = await self.tls.validate(config)
            else:
                check_tls_options(config)
                certified = await asyncio.to_thread(load_custom_certificate, config)
            balancer = self._balancer(name, request.targets, request.readers, config)
            event(
                logger,
                "Deploying",
                service=name,
                hosts=list(config.hosts),
                paths=list(config.path_prefixes),
                targets=list(request.targets),
                read_targets=list(request.readers),
                force=request.force,
                deploy_timeout=format_duration(request.deploy_timeout),
            )
            if request.force:
                balancer.trust_all()
                if balancer.ongoing_checks:
                    balancer.start_health_checks()
            else:
                balancer.start_health_checks()
                try:
                    await balancer.wait_until_healthy(request.deploy_timeout)
                except BaseException:
                    await balancer.stop_health_checks()
                    raise
            try:
                old = self._install(name, config, balancer, certified)
            except BaseException:
                await balancer.stop_health_checks()
                raise
            event(
                logger,
                "Deployed",
                service=name,
                hosts=list(config.hosts),
                paths=list(config.path_prefixes),
                targets=list(request.targets),
                read_targets=list(request.readers),
            )
            if old is not None:
                await old.drain(request.drain_timeout)
                event(logger, "Drained", service=name, targets=old.target_names)

    def _install(
        self,
        name: str,
        config: ServiceConfig,
        balancer: LoadBalancer,
        certified: CertifiedKey | None = None,
    ) -> LoadBalancer | None:
        """The switch: claims checked, service created or updated, table rebuilt, state saved.
        Synchronous, so no request can observe a half-done switch."""
        for host, prefix in _claims(config):
            claimed = self._table.owner(host, prefix)
            owner = claimed.service if claimed is not None else None
            if owner is not None and owner.name != name:
                event(
                    logger,
                    "Host settings conflict with another service",
                    level=logging.WARNING,
                    service=name,
                    host=host,
                    path=prefix,
                    other=owner.name,
                )
                raise HostConflictError()
        if self.tls is not None:  # may refuse (nothing changed then)
            configs = [(n, s.config) for n, s in self._services.items() if n != name]
            self.tls.apply([*configs, (name, config)], {name: certified})
        existing = self._services.get(name)
        old: LoadBalancer | None = None
        if existing is None:
            self._services[name] = ProxyService(name, config, balancer)
        else:
            old = existing.update(config, balancer)
        self._rebuild()
        self._save()
        return old

    # -- maintenance ---------------------------------------------------------------------------

    async def remove(self, name: str) -> None:
        service = self.service(name)
        await service.active.stop_health_checks()
        if service.rollout is not None:
            await service.rollout.stop_health_checks()
        del self._services[name]
        self._apply_tls()
        self._rebuild()
        self._save()
        event(logger, "Removed", service=name)

    async def pause(self, name: str, drain_timeout: int, max_pause: int) -> None:
        service = self.service(name)
        service.pause.apply("pause", fail_after=max_pause)
        self._save()
        event(logger, "Service paused", service=name, max_pause=format_duration(max_pause))
        await self._drain_inflight(service, drain_timeout)

    async def stop(self, name: str, drain_timeout: int, message: str) -> None:
        service = self.service(name)
        service.pause.apply("stop", message=message)
        self._save()
        event(logger, "Service stopped", service=name, message=message)
        await self._drain_inflight(service, drain_timeout)

    async def _drain_inflight(self, service: ProxyService, drain_timeout: int) -> None:
        """Let the requests already past the pause gate finish (or cancel them at the timeout);
        the targets stay in service for when it resumes."""
        slots = [service.active] + ([service.rollout] if service.rollout else [])
        async with asyncio.TaskGroup() as group:
            for slot in slots:
                group.create_task(slot.drain(drain_timeout, refuse_new=False))

    async def resume(self, name: str) -> None:
        service = self.service(name)
        service.pause.apply("resume")
        self._save()
        event(logger, "Service resumed", service=name)

    # -- rollout ---------------------------------------------------------------------------------

    async def rollout_deploy(
        self,
        name: str,
        targets: tuple[str, ...],
        readers: tuple[str, ...],
        deploy_timeout: int,
        drain_timeout: int,
    ) -> None:
        """Health-gate targets with the service's own options, install them in its rollout slot,
        then drain the previous rollout targets."""
        service = self.service(name)
        if not targets:
            raise ProxyError("no targets given", hint="pass at least one --target")
        async with self._lock(name):
            balancer = self._balancer(name, targets, readers, service.config)
            event(logger, "Deploying rollout", service=name, targets=list(targets))
            balancer.start_health_checks()
            try:
                await balancer.wait_until_healthy(deploy_timeout)
            except BaseException:
                await balancer.stop_health_checks()
                raise
            service = self.service(name)  # it may have been removed meanwhile
            old = service.rollout
            service.rollout = balancer
            self._save()
            event(logger, "Deployed rollout", service=name, targets=list(targets))
            if old is not None:
                await old.drain(drain_timeout)

    async def rollout_set(self, name: str, percentage: int, allowlist: tuple[str, ...]) -> None:
        service = self.service(name)
        if service.rollout is None:
            raise RolloutNotSetError()
        if not 0 <= percentage <= 100:
            raise ProxyError("percentage must be between 0 and 100")
        service.split = RolloutSplit(percentage, allowlist)
        self._save()
        event(logger, "Set rollout split", service=name, percent=percentage, allowlist=allowlist)

    async def rollout_stop(self, name: str) -> None:
        service = self.service(name)
        service.split = None
        self._save()
        event(logger, "Stopped rollout", service=name)

    def rows(self) -> list[ServiceRow]:
        rows = []
        for name in sorted(self._services):
            service = self._services[name]
            cfg = service.config
            rows.append(
                ServiceRow(
                    service=name,
                    host=",".join(cfg.hosts) or "*",
                    path=",".join(cfg.path_prefixes),
                    target=",".join(service.active.target_names + service.active.reader_names),
                    state=service.state,
                    tls="yes" if cfg.tls_enabled else "no",
                )
            )
        return rows

    # -- routing table and state ---------------------------------------------------------------

    def _rebuild(self) -> None:
        self._table = RoutingTable(
            (host, prefix, Match(service=service, prefix=prefix))
            for service in self._services.values()
            for host, prefix in _claims(service.config)
        )

    def snapshot(self) -> list[SavedService]:
        return [
            SavedService(
                name=name,
                config=service.config,
                targets=tuple(service.active.target_names),
                readers=tuple(service.active.reader_names),
                pause=service.pause.to_json(),
                rollout_targets=tuple(service.rollout.target_names) if service.rollout else (),
                rollout_readers=tuple(service.rollout.reader_names) if service.rollout else (),
                rollout=service.split.to_json() if service.split else None,
            )
            for name, service in sorted(self._services.items())
        ]

    def _apply_tls(self) -> None:
        if self.tls is None:
            return
        try:
            self.tls.apply((n, s.config) for n, s in self._services.items())
        except ProxyError as exc:
            event(logger, "Unable to configure TLS", level=logging.ERROR, error=exc.message)

    def _save(self) -> None:
        if self._store is None:
            return
        try:
            self._store.save(self.snapshot())
        except OSError as exc:
            event(
                logger,
                "Unable to save state",
                level=logging.ERROR,
                path=str(self._store.path),
                error=str(exc),
            )

    def restore(self) -> int:
        """Load the saved services; targets are trusted healthy at once (no health gate)."""
        if self._store is None:
            return 0
        try:
            saved = self._store.load()
        except StateFileError as exc:
            event(logger, "Failed to restore saved state", level=logging.ERROR, error=exc.message)
            return 0
        if saved is None:
            event(logger, "No previous state to restore", path=str(self._store.path))
            return 0
        for entry in saved:
            try:
                balancer = self._balancer(entry.name, entry.targets, entry.readers, entry.config)
            except ProxyError as exc:
                event(
                    logger,
                    "Skipping saved service",
                    level=logging.ERROR,
                    service=entry.name,
                    error=exc.message,
                )
                continue
            balancer.trust_all()
            if balancer.ongoing_checks:
                balancer.start_health_checks()
            if self.tls is not None:
                self.tls.restore_certificate(entry.name, entry.config)
            service = ProxyService(entry.name, entry.config, balancer)
            service.pause.restore(entry.pause)
            if entry.rollout_targets:
                rollout = self._balancer(
                    entry.name, entry.rollout_targets, entry.rollout_readers, entry.config
                )
                rollout.trust_all()
                if rollout.ongoing_checks:
                    rollout.start_health_checks()
                service.rollout = rollout
                service.split = RolloutSplit.from_json(entry.rollout)
            self._services[entry.name] = service
        self._apply_tls()
        self._rebuild()
        event(logger, "Restored saved state", path=str(self._store.path), services=len(saved))
        return len(self._services)

    async def close(self) -> None:
        for service in self._services.values():
            await service.active.stop_health_checks()
            if service.rollout is not None:
                await service.rollout.stop_health_checks()
