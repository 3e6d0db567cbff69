"""`dockyard doctor`: check every layer a deploy goes through, and say how to fix what fails."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import typer

from dockyard.cli.options import GlobalOptions, with_global_options

if TYPE_CHECKING:
    from dockyard.flows.ops.doctor import Check


def render(checks: Sequence[Check]) -> str:
    lines: list[str] = []
    layer = None
    for check in checks:
        if check.layer != layer:
            layer = check.layer
            lines.append(layer)
        verdict = "WARN" if check.warning else ("PASS" if check.ok else "FAIL")
        where = f"{check.host}: " if check.host else ""
        lines.append(f"  {verdict}  {check.name:<14} {where}{check.detail}")
        if check.fix and (check.warning or not check.ok):
            lines.append(f"        fix: {check.fix}")
    failed = sum(1 for c in checks if not c.ok and not c.warning)
    warned = sum(1 for c in checks if c.warning)
    lines.append("")
    lines.append(
        f"{len(checks)} checks: {failed} failed, {warned} warning(s)"
        + ("" if failed else " - ready to deploy")
    )
    return "\n".join(lines)


def doctor(opts: GlobalOptions) -> None:
    """Check every layer a deploy needs (local Docker, config, SSH, servers, registry, proxy,
    app) and say how to fix what fails.

    Servers: Docker version and permission, disk, memory, ports 80/443. App: the health path
    answering from the container, app_port matching what it listens on, no redirect to https,
    the proxy's Host accepted. Lint findings are warnings. Exit 0 when every check passes."""
    from dockyard.cli.options import load, run_flow
    from dockyard.errors import DockyardError
    from dockyard.flows.ops.doctor import Check, failed, run

    try:
        config = load(opts)
    except DockyardError as exc:
        check = Check("local", "config", False, str(exc), "fix the config, then run doctor again")
        typer.echo(render([check]))
        raise typer.Exit(1) from None
    checks = [Check("local", "config", True, f"{config.service}: valid")]
    checks += run_flow(opts, run, command="doctor", config=config)
    typer.echo(render(checks))
    if failed(checks):
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("doctor")(with_global_options(doctor))
