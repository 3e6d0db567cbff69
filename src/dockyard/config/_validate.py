"""Validation with Kamal 2.11's semantics: each section is checked against an example schema.

Kamal infers types from its annotated example documents: "a string" also accepts numbers and
booleans, unknown keys are errors, and a few keys have special rules (`hosts`, `arch`, `ssl`,
`files`, `directories`, `labels`, `options`, `hooks_output`, ssh `config`). The schema below is
our own table of those keys and types; the error texts and key paths follow Kamal so that users
(and the compatibility tests) see the same key named for the same mistake.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from ._ruby import present
from ._source import KeyPath
from .errors import ConfigValidationError, Locate
from .sizes import parse_size

# Type names, as Kamal words them in "should be ..." messages.
STRING, INTEGER, BOOLEAN, HASH, ARRAY, SYMBOL = (
    "string",
    "integer",
    "boolean",
    "hash",
    "array",
    "symbol",
)

# Key kinds with special rules.
SERVERS = "servers"  # list of hosts, each a string or a one-key hash of tags
TOP_SERVERS = "top_servers"  # the root `servers`: an array or a hash
ARCH = "arch"  # a string or an array of strings
SSH_CONFIG = "ssh_config"  # true/false, a path, or an array of paths
PATHS = "paths"  # accessory files/directories
LABELS = "labels"  # hash of strings
SSL = "ssl"  # boolean or hash
HOOKS_OUTPUT = "hooks_output"
SECTION = "section"  # a hash validated by its own section validator later
PROXY_SECTION = "proxy_section"  # like SECTION, but a boolean passes here

Spec = Any

PROXY_SCHEMA: dict[str, Spec] = {
    "host": STRING,
    "hosts": SERVERS,
    "app_port": INTEGER,
    "ssl": SSL,
    "ssl_redirect": BOOLEAN,
    "forward_headers": BOOLEAN,
    "response_timeout": INTEGER,
    "path_prefix": STRING,
    "path_prefixes": (ARRAY, STRING),
    "strip_path_prefix": BOOLEAN,
    "healthcheck": {"interval": INTEGER, "path": STRING, "timeout": INTEGER},
    "buffering": {
        "requests": BOOLEAN,
        "responses": BOOLEAN,
        "max_request_body": INTEGER,
        "max_response_body": INTEGER,
        "memory": INTEGER,
    },
    "logging": {"request_headers": (ARRAY, STRING), "response_headers": (ARRAY, STRING)},
    # Dockyard-only (dockyard-proxy's access gates); Kamal 2.11 rejects these keys.
    "basic_auth": {"user": STRING, "password_hash": STRING},
    "allow_ips": (ARRAY, STRING),
    "client_ip_header": STRING,
    "run": {
        "http_port": INTEGER,
        "https_port": INTEGER,
        "metrics_port": INTEGER,
        "debug": BOOLEAN,
        "log_max_size": STRING,
        "publish": BOOLEAN,
        "bind_ips": (ARRAY, STRING),
        "registry": STRING,
        "repository": STRING,
        "version": STRING,
        "options": HASH,
    },
}

ROOT_SCHEMA: dict[str, Spec] = {
    "service": STRING,
    "image": STRING,
    "labels": LABELS,
    "volumes": (ARRAY, STRING),
    "registry": SECTION,
    "servers": TOP_SERVERS,
    "env": SECTION,
    "asset_path": STRING,
    "hooks_path": STRING,
    "hooks_output": HOOKS_OUTPUT,
    "secrets_path": STRING,
    "error_pages_path": STRING,
    "require_destination": BOOLEAN,
    "primary_role": STRING,
    "allow_empty_roles": BOOLEAN,
    "retain_containers": INTEGER,
    "minimum_version": STRING,
    "readiness_delay": INTEGER,
    "deploy_timeout": INTEGER,
    "drain_timeout": INTEGER,
    "run_directory": STRING,
    "ssh": SECTION,
    "builder": SECTION,
    "accessories": SECTION,
    "proxy": PROXY_SECTION,
    "sshkit": SECTION,
    "boot": SECTION,
    "logging": SECTION,
    "aliases": SECTION,
}

ROLE_SCHEMA: dict[str, Spec] = {
    "hosts": SERVERS,
    "cmd": STRING,
    "options": HASH,
    "logging": SECTION,
    "proxy": PROXY_SECTION,
    "labels": LABELS,
    "env": SECTION,
    "asset_path": STRING,
}

ACCESSORY_SCHEMA: dict[str, Spec] = {
    "service": STRING,
    "image": STRING,
    "registry": SECTION,
    "host": STRING,
    "hosts": SERVERS,
    "role": STRING,
    "roles": (ARRAY, STRING),
    "tag": STRING,
    "tags": (ARRAY, STRING),
    "cmd": STRING,
    "port": STRING,
    "labels": LABELS,
    "options": HASH,
    "env": SECTION,
    "files": PATHS,
    "directories": PATHS,
    "volumes": (ARRAY, STRING),
    "network": STRING,
    "proxy": PROXY_SECTION,
}

BOOT_SCHEMA: dict[str, Spec] = {
    "limit": STRING,
    "wait": INTEGER,
    "parallel_roles": BOOLEAN,
    # Dockyard-only (memory-safe deploys); Kamal 2.11 rejects these keys.
    "strategy": STRING,
    "stop_roles": (ARRAY, STRING),
    "memory_check": BOOLEAN,
    "memory_needed": STRING,
    "memory_margin": STRING,
}
BOOT_STRATEGIES = ("parallel", "swap")

BUILDER_SCHEMA: dict[str, Spec] = {
    "arch": ARCH,
    "remote": STRING,
    "local": BOOLEAN,
    "pack": {"builder": STRING, "buildpacks": (ARRAY, STRING)},
    "cache": {"type": STRING, "options": STRING, "image": STRING},
    "context": STRING,
    "dockerfile": STRING,
    "target": STRING,
    "args": HASH,
    "secrets": (ARRAY, STRING),
    "ssh": STRING,
    "driver": STRING,
    "provenance": STRING,
    "sbom": BOOLEAN,
}

LOGGING_SCHEMA: dict[str, Spec] = {"driver": STRING, "options": HASH}

REGISTRY_SCHEMA: dict[str, Spec] = {"server": STRING}

SSH_SCHEMA: dict[str, Spec] = {
    "user": STRING,
    "port": STRING,
    "proxy": STRING,
    "proxy_command": STRING,
    "log_level": STRING,
    "keys_only": BOOLEAN,
    "keys": (ARRAY, STRING),
    "key_data": (ARRAY, STRING),
    "config": SSH_CONFIG,
}

SSHKIT_SCHEMA: dict[str, Spec] = {
    "max_concurrent_starts": INTEGER,
    "pool_idle_timeout": INTEGER,
    "dns_retries": INTEGER,
}

ENV_KEYS = ("clear", "secret", "tags")
RESERVED_LABELS = ("destination", "role", "service")
ACCESSORY_PLACEMENT = ("host", "hosts", "role", "roles", "tag", "tags")


def _did_you_mean(unknown: list[Any], known: Iterable[str]) -> str | None:
    """A hint for a misspelt key (`srevers` -> `servers`), if one is close enough."""
    suggestions = []
    for key in unknown:
        close = difflib.get_close_matches(str(key), list(known), n=1, cutoff=0.6)
        if close:
            suggestions.append(f"{key} -> {close[0]}")
    return f"did you mean: {', '.join(suggestions)}?" if suggestions else None


def _type_ok(value: Any, kind: str) -> bool:
    if kind in (STRING, SYMBOL):
        return isinstance(value, (str, int, float, bool))
    if kind == INTEGER:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == BOOLEAN:
        return isinstance(value, bool)
    if kind == HASH:
        return isinstance(value, dict)
    if kind == ARRAY:
        return isinstance(value, list)
    if kind == "nil":
        return value is None
    raise AssertionError(kind)


def _describe(kind: str) -> str:
    return f"an {kind}" if kind in (INTEGER, ARRAY) else f"a {kind}"


class Validator:
    """Walks a section with a context (key path), raising Kamal-worded errors with locations."""

    def __init__(self, locate: Locate, context: KeyPath = ()) -> None:
        self.locate = locate
        self.context: KeyPath = context

    # -- plumbing ---------------------------------------------------------------

    @contextmanager
    def at(self, *parts: str | int) -> Iterator[None]:
        saved = self.context
        self.context = (*saved, *parts)
        try:
            yield
        finally:
            self.context = saved

    def error(
        self, problem: str, *, where: KeyPath | None = None, hint: str | None = None
    ) -> ConfigValidationError:
        file, line = self.locate(where if where is not None else self.context)
        return ConfigValidationError(
            problem, key_path=self.context, file=file, line=line, hint=hint
        )

    def unknown_keys(self, unknown: list[Any], known: Iterable[str]) -> ConfigValidationError:
        word = "key" if len(unknown) == 1 else "keys"
        return self.error(
            f"unknown {word}: {', '.join(map(str, unknown))}",
            where=(*self.context, unknown[0]),
            hint=_did_you_mean(unknown, known),
        )

    def check_type(self, value: Any, *kinds: str) -> None:
        if not any(_type_ok(value, kind) for kind in kinds):
            self.type_error(*kinds)

    def type_error(self, *kinds: str) -> None:
        descriptions = list(dict.fromkeys(_describe(k) for k in kinds))
        raise self.error(f"should be {' or '.join(descriptions)}")

    # -- the generic walk --------------------------------------------------------

    def against(self, config: Any, schema: dict[str, Spec], *, extensions: bool = False) -> None:
        self.check_type(config, HASH)
        unknown = [k for k in config if k not in schema]
        if extensions:
            unknown = [k for k in unknown if not str(k).startswith("x-")]
        if unknown:
            raise self.unknown_keys(unknown, schema)
        for key, value in config.items():
            if str(key).startswith("x-"):
                continue
            with self.at(key):
                self.value(value, schema[key])

    def value(self, value: Any, spec: Spec) -> None:
        if isinstance(spec, dict):
            self.against(value, spec)
        elif isinstance(spec, tuple):
            self.array_of(value, spec[1])
        elif spec == SECTION:
            self.check_type(value, HASH)
        elif spec == PROXY_SECTION:
            if not isinstance(value, bool):
                self.check_type(value, HASH)
        elif spec == TOP_SERVERS:
            self.check_type(value, ARRAY, HASH)
        elif spec == SERVERS:
            self.servers(value)
        elif spec == ARCH:
            try:
                if isinstance(value, list):
                    self.array_of(value, STRING)
                else:
                    self.check_type(value, STRING)
            except ConfigValidationError:
                self.type_error(ARRAY, STRING)
        elif spec == SSH_CONFIG:
            if isinstance(value, list):
                self.array_of(value, STRING)
            elif not isinstance(value, (bool, str)):
                self.type_error(BOOLEAN, BOOLEAN, STRING, ARRAY)
        elif spec == PATHS:
            self.paths(value)
        elif spec == LABELS:
            self.hash_of(value, STRING)
        elif spec == SSL:
            self.check_type(value, BOOLEAN, HASH)
        elif spec == HOOKS_OUTPUT:
            if isinstance(value, dict):
                for hook, level in value.items():
                    with self.at(hook):
                        self.check_type(level, STRING, SYMBOL)
            else:
                self.check_type(value, STRING, SYMBOL)
        else:
            self.check_type(value, spec)

    def array_of(self, value: Any, kind: str) -> None:
        self.check_type(value, ARRAY)
        for index, item in enumerate(value):
            with self.at(index):
                self.check_type(item, kind)

    def hash_of(self, value: Any, kind: str) -> None:
        self.check_type(value, HASH)
        for key, item in value.items():
            with self.at(key):
                self.check_type(item, kind)

    def servers(self, value: Any) -> None:
        self.check_type(value, ARRAY)
        for index, server in enumerate(value):
            with self.at(index):
                self.check_type(server, STRING, HASH)
                if isinstance(server, dict):
                    if len(server) != 1:
                        raise self.error("multiple hosts found")
                    host, tags = next(iter(server.items()))
                    with self.at(host):
                        self.check_type(tags, STRING, ARRAY)
                        if isinstance(tags, list):
                            self.array_of(tags, STRING)

    def paths(self, value: Any) -> None:
        self.check_type(value, ARRAY)
        for index, path in enumerate(value):
            with self.at(index):
                self.check_type(path, STRING, HASH)
                if isinstance(path, dict):
                    for key in ("local", "remote", "mode", "owner", "options"):
                        if key in path:
                            with self.at(key):
                                self.check_type(path[key], STRING)

    def labels(self, labels: Any) -> None:
        if not present(labels):
            return
        with self.at("labels"):
            for key in labels:
                if key in RESERVED_LABELS:
                    with self.at(key):
                        raise self.error(
                            "invalid label. destination, role, and service are reserved labels"
                        )

    def docker_options(self, options: Any) -> None:
        if isinstance(options, dict) and options.get("restart") not in (None, False):
            raise self.error(
                "Cannot set restart policy in docker options, unless-stopped is required",
                where=(*self.context, "options", "restart"),
            )


# --------------------------------------------------------------------------- sections


def validate_root(config: Any, locate: Locate) -> None:
    Validator(locate).against(config, ROOT_SCHEMA, extensions=True)


def validate_servers(config: Any, locate: Locate) -> None:
    v = Validator(locate, ("servers",))
    v.check_type(config, ARRAY, HASH, "nil")
    if isinstance(config, list):
        v.servers(config)


def validate_role(config: Any, name: str, locate: Locate) -> None:
    v = Validator(locate, ("servers", name))
    v.check_type(config, ARRAY, HASH)
    if isinstance(config, list):
        v.servers(config)
    else:
        v.against(config, ROLE_SCHEMA)
        v.labels(config.get("labels"))
        v.docker_options(config.get("options"))


def validate_accessory(config: Any, name: str, locate: Locate) -> None:
    v = Validator(locate, ("accessories", name))
    v.against(config, ACCESSORY_SCHEMA)
    if len([k for k in config if k in ACCESSORY_PLACEMENT]) != 1:
        raise v.error("specify one of `host`, `hosts`, `role`, `roles`, `tag` or `tags`")
    v.labels(config.get("labels"))
    v.docker_options(config.get("options"))


def validate_env(config: Any, context: KeyPath, locate: Locate) -> None:
    v = Validator(locate, context)
    if not isinstance(config, dict):
        v.check_type(config, HASH)
    known = [k for k in config if k in ENV_KEYS]
    if not known:
        v.hash_of(config, STRING)
        return
    unknown = [k for k in config if k not in ENV_KEYS]
    if unknown:
        raise v.unknown_keys(unknown, ENV_KEYS)
    if "clear" in config:
        with v.at("clear"):
            v.hash_of(config["clear"], STRING)
    if "secret" in config:
        with v.at("secret"):
            v.array_of(config["secret"], STRING)
    if "tags" in config:
        if context != ("env",):
            raise v.error("tags are only allowed in the root env", where=(*context, "tags"))
        with v.at("tags"):
            v.check_type(config["tags"], HASH)
            for tag, value in config["tags"].items():
                with v.at(tag):
                    v.check_type(value, HASH)
                    validate_env(value, v.context, locate)


def validate_logging(config: Any, context: KeyPath, locate: Locate) -> None:
    Validator(locate, context).against(config, LOGGING_SCHEMA)


def validate_registry(config: Any, context: KeyPath, locate: Locate) -> None:
    v = Validator(locate, context)
    v.check_type(config, HASH)
    v.against(
        {k: val for k, val in config.items() if k not in ("username", "password")}, REGISTRY_SCHEMA
    )
    server = config.get("server")
    local = isinstance(server, str) and re.search(r"^localhost[:$]", server, re.M) is not None
    for key in ("username", "password"):
        with v.at(key):
            if local:
                continue
            value = config.get(key)
            if not present(value):
                raise v.error("is required", where=context if key not in config else None)
            ok = isinstance(value, str) or (
                isinstance(value, list) and len(value) == 1 and isinstance(value[0], str)
            )
            if not ok:
                raise v.error("should be a string or an array with one string (for secret lookup)")


def validate_proxy(config: Any, context: KeyPath, locate: Locate) -> None:
    if config is None:
        return
    v = Validator(locate, context)
    v.against(config, PROXY_SCHEMA)
    if not present(config.get("host")) and not present(config.get("hosts")) and config.get("ssl"):
        raise v.error("Must set a host to enable automatic SSL")
    if "host" in config and "hosts" in config:
        raise v.error("Specify one of 'host' or 'hosts', not both")
    ssl = config.get("ssl")
    if isinstance(ssl, dict):
        cert, key = present(ssl.get("certificate_pem")), present(ssl.get("private_key_pem"))
        if cert and not key:
            raise v.error(
                "Missing private_key_pem setting (required when certificate_pem is present)"
            )
        if key and not cert:
            raise v.error(
                "Missing certificate_pem setting (required when private_key_pem is present)"
            )
    _validate_proxy_access(v, config)
    run = config.get("run")
    if (
        present(run)
        and run.get("publish") is False
        and any(present(run.get(k)) for k in ("bind_ips", "http_port", "https_port"))
    ):
        raise v.error("Cannot set http_port, https_port or bind_ips when publish is false")


_BCRYPT = re.compile(r"^\$2[aby]\$\d\d\$[./A-Za-z0-9]{53}$")
_HEADER_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")


def _validate_proxy_access(v: Validator, config: Any) -> None:
    """dockyard-proxy's basic auth, IP allowlist and client-IP header (Dockyard-only keys)."""
    import ipaddress

    auth = config.get("basic_auth")
    if auth is not None:
        with v.at("basic_auth"):
            for key in ("user", "password_hash"):
                if not present(auth.get(key)):
                    raise v.error(f"{key} is required with basic_auth")
            if ":" in str(auth["user"]):
                raise v.error("user must not contain ':'", where=(*v.context, "user"))
            if not _BCRYPT.match(str(auth["password_hash"])):
                raise v.error(
                    "password_hash must be a bcrypt hash ($2b$..., 60 characters)",
                    where=(*v.context, "password_hash"),
                    hint="make one with: htpasswd -nbB USER PASSWORD | cut -d: -f2",
                )
    for index, value in enumerate(config.get("allow_ips") or ()):
        try:
            ipaddress.ip_network(str(value).strip(), strict=False)
        except ValueError:
            with v.at("allow_ips", index):
                raise v.error(
                    f"{value} is not an IP address or CIDR (e.g. 203.0.113.0/24, 2001:db8::/32)"
                ) from None
    header = config.get("client_ip_header")
    if header is not None and not _HEADER_NAME.match(str(header)):
        with v.at("client_ip_header"):
            raise v.error(f"{header} is not an HTTP header name (e.g. CF-Connecting-IP)")


