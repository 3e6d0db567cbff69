"""Load deploy.yml (+ destination file), validate it as Kamal 2.11 does, build frozen models.

The order of checks follows Kamal's, so that a config with several mistakes reports the same
first one. `resolve_role` is the one place where a role's settings are merged over the globals.
"""

from __future__ import annotations

import os
import platform
import re
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlparse

from dockyard.errors import ConfigError

from . import _validate as v
from ._ruby import deep_merge, present, ruby_str
from ._source import Document, KeyPath, load_document
from .errors import ConfigValidationError
from .models import (
    Accessory,
    AccessoryPath,
    Boot,
    Builder,
    BuilderCache,
    BuilderPack,
    Config,
    Env,
    Logging,
    OptionValue,
    ProxyBuffering,
    ProxyConfig,
    ProxyHealthcheck,
    ProxyLogging,
    ProxyRun,
    ProxySslCertificate,
    Registry,
    Role,
    SecretRef,
    Ssh,
    Sshkit,
)

#: The Kamal version whose behaviour (and `minimum_version` checks) Dockyard follows.
KAMAL_VERSION = "2.11.0"
DEFAULT_CONFIG_FILE = "config/deploy.yml"


# --------------------------------------------------------------------------- locations


@dataclass
class Locator:
    """Finds the file and line of a key path in the base or destination document."""

    documents: list[Document]
    root: Path

    def display(self, file: Path) -> Path:
        try:
            return file.relative_to(self.root)
        except ValueError:
            return file

    def __call__(self, path: KeyPath) -> tuple[Path | None, int | None]:
        for length in range(len(path), -1, -1):
            prefix = path[:length]
            for doc in reversed(self.documents):  # the destination file wins
                if prefix in doc.lines and (length > 0 or len(self.documents) == 1):
                    return self.display(doc.file), doc.lines[prefix]
        return self.display(self.documents[0].file), None


def _error(locate: Locator, path: KeyPath, problem: str, **kw: Any) -> ConfigValidationError:
    file, line = locate(path)
    return ConfigValidationError(problem, key_path=path, file=file, line=line, **kw)


def _plain_error(locate: Locator, problem: str, *, where: KeyPath = ()) -> ConfigValidationError:
    """An error Kamal words without a key path (cross-section checks)."""
    file, line = locate(where) if where else (locate.display(locate.documents[-1].file), None)
    return ConfigValidationError(problem, file=file, line=line)


# --------------------------------------------------------------------------- small converters


def _or(value: Any, default: Any) -> Any:
    """Ruby's `value || default`: only nil and false fall back (0 and "" are kept)."""
    return default if value is None or value is False else value


def _option_value(value: Any) -> OptionValue:
    if isinstance(value, bool):
        return value
    if isinstance(value, list):
        return [ruby_str(item) for item in value]
    return ruby_str(value)


def _options(raw: Any) -> dict[str, OptionValue]:
    return {str(k): _option_value(val) for k, val in (raw or {}).items()}


def _strings(raw: Any) -> dict[str, str]:
    return {str(k): ruby_str(val) for k, val in (raw or {}).items()}


def _tagged_hosts(entries: Any) -> dict[str, tuple[str, ...]]:
    hosts: dict[str, tuple[str, ...]] = {}
    for entry in entries or []:
        if isinstance(entry, dict):
            host, tags = next(iter(entry.items()))
            hosts[str(host)] = tuple(
                ruby_str(t) for t in (tags if isinstance(tags, list) else [tags])
            )
        elif isinstance(entry, str):
            hosts[entry] = ()
    return hosts


# --------------------------------------------------------------------------- section builders


def build_env(raw: Mapping[str, Any]) -> Env:
    """A simple env (all clear) or a structured one (clear/secret/tags)."""
    structured = any(k in raw for k in ("clear", "secret", "tags"))
    clear = raw.get("clear", {}) if structured else raw
    secrets: dict[str, str] = {}
    for entry in raw.get("secret", []) if structured else []:
        name, _, alias = str(entry).partition(":")
        secrets[name] = alias or name
    return Env(clear=_strings(clear), secrets=secrets)


