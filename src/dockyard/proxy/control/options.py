"""A service's full deploy options (every `kamal-proxy deploy` flag), their normalisation and
their state-file form.

`ServiceConfig` is what the server keeps per service. `to_contract()` projects it onto the
data plane's `ServiceOptions`. Durations are integer nanoseconds (see `durations`).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dockyard.errors import ProxyError
from dockyard.proxy.contract import AccessGate, ServiceOptions
from dockyard.proxy.control.durations import SECOND, seconds

DEFAULT_DEPLOY_TIMEOUT = 30 * SECOND
DEFAULT_DRAIN_TIMEOUT = 30 * SECOND
DEFAULT_PAUSE_TIMEOUT = 30 * SECOND
DEFAULT_HEALTH_CHECK_PATH = "/up"
DEFAULT_HEALTH_CHECK_INTERVAL = 1 * SECOND
DEFAULT_HEALTH_CHECK_TIMEOUT = 5 * SECOND
DEFAULT_TARGET_TIMEOUT = 30 * SECOND
DEFAULT_BUFFER_MEMORY = 1 << 20
DEFAULT_WRITER_AFFINITY_TIMEOUT = 1 * SECOND
ACME_DIRECTORY = "https://acme-v02.api.letsencrypt.org/directory"
ACME_STAGING_DIRECTORY = "https://acme-staging-v02.api.letsencrypt.org/directory"

if TYPE_CHECKING:
    from dockyard.proxy.dataplane.gates import ServiceGate

_TARGET_PATTERN = re.compile(r"^\w[-_.\w+]+(:\d+)?$", re.ASCII)


class InvalidTargetError(ProxyError):
    pass


@dataclass(frozen=True, slots=True)
class TargetAddress:
    """A `--target` value split into host and port (port 80 when none is given, as Go's URL)."""

    name: str
    host: str
    port: int

    @classmethod
    def parse(cls, name: str) -> TargetAddress:
        if not _TARGET_PATTERN.match(name):
            raise InvalidTargetError("invalid host pattern", hint=f"target {name!r}")
        host, sep, port = name.rpartition(":")
        if not sep:
            return cls(name=name, host=name, port=80)
        return cls(name=name, host=host, port=int(port))


def parse_targets(names: tuple[str, ...] | list[str]) -> tuple[TargetAddress, ...]:
    return tuple(TargetAddress.parse(name) for name in names)


def normalize_hosts(hosts: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """Hosts as given, blanks dropped and duplicates removed (empty means catch-all)."""
    result: list[str] = []
    for host in hosts:
        host = host.strip()
        if host and host not in result:
            result.append(host)
    return tuple(result)


def normalize_path_prefixes(prefixes: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """Each prefix trimmed of slashes and given one leading `/`; none at all means `("/",)`."""
    result: list[str] = []
    for prefix in prefixes:
        normalized = "/" + prefix.strip().strip("/")
        if normalized not in result:
            result.append(normalized)
    return tuple(result) or ("/",)


@dataclass(frozen=True, slots=True)
class HealthCheckConfig:
    path: str = DEFAULT_HEALTH_CHECK_PATH
    port: int = 0
    interval: int = DEFAULT_HEALTH_CHECK_INTERVAL
    timeout: int = DEFAULT_HEALTH_CHECK_TIMEOUT
    host: str = ""


@dataclass(frozen=True, slots=True)
class ServiceConfig:
    """Every per-service deploy option, already normalised (see `normalized`)."""

    hosts: tuple[str, ...] = ()
    path_prefixes: tuple[str, ...] = ("/",)
    strip_path_prefix: bool = True
    tls_enabled: bool = False
    tls_staging: bool = False
    tls_certificate_path: str = ""
    tls_private_key_path: str = ""
    tls_acme_cache_path: str = ""
    #: Our `--tls-acme-directory` (any ACME CA); empty: Let's Encrypt (or its staging).
    tls_acme_directory: str = ""
    tls_redirect: bool = True
    canonical_host: str = ""
    error_page_path: str = ""
    writer_affinity_timeout: int = DEFAULT_WRITER_AFFINITY_TIMEOUT
    read_targets_accept_websockets: bool = False
    health_check: HealthCheckConfig = field(default_factory=HealthCheckConfig)
    target_timeout: int = DEFAULT_TARGET_TIMEOUT
    buffer_requests: bool = False
    buffer_responses: bool = False
    buffer_memory: int = DEFAULT_BUFFER_MEMORY
    max_request_body: int = 0
    max_response_body: int = 0
    #: None: not given, which means "on unless TLS is on".
    forward_headers: bool | None = None
    log_request_headers: tuple[str, ...] = ()
    log_response_headers: tuple[str, ...] = ()
    scope_cookie_paths: bool = False
    #: Not kamal-proxy: per-service basic auth (a bcrypt hash), an IP allowlist (addresses or
    #: CIDRs) and the header trusted for the client address (see `dataplane.gates`).
    basic_auth_user: str = ""
    basic_auth_password_hash: str = ""
    allow_ips: tuple[str, ...] = ()
    client_ip_header: str = ""

    def normalized(self) -> ServiceConfig:
        return replace(
            self,
            hosts=normalize_hosts(self.hosts),
            path_prefixes=normalize_path_prefixes(self.path_prefixes),
            allow_ips=normalize_hosts(self.allow_ips),
            client_ip_header=self.client_ip_header.strip(),
        )

    @property
    def has_gate(self) -> bool:
        return bool(
            self.basic_auth_user
            or self.basic_auth_password_hash
            or self.allow_ips
            or self.client_ip_header
        )

    def build_gate(self, service: str) -> ServiceGate | None:
        """The data plane's access gate for these options (None: none of them is set).
        Raises `GateConfigError` for a bad value."""
        if not self.has_gate:
            return None
        from dockyard.proxy.dataplane.gates import build_gate

        return build_gate(
            service,
            user=self.basic_auth_user,
            password_hash=self.basic_auth_password_hash,
            allow=self.allow_ips,
            client_ip_header=self.client_ip_header,
        )

    def validate(self) -> None:
        """Server-side checks of the options a deploy cannot be allowed to install."""
        self.build_gate("")

    @property
    def effective_forward_headers(self) -> bool:
        if self.forward_headers is None:
            return not self.tls_enabled
        return self.forward_headers

    @property
    def acme_directory(self) -> str:
        if self.tls_acme_directory:
            return self.tls_acme_directory
        return ACME_STAGING_DIRECTORY if self.tls_staging else ACME_DIRECTORY

    def to_contract(self, service: str = "", gate: AccessGate | None = None) -> ServiceOptions:
        """The data plane's view. `gate` overrides the one built from the options (`service`
        names the basic-auth realm)."""
        return ServiceOptions(
            hosts=self.hosts,
            path_prefixes=self.path_prefixes,
            strip_path_prefix=self.strip_path_prefix,
            target_timeout=seconds(self.target_timeout),
            buffer_requests=self.buffer_requests,
            buffer_responses=self.buffer_responses,
            buffer_memory=self.buffer_memory,
            max_request_body=self.max_request_body,
            max_response_body=self.max_response_body,
            forward_headers=self.effective_forward_headers,
            log_request_headers=self.log_request_headers,
            log_response_headers=self.log_response_headers,
            error_pages=Path(self.error_page_path) if self.error_page_path else None,
            health_check_path=self.health_check.path,
            tls=self.tls_enabled,
            tls_redirect=self.tls_redirect,
            canonical_host=self.canonical_host,
            scope_cookie_paths=self.scope_cookie_paths,
            gate=gate if gate is not None else self.build_gate(service),
            extra={
                "writer_affinity_timeout": seconds(self.writer_affinity_timeout),
                "read_targets_accept_websockets": self.read_targets_accept_websockets,
            },
        )

    # -- JSON (RPC payload and state file) ---------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["hosts"] = list(self.hosts)
        data["path_prefixes"] = list(self.path_prefixes)
        data["log_request_headers"] = list(self.log_request_headers)
        data["log_response_headers"] = list(self.log_response_headers)
        data["allow_ips"] = list(self.allow_ips)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ServiceConfig:
        """Build from `to_json` output; unknown keys are ignored, missing ones take defaults."""
        known = {f.name for f in fields(cls)}
        values: dict[str, Any] = {k: v for k, v in data.items() if k in known}
        hc = values.get("health_check")
        if isinstance(hc, dict):
            hc_known = {f.name for f in fields(HealthCheckConfig)}
            values["health_check"] = HealthCheckConfig(
                **{k: v for k, v in hc.items() if k in hc_known}
            )
        else:
            values.pop("health_check", None)
        for key in (
            "hosts",
            "path_prefixes",
            "log_request_headers",
            "log_response_headers",
            "allow_ips",
        ):
            if key in values:
                values[key] = tuple(str(v) for v in values[key] or ())
        return cls(**values).normalized()


@dataclass(frozen=True, slots=True)
class DeployRequest:
    """One `deploy` call: the service, its targets, its options and the deploy's own timeouts."""

    service: str
    targets: tuple[str, ...]
    readers: tuple[str, ...] = ()
    config: ServiceConfig = field(default_factory=ServiceConfig)
    deploy_timeout: int = DEFAULT_DEPLOY_TIMEOUT
    drain_timeout: int = DEFAULT_DRAIN_TIMEOUT
    force: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "service": self.service,
            "targets": list(self.targets),
            "readers": list(self.readers),
            "config": self.config.to_json(),
            "deploy_timeout": self.deploy_timeout,
            "drain_timeout": self.drain_timeout,
            "force": self.force,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DeployRequest:
        return cls(
            service=str(data["service"]),
            targets=tuple(str(t) for t in data.get("targets") or ()),
            readers=tuple(str(t) for t in data.get("readers") or ()),
            config=ServiceConfig.from_json(data.get("config") or {}),
            deploy_timeout=int(data.get("deploy_timeout", DEFAULT_DEPLOY_TIMEOUT)),
            drain_timeout=int(data.get("drain_timeout", DEFAULT_DRAIN_TIMEOUT)),
            force=bool(data.get("force", False)),
        )
