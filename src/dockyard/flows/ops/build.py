"""``build create | remove | details | dev``: the buildx builder for the config's builder
settings (local, remote, hybrid or cloud), and a dev build of the working tree tagged
``-dirty`` (Kamal 2.11's ``kamal build ...``). Everything runs on this machine.

Without the buildx plugin, ``create``/``remove``/``details`` fail with an error saying so; ``dev``
falls back to the classic ``docker build`` for a local image (what needs buildx: another
``--output``, several arches, a build cache, remote builders)."""

from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from dockyard.commands import builder as builder_commands
from dockyard.commands.argv import Argv, argv
from dockyard.flows.build import in_directory
from dockyard.flows.errors import BuildError
from dockyard.flows.ops.base import Section

if TYPE_CHECKING:
    from dockyard.flows.context import DeployContext

BUILDX_MISSING_HINT = (
    "install the Docker buildx plugin (docker-buildx-plugin, or the buildx binary in "
    "~/.docker/cli-plugins/); `dockyard build push` and `build dev` use the classic builder "
    "without it"
)


@dataclass(frozen=True, slots=True)
class Tools:
    buildx: bool
    plan: builder_commands.Plan


async def _tools(ctx: DeployContext, *, need_buildx: bool, what: str) -> Tools:
    docker_version, buildx_version = builder_commands.ensure_docker_installed()
    if not (await ctx.local.run(docker_version)).ok:
        raise BuildError(
            "build: Docker is not installed locally (`docker --version` failed)",
            hint="install Docker on this machine",
        )
    buildx = (await ctx.local.run(buildx_version)).ok
    if need_buildx and not buildx:
        raise BuildError(
            f"build: `{what}` needs the Docker buildx plugin, which is missing here "
            "(`docker buildx version` failed)",
            hint=BUILDX_MISSING_HINT,
        )
    arch = await ctx.local.run(builder_commands.local_arch_query())
    return Tools(
        buildx, builder_commands.plan(ctx.config, builder_commands.parse_arch(arch.stdout))
    )


def _builder_label(ctx: DeployContext, plan: builder_commands.Plan) -> str:
    if plan.kind == "pack":
        return "pack"
    if ctx.config.builder.docker_driver:
        return "docker (the default builder)"
    return plan.name or "-"


async def _run_all(ctx: DeployContext, commands: list[Argv], what: str) -> None:
    for command in commands:
        result = await ctx.local.run(command, on_output=ctx.output if ctx.verbosity > 0 else None)
        if not result.ok:
            tail = (result.stderr.strip() or result.stdout.strip()).splitlines()[-10:]
            raise BuildError(
                f"build: {what}: {command.display()} failed ({result.describe_status()})\n"
                + "\n".join(f"  | {line}" for line in tail),
                hint="check the builder settings (builder.remote, builder.driver)",
            )


async def create(ctx: DeployContext) -> str:
    """Create the buildx builder (and the docker context of a remote builder). Returns what
    was done, for the CLI."""
    tools = await _tools(ctx, need_buildx=True, what="build create")
    commands = builder_commands.create(ctx.config, tools.plan)
    label = _builder_label(ctx, tools.plan)
    if not commands:
        return f"Builder {label}: nothing to create"
    ctx.step(f"Creating the builder {label}...")
    await _run_all(ctx, commands, "creating the builder")
    return f"Created the builder {label}"


async def remove(ctx: DeployContext) -> str:
    """Remove the buildx builder (and a remote builder's docker context)."""
    tools = await _tools(ctx, need_buildx=True, what="build remove")
    commands = builder_commands.remove(ctx.config, tools.plan)
    label = _builder_label(ctx, tools.plan)
    if not commands:
        return f"Builder {label}: nothing to remove"
    ctx.step(f"Removing the builder {label}...")
    await _run_all(ctx, commands, "removing the builder")
    return f"Removed the builder {label}"


async def details(ctx: DeployContext) -> list[Section]:
    """The builder's name, ``docker context ls`` and ``docker buildx ls``, and the builder's
    ``docker buildx inspect`` (or that it does not exist yet)."""
    tools = await _tools(ctx, need_buildx=True, what="build details")
    label = _builder_label(ctx, tools.plan)
    texts: list[str] = []
    for command in builder_commands.info(tools.plan):
        result = await ctx.local.run(command)
        if not result.ok:
            raise BuildError(
                f"build: {command.display()} failed: {result.stderr.strip()[-300:]}",
                hint=BUILDX_MISSING_HINT,
            )
        texts.append(result.stdout.rstrip("\n"))
    sections = [Section(f"Builder: {label}", "local", "\n".join(texts))]
    inspect = builder_commands.inspect_builder(ctx.config, tools.plan)
    if inspect and tools.plan.kind != "pack":
        result = await ctx.local.run(inspect[0])
        text = result.stdout if result.ok else "(not created yet: run `dockyard build create`)"
        sections.append(Section(f"Builder {label} (docker buildx inspect)", "local", text))
    return sections