def build_logging(raw: Mapping[str, Any] | None) -> Logging:
    raw = raw or {}
    driver = raw.get("driver")
    return Logging(
        driver=ruby_str(driver) if driver is not None else None,
        options=_strings(raw.get("options")),
    )


def _secret_or_value(raw: Any) -> str | SecretRef | None:
    if isinstance(raw, list):
        return SecretRef(name=str(raw[0]))
    return ruby_str(raw) if raw is not None else None


def build_registry(raw: Mapping[str, Any]) -> Registry:
    server = raw.get("server")
    return Registry(
        server=ruby_str(server) if server is not None else None,
        username=_secret_or_value(raw.get("username")),
        password=_secret_or_value(raw.get("password")),
    )


def _opt_str(value: Any) -> str | None:
    return ruby_str(value) if value is not None else None


def build_proxy(raw: Mapping[str, Any], *, role_name: str | None = None) -> ProxyConfig:
    if raw.get("hosts"):
        hosts = tuple(_tagged_hosts(raw["hosts"]))
    elif raw.get("host") is not None:
        hosts = tuple(ruby_str(raw["host"]).split(","))
    else:
        hosts = ()
    ssl = raw.get("ssl", False)
    certificate = None
    if isinstance(ssl, dict) and present(ssl.get("certificate_pem")):
        certificate = ProxySslCertificate(
            certificate_pem=ruby_str(ssl["certificate_pem"]),
            private_key_pem=ruby_str(ssl["private_key_pem"]),
        )
    if raw.get("path_prefixes"):
        prefixes = tuple(ruby_str(p) for p in raw["path_prefixes"])
    elif raw.get("path_prefix") is not None:
        prefixes = tuple(ruby_str(raw["path_prefix"]).split(","))
    else:
        prefixes = ()
    health = raw.get("healthcheck") or {}
    buffering = raw.get("buffering") or {}
    logging = raw.get("logging") or {}
    run = raw.get("run")
    return ProxyConfig(
        hosts=hosts,
        app_port=raw.get("app_port", 80),
        ssl=bool(ssl),
        ssl_certificate=certificate,
        ssl_redirect=raw.get("ssl_redirect"),
        forward_headers=raw.get("forward_headers"),
        response_timeout=raw.get("response_timeout"),
        path_prefixes=prefixes,
        strip_path_prefix=raw.get("strip_path_prefix"),
        healthcheck=ProxyHealthcheck(
            interval=health.get("interval"),
            path=_opt_str(health.get("path")),
            timeout=health.get("timeout"),
        ),
        buffering=ProxyBuffering(
            requests=buffering.get("requests", True),
            responses=buffering.get("responses", True),
            memory=buffering.get("memory"),
            max_request_body=buffering.get("max_request_body"),
            max_response_body=buffering.get("max_response_body"),
        ),
        logging=ProxyLogging(
            request_headers=tuple(logging.get("request_headers") or ())
            or ProxyLogging().request_headers,
            response_headers=(
                tuple(logging["response_headers"]) if logging.get("response_headers") else None
            ),
        ),
        run=_build_proxy_run(run) if run and present(run) else None,
        role_name=role_name,
    )


def _build_proxy_run(raw: Mapping[str, Any]) -> ProxyRun:
    defaults = ProxyRun()
    bind_ips = raw.get("bind_ips")
    return ProxyRun(
        http_port=raw.get("http_port", defaults.http_port),
        https_port=raw.get("https_port", defaults.https_port),
        metrics_port=raw.get("metrics_port"),
        debug=raw.get("debug"),
        log_max_size=_opt_str(raw.get("log_max_size", defaults.log_max_size)),
        publish=raw.get("publish", True),
        bind_ips=tuple(ruby_str(ip) for ip in bind_ips) if bind_ips is not None else None,
        registry=_opt_str(raw.get("registry")),
        repository=ruby_str(raw.get("repository", defaults.repository)),
        version=ruby_str(raw.get("version", defaults.version)),
        options=_options(raw.get("options")),
    )


def _docker_arch() -> str:
    machine = platform.machine().lower()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)


