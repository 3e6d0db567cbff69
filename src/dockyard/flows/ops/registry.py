"""``registry setup | remove | login | logout``, the local registry a ``localhost:PORT`` server
means, and the SSH reverse forward that lets the servers pull from it (Kamal 2.11).

With a local registry the deployer runs a registry container published on its loopback
(``kamal-docker-registry``), pushes to it, and while the servers pull, each server's
``127.0.0.1:PORT`` is forwarded back over SSH to the deployer's ``127.0.0.1:PORT``; no
``docker login`` happens anywhere.

The registry image defaults to Kamal's (``registry:3``); ``$DOCKYARD_LOCAL_REGISTRY_IMAGE``
names another one (for machines that cannot pull from Docker Hub, such as the lab).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import urllib.parse
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, cast

from dockyard.commands import builder as builder_commands
from dockyard.commands import registry as registry_commands
from dockyard.errors import DockyardError
from dockyard.flows.errors import BuildError, RegistryError

if TYPE_CHECKING:
    from dockyard.commands.argv import Argv
    from dockyard.flows.context import DeployContext
    from dockyard.remote.options import SshOptions

IMAGE_ENV = "DOCKYARD_LOCAL_REGISTRY_IMAGE"


class _Forwarding(Protocol):
    def reverse_forward(
        self,
        hosts: Sequence[str],
        *,
        remote_port: int,
        local_port: int,
        local_host: str = ...,
        remote_host: str = ...,
    ) -> contextlib.AbstractAsyncContextManager[None]: ...


def local_registry_image(environ: Mapping[str, str] | None = None) -> str:
    """``$DOCKYARD_LOCAL_REGISTRY_IMAGE``, else Kamal's ``registry:3``."""
    env = os.environ if environ is None else environ
    return env.get(IMAGE_ENV, "").strip() or registry_commands.LOCAL_REGISTRY_IMAGE


def is_local(ctx: DeployContext) -> bool:
    return registry_commands.is_local(ctx.config.registry.server)


def _port(ctx: DeployContext) -> int:
    server = ctx.config.registry.server or ""
    port = registry_commands.local_port(server)
    if port <= 0:
        raise DockyardError(
            f"registry: the local registry {server!r} has no port",
            hint="write registry.server as localhost:PORT, e.g. localhost:5555",
        )
    return port


async def ensure_docker_installed(ctx: DeployContext) -> None:
    docker_version, _ = builder_commands.ensure_docker_installed()
    if not (await ctx.local.run(docker_version)).ok:
        raise BuildError(
            "docker: Docker is not installed locally (`docker --version` failed)",
            hint="install Docker on this machine",
        )


async def start_local_registry(ctx: DeployContext) -> None:
    """``docker start kamal-docker-registry``, else ``docker run`` it (published on
    127.0.0.1:PORT only)."""
    port = _port(ctx)
    if (await ctx.local.run(registry_commands.start_local())).ok:
        return
    ctx.info(f"starting the local registry on 127.0.0.1:{port}")
    run = registry_commands.run_local(port, local_registry_image())
    result = await ctx.local.run(run, timeout=300)
    if not result.ok:
        tail = (result.stderr.strip() or result.stdout.strip()).splitlines()[-8:]
        raise RegistryError(
            f"registry: could not start the local registry ({result.describe_status()})\n"
            + "\n".join(f"  | {line}" for line in tail),
            hint=f"check that port {port} is free on this machine and that the image "
            f"{local_registry_image()} is available (set ${IMAGE_ENV} to use another)",
        )


async def remove_local_registry(ctx: DeployContext) -> None:
    """Stop and remove the local registry container; absent is fine (Kamal ignores errors)."""
    stop, remove = registry_commands.remove_local()
    if (await ctx.local.run(stop)).ok:
        await ctx.local.run(remove)


async def login_locally(ctx: DeployContext) -> None:
    login = registry_commands.login_for(ctx.config)
    if login is None:
        return
    result = await ctx.local.run(login)
    if not result.ok:
        raise RegistryError(
            f"registry: docker login to {ctx.config.registry.server or 'Docker Hub'} was "
            f"refused locally: {result.stderr.strip()[-300:]}",
            hint="check registry.username and the password secret",
        )


async def login_remotely(ctx: DeployContext, hosts: Sequence[str]) -> None:
    login = registry_commands.login_for(ctx.config)
    if login is None:
        return
    server = ctx.config.registry.server or "Docker Hub"

    async def one(host: str) -> None:
        await ctx.run(
            host,
            login,
            layer="registry",
            what=f"docker login to {server}",
            hint="check registry.username and the password secret, and that the server can "
            "reach the registry",
        )

    await ctx.on(hosts, one)


async def _logout_locally(ctx: DeployContext) -> None:
    # Logging out of a registry one is not logged in to succeeds; other failures are reported.
    await _local_check(ctx, registry_commands.logout_for(ctx.config), "docker logout")


