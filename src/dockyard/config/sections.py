"""Building the frozen models from validated raw sections, and `resolve_role`.

Values are kept as Kamal reads them (Ruby's `||` defaults, `to_s` of numbers and booleans);
`resolve_role` is the one place where a role's settings are merged over the global ones.
"""

from __future__ import annotations

import os
import platform
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from ._ruby import deep_merge, present, ruby_str
from .errors import Locator, error_at
from .models import (
    Accessory,
    AccessoryPath,
    Boot,
    Builder,
    BuilderCache,
    BuilderPack,
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
)
from .sizes import parse_size

# --------------------------------------------------------------------------- small converters


def ruby_or(value: Any, default: Any) -> Any:
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


def strings(raw: Any) -> dict[str, str]:
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
    return Env(clear=strings(clear), secrets=secrets)


def build_logging(raw: Mapping[str, Any] | None) -> Logging:
    raw = raw or {}
    driver = raw.get("driver")
    return Logging(
        driver=ruby_str(driver) if driver is not None else None,
        options=strings(raw.get("options")),
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


def opt_str(value: Any) -> str | None:
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
    auth = raw.get("basic_auth") or {}
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
            path=opt_str(health.get("path")),
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
            request_headers=tuple(ruby_str(h) for h in logging.get("request_headers") or ())
            or ProxyLogging().request_headers,
            response_headers=(
                tuple(ruby_str(h) for h in logging["response_headers"])
                if logging.get("response_headers")
                else None
            ),
        ),
        run=_build_proxy_run(run) if run and present(run) else None,
        basic_auth_user=opt_str(auth.get("user")),
        basic_auth_password_hash=opt_str(auth.get("password_hash")),
        allow_ips=tuple(ruby_str(ip).strip() for ip in raw.get("allow_ips") or ()),
        client_ip_header=opt_str(raw.get("client_ip_header")),
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
        log_max_size=opt_str(raw.get("log_max_size", defaults.log_max_size)),
        publish=raw.get("publish", True),
        bind_ips=tuple(ruby_str(ip) for ip in bind_ips) if bind_ips is not None else None,
        registry=opt_str(raw.get("registry")),
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
        remote=opt_str(raw.get("remote")),
        local=raw.get("local"),
        pack=BuilderPack(
            builder=opt_str(pack.get("builder")),
            buildpacks=tuple(ruby_str(b) for b in pack.get("buildpacks") or ()),
        )
        if pack
        else None,
        cache=BuilderCache(
            type=opt_str(cache.get("type")),
            options=opt_str(cache.get("options")),
            image=opt_str(cache.get("image")),
        )
        if cache
        else None,
        context=opt_str(raw.get("context")),
        dockerfile=ruby_str(ruby_or(raw.get("dockerfile"), "Dockerfile")),
        target=opt_str(raw.get("target")),
        args=strings(raw.get("args")),
        secrets=tuple(ruby_str(s) for s in raw.get("secrets") or ()),
        ssh=opt_str(raw.get("ssh")),
        driver=driver,
        provenance=provenance if isinstance(provenance, bool) else opt_str(provenance),
        sbom=raw.get("sbom"),
        cache_image=ruby_str(ruby_or((cache or {}).get("image"), f"{image}-build-cache")),
    )


