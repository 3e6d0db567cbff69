"""``build push`` (local docker build, buildx when present, else the legacy builder) and
``build pull`` (registry login, pull and the ``service`` label check on every app host, in one
round trip per host)."""

from __future__ import annotations

import hashlib
import os
import tempfile
from typing import TYPE_CHECKING

from dockyard.commands import app as app_commands
from dockyard.commands import builder as builder_commands
from dockyard.commands import registry as registry_commands
from dockyard.commands.argv import Argv, docker
from dockyard.errors import DockyardError
from dockyard.flows import digest
from dockyard.flows.context import DeployContext
from dockyard.flows.errors import BuildError, RegistryError
from dockyard.remote.result import Result

if TYPE_CHECKING:
    from dockyard.config.models import Config


def in_directory(directory: str, argv: Argv) -> Argv:
    """Run ``argv`` from ``directory`` (the build context is relative to it)."""
    return Argv(("sh", "-c", 'cd "$1" && shift && exec "$@"', "sh", directory, *argv.raw()))


def clones_directory(config: Config) -> str:
    """Kamal's local clones directory for this project: ``<tmp>/kamal-clones/<service>-<hash
    of the project directory>``."""
    digest = hashlib.sha256(str(config.root).encode()).hexdigest()[:12]
    return os.path.join(tempfile.gettempdir(), "kamal-clones", f"{config.service}-{digest}")


async def build_directory(ctx: DeployContext) -> str:
    """Where the build runs. Without ``builder.context`` in a git repository, as Kamal does: a
    clean clone of HEAD (kept between builds, reset to HEAD each time), so uncommitted changes
    are never built into an image tagged with the commit; they are named in a warning. Else
    the project directory."""
    config = ctx.config
    root = str(config.root)
    if config.builder.context is not None:
        return root

    async def git(*args: str, at: str = root) -> Result:
        return await ctx.local.run(Argv(("git", "-C", at, *args)))

    top = await git("rev-parse", "--show-toplevel")
    toplevel = top.stdout.strip()
    if not top.ok or not toplevel:  # not a git repository: the working tree it is
        return root
    commit = await git("rev-parse", "--verify", "HEAD")
    revision = commit.stdout.strip()
    if not commit.ok or not revision:
        raise BuildError(
            f"build: the git repository {toplevel} has no commit to build from a clean clone",
            hint="commit your work, or set builder.context (e.g. `.`) to build the working tree",
        )
    dirty = (await git("status", "--porcelain")).stdout.rstrip()
    if dirty:
        ctx.warn(
            "building from a clean git clone of HEAD, so these uncommitted changes are not in "
            f"the image:\n{dirty}"
        )
    clones = clones_directory(config)
    repo = os.path.join(clones, os.path.basename(toplevel.rstrip("/")))
    await _check(ctx, Argv(("mkdir", "-p", clones)), "creating the clones directory")
    cloned = await ctx.local.run(builder_commands.clone(toplevel, clones))
    if not cloned.ok:  # cloned before: bring that clone to HEAD
        for step in builder_commands.clone_reset_steps(toplevel, repo, revision):
            await _check(ctx, step, f"updating the git clone in {repo}")
    status = await ctx.local.run(builder_commands.clone_status(repo))
    head = await ctx.local.run(builder_commands.clone_revision(repo))
    if not status.ok or status.stdout.strip():
        raise BuildError(
            f"build: the git clone in {repo} is not clean: {status.stdout.strip()[:300]}",
            hint=f"remove {clones} and build again",
        )
    if head.stdout.strip() != revision:
        raise BuildError(
            f"build: the git clone in {repo} is at {head.stdout.strip()[:12]}, not at HEAD "
            f"({revision[:12]})",
            hint=f"remove {clones} and build again",
        )
    inside = os.path.relpath(os.path.realpath(root), os.path.realpath(toplevel))
    return repo if inside == "." else os.path.join(repo, inside)