# --- build dev --------------------------------------------------------------------------------


def _dockerignore(context: Path) -> list[str]:
    try:
        text = (context / ".dockerignore").read_text()
    except OSError:
        return []
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def _ignored(path: str, patterns: list[str]) -> bool:
    """A simplified .dockerignore match (later patterns win; ``!`` re-includes)."""
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        body = pattern[1:] if negate else pattern
        body = body.strip("/").removeprefix("./")
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        hit = any(fnmatch.fnmatch(p, body) for p in prefixes) or fnmatch.fnmatch(
            path, body.replace("**/", "*")
        )
        if hit:
            ignored = not negate
    return ignored


def parse_porcelain(stdout: str) -> tuple[list[str], list[str]]:
    """``git status --porcelain``: (uncommitted files, untracked files), paths from the root."""
    uncommitted: list[str] = []
    untracked: list[str] = []
    for line in stdout.splitlines():
        if len(line) < 4:
            continue
        code, path = line[:2], line[3:]
        if " -> " in path:
            path = path.split(" -> ", 1)[1]
        path = path.strip('"')
        (untracked if code == "??" else uncommitted).append(path)
    return uncommitted, untracked


def in_context(paths: list[str], context: str, patterns: list[str]) -> list[str]:
    """The paths (relative to the repository root) that a build of ``context`` sends."""
    base = os.path.normpath(context)
    found = []
    for path in paths:
        rel = path if base == "." else os.path.relpath(path, base)
        if rel.startswith(".."):
            continue
        if not _ignored(rel, patterns):
            found.append(path)
    return sorted(found)


async def _dirty_warnings(ctx: DeployContext) -> None:
    config = ctx.config
    status = await ctx.local.run(
        argv("git", "-C", str(config.root), "status", "--porcelain", "--untracked-files=all")
    )
    if not status.ok:
        return  # not a git repository: nothing to compare with
    uncommitted, untracked = parse_porcelain(status.stdout)
    context = builder_commands.build_context(config)
    patterns = _dockerignore(config.root / context)
    changed = in_context(uncommitted, context, patterns)
    if changed:
        ctx.warn(
            "Files with uncommitted changes will be present in the dev container:\n"
            + "\n".join(f"    {f}" for f in changed)
        )
    new = in_context(untracked, context, patterns)
    if new:
        ctx.warn(
            "Untracked files will be present in the dev container:\n"
            + "\n".join(f"    {f}" for f in new)
        )


async def dev(ctx: DeployContext, *, output: str = "docker", no_cache: bool = False) -> list[str]:
    """Build the working tree (not a clean clone) and tag it ``<image>:<version>-dirty`` and
    ``<image>:<latest>-dirty``; with ``output=docker`` the image lands in the local store.
    Returns the two tags."""
    config = ctx.config
    tools = await _tools(ctx, need_buildx=False, what="build dev")
    dockerfile = config.root / builder_commands.build_context(config) / config.builder.dockerfile
    if not dockerfile.is_file() and not Path(config.builder.dockerfile).is_absolute():
        dockerfile = config.root / config.builder.dockerfile
    if not dockerfile.is_file():
        raise BuildError(
            f"build: Missing {config.builder.dockerfile}",
            hint="set builder.dockerfile (and builder.context) in the config",
        )
    await _dirty_warnings(ctx)
    tags = list(builder_commands.tags(config, dirty=True))
    secrets_env = builder_commands.push_env(config, tools.plan)
    use_buildx = tools.buildx and not config.builder.docker_driver
    if use_buildx:
        commands = builder_commands.push(
            config, tools.plan, output=output, dirty=True, no_cache=no_cache
        )
    else:
        if output != "docker":
            raise BuildError(
                f"build: --output={output} needs the Docker buildx plugin, which is missing here",
                hint=BUILDX_MISSING_HINT,
            )
        try:
            commands = builder_commands.legacy_build(config, dirty=True, no_cache=no_cache)[:1]
        except ValueError as exc:
            raise BuildError(f"build: {exc}", hint=BUILDX_MISSING_HINT) from exc
        if not (config.builder.secrets or config.builder.ssh):
            secrets_env["DOCKER_BUILDKIT"] = "0"
        else:
            secrets_env["DOCKER_BUILDKIT"] = "1"
    ctx.step(f"Building {tags[0]} from the working tree...")
    sink = ctx.output if ctx.verbosity >= 0 else None
    for command in commands:
        result = await ctx.local.run(
            in_directory(str(config.root), command), env=secrets_env, on_output=sink
        )
        if not result.ok:
            tail = (result.stderr.strip() or result.stdout.strip()).splitlines()[-15:]
            raise BuildError(
                f"build: {command.display()} failed ({result.describe_status()})\n"
                + "\n".join(f"  | {line}" for line in tail),
                hint="fix the Dockerfile or build context and retry",
            )
    return tags
