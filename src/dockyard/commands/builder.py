"""Image builds: ``docker buildx`` (local, remote, hybrid multi-arch, cloud), Cloud Native
Buildpacks (``pack``), and a plain ``docker build`` fallback for hosts without buildx.

Which kind of builder is used depends on the local Docker architecture, so the pure functions
take it as ``local_arch`` (``amd64``/``arm64``, from ``docker info``; see :func:`parse_arch`).

Deliberate differences from Kamal, pinned by tests:

* no ``2>&1`` on the build: the transport merges the streams;
* the Dockerfile's existence is checked by the flow (this module does no I/O);
* the builder inspection is two argvs and two pure checks instead of ``grep`` pipelines;
* :func:`legacy_build` (``docker build`` + ``docker push``) is Dockyard's own fallback for a
  Docker without the buildx plugin; Kamal requires buildx.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from dockyard.commands import registry as registry_commands
from dockyard.commands.argv import (
    Argv,
    Part,
    Revealable,
    Secret,
    ShellExpanded,
    argv,
    docker,
)

if TYPE_CHECKING:
    from dockyard.config.models import Config

Kind = Literal["local", "remote", "hybrid", "pack", "cloud"]
GHA_CACHE_FROM_OPTIONS = re.compile(r"^(url|url_v2|token|scope|timeout)=")


def parse_arch(stdout: str) -> str:
    """``docker info --format '{{.Architecture}}'`` as Kamal names it (``amd64``/``arm64``)."""
    arch = stdout.strip()
    if "aarch64" in arch:
        return "arm64"
    if "x86_64" in arch:
        return "amd64"
    return arch


def local_arch_query() -> Argv:
    return docker("info", "--format", "{{.Architecture}}")


@dataclass(frozen=True, slots=True)
class Plan:
    """How the image is built: the kind of builder, its name and the arches on each side."""

    kind: Kind
    name: str | None
    arches: tuple[str, ...]
    local_arches: tuple[str, ...]
    remote_arches: tuple[str, ...]


def plan(config: Config, local_arch: str) -> Plan:
    """Kamal's builder choice: hybrid/remote when some arch must be built remotely, else pack,
    cloud or local."""
    builder = config.builder
    arches = tuple(builder.arch)
    if builder.local_disabled:
        local: tuple[str, ...] = ()
    elif builder.remote:
        local = tuple(a for a in arches if a == local_arch)
    else:
        local = arches
    remote = tuple(a for a in arches if a not in local) if builder.remote else ()
    local_enabled = not builder.local_disabled and (not arches or bool(local))
    local_registry = registry_commands.is_local(config.registry.server)
    registry_suffix = "-local-registry" if local_registry else ""
    remote_suffix = re.sub(r"[^a-z0-9_-]", "-", builder.remote or "") + registry_suffix

    kind: Kind
    name: str | None
    if remote:
        if local_enabled:
            kind, name = "hybrid", f"kamal-hybrid-{builder.driver}-{remote_suffix}"
        else:
            kind, name = "remote", f"kamal-remote-{remote_suffix}"
    elif builder.pack is not None:
        kind, name = "pack", None
    elif builder.cloud:
        kind, name = "cloud", re.sub(r"[ /]", "-", builder.driver)
    else:
        kind = "local"
        name = f"kamal-local{'-registry' if local_registry else ''}-{builder.driver}"
    return Plan(kind, name, arches, local, remote)


# --- pieces -----------------------------------------------------------------------------------


def _platform(arches: tuple[str, ...]) -> tuple[str, ...]:
    return ("--platform", ",".join(f"linux/{a}" for a in arches)) if arches else ()


def tags(config: Config, *, dirty: bool = False) -> tuple[str, str]:
    """The version tag and the latest tag, with ``-dirty`` for ``build dev``."""
    suffix = "-dirty" if dirty else ""
    return f"{config.absolute_image}{suffix}", f"{config.latest_image}{suffix}"


def _tag_args(config: Config, dirty: bool) -> tuple[str, ...]:
    return tuple(p for tag in tags(config, dirty=dirty) for p in ("-t", tag))


def _cache_image_ref(config: Config) -> str:
    return "/".join(p for p in (config.registry.server, config.builder.cache_image) if p)


def cache_from(config: Config) -> str | None:
    cache = config.builder.cache
    if cache is None:
        return None
    if cache.type == "gha":
        options = (cache.options or "").split(",") if cache.options else []
        return ",".join(["type=gha", *(o for o in options if GHA_CACHE_FROM_OPTIONS.match(o))])
    if cache.type == "registry":
        return f"type=registry,ref={_cache_image_ref(config)}"
    return None


def cache_to(config: Config) -> str | None:
    cache = config.builder.cache
    if cache is None:
        return None
    if cache.type == "gha":
        return ",".join(p for p in ("type=gha", cache.options) if p)
    if cache.type == "registry":
        return ",".join(
            p for p in ("type=registry", f"ref={_cache_image_ref(config)}", cache.options) if p
        )
    return None


def _flag_value(value: str | bool) -> str:
    return str(value).lower() if isinstance(value, bool) else value


def build_options(config: Config) -> tuple[Part, ...]:
    """Cache, label, build args (values secret in the display), secrets, Dockerfile, target,
    ssh, provenance, sbom; in Kamal's order."""
    builder = config.builder
    parts: list[Part] = []
    to, from_ = cache_to(config), cache_from(config)
    if to and from_:
        parts += ["--cache-to", to, "--cache-from", from_]
    parts += ["--label", f"service={config.service}"]
    for key, value in builder.args.items():
        parts += ["--build-arg", Secret(f"{key}={value}", redaction=f"{key}=[REDACTED]")]
    for name in builder.secrets:
        parts += ["--secret", f"id={name}"]
    parts += ["--file", builder.dockerfile]
    if builder.target:
        parts += ["--target", builder.target]
    if builder.ssh:
        # Kamal hands this to the local shell unquoted: `default=$SSH_AUTH_SOCK` is expanded.
        ssh = ShellExpanded(builder.ssh, variables=True) if "$" in builder.ssh else builder.ssh
        parts += ["--ssh", ssh]
    if builder.provenance is not None:
        parts += ["--provenance", _flag_value(builder.provenance)]
    if builder.sbom is not None:
        parts += ["--sbom", _flag_value(builder.sbom)]
    return tuple(parts)