def build_builder(raw: Mapping[str, Any], *, image: str | None) -> Builder:
    driver = ruby_str(raw.get("driver", "docker-container"))
    arch_raw = raw.get("arch", [] if driver == "docker" else ["amd64", "arm64"])
    arch = tuple(ruby_str(a) for a in (arch_raw if isinstance(arch_raw, list) else [arch_raw]))
    pack = raw.get("pack")
    cache = raw.get("cache")
    provenance = raw.get("provenance")
    return Builder(
        arch=arch,
        remote=_opt_str(raw.get("remote")),
        local=raw.get("local"),
        pack=BuilderPack(
            builder=_opt_str(pack.get("builder")),
            buildpacks=tuple(ruby_str(b) for b in pack.get("buildpacks") or ()),
        )
        if pack
        else None,
        cache=BuilderCache(
            type=_opt_str(cache.get("type")),
            options=_opt_str(cache.get("options")),
            image=_opt_str(cache.get("image")),
        )
        if cache
        else None,
        context=_opt_str(raw.get("context")),
        dockerfile=ruby_str(_or(raw.get("dockerfile"), "Dockerfile")),
        target=_opt_str(raw.get("target")),
        args=_strings(raw.get("args")),
        secrets=tuple(ruby_str(s) for s in raw.get("secrets") or ()),
        ssh=_opt_str(raw.get("ssh")),
        driver=driver,
        provenance=provenance if isinstance(provenance, bool) else _opt_str(provenance),
        sbom=raw.get("sbom"),
        cache_image=ruby_str(_or((cache or {}).get("image"), f"{image}-build-cache")),
    )


def _builder_remote(builder: Builder) -> bool:
    """Kamal's `builder.remote?`: some arch is built on the remote builder."""
    if not builder.remote:
        return False
    local_arches = (
        [] if builder.local_disabled else [a for a in builder.arch if a == _docker_arch()]
    )
    return any(a not in local_arches for a in builder.arch)


def build_ssh(raw: Mapping[str, Any]) -> Ssh:
    proxy = raw.get("proxy")
    if proxy is not None:
        proxy = ruby_str(proxy)
        proxy = proxy if "@" in proxy else f"root@{proxy}"
    config = raw.get("config")
    port = raw.get("port", 22)
    try:
        port_number = int(ruby_str(port))
    except ValueError:
        port_number = 0
    return Ssh(
        user=ruby_str(raw.get("user", "root")),
        port=port_number,
        proxy=proxy,
        proxy_command=_opt_str(raw.get("proxy_command")),
        log_level=ruby_str(raw.get("log_level", "fatal")),
        keys_only=raw.get("keys_only"),
        keys=tuple(ruby_str(k) for k in raw["keys"]) if raw.get("keys") is not None else None,
        key_data=tuple(ruby_str(k) for k in raw["key_data"])
        if raw.get("key_data") is not None
        else None,
        config=tuple(config) if isinstance(config, list) else config,
    )


