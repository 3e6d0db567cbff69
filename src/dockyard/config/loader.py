"""Load deploy.yml (+ destination file), validate it as Kamal 2.11 does, build frozen models.

The order of checks follows Kamal's, so that a config with several mistakes reports the same
first one. The models are built by `dockyard.config.sections` (`resolve_role` merges a role's
settings over the globals).
"""

from __future__ import annotations

import copy
import os
import re
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from dockyard.errors import ConfigError

from . import _validate as v
from ._ruby import deep_merge, present, ruby_str
from ._source import load_document
from .errors import ConfigValidationError, Locator, error_at, plain_error
from .legacy import upgrade
from .models import Accessory, Config, Role, Sshkit
from .sections import (
    Globals,
    build_accessory,
    build_boot,
    build_builder,
    build_env,
    build_logging,
    build_proxy,
    build_registry,
    build_ssh,
    builder_remote,
    opt_str,
    resolve_role,
    role_proxy_settings,
    ruby_or,
    strings,
)

#: The Kamal version whose behaviour (and `minimum_version` checks) Dockyard follows.
KAMAL_VERSION = "2.11.0"
DEFAULT_CONFIG_FILE = "config/deploy.yml"


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
) -> tuple[dict[str, Any], Locator, list[str]]:
    """The merged raw document (ERB rendered, YAML parsed, Kamal 1 forms rewritten in each file,
    destination merged), its locator, and one warning per Kamal 1 form read.

    The Kamal 1 forms are rewritten file by file, before the merge, exactly as
    `dockyard config --migrate` rewrites the files: loading the old files and loading the
    migrated ones give the same configuration.
    """
    files = [path] + ([destination_file(path, destination)] if destination else [])
    documents = [load_document(f, cwd=root, env=env) for f in files]
    locator = Locator(documents, root)
    warnings: list[str] = []
    merged: dict[str, Any] = {}
    for doc in documents:
        if not isinstance(doc.data, dict):
            file, _ = locator.display(doc.file), None
            raise ConfigValidationError(
                "should be a hash (a YAML mapping of configuration keys)", file=file, line=1
            )
        single = Locator([doc], root)

        def note(key_path: tuple[str | int, ...], message: str, at: Locator = single) -> None:
            file, line = at(key_path)
            warnings.append(f"{file}{f':{line}' if line else ''}: {message}")

        def refuse(
            key_path: tuple[str | int, ...], problem: str, at: Locator = single
        ) -> Exception:
            return error_at(at, key_path, problem)

        data = copy.deepcopy(doc.data)
        upgrade(data, note, refuse)
        merged = deep_merge(merged, data)
    return merged, locator, warnings


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

    raw, locate, warnings = load_raw(config_file, destination, root=root_dir, env=environ)
    return build_config(
        raw,
        locate,
        warnings=warnings,
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
    warnings: Sequence[str] = (),
) -> Config:
    """Validate the merged document (in Kamal's order) and build the `Config`."""
    role_names = validate_sections(raw, locate)
    registry = build_registry(raw.get("registry") or {})
    image = _check_required_keys(raw, locate, destination, local_registry=registry.local)

    env_raw = raw.get("env") or {}
    root_proxy = raw.get("proxy")
    globals_ = Globals(
        service=ruby_str(raw.get("service")),
        destination=destination,
        servers=raw.get("servers"),
        primary_role_name=ruby_str(ruby_or(raw.get("primary_role"), "web")),
        env=build_env(env_raw),
        env_tags={str(t): build_env(e) for t, e in (env_raw.get("tags") or {}).items()},
        logging=build_logging(raw.get("logging")),
        proxy_raw=root_proxy if isinstance(root_proxy, dict) else {},
        labels=strings(raw.get("labels")),
        asset_path=opt_str(raw.get("asset_path")),
        drain_timeout=ruby_or(raw.get("drain_timeout"), 30),
    )
    root_volumes = tuple(ruby_str(x) for x in raw.get("volumes") or ())
    roles = {
        name: (role := resolve_role(globals_, name)).model_copy(
            update={"volumes": (*root_volumes, *_option_volumes(role.options))}
        )
        for name in role_names
    }
    _check_roles(raw, locate, roles, globals_.primary_role_name)
    _check_settings(raw, locate, root)
    _check_ssl(locate, roles, globals_)

    builder = build_builder(raw.get("builder") or {}, image=ruby_str(image))
    if (
        registry.local
        and builder_remote(builder)
        and urlparse(builder.remote or "").scheme != "ssh"
    ):
        raise plain_error(
            locate,
            "Local registry with remote builder requires an SSH URL (e.g., ssh://user@host)",
            where=("builder", "remote"),
        )

    accessories = tuple(
        build_accessory(str(name), acc, config=raw, roles=roles, root=root)
        for name, acc in (raw.get("accessories") or {}).items()
    )
    all_hosts = list(
        dict.fromkeys(
            [h for r in roles.values() for h in r.hosts] + [h for a in accessories for h in a.hosts]
        )
    )
    _check_proxy_runs(locate, all_hosts, roles, accessories)
    hooks_output = _hooks_output(raw, locate)
    _check_beyond_kamal(raw, locate)

    version_error = None
    if declared_version is None:
        declared_version, version_error = git_version(root, git_clone=builder.context is None)

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
        aliases={str(k): ruby_str(val) for k, val in (raw.get("aliases") or {}).items()},
        env=globals_.env,
        env_tags=globals_.env_tags,
        labels=globals_.labels,
        volumes=root_volumes,
        logging=globals_.logging,
        proxy=build_proxy(globals_.proxy_raw),
        builder=builder,
        boot=build_boot(raw.get("boot") or {}, host_count=len(all_hosts), locate=locate),
        ssh=build_ssh(raw.get("ssh") or {}),
        sshkit=Sshkit(
            max_concurrent_starts=sshkit_raw.get("max_concurrent_starts", 30),
            pool_idle_timeout=sshkit_raw.get("pool_idle_timeout", 900),
            dns_retries=sshkit_raw.get("dns_retries", 3),
        ),
        asset_path=globals_.asset_path,
        hooks_path=ruby_str(ruby_or(raw.get("hooks_path"), ".kamal/hooks")),
        hooks_output=hooks_output,
        secrets_path=ruby_str(ruby_or(raw.get("secrets_path"), ".kamal/secrets")),
        error_pages_path=opt_str(raw.get("error_pages_path")),
        require_destination=bool(raw.get("require_destination")),
        primary_role_name=globals_.primary_role_name,
        allow_empty_roles=bool(raw.get("allow_empty_roles")),
        retain_containers=ruby_or(raw.get("retain_containers"), 5),
        minimum_version=opt_str(raw.get("minimum_version")),
        readiness_delay=ruby_or(raw.get("readiness_delay"), 7),
        deploy_timeout=ruby_or(raw.get("deploy_timeout"), 30),
        drain_timeout=globals_.drain_timeout,
        declared_version=declared_version,
        version_error=version_error,
        warnings=(*warnings, *_dotenv_warning(raw, root, destination)),
        raw=raw,
    )


