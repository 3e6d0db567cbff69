"""``server bootstrap`` (Docker where missing, the docker group for a non-root user, the run
directory, then the ``docker-setup`` hook) and ``server exec``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from dockyard.commands import server as server_commands
from dockyard.commands.argv import argv
from dockyard.errors import DockyardError
from dockyard.flows.errors import DockerError
from dockyard.flows.ops.app import per_host
from dockyard.flows.ops.base import Interactive, Section, ssh_session

if TYPE_CHECKING:
    from dockyard.flows.context import DeployContext


@dataclass(frozen=True, slots=True)
class HostShell:
    """A command line typed by the user, run by the remote shell as typed (``server exec``)."""

    line: str

    def shell(self) -> str:
        return self.line

    def display(self) -> str:
        return self.line


async def _bootstrap_host(ctx: DeployContext, host: str) -> bool:
    """Make Docker usable on ``host``; False when it is missing and cannot be installed."""
    uid = await ctx.run(host, server_commands.user_id(), what="id -u")
    root = server_commands.is_root(uid.stdout)
    if not (await ctx.run(host, server_commands.docker_installed(), check=False)).ok:
        if (
            not root
            and not (await ctx.run(host, server_commands.sudo_can_usermod(), check=False)).ok
        ):
            return False
        ctx.info(f"Missing Docker on {host}. Installing...", host)
        curl, wget = server_commands.install_docker()
        installed = await ctx.run(host, curl, check=False)
        if not installed.ok:
            installed = await ctx.run(host, wget, check=False)
        if not installed.ok:
            raise ctx.failure(
                host, curl, installed, what="installing Docker (get.docker.com)",
                hint="install Docker on the server by hand, then run bootstrap again",
            )  # fmt: skip
    if not root:
        groups = await ctx.run(host, server_commands.user_groups())
        if not server_commands.in_docker_group(groups.stdout):
            name = (await ctx.run(host, server_commands.user_name())).stdout.strip()
            await ctx.run(
                host, server_commands.add_to_docker_group(name),
                what=f"adding {name} to the docker group",
                hint=f"run `sudo usermod -aG docker {name}` on {host}",
            )  # fmt: skip
            # Kamal ends the SSH session (kill -HUP $PPID); our pooled connection stays, so
            # the group applies from the next connection (the next dockyard command).
            ctx.warn(f"added {name} to the docker group; it applies to new SSH sessions", host)
    await ctx.run(host, server_commands.ensure_run_directory())
    return True


async def bootstrap(ctx: DeployContext) -> None:
    async with ctx.lock():
        hosts = ctx.hosts

        async def on_host(host: str) -> bool:
            return await _bootstrap_host(ctx, host)

        done = await ctx.on(hosts, on_host)
        missing = [h for h in hosts if not done.get(h, True)]
        if missing:
            raise DockerError(
                f"docker: Docker is not installed on {', '.join(missing)} and cannot be "
                "installed automatically without root access (or passwordless sudo)",
                hint="install Docker there by hand, or connect as root or a user that may sudo",
            )
        await ctx.run_hook("docker-setup")


async def exec_(
    ctx: DeployContext, command: Sequence[str], *, interactive: bool = False
) -> list[Section] | Interactive:
    """Run the command line on every selected host (output per host), or ``-i`` over
    ``ssh -t`` on the primary host."""
    if not command:
        raise DockyardError(
            "server exec: give the command to run, e.g. `dockyard server exec date`"
        )
    line = " ".join(command)  # Kamal joins the words; the remote shell runs the line
    if interactive:
        host = ctx.primary_host
        return ssh_session(ctx, host, argv("sh", "-c", line))

    async def body(host: str) -> str:
        await ctx.audit(host, f"Executed cmd '{line}'")
        result = await ctx.run(host, HostShell(line), what=f"server exec '{line}'", stream=False)
        return result.stdout

    return await per_host(ctx, ctx.hosts, body, "App")