def build_boot(raw: Mapping[str, Any], *, host_count: int, locate: Locator) -> Boot:
    """`boot`: `limit` is an integer, or a percentage of all hosts (at least one)."""
    limit = raw.get("limit")
    resolved: int | None = None
    if limit is not None:
        text = ruby_str(limit).strip()
        percent = re.fullmatch(r"(\d+)(?:\.\d*)?%", text)
        if percent:
            resolved = max(host_count * int(percent.group(1)) // 100, 1)
        elif re.fullmatch(r"\d+", text) and not isinstance(limit, bool):
            resolved = int(text)
        else:
            # Kamal 2.11 accepts any string here and fails when it deploys.
            raise _error(
                locate, ("boot", "limit"), "should be an integer or a percentage such as 25%"
            )
    return Boot(
        limit=limit,
        wait=raw.get("wait"),
        parallel_roles=bool(raw.get("parallel_roles", False)),
        resolved_limit=resolved,
    )


# --------------------------------------------------------------------------- roles


@dataclass(frozen=True)
class Globals:
    """The root-level settings a role is merged over."""

    service: str
    destination: str | None
    servers: Any
    primary_role_name: str
    env: Env
    env_tags: dict[str, Env]
    logging: Logging
    proxy_raw: dict[str, Any]
    labels: dict[str, str]
    asset_path: str | None
    drain_timeout: int
    proxies: dict[str, dict[str, Any]] = field(default_factory=dict)


def resolve_role(globals_: Globals, name: str) -> Role:
    """Build role `name` with every role-level setting merged over the global one.

    - env: root env, then the role's env, then the env of each tag of the host, in tag order;
    - logging: the role's logging deep-merged over the root logging;
    - proxy: for the primary role on unless `proxy: false`; for other roles off unless `true`
      (root proxy) or a hash (deep-merged over the root proxy);
    - labels: root labels, then the role's; asset_path: the role's, else the root's.
    """
    servers = globals_.servers
    own: dict[str, Any] = {}
    if isinstance(servers, list):
        entries: Any = servers
    elif isinstance(servers[name], list):
        entries = servers[name]
    else:
        own = servers[name]
        entries = own.get("hosts") or []
    host_tags = _tagged_hosts(entries)

    own_env = build_env(own.get("env") or {})
    envs = {}
    for host, tags in host_tags.items():
        env = globals_.env.merge(own_env)
        for tag in tags:
            if tag in globals_.env_tags:
                env = env.merge(globals_.env_tags[tag])
        envs[host] = env

    primary = name == globals_.primary_role_name
    proxy_spec = own.get("proxy")
    running = proxy_spec is not False if primary else bool(proxy_spec)
    proxy = None
    if running:
        role_proxy = proxy_spec if isinstance(proxy_spec, dict) else {}
        merged = deep_merge(globals_.proxy_raw, role_proxy)
        globals_.proxies[name] = merged
        proxy = build_proxy(merged, role_name=name)

    raw_asset_path = _or(own.get("asset_path"), globals_.asset_path)
    asset_path = asset_options = None
    if present(raw_asset_path):
        asset_path, _, options = ruby_str(raw_asset_path).partition(":")
        asset_options = options or None

    return Role(
        name=name,
        service=globals_.service,
        destination=globals_.destination,
        primary=primary,
        host_tags=host_tags,
        cmd=_opt_str(own.get("cmd")),
        options=_options(own.get("options")),
        custom_labels={**globals_.labels, **_strings(own.get("labels"))},
        logging=globals_.logging.merge(build_logging(own.get("logging"))),
        proxy=proxy,
        envs=envs,
        asset_path=asset_path,
        asset_path_options=asset_options,
        drain_timeout=globals_.drain_timeout,
    )


# --------------------------------------------------------------------------- accessories


def _path_entries(
    raw: Any, *, service_name: str, root: Path, files: bool
) -> tuple[AccessoryPath, ...]:
    entries = []
    for item in raw or []:
        if isinstance(item, dict):
            local, remote = ruby_str(item.get("local")), ruby_str(item.get("remote"))
            mode = _opt_str(_or(item.get("mode"), "755" if files else None))
            owner, options = _opt_str(item.get("owner")), _opt_str(item.get("options"))
        else:
            parts = ruby_str(item).split(":", 2)
            local = parts[0]
            remote = parts[1] if len(parts) > 1 else ""
            options = parts[2] if len(parts) > 2 else None
            mode, owner = ("755" if files else None), None
        if files:
            host_path = service_name + remote
            entries.append(
                AccessoryPath(
                    local=os.path.normpath(root / local),
                    remote=remote,
                    host_path=host_path,
                    volume_host_path=host_path,
                    mode=mode,
                    owner=owner,
                    options=options,
                )
            )
        else:
            absolute = PurePosixPath(local).is_absolute()
            entries.append(
                AccessoryPath(
                    local=local,
                    remote=remote,
                    host_path=local if absolute else f"$PWD/{service_name}/{local}",
                    volume_host_path=local if absolute else f"{service_name}/{local}",
                    mode=mode,
                    owner=owner,
                    options=options,
                )
            )
    return tuple(entries)


def _hosts_with_tag(servers: Any, tag: str) -> list[str]:
    if not isinstance(servers, dict):
        return []
    hosts = []
    for spec in servers.values():
        for entry in spec if isinstance(spec, list) else []:
            if isinstance(entry, dict):
                host, tags = next(iter(entry.items()))
                if tag in (tags if isinstance(tags, list) else [tags]):
                    hosts.append(str(host))
    return hosts


def build_accessory(
    name: str, raw: dict[str, Any], *, config: dict[str, Any], roles: dict[str, Role], root: Path
) -> Accessory:
    service_name = ruby_str(_or(raw.get("service"), f"{config['service']}-{name}"))
    registry = build_registry(raw["registry"]) if present(raw.get("registry")) else None
    image = "/".join(
        p for p in ((registry.server if registry else None), ruby_str(raw["image"])) if p
    )
    servers = config.get("servers")
    hosts: list[str] = []
    if "host" in raw:
        hosts = [ruby_str(raw["host"])]
    elif "hosts" in raw:
        hosts = list(_tagged_hosts(raw["hosts"]))
    elif "role" in raw:
        hosts = roles[ruby_str(raw["role"])].hosts
    elif "roles" in raw:
        hosts = [h for r in raw["roles"] for h in roles[ruby_str(r)].hosts]
    elif "tag" in raw:
        hosts = _hosts_with_tag(servers, ruby_str(raw["tag"]))
    elif "tags" in raw:
        hosts = [h for t in raw["tags"] for h in _hosts_with_tag(servers, ruby_str(t))]
    port = raw.get("port")
    port_str = None
    if port is not None:
        port_str = ruby_str(port)
        port_str = port_str if ":" in port_str else f"{port_str}:{port_str}"
    return Accessory(
        name=name,
        service_name=service_name,
        image=image,
        registry=registry,
        hosts=tuple(hosts),
        cmd=_opt_str(raw.get("cmd")),
        port=port_str,
        custom_labels=_strings(raw.get("labels")),
        options=_options(raw.get("options")),
        env=build_env(raw.get("env") or {}),
        files=_path_entries(raw.get("files"), service_name=service_name, root=root, files=True),
        directories=_path_entries(
            raw.get("directories"), service_name=service_name, root=root, files=False
        ),
        volumes=tuple(ruby_str(x) for x in raw.get("volumes") or ()),
        network=ruby_str(_or(raw.get("network"), "kamal")),
        proxy=build_proxy(raw["proxy"]) if present(raw.get("proxy")) else None,
    )


# --------------------------------------------------------------------------- version


def git_version(root: Path, *, git_clone: bool) -> tuple[str | None, str | None]:
    """Kamal's version from git: HEAD, plus `_uncommitted_<random>` for a dirty tree."""

    def git(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=False)

    try:
        if git("rev-parse").returncode != 0:
            return None, f"Can't use commit hash as version, no git repository found in {root}"
        revision = git("rev-parse", "HEAD").stdout.strip()
        dirty = git("status", "--porcelain").stdout.strip()
    except OSError:
        return None, f"Can't use commit hash as version, git is not available (in {root})"
    if dirty and not git_clone:
        revision += f"_uncommitted_{os.urandom(8).hex()}"
    return revision, None


def _version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", version)[:4])


# --------------------------------------------------------------------------- load_config


def destination_file(config_file: Path, destination: str) -> Path:
    """`config/deploy.yml` -> `config/deploy.<destination>.yml` (Kamal's `sub_ext`)."""
    return (
        config_file.with_name(f"{config_file.stem}.{destination}.yml")
        if config_file.suffix
        else config_file.with_name(f"{config_file.name}.{destination}.yml")
    )


def load_raw(
    path: Path, destination: str | None, *, root: Path, env: Mapping[str, str]
) -> tuple[dict[str, Any], Locator]:
    """The merged raw document (ERB rendered, YAML parsed, destination merged) and its locator."""
    files = [path] + ([destination_file(path, destination)] if destination else [])
    documents = [load_document(f, cwd=root, env=env) for f in files]
    locator = Locator(documents, root)
    merged: dict[str, Any] = {}
    for doc in documents:
        if not isinstance(doc.data, dict):
            file, _ = locator.display(doc.file), None
            raise ConfigValidationError(
                "should be a hash (a YAML mapping of configuration keys)", file=file, line=1
            )
        merged = deep_merge(merged, doc.data)
    return merged, locator


def load_config(
    path: str | Path | None = None,
    destination: str | None = None,
    *,
    root: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    version: str | None = None,
) -> Config:
    """Load, validate and resolve the configuration. Raises `ConfigError` (never a traceback)."""
    root_dir = Path(root) if root is not None else Path.cwd()
    config_file = Path(path) if path is not None else Path(DEFAULT_CONFIG_FILE)
    if not config_file.is_absolute():
        config_file = root_dir / config_file
    environ = dict(os.environ if env is None else env)
    if destination is not None:
        environ["KAMAL_DESTINATION"] = destination
    else:
        environ.pop("KAMAL_DESTINATION", None)

    raw, locate = load_raw(config_file, destination, root=root_dir, env=environ)
    return build_config(
        raw,
        locate,
        config_file=config_file,
        root=root_dir,
        destination=destination,
        declared_version=version or environ.get("VERSION") or None,
    )


def build_config(
    raw: dict[str, Any],
    locate: Locator,
    *,
    config_file: Path,
    root: Path,
    destination: str | None,
    declared_version: str | None,
) -> Config:
    v.validate_root(raw, locate)

    # Servers and roles (sorted by name, as Kamal keeps them).
    servers = raw.get("servers")
    v.validate_servers(servers, locate)
    role_names = ["web"] if isinstance(servers, list) else sorted(servers or {})
    for name in role_names:
        if isinstance(servers, dict):
            role_raw = servers[name]
            v.validate_role(role_raw, name, locate)
            if isinstance(role_raw, dict):
                v.validate_env(role_raw.get("env", {}), ("servers", name, "env"), locate)
                v.validate_logging(
                    role_raw.get("logging", {}), ("servers", name, "logging"), locate
                )
                proxy_spec = role_raw.get("proxy")
                primary = name == ruby_str(_or(raw.get("primary_role"), "web"))
                running = proxy_spec is not False if primary else bool(proxy_spec)
                if running:
                    role_proxy = {} if proxy_spec is True or proxy_spec is None else proxy_spec
                    v.validate_proxy(role_proxy, ("servers", name, "proxy"), locate)

    v.validate_registry(raw.get("registry") or {}, ("registry",), locate)
    registry = build_registry(raw.get("registry") or {})

    accessories_raw: dict[str, Any] = raw.get("accessories") or {}
    role_hosts_known = set(role_names)
    for name, acc in accessories_raw.items():
        v.validate_accessory(acc, name, locate)
        context = ("accessories", name)
        if not present(acc.get("image")):
            # Kamal 2.11 only notices this when it runs `docker run` without an image.
            raise _error(locate, context, "image is required (e.g. image: mysql:8.0)")
        if acc.get("roles"):
            missing = [r for r in acc["roles"] if r not in role_hosts_known]
            if missing:
                raise _error(locate, context, f"unknown roles {', '.join(map(str, missing))}")
        elif acc.get("role") and acc["role"] not in role_hosts_known:
            raise _error(locate, context, f"unknown role {acc['role']}")
        v.validate_env(acc.get("env", {}), (*context, "env"), locate)
        if present(acc.get("proxy")):
            v.validate_proxy(acc["proxy"], (*context, "proxy"), locate)
        if present(acc.get("registry")):
            v.validate_registry(acc["registry"], (*context, "registry"), locate)

    aliases_raw: dict[str, Any] = raw.get("aliases") or {}
    for name, command in aliases_raw.items():
        v.validate_alias(command, str(name), locate)

    v.validate_boot(raw.get("boot") or {}, locate)
    v.validate_builder(raw.get("builder") or {}, locate)
    v.validate_env(raw.get("env") or {}, ("env",), locate)
    v.validate_logging(raw.get("logging") or {}, ("logging",), locate)
    root_proxy = raw.get("proxy")
    v.validate_proxy({} if root_proxy is None else root_proxy, ("proxy",), locate)
    v.validate_ssh(raw.get("ssh") or {}, locate)
    v.validate_sshkit(raw.get("sshkit") or {}, locate)

    # Cross-section checks, in Kamal's order.
    if raw.get("require_destination") and destination is None:
        raise _plain_error(locate, "You must specify a destination", where=("require_destination",))

    for key in ("service", "registry"):
        if not present(raw.get(key)):
            raise _plain_error(locate, f"Missing required configuration for {key}")
    image = raw.get("image") if present(raw.get("image")) else None
    if image is None and registry.local:
        image = raw.get("service")
    if not present(image):
        raise _plain_error(locate, "Missing required configuration for image")

    env_raw = raw.get("env") or {}
    root_env = build_env(env_raw)
    env_tags = {
        str(tag): build_env(tag_raw) for tag, tag_raw in (env_raw.get("tags") or {}).items()
    }
    primary_role_name = ruby_str(_or(raw.get("primary_role"), "web"))
    globals_ = Globals(
        service=ruby_str(raw.get("service")),
        destination=destination,
        servers=servers,
        primary_role_name=primary_role_name,
        env=root_env,
        env_tags=env_tags,
        logging=build_logging(raw.get("logging")),
        proxy_raw=root_proxy if isinstance(root_proxy, dict) else {},
        labels=_strings(raw.get("labels")),
        asset_path=_opt_str(raw.get("asset_path")),
        drain_timeout=_or(raw.get("drain_timeout"), 30),
    )
    roles = {name: resolve_role(globals_, name) for name in role_names}

    if servers is None:
        if not present(accessories_raw):
            raise _plain_error(locate, "No servers or accessories specified")
    else:
        primary = roles.get(primary_role_name)
        if primary is None:
            raise _plain_error(
                locate,
                f"The primary_role {primary_role_name} isn't defined",
                where=("primary_role",) if "primary_role" in raw else ("servers",),
            )
        if not primary.hosts:
            raise _plain_error(
                locate,
                f"No servers specified for the {primary.name} primary_role",
                where=("servers", primary.name) if isinstance(servers, dict) else ("servers",),
            )
        if not raw.get("allow_empty_roles"):
            for role in roles.values():
                if not role.hosts:
                    raise _plain_error(
                        locate,
                        f"No servers specified for the {role.name} role. "
                        "You can ignore this with allow_empty_roles: true",
                        where=("servers", role.name),
                    )

    minimum = raw.get("minimum_version")
    if minimum is not None and _version_tuple(ruby_str(minimum)) > _version_tuple(KAMAL_VERSION):
        raise _plain_error(
            locate,
            f"Current version is {KAMAL_VERSION}, minimum required is {ruby_str(minimum)}",
            where=("minimum_version",),
        )
    retain = _or(raw.get("retain_containers"), 5)
    if retain < 1:
        raise _plain_error(locate, "Must retain at least 1 container", where=("retain_containers",))
    if not re.fullmatch(r"[a-z0-9_-]+", ruby_str(raw.get("service")), re.I) or not isinstance(
        raw.get("service"), str
    ):
        raise _plain_error(
            locate,
            "Service name can only include alphanumeric characters, hyphens, and underscores",
            where=("service",),
        )
    hooks_path = ruby_str(_or(raw.get("hooks_path"), ".kamal/hooks"))
    old_hooks = [
        h for h in ("pre-traefik-reboot", "post-traefik-reboot") if (root / hooks_path / h).exists()
    ]
    if old_hooks:
        raise _plain_error(
            locate,
            f"Found {', '.join(old_hooks)}, these should be renamed to (pre|post)-proxy-reboot",
        )

    # Merged role proxies are validated again (Kamal validates the merge under `proxy`).
    for name, role in roles.items():
        if role.running_proxy:
            v.validate_proxy(globals_.proxies[name], ("proxy",), locate)
        if (
            role.ssl
            and role.proxy
            and len(role.hosts) > 1
            and not role.proxy.custom_ssl_certificate
        ):
            raise _plain_error(
                locate,
                "SSL is only supported on a single server unless you provide custom "
                f"certificates, found {len(role.hosts)} servers for role {name}",
                where=("servers", name),
            )
    ssl_hosts = [h for r in roles.values() if r.ssl and r.proxy for h in r.proxy.hosts]
    duplicates = [h for h in dict.fromkeys(ssl_hosts) if ssl_hosts.count(h) > 1]
    if duplicates:
        raise _plain_error(
            locate, f"Different roles can't share the same host for SSL: {', '.join(duplicates)}"
        )

    builder = build_builder(raw.get("builder") or {}, image=ruby_str(image))
    if (
        registry.local
        and _builder_remote(builder)
        and urlparse(builder.remote or "").scheme != "ssh"
    ):
        raise _plain_error(
            locate,
            "Local registry with remote builder requires an SSH URL (e.g., ssh://user@host)",
            where=("builder", "remote"),
        )

    accessories = tuple(
        build_accessory(str(name), acc, config=raw, roles=roles, root=root)
        for name, acc in accessories_raw.items()
    )
    all_hosts = list(
        dict.fromkeys(
            [h for r in roles.values() for h in r.hosts] + [h for a in accessories for h in a.hosts]
        )
    )
    for host in all_hosts:
        runs = [r.proxy.run for r in roles.values() if host in r.host_tags and r.proxy]
        runs += [a.proxy.run for a in accessories if host in a.hosts and a.proxy]
        # Kamal compares its Proxy::Run objects by identity, so two users of the proxy on one
        # host that both set `run` conflict even when the settings are equal. We do the same.
        if len([run for run in runs if run is not None]) > 1:
            raise _plain_error(locate, f"Conflicting proxy run configurations for host {host}")

    hooks_output = raw.get("hooks_output")
    levels = ("quiet", "verbose")
    if isinstance(hooks_output, dict):
        for hook, level in hooks_output.items():
            if ruby_str(level).lstrip(":") not in levels:
                raise _plain_error(
                    locate,
                    f"Invalid hooks_output '{ruby_str(level).lstrip(':')}' for hook '{hook}', "
                    "must be one of: quiet, verbose",
                    where=("hooks_output", hook),
                )
    elif hooks_output is not None and ruby_str(hooks_output).lstrip(":") not in levels:
        raise _plain_error(
            locate,
            f"Invalid hooks_output '{ruby_str(hooks_output).lstrip(':')}', "
            "must be one of: quiet, verbose",
            where=("hooks_output",),
        )

    if declared_version is None:
        git_clone = builder.context is None
        declared_version, version_error = git_version(root, git_clone=git_clone)
    else:
        version_error = None

    ssh = build_ssh(raw.get("ssh") or {})
    sshkit_raw = raw.get("sshkit") or {}
    return Config(
        config_file=config_file,
        root=root,
        destination=destination,
        service=ruby_str(raw["service"]),
        image=ruby_str(image),
        registry=registry,
        roles=tuple(roles.values()),
        accessories=accessories,
        aliases={str(k): ruby_str(val) for k, val in aliases_raw.items()},
        env=root_env,
        env_tags=env_tags,
        labels=_strings(raw.get("labels")),
        volumes=tuple(ruby_str(x) for x in raw.get("volumes") or ()),
        logging=build_logging(raw.get("logging")),
        proxy=build_proxy(globals_.proxy_raw),
        builder=builder,
        boot=build_boot(raw.get("boot") or {}, host_count=len(all_hosts), locate=locate),
        ssh=ssh,
        sshkit=Sshkit(
            max_concurrent_starts=sshkit_raw.get("max_concurrent_starts", 30),
            pool_idle_timeout=sshkit_raw.get("pool_idle_timeout", 900),
            dns_retries=sshkit_raw.get("dns_retries", 3),
        ),
        asset_path=_opt_str(raw.get("asset_path")),
        hooks_path=hooks_path,
        hooks_output=(
            {str(k): ruby_str(val).lstrip(":") for k, val in hooks_output.items()}
            if isinstance(hooks_output, dict)
            else (ruby_str(hooks_output).lstrip(":") if hooks_output is not None else None)
        ),
        secrets_path=ruby_str(_or(raw.get("secrets_path"), ".kamal/secrets")),
        error_pages_path=_opt_str(raw.get("error_pages_path")),
        require_destination=bool(raw.get("require_destination")),
        primary_role_name=primary_role_name,
        allow_empty_roles=bool(raw.get("allow_empty_roles")),
        retain_containers=retain,
        minimum_version=_opt_str(minimum),
        readiness_delay=_or(raw.get("readiness_delay"), 7),
        deploy_timeout=_or(raw.get("deploy_timeout"), 30),
        drain_timeout=_or(raw.get("drain_timeout"), 30),
        declared_version=declared_version,
        version_error=version_error,
        raw=raw,
    )


__all__ = ["ConfigError", "Globals", "load_config", "resolve_role"]