def build_context(config: Config) -> str:
    """``builder.context``, or ``.`` (in the git clone, or the working tree)."""
    return config.builder.context or "."


# --- commands ---------------------------------------------------------------------------------


def push(
    config: Config,
    build_plan: Plan,
    *,
    output: str = "registry",
    dirty: bool = False,
    no_cache: bool = False,
) -> list[Argv]:
    """Build (and with ``output=registry`` push) the image. One argv, or several for ``pack``."""
    if build_plan.kind == "pack":
        return _pack_push(config, build_plan, output=output, dirty=dirty, no_cache=no_cache)
    return [
        docker(
            "buildx",
            "build",
            f"--output=type={output}",
            *_platform(build_plan.arches),
            *(() if config.builder.docker_driver else ("--builder", build_plan.name)),
            *_tag_args(config, dirty),
            *build_options(config),
            "--no-cache" if no_cache else None,
            build_context(config),
        )
    ]


def legacy_build(config: Config, *, dirty: bool = False, no_cache: bool = False) -> list[Argv]:
    """Without buildx: ``docker build`` with the same tags and options, then two ``docker push``.

    Needs ``DOCKER_BUILDKIT=1`` in the environment for ``--secret``/``--ssh`` (see
    :func:`push_env`). A single arch at most.
    """
    arches = tuple(config.builder.arch)
    if len(arches) > 1:
        raise ValueError("docker build without buildx builds one architecture only")
    if config.builder.cache is not None:
        raise ValueError("docker build without buildx does not support builder.cache")
    version_tag, latest_tag = tags(config, dirty=dirty)
    # `docker build` has no --provenance/--sbom: drop them with their values.
    options = _without_flags(build_options(config), ("--provenance", "--sbom"))
    return [
        docker(
            "build",
            *_platform(arches),
            "-t",
            version_tag,
            "-t",
            latest_tag,
            *options,
            "--no-cache" if no_cache else None,
            build_context(config),
        ),
        docker("push", version_tag),
        docker("push", latest_tag),
    ]


