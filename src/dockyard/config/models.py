"""Frozen, validated configuration objects (the shape of Kamal 2.11's Configuration classes).

These hold data (hosts, labels, options, env values), never Docker flags: `dockyard.commands`
turns them into argv. They are built by `dockyard.config.loader`, after validation, and the
role-over-global merging happens in one place, `dockyard.config.loader.resolve_role`.
"""

from __future__ import annotations

import posixpath
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from dockyard.errors import ConfigError

from .secret import Secret, SecretStore

#: A `docker run` option value: `True` is a bare flag, a list repeats the flag.
OptionValue = str | bool | list[str]

DEFAULT_PROXY_VERSION = "v0.9.2"
DEFAULT_NETWORK = "kamal"
DEFAULT_LOG_REQUEST_HEADERS = ("Cache-Control", "Last-Modified", "User-Agent")


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)


class SecretRef(Frozen):
    """A value that names a secret (e.g. registry `password: [KAMAL_REGISTRY_PASSWORD]`)."""

    name: str


# --------------------------------------------------------------------------- env


class Env(Frozen):
    """Container environment: clear values, and secret variables (`VAR -> secret key`)."""

    clear: dict[str, str] = Field(default_factory=dict)
    #: Container variable name -> secret name (`DB_PASSWORD:MAIN_DB_PASSWORD` aliasing resolved).
    secrets: dict[str, str] = Field(default_factory=dict)

    def merge(self, other: Env) -> Env:
        """`other` over `self`: clear values merge, secret variables are unioned."""
        return Env(clear={**self.clear, **other.clear}, secrets={**self.secrets, **other.secrets})


# --------------------------------------------------------------------------- logging


class Logging(Frozen):
    driver: str | None = None
    options: dict[str, str] = Field(default_factory=dict)

    def merge(self, other: Logging) -> Logging:
        """Deep merge with `other` winning (a role's logging over the root logging)."""
        return Logging(
            driver=other.driver if other.driver is not None else self.driver,
            options={**self.options, **other.options},
        )


# --------------------------------------------------------------------------- registry


class Registry(Frozen):
    server: str | None = None
    username: str | SecretRef | None = None
    password: str | SecretRef | None = None

    @property
    def local(self) -> bool:
        """`localhost:PORT` (or `localhost`) is a registry run on the deployer, reached over SSH."""
        server = self.server or ""
        return server == "localhost" or server.startswith("localhost:")

    @property
    def local_port(self) -> int | None:
        if not self.local:
            return None
        last = (self.server or "").split(":")[-1]
        return int(last) if last.isdigit() else 0


# --------------------------------------------------------------------------- builder


class BuilderPack(Frozen):
    builder: str | None = None
    buildpacks: tuple[str, ...] = ()


class BuilderCache(Frozen):
    type: str | None = None
    options: str | None = None
    image: str | None = None


class Builder(Frozen):
    arch: tuple[str, ...] = ()
    remote: str | None = None
    #: `False` disables local builds (then `remote` is required); `None` means not given.
    local: bool | None = None
    pack: BuilderPack | None = None
    cache: BuilderCache | None = None
    #: As written; `None` means "build from a git clone of HEAD" when in a git repository.
    context: str | None = None
    dockerfile: str = "Dockerfile"
    target: str | None = None
    args: dict[str, str] = Field(default_factory=dict)
    secrets: tuple[str, ...] = ()
    ssh: str | None = None
    driver: str = "docker-container"
    provenance: str | bool | None = None
    sbom: bool | None = None
    #: Cache image name (`<image>-build-cache` unless `cache/image` is given).
    cache_image: str = ""

    @property
    def local_disabled(self) -> bool:
        return self.local is False

    @property
    def cloud(self) -> bool:
        return self.driver.startswith("cloud")

    @property
    def docker_driver(self) -> bool:
        return self.driver == "docker"


# --------------------------------------------------------------------------- proxy