def validate_sections(raw: dict[str, Any], locate: Locator) -> list[str]:
    """Each section against its schema, in the order Kamal builds them. Returns the role names."""
    v.validate_root(raw, locate)

    servers = raw.get("servers")
    v.validate_servers(servers, locate)
    role_names = ["web"] if isinstance(servers, list) else sorted(servers or {})
    primary_role_name = ruby_str(ruby_or(raw.get("primary_role"), "web"))
    for name in role_names if isinstance(servers, dict) else []:
        role_raw = servers[name] if isinstance(servers, dict) else None
        v.validate_role(role_raw, name, locate)
        if isinstance(role_raw, dict):
            v.validate_env(role_raw.get("env", {}), ("servers", name, "env"), locate)
            v.validate_logging(role_raw.get("logging", {}), ("servers", name, "logging"), locate)
            # A role's own proxy settings are checked alone first (the merge is checked later).
            proxy_spec = role_raw.get("proxy")
            primary = name == primary_role_name
            if proxy_spec is not False if primary else bool(proxy_spec):
                role_proxy = proxy_spec if isinstance(proxy_spec, dict) else {}
                v.validate_proxy(role_proxy, ("servers", name, "proxy"), locate)

    v.validate_registry(raw.get("registry") or {}, ("registry",), locate)

    for name, acc in (raw.get("accessories") or {}).items():
        v.validate_accessory(acc, name, locate)
        context = ("accessories", name)
        # Compared as the accessory's hosts are looked up (ruby_str), so `role: false` or
        # `role: 1` is an unknown role here rather than a crash later.
        if acc.get("roles"):
            missing = [ruby_str(r) for r in acc["roles"] if ruby_str(r) not in role_names]
            if missing:
                raise error_at(locate, context, f"unknown roles {', '.join(missing)}")
        elif "role" in acc and ruby_str(acc["role"]) not in role_names:
            raise error_at(locate, context, f"unknown role {ruby_str(acc['role'])}")
        v.validate_env(acc.get("env", {}), (*context, "env"), locate)
        if present(acc.get("proxy")):
            v.validate_proxy(acc["proxy"], (*context, "proxy"), locate)
        if present(acc.get("registry")):
            v.validate_registry(acc["registry"], (*context, "registry"), locate)

    for name, command in (raw.get("aliases") or {}).items():
        v.validate_alias(command, str(name), locate)

    v.validate_boot(raw.get("boot") or {}, locate, role_names)
    v.validate_builder(raw.get("builder") or {}, locate)
    v.validate_env(raw.get("env") or {}, ("env",), locate)
    v.validate_logging(raw.get("logging") or {}, ("logging",), locate)
    root_proxy = raw.get("proxy")
    v.validate_proxy({} if root_proxy is None else root_proxy, ("proxy",), locate)
    v.validate_ssh(raw.get("ssh") or {}, locate)
    v.validate_sshkit(raw.get("sshkit") or {}, locate)
    return role_names