def _without_flags(parts: tuple[Part, ...], flags: tuple[str, ...]) -> list[Part]:
    out: list[Part] = []
    skip = False
    for part in parts:
        if skip:
            skip = False
            continue
        if isinstance(part, str) and part in flags:
            skip = True
            continue
        out.append(part)
    return out


def _pack_push(
    config: Config, build_plan: Plan, *, output: str, dirty: bool, no_cache: bool
) -> list[Argv]:
    pack_config = config.builder.pack
    assert pack_config is not None  # plan() chose pack
    buildpacks = (*pack_config.buildpacks, "paketo-buildpacks/image-labels")
    arch = build_plan.local_arches[0] if build_plan.local_arches else "amd64"
    secrets = {name: config.secret(name) for name in config.builder.secrets}
    build = argv(
        "pack",
        "build",
        config.repository,
        "--platform",
        f"linux/{arch}",
        "--creation-time",
        "now",
        "--builder",
        pack_config.builder,
        *(p for bp in buildpacks for p in ("--buildpack", bp)),
        *_tag_args(config, dirty),
        "--clear-cache" if no_cache else None,
        "--env",
        f"BP_IMAGE_LABELS=service={config.service}",
        *(p for k, v in config.builder.args.items() for p in ("--env", f"{k}={v}")),
        *(
            p
            for k, v in secrets.items()
            for p in ("--env", Secret(f"{k}={v.reveal()}", redaction=f"{k}=[REDACTED]"))
        ),
        "--path",
        build_context(config),
    )
    if output != "registry":
        return [build]
    version_tag, latest_tag = tags(config, dirty=dirty)
    return [build, docker("push", version_tag), docker("push", latest_tag)]


def push_env(
    config: Config,
    build_plan: Plan,
    secrets: Mapping[str, str | Revealable] | None = None,
    *,
    legacy: bool = False,
) -> dict[str, str]:
    """Environment for the local build: the ``builder.secrets`` values (read by ``--secret
    id=NAME``), ``BUILDKIT_NO_CLIENT_TOKEN=1`` for remote builders, and ``DOCKER_BUILDKIT=1``
    for :func:`legacy_build`.

    ``secrets`` defaults to resolving each name through the config's secret store.
    """
    env: dict[str, str] = {}
    for name in config.builder.secrets:
        value = secrets[name] if secrets is not None else config.secret(name)
        env[name] = value if isinstance(value, str) else value.reveal()
    if build_plan.kind in ("remote", "hybrid"):
        env["BUILDKIT_NO_CLIENT_TOKEN"] = "1"
    if legacy:
        env["DOCKER_BUILDKIT"] = "1"
    return env


def ensure_docker_installed() -> tuple[Argv, Argv]:
    """``docker --version`` (Docker present), then ``docker buildx version`` (plugin present)."""
    return docker("--version"), docker("buildx", "version")


def login_to_registry_locally(build_plan: Plan) -> bool:
    """Remote and hybrid builders push from the builder host, not through a local login."""
    return build_plan.kind not in ("remote", "hybrid")


def _driver_options(config: Config) -> tuple[str, ...]:
    if registry_commands.is_local(config.registry.server):
        return ("--driver-opt", "network=host")
    return ()


def _context_name(build_plan: Plan) -> str:
    return f"{build_plan.name}-context"


def _create_remote_context(config: Config, build_plan: Plan) -> Argv:
    name = build_plan.name or ""
    return docker(
        "context",
        "create",
        _context_name(build_plan),
        "--description",
        f"{name} host",
        "--docker",
        f"host={config.builder.remote}",
    )