class ProxyHealthcheck(Frozen):
    interval: int | None = None
    path: str | None = None
    timeout: int | None = None


class ProxyBuffering(Frozen):
    requests: bool = True
    responses: bool = True
    memory: int | None = None
    max_request_body: int | None = None
    max_response_body: int | None = None


class ProxyLogging(Frozen):
    request_headers: tuple[str, ...] = DEFAULT_LOG_REQUEST_HEADERS
    response_headers: tuple[str, ...] | None = None


class ProxySslCertificate(Frozen):
    """Custom TLS certificate: both values are secret names."""

    certificate_pem: str
    private_key_pem: str


class ProxyRun(Frozen):
    """How the kamal-proxy container itself is run (`proxy/run`)."""

    http_port: int = 80
    https_port: int = 443
    metrics_port: int | None = None
    debug: bool | None = None
    log_max_size: str | None = "10m"
    publish: bool = True
    bind_ips: tuple[str, ...] | None = None
    registry: str | None = None
    repository: str = "basecamp/kamal-proxy"
    version: str = DEFAULT_PROXY_VERSION
    options: dict[str, OptionValue] = Field(default_factory=dict)

    @property
    def image(self) -> str:
        prefix = f"{self.registry}/" if self.registry else ""
        return f"{prefix}{self.repository}:{self.version}"


class ProxyConfig(Frozen):
    """Proxy settings of the root, of a role (already merged over the root) or of an accessory."""

    hosts: tuple[str, ...] = ()
    app_port: int = 80
    ssl: bool = False
    ssl_certificate: ProxySslCertificate | None = None
    ssl_redirect: bool | None = None
    forward_headers: bool | None = None
    response_timeout: int | None = None
    path_prefixes: tuple[str, ...] = ()
    strip_path_prefix: bool | None = None
    healthcheck: ProxyHealthcheck = Field(default_factory=ProxyHealthcheck)
    buffering: ProxyBuffering = Field(default_factory=ProxyBuffering)
    logging: ProxyLogging = Field(default_factory=ProxyLogging)
    run: ProxyRun | None = None
    # Dockyard-only keys (Kamal 2.11 rejects them): dockyard-proxy's access gates.
    #: `basic_auth: {user, password_hash}` (a bcrypt hash).
    basic_auth_user: str | None = None
    basic_auth_password_hash: str | None = None
    #: Addresses or CIDRs allowed to reach the app (empty: everyone).
    allow_ips: tuple[str, ...] = ()
    #: A header trusted for the client address (e.g. CF-Connecting-IP behind Cloudflare).
    client_ip_header: str | None = None
    #: The role this proxy config belongs to (used in TLS paths), `None` for root/accessories.
    role_name: str | None = None

    @property
    def custom_ssl_certificate(self) -> bool:
        return self.ssl_certificate is not None


# --------------------------------------------------------------------------- boot, ssh, sshkit


class Boot(Frozen):
    #: As written: an integer, or a percentage string such as "25%".
    limit: int | str | None = None
    wait: int | None = None
    parallel_roles: bool = False
    #: `limit` resolved against the number of hosts (a percentage is at least 1).
    resolved_limit: int | None = None
    # Dockyard-only keys (Kamal 2.11 rejects them): memory-safe deploys on small servers.
    #: `parallel` (Kamal: the new container starts next to the old one) or `swap` (pause in
    #: kamal-proxy, stop the old one, start the new one, resume).
    strategy: Literal["parallel", "swap"] = "parallel"
    #: Roles whose containers are stopped on a host during a swap there, started after.
    stop_roles: tuple[str, ...] = ()
    #: Check before booting that the new version fits in the host's memory.
    memory_check: bool = True
    #: What a new container needs, in bytes (default: measured, or the role's --memory).
    memory_needed: int | None = None
    #: Kept free on top of that, in bytes (default 64 MiB).
    memory_margin: int | None = None