def validate_boot(config: Any, locate: Locate, role_names: Iterable[str] | None = None) -> None:
    v = Validator(locate, ("boot",))
    v.against(config, BOOT_SCHEMA)
    strategy = config.get("strategy")
    if strategy is not None and str(strategy) not in BOOT_STRATEGIES:
        raise v.error(
            f"unknown strategy: {strategy} (expected {' or '.join(BOOT_STRATEGIES)})",
            where=("boot", "strategy"),
        )
    for key in ("memory_needed", "memory_margin"):
        value = config.get(key)
        if value is not None and parse_size(value) is None:
            raise v.error(
                f"{key}: {value} is not a memory size (e.g. 512m or 1g)", where=("boot", key)
            )
    stop = config.get("stop_roles")
    if stop and role_names is not None:
        known = set(role_names)
        missing = [r for r in stop if r not in known]
        if missing:
            raise v.error(
                f"stop_roles: unknown roles {', '.join(map(str, missing))}",
                where=("boot", "stop_roles"),
            )


def validate_builder(config: Any, locate: Locate) -> None:
    v = Validator(locate, ("builder",))
    v.against(config, BUILDER_SCHEMA)
    cache = config.get("cache")
    if cache and cache.get("type") and cache["type"] not in ("gha", "registry"):
        raise v.error(f"Invalid cache type: {cache['type']}", where=("builder", "cache", "type"))
    arch = config.get("arch")
    if not present(arch):
        raise v.error("Builder arch not set")
    if config.get("pack") and isinstance(arch, list) and len(arch) > 1:
        raise v.error("buildpacks only support building for one arch")
    if config.get("local") is False and not present(config.get("remote")):
        raise v.error("Cannot disable local builds, no remote is set")


def validate_ssh(config: Any, locate: Locate) -> None:
    Validator(locate, ("ssh",)).against(config, SSH_SCHEMA)


def validate_sshkit(config: Any, locate: Locate) -> None:
    Validator(locate, ("sshkit",)).against(config, SSHKIT_SCHEMA)


#: Kamal's built-in top-level commands: an alias may not take one of these names.
BUILTIN_COMMANDS = frozenset(
    {
        "accessory", "app", "audit", "build", "config", "deploy", "details", "docs",
        "init", "lock", "proxy", "prune", "redeploy", "registry", "remove", "rollback",
        "secrets", "server", "setup", "upgrade", "version",
    }
)  # fmt: skip


def validate_alias(command: Any, name: str, locate: Locate) -> None:
    v = Validator(locate, ("aliases", name))
    v.check_type(command, STRING)
    if not re.fullmatch(r"[a-z0-9_-]+", name):
        raise v.error(
            f"Invalid alias name: '{name}'. Must only contain lowercase letters, alphanumeric, "
            "hyphens and underscores."
        )
    if name in BUILTIN_COMMANDS:
        raise v.error(f"Alias '{name}' conflicts with a built-in command.")


__all__ = ["Validator"]