def _check_required_keys(
    raw: dict[str, Any], locate: Locator, destination: str | None, *, local_registry: bool
) -> Any:
    """Destination, service, registry and image (which a local registry defaults to service)."""
    if raw.get("require_destination") and destination is None:
        raise plain_error(locate, "You must specify a destination", where=("require_destination",))
    for key in ("service", "registry"):
        if not present(raw.get(key)):
            raise plain_error(locate, f"Missing required configuration for {key}")
    image = raw.get("image") if present(raw.get("image")) else None
    if image is None and local_registry:
        image = raw.get("service")
    if not present(image):
        raise plain_error(locate, "Missing required configuration for image")
    return image


def _check_roles(
    raw: dict[str, Any], locate: Locator, roles: dict[str, Role], primary_role_name: str
) -> None:
    servers = raw.get("servers")
    if servers is None:
        if not present(raw.get("accessories")):
            raise plain_error(locate, "No servers or accessories specified")
        return
    primary = roles.get(primary_role_name)
    if primary is None:
        raise plain_error(
            locate,
            f"The primary_role {primary_role_name} isn't defined",
            where=("primary_role",) if "primary_role" in raw else ("servers",),
        )
    if not primary.hosts:
        raise plain_error(
            locate,
            f"No servers specified for the {primary.name} primary_role",
            where=("servers", primary.name) if isinstance(servers, dict) else ("servers",),
        )
    if not raw.get("allow_empty_roles"):
        for role in roles.values():
            if not role.hosts:
                raise plain_error(
                    locate,
                    f"No servers specified for the {role.name} role. "
                    "You can ignore this with allow_empty_roles: true",
                    where=("servers", role.name),
                )


def _check_settings(raw: dict[str, Any], locate: Locator, root: Path) -> None:
    """minimum_version, retain_containers, the service name, and renamed traefik hooks."""
    minimum = raw.get("minimum_version")
    if minimum is not None and _version_tuple(ruby_str(minimum)) > _version_tuple(KAMAL_VERSION):
        raise plain_error(
            locate,
            f"Current version is {KAMAL_VERSION}, minimum required is {ruby_str(minimum)}",
            where=("minimum_version",),
        )
    if ruby_or(raw.get("retain_containers"), 5) < 1:
        raise plain_error(locate, "Must retain at least 1 container", where=("retain_containers",))
    service = raw.get("service")
    if not isinstance(service, str) or not re.fullmatch(r"[a-z0-9_-]+", service, re.I):
        raise plain_error(
            locate,
            "Service name can only include alphanumeric characters, hyphens, and underscores",
            where=("service",),
        )
    hooks_path = root / ruby_str(ruby_or(raw.get("hooks_path"), ".kamal/hooks"))
    old = [h for h in ("pre-traefik-reboot", "post-traefik-reboot") if (hooks_path / h).exists()]
    if old:
        raise plain_error(
            locate, f"Found {', '.join(old)}, these should be renamed to (pre|post)-proxy-reboot"
        )


def _check_ssl(locate: Locator, roles: dict[str, Role], globals_: Globals) -> None:
    for name, role in roles.items():
        # Kamal validates each role's merged proxy settings again, under `proxy`.
        merged = role_proxy_settings(globals_, name)
        if merged is not None:
            v.validate_proxy(merged, ("proxy",), locate)
        if (
            role.proxy
            and role.ssl
            and len(role.hosts) > 1
            and not role.proxy.custom_ssl_certificate
        ):
            raise plain_error(
                locate,
                "SSL is only supported on a single server unless you provide custom "
                f"certificates, found {len(role.hosts)} servers for role {name}",
                where=("servers", name),
            )
    ssl_hosts = [h for r in roles.values() if r.ssl and r.proxy for h in r.proxy.hosts]
    duplicates = [h for h in dict.fromkeys(ssl_hosts) if ssl_hosts.count(h) > 1]
    if duplicates:
        raise plain_error(
            locate, f"Different roles can't share the same host for SSL: {', '.join(duplicates)}"
        )