async def push(ctx: DeployContext) -> None:
    """Build the image locally and push both tags (version and latest) to the registry."""
    config = ctx.config
    await ctx.pre_connect()
    ctx.step(f"Building {config.absolute_image}...")
    docker_version, buildx_version = builder_commands.ensure_docker_installed()
    if not (await ctx.local.run(docker_version)).ok:
        raise BuildError(
            "build: Docker is not installed locally",
            hint="install Docker on this machine, or deploy a pushed image with -P --version",
        )
    buildx = (await ctx.local.run(buildx_version)).ok and not config.builder.docker_driver
    arch_out = await ctx.local.run(builder_commands.local_arch_query())
    plan = builder_commands.plan(config, builder_commands.parse_arch(arch_out.stdout))

    login = registry_commands.login_for(config)
    if login is not None and builder_commands.login_to_registry_locally(plan):
        result = await ctx.local.run(login)
        if not result.ok:
            raise RegistryError(
                f"registry: docker login to {config.registry.server or 'Docker Hub'} was refused "
                f"locally: {result.stderr.strip()[-300:]}",
                hint="check registry.username and the password secret",
            )
    elif login is None and registry_commands.is_local(config.registry.server):
        from dockyard.flows.ops.registry import start_local_registry

        await start_local_registry(ctx)
    await ctx.run_hook("pre-build")

    if buildx:
        inspect = builder_commands.inspect_builder(config, plan)
        outputs = [(await ctx.local.run(argv)).stdout for argv in inspect]
        if not builder_commands.builder_is_usable(config, plan, outputs):
            for argv in builder_commands.remove(config, plan):
                await ctx.local.run(argv)
            for argv in builder_commands.create(config, plan):
                await _check(ctx, argv, "creating the buildx builder")
        commands = builder_commands.push(config, plan)
        env = builder_commands.push_env(config, plan)
    else:
        try:
            commands = builder_commands.legacy_build(config)
        except ValueError as exc:  # several arches or a build cache need buildx
            from dockyard.flows.ops.build import BUILDX_MISSING_HINT

            raise BuildError(f"build: {exc}", hint=BUILDX_MISSING_HINT) from exc
        # BuildKit (needed for --secret/--ssh) wants buildx on current Docker: ask for it only
        # then, and use the classic builder otherwise.
        needs_buildkit = bool(config.builder.secrets or config.builder.ssh)
        env = builder_commands.push_env(config, plan, legacy=needs_buildkit)
        if not needs_buildkit:
            env["DOCKER_BUILDKIT"] = "0"
    from dockyard.flows.ops.registry import forward_local_registry_to_builder

    directory = await build_directory(ctx)
    async with forward_local_registry_to_builder(ctx, plan):  # remote builder + localhost:PORT
        for argv in commands:
            await _check(ctx, in_directory(directory, argv), argv.display(), env=env, stream=True)


_AUTH_ERRORS = (
    "unauthorized",
    "no basic auth credentials",
    "authentication required",
    "denied",
    "login",
)


def _needs_login(result: Result) -> bool:
    text = (result.stderr + result.stdout).lower()
    return any(marker in text for marker in _AUTH_ERRORS)


async def _check(
    ctx: DeployContext,
    argv: Argv,
    what: str,
    *,
    env: dict[str, str] | None = None,
    stream: bool = False,
) -> Result:
    sink = ctx.output if stream and ctx.verbosity >= 0 else None
    result = await ctx.local.run(argv, env=env, on_output=sink)
    if not result.ok:
        tail = (result.stderr.strip() or result.stdout.strip()).splitlines()[-15:]
        is_push = " push " in f" {what} " or "type=registry" in what
        error = RegistryError if is_push else BuildError
        layer = "registry" if is_push else "build"
        raise error(
            f"{layer}: {what} failed ({result.describe_status()})\n"
            + "\n".join(f"  | {line}" for line in tail),
            hint="check the registry credentials and address"
            if is_push
            else "fix the Dockerfile or build context and retry",
        )
    return result


#: What a host has for the image: its registry digests and its ``service`` label.
PULL_CHECK_FORMAT = "{{json .RepoDigests}} {{.Config.Labels.service}}"


def pull_check(config: Config) -> Argv:
    """``docker image inspect`` of the image to deploy (a query; fails when it is absent)."""
    return docker("image", "inspect", "--format", PULL_CHECK_FORMAT, config.absolute_image)