def create(config: Config, build_plan: Plan) -> list[Argv]:
    """Create the builder (nothing for the ``docker`` driver or ``pack``)."""
    name = build_plan.name or ""
    driver = config.builder.driver
    if build_plan.kind == "local":
        if config.builder.docker_driver:
            return []
        return [
            docker(
                "buildx", "create", "--name", name, f"--driver={driver}", *_driver_options(config)
            )
        ]
    if build_plan.kind == "remote":
        return [
            _create_remote_context(config, build_plan),
            docker(
                "buildx",
                "create",
                "--name",
                name,
                *_driver_options(config),
                _context_name(build_plan),
            ),
        ]
    if build_plan.kind == "hybrid":
        return [
            docker(
                "buildx",
                "create",
                *_platform(build_plan.local_arches),
                "--name",
                name,
                f"--driver={driver}",
                *_driver_options(config),
            ),
            _create_remote_context(config, build_plan),
            docker(
                "buildx",
                "create",
                *_platform(build_plan.remote_arches),
                "--append",
                "--name",
                name,
                *_driver_options(config),
                _context_name(build_plan),
            ),
        ]
    if build_plan.kind == "cloud":
        # "cloud org/name": the driver, then the endpoint (Kamal's string is split by the shell).
        return [docker("buildx", "create", "--driver", *driver.split())]
    return []


def remove(config: Config, build_plan: Plan) -> list[Argv]:
    name = build_plan.name or ""
    if build_plan.kind == "local":
        return [] if config.builder.docker_driver else [docker("buildx", "rm", name)]
    if build_plan.kind in ("remote", "hybrid"):
        return [docker("context", "rm", _context_name(build_plan)), docker("buildx", "rm", name)]
    if build_plan.kind == "cloud":
        return [docker("buildx", "rm", name)]
    return []


def inspect_builder(config: Config, build_plan: Plan) -> list[Argv]:
    """What to run to check that the builder exists; see :func:`builder_is_usable`."""
    name = build_plan.name or ""
    if build_plan.kind == "pack":
        pack_config = config.builder.pack
        return [argv("pack", "builder", "inspect", pack_config.builder if pack_config else None)]
    if build_plan.kind == "local":
        return [] if config.builder.docker_driver else [docker("buildx", "inspect", name)]
    if build_plan.kind in ("remote", "hybrid"):
        return [
            docker("buildx", "inspect", name),
            docker(
                "context",
                "inspect",
                _context_name(build_plan),
                "--format",
                "{{.Endpoints.docker.Host}}",
            ),
        ]
    return [docker("buildx", "inspect", name)]


def builder_is_usable(config: Config, build_plan: Plan, outputs: list[str]) -> bool:
    """Judge the stdout of each :func:`inspect_builder` argv (all of which succeeded).

    Remote/hybrid: the buildx builder uses our context and the context points at the configured
    remote. Cloud: the builder's endpoint is a ``cloud://`` one. Others: it exists.
    """
    if build_plan.kind in ("remote", "hybrid"):
        if len(outputs) < 2:
            return False
        uses_context = re.search(rf"Endpoint:.*{re.escape(_context_name(build_plan))}", outputs[0])
        host_lines = [line.strip() for line in outputs[1].splitlines()]
        return bool(uses_context) and config.builder.remote in host_lines
    if build_plan.kind == "cloud":
        return bool(outputs) and re.search(r"Endpoint:.*cloud://.*", outputs[0]) is not None
    return True


def info(build_plan: Plan) -> list[Argv]:
    if build_plan.kind == "pack":
        return []
    return [docker("context", "ls"), docker("buildx", "ls")]


def clean(config: Config) -> Argv:
    return docker("image", "rm", "--force", config.absolute_image)


# --- the git clone used as build context ------------------------------------------------------


def clone(root: str, clone_directory: str) -> Argv:
    """``git -C <clones dir> clone <repo root> --recurse-submodules``."""
    return argv("git", "-C", clone_directory, "clone", root, "--recurse-submodules")


def clone_reset_steps(root: str, build_directory: str, revision: str) -> list[Argv]:
    def git(*parts: str) -> Argv:
        return argv("git", "-C", build_directory, *parts)

    return [
        git("remote", "set-url", "origin", root),
        git("fetch", "origin"),
        git("reset", "--hard", revision),
        git("clean", "-fdx"),
        git("submodule", "update", "--init"),
    ]


def clone_status(build_directory: str) -> Argv:
    return argv("git", "-C", build_directory, "status", "--porcelain")


def clone_revision(build_directory: str) -> Argv:
    return argv("git", "-C", build_directory, "rev-parse", "HEAD")