class Ssh(Frozen):
    user: str = "root"
    port: int = 22
    #: Jump host as `user@host` (the user defaults to root).
    proxy: str | None = None
    proxy_command: str | None = None
    log_level: str = "fatal"
    keys_only: bool | None = None
    keys: tuple[str, ...] | None = None
    #: Names of secrets holding keys (inline PEM is still accepted, deprecated).
    key_data: tuple[str, ...] | None = None
    config: bool | str | tuple[str, ...] | None = None
    keepalive: bool = True
    keepalive_interval: int = 30


class Sshkit(Frozen):
    max_concurrent_starts: int = 30
    pool_idle_timeout: int = 900
    dns_retries: int = 3


# --------------------------------------------------------------------------- roles


class Role(Frozen):
    """One role with every setting already merged over the globals (see `resolve_role`)."""

    name: str
    service: str
    destination: str | None = None
    primary: bool = False
    #: Hosts in config order, and the tags of each.
    host_tags: dict[str, tuple[str, ...]] = Field(default_factory=dict)
    cmd: str | None = None
    options: dict[str, OptionValue] = Field(default_factory=dict)
    #: Root labels merged with the role's (without the default service/role/destination ones).
    custom_labels: dict[str, str] = Field(default_factory=dict)
    logging: Logging = Field(default_factory=Logging)
    #: The merged proxy config, or `None` when this role does not run behind the proxy.
    proxy: ProxyConfig | None = None
    #: Env per host: root, then role, then each tag of the host, merged in that order.
    envs: dict[str, Env] = Field(default_factory=dict)
    asset_path: str | None = None
    asset_path_options: str | None = None
    drain_timeout: int = 30
    #: Every volume of this role's containers: the top-level ones, then the role's own
    #: (`servers/<role>/volumes`, stored as the role's `options/volume`, with any volume
    #: written there directly).
    volumes: tuple[str, ...] = ()

    @property
    def hosts(self) -> list[str]:
        return list(self.host_tags)

    @property
    def primary_host(self) -> str | None:
        return next(iter(self.host_tags), None)

    @property
    def running_proxy(self) -> bool:
        return self.proxy is not None

    @property
    def ssl(self) -> bool:
        return self.proxy is not None and self.proxy.ssl

    @property
    def container_prefix(self) -> str:
        return "-".join(p for p in (self.service, self.name, self.destination) if p)

    def container_name(self, version: str) -> str:
        return f"{self.container_prefix}-{version}"

    @property
    def labels(self) -> dict[str, str]:
        defaults = {"service": self.service, "role": self.name}
        if self.destination:
            defaults["destination"] = self.destination
        return {**defaults, **self.custom_labels}

    def env(self, host: str) -> Env:
        try:
            return self.envs[host]
        except KeyError:
            raise ConfigError(f"Host {host} is not in role {self.name}") from None

    def tags(self, host: str) -> tuple[str, ...]:
        return self.host_tags.get(host, ())

    @property
    def assets(self) -> bool:
        return bool(self.asset_path) and self.running_proxy

    @property
    def stop_timeout(self) -> int | None:
        """`docker stop -t`: none behind the proxy (it drains requests), else `drain_timeout`."""
        return None if self.running_proxy else self.drain_timeout


# --------------------------------------------------------------------------- accessories


class AccessoryPath(Frozen):
    """A file or directory of an accessory, mounted into its container."""

    local: str
    remote: str
    #: On the host: the upload target of a file, or the directory to create (`$PWD/...`).
    host_path: str
    #: The host side of the `--volume` (relative paths are relative to `$PWD` on the host).
    volume_host_path: str
    mode: str | None = None
    owner: str | None = None
    options: str | None = None

    @property
    def is_template(self) -> bool:
        """A local file rendered with ERB before upload (its name ends with `erb`)."""
        return self.local.endswith("erb")


