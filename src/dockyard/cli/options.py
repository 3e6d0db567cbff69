"""The global options every command takes (as Kamal's class options), and how a command turns
them into a :class:`~dockyard.flows.context.DeployContext` and runs a flow.

    @app.command("deploy")
    @with_global_options
    def deploy(opts: GlobalOptions, skip_push: bool = False) -> None:
        run_flow(opts, lambda ctx: deploy_flow(ctx, skip_push=skip_push), command="deploy")

Only Typer and the standard library are imported at module level; config, remote and flows are
imported inside the functions (``dockyard --help`` must stay light).
"""

from __future__ import annotations

import functools
import inspect
import sys
import typing
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

if TYPE_CHECKING:
    from dockyard.config.models import Config
    from dockyard.flows.context import DeployContext, Event, Reporter

__all__ = [
    "GlobalOptions",
    "build_context",
    "load",
    "make_reporter",
    "run_flow",
    "with_global_options",
]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class GlobalOptions:
    """``-v -q -h -r -p -c -d -H --version`` as given on the command line."""

    verbose: bool = False
    quiet: bool = False
    hosts: str | None = None
    roles: str | None = None
    primary: bool = False
    config_file: Path | None = None
    destination: str | None = None
    skip_hooks: bool = False
    version: str | None = None

    @property
    def verbosity(self) -> int:
        return int(self.verbose) - int(self.quiet)


_GLOBAL_PARAMS: list[tuple[str, Any, Any]] = [
    (
        "verbose",
        Annotated[bool, typer.Option("-v", "--verbose", help="Detailed logging.")],
        False,
    ),
    (
        "quiet",
        Annotated[bool, typer.Option("-q", "--quiet", help="Minimal logging.")],
        False,
    ),
    (
        "hosts",
        Annotated[
            str | None,
            typer.Option(
                "-h",
                "--hosts",
                help="Run commands on these hosts only (comma-separated; * wildcards).",
                show_default=False,
            ),
        ],
        None,
    ),
    (
        "roles",
        Annotated[
            str | None,
            typer.Option(
                "-r",
                "--roles",
                help="Run commands on hosts of these roles only (comma-separated; * wildcards).",
                show_default=False,
            ),
        ],
        None,
    ),
    (
        "primary",
        Annotated[bool, typer.Option("-p", "--primary", help="Run commands on the primary host.")],
        False,
    ),
    (
        "config_file",
        Annotated[
            Path | None,
            typer.Option(
                "-c",
                "--config-file",
                help="Path to the config file (default: config/deploy.yml).",
                show_default=False,
            ),
        ],
        None,
    ),
    (
        "destination",
        Annotated[
            str | None,
            typer.Option(
                "-d",
                "--destination",
                help="Destination: also reads config/deploy.DESTINATION.yml.",
                show_default=False,
            ),
        ],
        None,
    ),
    (
        "skip_hooks",
        Annotated[bool, typer.Option("-H", "--skip-hooks", help="Do not run hooks.")],
        False,
    ),
    (
        "version",
        Annotated[
            str | None,
            typer.Option(
                "--version",
                help="Image version (default: $VERSION, else the git HEAD commit).",
                show_default=False,
            ),
        ],
        None,
    ),
]

GLOBAL_OPTION_NAMES = tuple(name for name, _, _ in _GLOBAL_PARAMS)


def with_global_options(fn: Callable[..., T]) -> Callable[..., T]:
    """Give a command the global options: its ``opts: GlobalOptions`` parameter is replaced,
    in the signature Typer sees, by the nine options; the wrapper packs them back."""
    signature = inspect.signature(fn)
    resolved = typing.get_type_hints(fn, include_extras=True)
    own = [
        p.replace(annotation=resolved.get(p.name, p.annotation))
        for p in signature.parameters.values()
        if p.name != "opts"
    ]
    added = [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=hint)
        for name, hint, default in _GLOBAL_PARAMS
    ]
    own_kinds = [
        p.replace(kind=inspect.Parameter.KEYWORD_ONLY)
        if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
        else p
        for p in own
    ]

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        values = {name: kwargs.pop(name) for name in GLOBAL_OPTION_NAMES if name in kwargs}
        return fn(*args, opts=GlobalOptions(**values), **kwargs)

    wrapper.__signature__ = signature.replace(parameters=[*own_kinds, *added])  # type: ignore[attr-defined]
    hints = {p.name: p.annotation for p in own}
    if "return" in resolved:
        hints["return"] = resolved["return"]
    hints.update({name: hint for name, hint, _ in _GLOBAL_PARAMS})
    wrapper.__annotations__ = hints
    return wrapper


def load(opts: GlobalOptions) -> Config:
    """The config for these options (``--version`` wins over ``$VERSION`` and git)."""
    import sys

    from dockyard.config import load_config

    config = load_config(opts.config_file, opts.destination, version=opts.version)
    for warning in config.warnings:  # Kamal 1 forms read as their Kamal 2 equivalents
        sys.stderr.write(f"Warning: {warning}\n")
    return config


def make_reporter(opts: GlobalOptions) -> Reporter:
    """Render flow events on stderr: steps and warnings always (unless -q), output lines with
    their host, commands only with -v."""

    def report(event: Event) -> None:
        verbosity = opts.verbosity
        if event.kind == "warn":
            line = f"  WARNING: {event.text}"
        elif verbosity < 0:
            return
        elif event.kind == "step":
            line = event.text
        elif event.kind == "info":
            line = f"  {event.text}"
        elif event.kind == "command":
            if verbosity < 1:
                return
            line = f"  $ {event.text}"
        else:
            line = f"  {event.text}"
        if event.host and event.kind != "step":
            line = f"  [{event.host}]{line[1:] if line.startswith('  ') else ' ' + line}"
        sys.stderr.write(line + "\n")
        sys.stderr.flush()

    return report


def build_context(
    opts: GlobalOptions,
    config: Config | None = None,
    *,
    command: str | None = None,
    subcommand: str | None = None,
    reporter: Reporter | None = None,
) -> Any:
    """An async context manager yielding the :class:`DeployContext` for these options:
    ``async with build_context(opts, command="deploy") as ctx: ...``."""
    import os

    from dockyard.remote.mux import prestart

    prestart(os.environ)  # the SSH helper loads on the other core while the config is read
    from dockyard.flows.context import Selection, open_context

    return open_context(
        config if config is not None else load(opts),
        selection=Selection.parse(opts.hosts, opts.roles, opts.primary),
        reporter=reporter or make_reporter(opts),
        skip_hooks=opts.skip_hooks,
        command=command,
        subcommand=subcommand,
        verbosity=opts.verbosity,
    )


def run_flow(
    opts: GlobalOptions,
    flow: Callable[[DeployContext], Awaitable[T]],
    *,
    command: str | None = None,
    subcommand: str | None = None,
    config: Config | None = None,
) -> T:
    """Load the config, open the context (SSH pool), run ``flow(ctx)`` to completion and close
    the connections. Errors propagate as ``DockyardError`` for ``dockyard.cli.main`` to render."""
    import asyncio

    async def main() -> T:
        async with build_context(opts, config, command=command, subcommand=subcommand) as ctx:
            return await flow(ctx)

    return asyncio.run(main())