def _check_proxy_runs(
    locate: Locator,
    hosts: list[str],
    roles: dict[str, Role],
    accessories: tuple[Accessory, ...],
) -> None:
    for host in hosts:
        runs = [r.proxy.run for r in roles.values() if host in r.host_tags and r.proxy]
        runs += [a.proxy.run for a in accessories if host in a.hosts and a.proxy]
        # Kamal compares its Proxy::Run objects by identity, so two users of the proxy on one
        # host that both set `run` conflict even when the settings are equal. We do the same.
        if len([run for run in runs if run is not None]) > 1:
            raise plain_error(locate, f"Conflicting proxy run configurations for host {host}")


def _check_beyond_kamal(raw: dict[str, Any], locate: Locator) -> None:
    """Mistakes Kamal 2.11 only notices when it deploys; checked after all of Kamal's checks,
    so that a config Kamal rejects gets Kamal's error."""
    for name, acc in (raw.get("accessories") or {}).items():
        if not present(acc.get("image")):
            raise error_at(
                locate, ("accessories", name), "image is required (e.g. image: mysql:8.0)"
            )


def _option_volumes(options: Mapping[str, Any]) -> tuple[str, ...]:
    """A role's `options/volume` (where its own `volumes` are stored): one string or a list."""
    value = options.get("volume")
    if value is None or isinstance(value, bool):
        return ()
    return tuple(ruby_str(v) for v in (value if isinstance(value, (list, tuple)) else [value]))


def _names_secrets(value: Any) -> bool:
    """An `env/secret` list or a registry `password: [NAME]` anywhere in the document."""
    if isinstance(value, dict):
        return any(
            (key in ("secret", "password") and isinstance(item, list) and bool(item))
            or _names_secrets(item)
            for key, item in value.items()
        )
    if isinstance(value, list):
        return any(_names_secrets(item) for item in value)
    return False


def _dotenv_warning(raw: dict[str, Any], root: Path, destination: str | None) -> list[str]:
    """Kamal 1 read secrets from `.env`; Kamal 2 (and Dockyard) only from `.kamal/secrets*`.

    `.env` is not read (it often holds a developer's local settings): when the config names
    secrets, no secrets file exists and a `.env` does, say how to move them.
    """
    secrets_path = root / ruby_str(ruby_or(raw.get("secrets_path"), ".kamal/secrets"))
    candidates = [secrets_path, secrets_path.with_name(f"{secrets_path.name}-common")]
    if destination:
        candidates.append(secrets_path.with_name(f"{secrets_path.name}.{destination}"))
    if any(p.exists() for p in candidates) or not (root / ".env").exists():
        return []
    if not _names_secrets(raw):
        return []
    target = secrets_path.relative_to(root) if secrets_path.is_relative_to(root) else secrets_path
    return [
        f".env: Kamal 1 read secrets from .env, Kamal 2 reads them from {target} (.env is not "
        f"read): move them with `mkdir -p {target.parent} && mv .env {target}` "
        "and keep that file out of git"
    ]


def _hooks_output(raw: dict[str, Any], locate: Locator) -> str | dict[str, str] | None:
    """`quiet` or `verbose` (a `:symbol` in Kamal's docs), for all hooks or per hook."""
    value = raw.get("hooks_output")
    if value is None:
        return None
    levels = ("quiet", "verbose")
    if isinstance(value, dict):
        per_hook = {str(hook): ruby_str(level).lstrip(":") for hook, level in value.items()}
        for hook, level in per_hook.items():
            if level not in levels:
                raise plain_error(
                    locate,
                    f"Invalid hooks_output '{level}' for hook '{hook}', "
                    "must be one of: quiet, verbose",
                    where=("hooks_output", hook),
                )
        return per_hook
    level = ruby_str(value).lstrip(":")
    if level not in levels:
        raise plain_error(
            locate,
            f"Invalid hooks_output '{level}', must be one of: quiet, verbose",
            where=("hooks_output",),
        )
    return level


__all__ = ["ConfigError", "load_config"]