def builder_remote(builder: Builder) -> bool:
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
        proxy_command=opt_str(raw.get("proxy_command")),
        log_level=ruby_str(raw.get("log_level", "fatal")),
        keys_only=raw.get("keys_only"),
        keys=tuple(ruby_str(k) for k in raw["keys"]) if raw.get("keys") is not None else None,
        key_data=tuple(ruby_str(k) for k in raw["key_data"])
        if raw.get("key_data") is not None
        else None,
        config=tuple(ruby_str(c) for c in config) if isinstance(config, list) else config,
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
            raise error_at(
                locate, ("boot", "limit"), "should be an integer or a percentage such as 25%"
            )
    stop_roles = raw.get("stop_roles") or ()
    return Boot(
        limit=limit,
        wait=raw.get("wait"),
        parallel_roles=bool(raw.get("parallel_roles", False)),
        resolved_limit=resolved,
        strategy="swap" if str(raw.get("strategy", "parallel")) == "swap" else "parallel",
        stop_roles=tuple(str(r) for r in stop_roles),
        memory_check=bool(raw.get("memory_check", True)),
        memory_needed=parse_size(raw.get("memory_needed")),
        memory_margin=parse_size(raw.get("memory_margin")),
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


def _role_settings(globals_: Globals, name: str) -> tuple[dict[str, Any], Any]:
    """A role's own settings (empty for a plain host list) and its host entries."""
    servers = globals_.servers
    if isinstance(servers, list):
        return {}, servers
    if isinstance(servers[name], list):
        return {}, servers[name]
    own: dict[str, Any] = servers[name]
    return own, own.get("hosts") or []


def role_proxy_settings(globals_: Globals, name: str) -> dict[str, Any] | None:
    """The role's proxy settings merged over the root's, or `None` if it runs without the proxy.

    The primary role runs behind the proxy unless `proxy: false`; other roles only with
    `proxy: true` (the root settings) or a hash (deep-merged over the root settings).
    """
    own, _ = _role_settings(globals_, name)
    spec = own.get("proxy")
    primary = name == globals_.primary_role_name
    if not (spec is not False if primary else bool(spec)):
        return None
    return deep_merge(globals_.proxy_raw, spec if isinstance(spec, dict) else {})


def resolve_role(globals_: Globals, name: str) -> Role:
    """Build role `name` with every role-level setting merged over the global one.

    - env: root env, then the role's env, then the env of each tag of the host, in tag order;
    - logging: the role's logging deep-merged over the root logging;
    - proxy: for the primary role on unless `proxy: false`; for other roles off unless `true`
      (root proxy) or a hash (deep-merged over the root proxy);
    - labels: root labels, then the role's; asset_path: the role's, else the root's.
    """
    own, entries = _role_settings(globals_, name)
    host_tags = _tagged_hosts(entries)

    own_env = build_env(own.get("env") or {})
    envs = {}
    for host, tags in host_tags.items():
        env = globals_.env.merge(own_env)
        for tag in tags:
            if tag in globals_.env_tags:
                env = env.merge(globals_.env_tags[tag])
        envs[host] = env

    proxy_settings = role_proxy_settings(globals_, name)
    proxy = build_proxy(proxy_settings, role_name=name) if proxy_settings is not None else None

    raw_asset_path = ruby_or(own.get("asset_path"), globals_.asset_path)
    asset_path = asset_options = None
    if present(raw_asset_path):
        asset_path, _, options = ruby_str(raw_asset_path).partition(":")
        asset_options = options or None

    return Role(
        name=name,
        service=globals_.service,
        destination=globals_.destination,
        primary=name == globals_.primary_role_name,
        host_tags=host_tags,
        cmd=opt_str(own.get("cmd")),
        options=_options(own.get("options")),
        custom_labels={**globals_.labels, **strings(own.get("labels"))},
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
            mode = opt_str(ruby_or(item.get("mode"), "755" if files else None))
            owner, options = opt_str(item.get("owner")), opt_str(item.get("options"))
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
    service_name = ruby_str(ruby_or(raw.get("service"), f"{config['service']}-{name}"))
    registry = build_registry(raw["registry"]) if present(raw.get("registry")) else None
    image = "/".join(
        p for p in ((registry.server if registry else None), ruby_str(raw.get("image"))) if p
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
        cmd=opt_str(raw.get("cmd")),
        port=port_str,
        custom_labels=strings(raw.get("labels")),
        options=_options(raw.get("options")),
        env=build_env(raw.get("env") or {}),
        files=_path_entries(raw.get("files"), service_name=service_name, root=root, files=True),
        directories=_path_entries(
            raw.get("directories"), service_name=service_name, root=root, files=False
        ),
        volumes=tuple(ruby_str(x) for x in raw.get("volumes") or ()),
        network=ruby_str(ruby_or(raw.get("network"), "kamal")),
        proxy=build_proxy(raw["proxy"]) if present(raw.get("proxy")) else None,
    )