class Accessory(Frozen):
    name: str
    service_name: str
    #: With the accessory registry server prefixed, if it has one.
    image: str
    registry: Registry | None = None
    hosts: tuple[str, ...] = ()
    cmd: str | None = None
    #: `host:container` (or `ip:host:container`), normalised from `3306` to `3306:3306`.
    port: str | None = None
    custom_labels: dict[str, str] = Field(default_factory=dict)
    options: dict[str, OptionValue] = Field(default_factory=dict)
    env: Env = Field(default_factory=Env)
    files: tuple[AccessoryPath, ...] = ()
    directories: tuple[AccessoryPath, ...] = ()
    volumes: tuple[str, ...] = ()
    network: str = DEFAULT_NETWORK
    proxy: ProxyConfig | None = None

    @property
    def labels(self) -> dict[str, str]:
        return {"service": self.service_name, **self.custom_labels}

    @property
    def running_proxy(self) -> bool:
        return self.proxy is not None


# --------------------------------------------------------------------------- the whole config


class Config(Frozen):
    """The whole validated configuration, for one destination."""

    config_file: Path
    root: Path
    destination: str | None = None
    service: str
    image: str
    registry: Registry
    roles: tuple[Role, ...] = ()
    accessories: tuple[Accessory, ...] = ()
    aliases: dict[str, str] = Field(default_factory=dict)
    env: Env = Field(default_factory=Env)
    env_tags: dict[str, Env] = Field(default_factory=dict)
    labels: dict[str, str] = Field(default_factory=dict)
    volumes: tuple[str, ...] = ()
    logging: Logging = Field(default_factory=Logging)
    proxy: ProxyConfig = Field(default_factory=ProxyConfig)
    builder: Builder = Field(default_factory=Builder)
    boot: Boot = Field(default_factory=Boot)
    ssh: Ssh = Field(default_factory=Ssh)
    sshkit: Sshkit = Field(default_factory=Sshkit)
    asset_path: str | None = None
    hooks_path: str = ".kamal/hooks"
    hooks_output: str | dict[str, str] | None = None
    secrets_path: str = ".kamal/secrets"
    error_pages_path: str | None = None
    require_destination: bool = False
    primary_role_name: str = "web"
    allow_empty_roles: bool = False
    retain_containers: int = 5
    minimum_version: str | None = None
    readiness_delay: int = 7
    deploy_timeout: int = 30
    drain_timeout: int = 30
    #: Accepted in deploy.yml but, as in Kamal 2.11, the value used is always `.kamal`.
    run_directory: str = ".kamal"
    #: The image version; `None` when it could not be determined (no git, no VERSION).
    declared_version: str | None = None
    #: Why `declared_version` is missing, for the error raised by `version`.
    version_error: str | None = None
    #: One line per Kamal 1 form read in its Kamal 2 form (the CLI prints them on stderr).
    warnings: tuple[str, ...] = ()
    #: The merged raw document (after ERB, YAML, the destination merge and the Kamal 1 rewrites).
    raw: dict[str, Any] = Field(default_factory=dict, repr=False)

    _secrets: SecretStore | None = PrivateAttr(default=None)

    # -- secrets ---------------------------------------------------------------

    @property
    def secrets(self) -> SecretStore:
        if self._secrets is None:
            self._secrets = SecretStore(self.root, self.destination, self.secrets_path)
        return self._secrets

    def use_secrets(self, store: SecretStore) -> None:
        """Replace the secret store (tests, or a store shared between commands)."""
        self._secrets = store

    def secret(self, name: str) -> Secret:
        return self.secrets.get(name)

    def resolve(self, value: str | SecretRef | None) -> str | Secret | None:
        """A plain value as is, or the secret a `SecretRef` names."""
        if isinstance(value, SecretRef):
            return self.secret(value.name)
        return value

    def env_secrets(self, env: Env) -> dict[str, Secret]:
        """The secret values of an env, by container variable name (read lazily)."""
        return {var: self.secret(key) for var, key in env.secrets.items()}

    # -- versions and images ---------------------------------------------------

    @property
    def version(self) -> str:
        if self.declared_version is None:
            raise ConfigError(self.version_error or "No version: set VERSION or use git")
        return self.declared_version

    def with_version(self, version: str) -> Config:
        return self.model_copy(update={"declared_version": version})

    @property
    def repository(self) -> str:
        return "/".join(p for p in (self.registry.server, self.image) if p)

    @property
    def absolute_image(self) -> str:
        return f"{self.repository}:{self.version}"

    @property
    def latest_tag(self) -> str:
        return "-".join(["latest", *([self.destination] if self.destination else [])])

    @property
    def latest_image(self) -> str:
        return f"{self.repository}:{self.latest_tag}"

    @property
    def service_with_version(self) -> str:
        return f"{self.service}-{self.version}"

    @property
    def service_and_destination(self) -> str:
        return "-".join(p for p in (self.service, self.destination) if p)

    # -- roles and hosts --------------------------------------------------------

    def role(self, name: str) -> Role | None:
        return next((r for r in self.roles if r.name == name), None)

    def accessory(self, name: str) -> Accessory | None:
        return next((a for a in self.accessories if a.name == name), None)

    @property
    def role_names(self) -> list[str]:
        return [r.name for r in self.roles]

    @property
    def primary_role(self) -> Role | None:
        return self.role(self.primary_role_name)

    @property
    def primary_host(self) -> str | None:
        role = self.primary_role
        return role.primary_host if role else None

    @property
    def all_hosts(self) -> list[str]:
        hosts = [h for r in self.roles for h in r.hosts]
        hosts += [h for a in self.accessories for h in a.hosts]
        return list(dict.fromkeys(hosts))

    @property
    def app_hosts(self) -> list[str]:
        return list(dict.fromkeys(h for r in self.roles for h in r.hosts))

    def host_roles(self, host: str) -> list[Role]:
        return [r for r in self.roles if host in r.host_tags]

    def host_accessories(self, host: str) -> list[Accessory]:
        return [a for a in self.accessories if host in a.hosts]

    @property
    def proxy_roles(self) -> list[Role]:
        return [r for r in self.roles if r.running_proxy]

    @property
    def proxy_accessories(self) -> list[Accessory]:
        return [a for a in self.accessories if a.running_proxy]

    @property
    def proxy_hosts(self) -> list[str]:
        hosts = [h for r in self.proxy_roles for h in r.hosts]
        hosts += [h for a in self.proxy_accessories for h in a.hosts]
        return list(dict.fromkeys(hosts))

    def proxy_run(self, host: str) -> ProxyRun | None:
        """The `proxy/run` settings for a host (validated to be the same for all its users)."""
        proxies = [r.proxy for r in self.host_roles(host)]
        proxies += [a.proxy for a in self.host_accessories(host)]
        return next((p.run for p in proxies if p is not None and p.run is not None), None)

    # -- paths on the hosts ----------------------------------------------------

    @property
    def apps_directory(self) -> str:
        return posixpath.join(self.run_directory, "apps")

    @property
    def app_directory(self) -> str:
        return posixpath.join(self.apps_directory, self.service_and_destination)

    @property
    def env_directory(self) -> str:
        return posixpath.join(self.app_directory, "env")

    def role_env_file(self, role: Role) -> str:
        return posixpath.join(self.env_directory, "roles", f"{role.name}.env")

    def accessory_env_file(self, accessory: Accessory) -> str:
        return posixpath.join(self.env_directory, "accessories", f"{accessory.name}.env")

    def hooks_output_for(self, hook: str) -> Literal["quiet", "verbose"] | None:
        value = (
            self.hooks_output.get(hook)
            if isinstance(self.hooks_output, dict)
            else self.hooks_output
        )
        if value == "quiet":
            return "quiet"
        if value == "verbose":
            return "verbose"
        return None
