"""The control plane's side of TLS: which certificate each TLS service's hosts get.

`TlsRegistry` owns the `TlsSelector` the HTTPS listener uses. The router asks it to
`validate` a service's TLS options before a deploy changes anything (custom certificate files
loaded and checked, automatic-TLS hosts checked), then to `apply` the whole set of services after
every change (deploy, remove, restore), so the selector always sees one consistent picture.

Automatic TLS may use several ACME directories at once (Let's Encrypt, its staging, any
`--tls-acme-directory`) and several cache roots: one `CertManager` per (directory, cache root),
and `_AcmeDispatch` presents them to the selector as one manager, choosing by host.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, cast

from dockyard.errors import ProxyError
from dockyard.proxy.control.log import event
from dockyard.proxy.control.options import ServiceConfig

if TYPE_CHECKING:
    from dockyard.proxy.tls.certs import CertifiedKey
    from dockyard.proxy.tls.context import TlsSelector
    from dockyard.proxy.tls.manager import CertManager

logger = logging.getLogger("dockyard.proxy.control")

#: ALPN offered on the HTTPS listener (custom and ACME certificates; a TLS-ALPN-01 validator
#: gets "acme-tls/1" only): HTTP/2 and HTTP/1.1, as kamal-proxy. The acceptor serves "h2"
#: connections with the data plane's HTTP/2 protocol (dataplane/h2conn.py).
HTTPS_ALPN = ("h2", "http/1.1")


def load_custom_certificate(config: ServiceConfig) -> CertifiedKey | None:
    """The service's `--tls-certificate-path`/`--tls-private-key-path` pair, loaded and
    checked (raises `CertificateError`, naming the file); None when it has none."""
    if not config.tls_enabled or not config.tls_certificate_path:
        return None
    if not config.tls_private_key_path:
        raise ProxyError(
            "TLS certificate given without a private key",
            hint="pass --tls-certificate-path and --tls-private-key-path together",
        )
    from dockyard.proxy.tls.certs import load_certificate_files

    return load_certificate_files(config.tls_certificate_path, config.tls_private_key_path)


def check_tls_options(config: ServiceConfig) -> None:
    """Server-side checks of a TLS service that need no files (kamal-proxy's rules)."""
    if not config.tls_enabled:
        return
    if not config.hosts:
        raise ProxyError("host must be set when using TLS")
    if not config.tls_certificate_path:
        from dockyard.proxy.tls.context import check_acme_hosts

        check_acme_hosts(config.hosts)


class _Board:
    def __init__(self, dispatch: _AcmeDispatch) -> None:
        self._dispatch = dispatch

    def tls_alpn01(self, host: str) -> CertifiedKey | None:
        manager = self._dispatch.manager_for(host)
        return manager.board.tls_alpn01(host) if manager is not None else None

    def http01_response(self, host: str, path: str) -> bytes | None:
        return self._dispatch.http01_response(host, path)


class _AcmeDispatch:
    """Looks like one `CertManager` to the `TlsSelector`; forwards each call to the manager
    of the host's service."""

    def __init__(self) -> None:
        self.host_policy: object | None = None
        self.board = _Board(self)
        self.by_host: dict[str, CertManager] = {}

    def manager_for(self, host: str) -> CertManager | None:
        from dockyard.proxy.tls.challenges import host_without_port

        return self.by_host.get(host_without_port(host))

    def cached(self, host: str) -> CertifiedKey | None:
        manager = self.manager_for(host)
        return manager.cached(host) if manager is not None else None

    def renew_if_due(self, host: str) -> None:
        manager = self.manager_for(host)
        if manager is not None:
            manager.renew_if_due(host)

    async def ensure(self, host: str) -> CertifiedKey:
        manager = self.manager_for(host)
        if manager is None:
            raise ProxyError(f"automatic TLS is not enabled for host {host}")
        return await manager.ensure(host)

    def http01_response(self, host: str, path: str) -> bytes | None:
        manager = self.manager_for(host)
        return manager.http01_response(host, path) if manager is not None else None


class TlsRegistry:
    """Certificates of every TLS service, kept in a `TlsSelector` (see the module docstring).

    `default_cache_root`: where ACME certificates go when a service names no
    `--tls-acme-cache-path` (the state volume's `certs/`). `ca_bundle`: verifies the ACME
    servers (None: `$SSL_CERT_FILE`, else the system store).
    """

    def __init__(
        self,
        default_cache_root: Path,
        *,
        alpn: tuple[str, ...] = HTTPS_ALPN,
        ca_bundle: str | None = None,
    ) -> None:
        from dockyard.proxy.tls.context import TlsSelector

        self.default_cache_root = default_cache_root
        self.ca_bundle = ca_bundle
        self._dispatch = _AcmeDispatch()
        self.selector: TlsSelector = TlsSelector(cast("CertManager", self._dispatch), alpn=alpn)
        self._managers: dict[tuple[str, str], CertManager] = {}
        self._renewals: dict[tuple[str, str], asyncio.Task[None]] = {}
        #: Custom certificates by service name, loaded at deploy (or restore).
        self._custom: dict[str, CertifiedKey] = {}

    # -- checks before a change ----------------------------------------------------------------

    async def validate(self, config: ServiceConfig) -> CertifiedKey | None:
        """Check a service's TLS options and load its custom certificate (off the loop)."""
        check_tls_options(config)
        return await asyncio.to_thread(load_custom_certificate, config)

    # -- the whole picture ------------------------------------------------------------------------

    def manager(self, directory: str, cache_root: str) -> CertManager:
        from dockyard.proxy.tls.manager import CertManager

        root = cache_root or str(self.default_cache_root)
        key = (directory, root)
        manager = self._managers.get(key)
        if manager is None:
            manager = CertManager(directory, root, ca_bundle=self.ca_bundle)
            self._managers[key] = manager
            with contextlib.suppress(RuntimeError):  # no running loop: no background renewal
                self._renewals[key] = asyncio.get_running_loop().create_task(manager.run_renewals())
        return manager

    def apply(
        self,
        services: Iterable[tuple[str, ServiceConfig]],
        certificates: dict[str, CertifiedKey | None] | None = None,
    ) -> None:
        """Configure the selector for `services` (name, config), in order. `certificates`:
        custom certificates just validated for some of them (replacing the ones held). Raises
        `ProxyError` when the selector refuses the picture; nothing changes then."""
        from dockyard.proxy.tls.challenges import host_without_port

        custom = dict(self._custom)
        for name, certified in (certificates or {}).items():
            if certified is None:
                custom.pop(name, None)
            else:
                custom[name] = certified
        acme_hosts: list[str] = []
        by_host: dict[str, CertManager] = {}
        per_host: dict[str, CertifiedKey] = {}
        default_host: str | None = None
        names: set[str] = set()
        for name, cfg in services:
            names.add(name)
            if not cfg.tls_enabled:
                continue
            if default_host is None and cfg.hosts:
                default_host = cfg.hosts[0]
            if cfg.tls_certificate_path:
                certified = custom.get(name)
                if certified is None:
                    continue  # its files could not be loaded on restore: handshakes fail
                for host in cfg.hosts:
                    per_host[host] = certified
            else:
                manager = self.manager(cfg.acme_directory, cfg.tls_acme_cache_path)
                for host in cfg.hosts:
                    acme_hosts.append(host)
                    by_host[host_without_port(host)] = manager
        self.selector.configure(
            acme_hosts=acme_hosts, certificates=per_host, default_host=default_host
        )
        self._dispatch.by_host = by_host
        for manager in self._managers.values():
            manager.host_policy = self._policy_for(manager)
        self._custom = {name: c for name, c in custom.items() if name in names}

    def _policy_for(self, manager: CertManager) -> Callable[[str], bool]:
        def allows(host: str) -> bool:
            return self._dispatch.manager_for(host) is manager

        return allows

    def restore_certificate(self, name: str, config: ServiceConfig) -> None:
        """Load a restored service's custom certificate; a failure is logged, and that
        service's handshakes fail until it is deployed again."""
        try:
            certified = load_custom_certificate(config)
        except ProxyError as exc:
            event(
                logger,
                "Unable to load the TLS certificate of a restored service",
                level=logging.ERROR,
                service=name,
                error=exc.message,
            )
            return
        if certified is not None:
            self._custom[name] = certified

    def http01_response(self, host: str, path: str) -> bytes | None:
        """The HTTP-01 answer for a request, if one is pending for its host (port 80 hook)."""
        return self._dispatch.http01_response(host, path)

    async def aclose(self) -> None:
        for task in self._renewals.values():
            task.cancel()
        await asyncio.gather(*self._renewals.values(), return_exceptions=True)
        self._renewals.clear()
        for manager in self._managers.values():
            await manager.aclose()
