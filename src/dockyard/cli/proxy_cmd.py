"""`dockyard proxy boot|reboot|start|stop|restart|details|logs|remove|boot_config` (Kamal's
`kamal proxy`)."""

from __future__ import annotations

from typing import Annotated

import typer

from dockyard.cli._factory import flow_command, group
from dockyard.cli.app_cmd import (
    Follow,
    Grep,
    GrepOptions,
    Lines,
    Since,
    SkipTimestamps,
    show,
    show_logs,
)
from dockyard.cli.options import GlobalOptions, run_flow, with_global_options

proxy_app = group("proxy", "Manage kamal-proxy on the servers.")


@flow_command(proxy_app, "boot")
def boot(opts: GlobalOptions) -> None:
    """Boot the proxy on the servers where it is not running (start it, or run a new one)."""


@proxy_app.command("reboot")
@with_global_options
def reboot(
    opts: GlobalOptions,
    rolling: Annotated[
        bool,
        typer.Option("--rolling", help="Reboot the proxy one host at a time, not all at once."),
    ] = False,
    confirmed: Annotated[
        bool, typer.Option("-y", "--confirmed", help="Proceed without confirmation.")
    ] = False,
) -> None:
    """Reboot the proxy on the servers: stop and remove the container, run a new one (apps on
    a host are unreachable meanwhile)."""
    from dockyard.flows.ops import proxy

    if not confirmed and not typer.confirm(
        "This will cause a brief outage on each host. Are you sure?", default=False
    ):
        typer.echo("Aborted", err=True)  # as Kamal: a message, exit status 0
        return
    run_flow(
        opts, lambda ctx: proxy.reboot(ctx, rolling=rolling), command="proxy", subcommand="reboot"
    )


@flow_command(proxy_app, "start")
def start(opts: GlobalOptions) -> None:
    """Start the existing proxy container."""


@flow_command(proxy_app, "stop")
def stop(opts: GlobalOptions) -> None:
    """Stop the proxy container."""


@flow_command(proxy_app, "restart")
def restart(opts: GlobalOptions) -> None:
    """Stop, then start the proxy container."""


@flow_command(proxy_app, "details", output=show)
def details(opts: GlobalOptions) -> None:
    """Show the proxy container on each server."""


@proxy_app.command("logs")
@with_global_options
def logs(
    opts: GlobalOptions,
    since: Since = None,
    lines: Lines = None,
    grep: Grep = None,
    grep_options: GrepOptions = None,
    follow: Follow = False,
    skip_timestamps: SkipTimestamps = False,
) -> None:
    """Show the proxy's log lines."""
    from dockyard.flows.ops import proxy

    show_logs(
        opts,
        "proxy",
        proxy.logs,
        proxy.follow_logs if follow else None,
        since=since,
        lines=lines,
        grep=grep,
        grep_options=grep_options,
        timestamps=not skip_timestamps,
    )


def _echo_message(message: str | None) -> None:
    if message:
        typer.echo(message)


@flow_command(proxy_app, "remove", output=_echo_message)
def remove(
    opts: GlobalOptions,
    force: Annotated[
        bool, typer.Option("--force", help="Remove even when other apps are installed.")
    ] = False,
) -> None:
    """Remove the proxy container, its image and .kamal/proxy."""


@proxy_app.command("boot_config")
@with_global_options
def boot_config(
    opts: GlobalOptions,
    action: Annotated[str, typer.Argument(help="set, get or reset.", show_default=False)],
    publish: Annotated[
        bool, typer.Option("--publish/--no-publish", help="Publish the ports on the host.")
    ] = True,
    publish_host_ip: Annotated[
        list[str] | None, typer.Option("--publish-host-ip", help="Host IP to bind (repeatable).")
    ] = None,
    http_port: Annotated[int, typer.Option("--http-port", help="HTTP port.")] = 80,
    https_port: Annotated[int, typer.Option("--https-port", help="HTTPS port.")] = 443,
    log_max_size: Annotated[
        str, typer.Option("--log-max-size", help="Container log max size.")
    ] = "10m",
    registry: Annotated[str | None, typer.Option("--registry", help="Proxy registry.")] = None,
    repository: Annotated[
        str | None, typer.Option("--repository", help="Proxy repository.")
    ] = None,
    image_version: Annotated[
        str | None, typer.Option("--image-version", help="Proxy image version.")
    ] = None,
    metrics_port: Annotated[
        int | None, typer.Option("--metrics-port", help="Expose metrics on this port.")
    ] = None,
    debug: Annotated[bool, typer.Option("--debug", help="Run the proxy with --debug.")] = False,
    docker_options: Annotated[
        list[str] | None, typer.Option("--docker-options", help="Extra docker run options a=b.")
    ] = None,
) -> None:
    """Write, show or reset the proxy's boot settings in .kamal/proxy (deprecated: proxy.run)."""
    from dockyard.commands.proxy import BootConfigOptions
    from dockyard.errors import DockyardError
    from dockyard.flows.ops import proxy

    if action == "get":
        show(run_flow(opts, proxy.boot_config_get, command="proxy", subcommand="boot_config"))
    elif action == "reset":
        run_flow(opts, proxy.boot_config_reset, command="proxy", subcommand="boot_config")
    elif action == "set":
        options = BootConfigOptions(
            publish=publish,
            publish_host_ips=tuple(publish_host_ip) if publish_host_ip else None,
            http_port=http_port,
            https_port=https_port,
            log_max_size=log_max_size,
            registry=registry,
            repository=repository,
            image_version=image_version,
            metrics_port=metrics_port,
            debug=debug,
            docker_options=tuple(docker_options or ()),
        )
        run_flow(
            opts,
            lambda ctx: proxy.boot_config_set(ctx, options),
            command="proxy",
            subcommand="boot_config",
        )
    else:
        raise DockyardError(
            f"proxy boot_config: unknown action {action!r}", hint="use set, get or reset"
        )


def register(app: typer.Typer) -> None:
    app.add_typer(proxy_app, name="proxy")