async def registry_digest(ctx: DeployContext) -> str | None:
    """The registry's digest for the version's tag, asked from here (None: unknown)."""
    config = ctx.config
    registry = config.registry
    if not ctx.ask_registry or registry_commands.is_local(registry.server):
        return None
    try:
        username = config.resolve(registry.username)
        password = config.resolve(registry.password)
    except DockyardError:
        return None
    return await digest.tag_digest(
        registry.server,
        config.image,
        config.version,
        _plain(username),
        _plain(password),
    )


def _plain(value: object) -> str | None:
    if value is None:
        return None
    reveal = getattr(value, "reveal", None)
    return str(reveal() if callable(reveal) else value)


def already_pulled(ctx: DeployContext, host: str, check: Result, registry: str | None) -> bool:
    """Whether ``host`` has the tag as the registry has it now (``check`` is the result of
    :func:`pull_check`, ``registry`` the registry's digest): then ``docker pull`` would
    transfer nothing and is skipped. Its ``service`` label is checked as after a pull."""
    if registry is None or not check.ok:
        return False
    digests, _, label = check.stdout.strip().partition(" ")
    if not digest.digest_in(digests, registry):
        return False
    if not app_commands.has_service_label(label, ctx.config.service):
        raise RegistryError(
            f"docker on {host}: {app_commands.missing_service_label_message(ctx.config)}",
            hint=f'add `LABEL service="{ctx.config.service}"` to the Dockerfile '
            "(Dockyard's build adds it for you)",
        )
    return True


async def pull(ctx: DeployContext, hosts: list[str] | None = None, *, audit: bool = True) -> None:
    """On every app host, in parallel: record the audit line, pull the image (a no-op
    transfer when the host already has it) and check the image's ``service`` label, in one
    round trip per host; the registry login (once) only when the pull needs it. ``audit``
    False: the audit line was written already (with the deploy's first batch)."""
    config = ctx.config
    targets = ctx.app_hosts if hosts is None else hosts
    if not targets:
        return
    await ctx.connect(targets)
    ctx.step(f"Pulling {config.absolute_image} on {', '.join(targets)}...")
    login = registry_commands.login_for(config)

    async def one(host: str) -> None:
        pull_image = [app_commands.pull_image(config), app_commands.image_service_label(config)]
        # The host's stored credentials usually still work: pull first, and log in (once)
        # only when the registry asks for it. Saves a registry round trip per deploy.
        if audit:
            line = await ctx.audit_argv(f"Pulled image with version {config.version}")
            results = await ctx.batch(host, [line, *pull_image], check=False)
            if not results[0].ok:
                raise ctx.failure(host, line, results[0], what="audit log")
        else:
            results = await ctx.batch(host, pull_image, check=False)
        if len(results) < 2:  # pragma: no cover - a batch returns one result per command
            raise ctx.failure(host, pull_image[0], results[0], what="pulling the image")
        if login is not None and not results[-2].ok and _needs_login(results[-2]):
            results = await ctx.batch(host, [login, *pull_image], check=False)
            if not results[0].ok:
                raise RegistryError(
                    f"registry on {host}: docker login to {config.registry.server} was "
                    f"refused: {results[0].stderr.strip()[-300:]}",
                    hint="check registry.username and the password secret, and that the "
                    "server can reach the registry",
                )
        pulled, label = results[-2], results[-1]
        if not pulled.ok:
            raise RegistryError(
                f"registry on {host}: docker pull {config.absolute_image} failed: "
                f"{(pulled.stderr.strip() or pulled.stdout.strip())[-400:]}",
                hint="check that the image was pushed with this version (--version), "
                "and the registry address",
            )
        if not app_commands.has_service_label(label.stdout, config.service):
            raise RegistryError(
                f"docker on {host}: {app_commands.missing_service_label_message(config)}",
                hint=f'add `LABEL service="{config.service}"` to the Dockerfile '
                "(Dockyard's build adds it for you)",
            )

    from dockyard.flows.ops.registry import forward_local_registry

    async with forward_local_registry(ctx, targets):  # a localhost:PORT registry, over SSH
        await ctx.on(targets, one)