async def _logout_remotely(ctx: DeployContext, hosts: Sequence[str]) -> None:
    logout = registry_commands.logout_for(ctx.config)

    async def one(host: str) -> None:
        await ctx.run(host, logout, layer="registry", what="docker logout")

    await ctx.on(hosts, one)


async def _local_check(ctx: DeployContext, argv: Argv, what: str) -> None:
    result = await ctx.local.run(argv)
    if not result.ok:
        raise RegistryError(
            f"registry: {what} failed locally: {result.stderr.strip()[-300:]}",
            hint="check the local Docker",
        )


async def setup(ctx: DeployContext, *, skip_local: bool = False, skip_remote: bool = False) -> None:
    """A local registry: start it here. Otherwise: log in here and on every selected host."""
    if not skip_local:
        await ensure_docker_installed(ctx)
    if is_local(ctx):
        if not skip_local:
            await start_local_registry(ctx)
        return
    if not skip_local:
        await login_locally(ctx)
    if not skip_remote:
        hosts = ctx.hosts
        await ctx.connect(hosts)
        await login_remotely(ctx, hosts)


async def remove(
    ctx: DeployContext, *, skip_local: bool = False, skip_remote: bool = False
) -> None:
    """A local registry: stop and remove it here. Otherwise: log out here and on the hosts."""
    if is_local(ctx):
        if not skip_local:
            await remove_local_registry(ctx)
        return
    if not skip_local:
        await _logout_locally(ctx)
    if not skip_remote:
        hosts = ctx.hosts
        await ctx.connect(hosts)
        await _logout_remotely(ctx, hosts)


def _refuse_local(ctx: DeployContext, command: str, instead: str) -> None:
    if is_local(ctx):
        raise RegistryError(
            f"registry: cannot use `{command}` with a local registry "
            f"({ctx.config.registry.server})",
            hint=f"use `dockyard registry {instead}` instead",
        )


async def login(ctx: DeployContext, *, skip_local: bool = False, skip_remote: bool = False) -> None:
    _refuse_local(ctx, "registry login", "setup")
    await setup(ctx, skip_local=skip_local, skip_remote=skip_remote)


async def logout(
    ctx: DeployContext, *, skip_local: bool = False, skip_remote: bool = False
) -> None:
    _refuse_local(ctx, "registry logout", "remove")
    await remove(ctx, skip_local=skip_local, skip_remote=skip_remote)


@contextlib.asynccontextmanager
async def forward_local_registry(ctx: DeployContext, hosts: Sequence[str]) -> AsyncIterator[None]:
    """With a local registry: while the block runs, ``127.0.0.1:PORT`` on every host leads
    back over SSH to the registry published on this machine's ``127.0.0.1:PORT``. Without
    one: nothing."""
    if not is_local(ctx) or not hosts:
        yield
        return
    port = _port(ctx)
    if not hasattr(ctx.pool, "reverse_forward"):
        raise DockyardError(
            "registry: this connection pool cannot forward ports, which a local registry needs"
        )
    ctx.step(f"Forwarding the local registry (port {port}) to {', '.join(hosts)}...")
    pool = cast("_Forwarding", ctx.pool)
    async with pool.reverse_forward(
        hosts, remote_port=port, local_port=port, local_host="127.0.0.1"
    ):
        yield


def _ssh_pool(options: SshOptions) -> Any:
    from dockyard.remote.ssh import SshPool

    return SshPool(options)


@contextlib.asynccontextmanager
async def forward_local_registry_to_builder(
    ctx: DeployContext,
    plan: builder_commands.Plan,
    *,
    make_pool: Callable[[SshOptions], Any] = _ssh_pool,
) -> AsyncIterator[None]:
    """With a local registry and a remote (or hybrid) builder at ``ssh://[user@]host[:port]``:
    while the build runs, the builder host's ``127.0.0.1:PORT`` leads back to the local
    registry (Kamal does the same), over its own SSH connection with the project's keys and
    known hosts. Otherwise: nothing."""
    remote = ctx.config.builder.remote
    if not is_local(ctx) or plan.kind not in ("remote", "hybrid") or not remote:
        yield
        return
    uri = urllib.parse.urlsplit(remote)
    if uri.scheme != "ssh" or not uri.hostname:
        raise DockyardError(
            f"builder: a local registry needs an ssh:// remote builder, not {remote!r}",
            hint="write builder.remote as ssh://user@host, or use another registry",
        )
    from dockyard.flows.context import ssh_options

    base = ssh_options(ctx.config)
    options = dataclasses.replace(
        base, user=uri.username or base.user, port=uri.port or 22, proxy=None, proxy_command=None
    )
    port = _port(ctx)
    ctx.step(f"Forwarding the local registry (port {port}) to the builder {uri.hostname}...")
    pool = make_pool(options)
    try:
        async with pool.reverse_forward(
            [uri.hostname], remote_port=port, local_port=port, local_host="127.0.0.1"
        ):
            yield
    finally:
        await pool.close()
