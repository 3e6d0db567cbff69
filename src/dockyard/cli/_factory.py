"""The command groups (`dockyard app`, `proxy`, ...) and the one helper that turns a declaration
into an operational command.

Most operational commands do the same thing: take the global options and a few of their own,
run one function of ``dockyard.flows.ops.<group>`` with them and print what it returns. Such a
command is declared by its signature and docstring alone; :func:`flow_command` does the rest:

    @flow_command(lock_app, "status", output=typer.echo)
    def status(opts: GlobalOptions) -> None:
        \"\"\"Show who holds the deploy lock, since when and why.\"\"\"

is ``dockyard lock status``: its help is the docstring, its options are the global ones plus
the declaration's own parameters (as Typer reads them), and running it imports
``dockyard.flows.ops.lock`` (only then: ``--help`` stays light), runs ``lock.status(ctx)`` and
echoes the result. Own parameters are passed on by keyword: ``def boot(opts, name: Name)``
runs ``accessory.boot(ctx, name=...)``. Commands that do more (ask for confirmation, follow
logs, reshape their arguments) are written out with ``run_flow`` as usual.

Only Typer and the standard library at module level.
"""

from __future__ import annotations

import functools
import importlib
import inspect
from collections.abc import Callable
from typing import Any

import typer

from dockyard.cli.options import GlobalOptions, run_flow, with_global_options

__all__ = [
    "COMMAND_LINE_SETTINGS",
    "FLOWS_PACKAGE",
    "SUBCOMMAND_SETTINGS",
    "FlowTarget",
    "flow_command",
    "group",
]

SUBCOMMAND_SETTINGS: dict[str, Any] = {"help_option_names": ["--help"]}
#: For commands taking a command line (`exec`): words after the name are the command's own.
COMMAND_LINE_SETTINGS: dict[str, Any] = {
    "help_option_names": ["--help"],
    "ignore_unknown_options": True,
    "allow_interspersed_args": False,
}
#: Where a group's flows live: ``dockyard app ...`` runs functions of ``dockyard.flows.ops.app``.
FLOWS_PACKAGE = "dockyard.flows.ops"


def group(name: str, help: str, **settings: Any) -> typer.Typer:
    """A command group; without a subcommand it shows its help (unless ``settings`` say
    otherwise, as ``invoke_without_command=True`` for a group that is a command too)."""
    options: dict[str, Any] = {
        "no_args_is_help": True,
        "add_completion": False,
        "rich_markup_mode": None,
        "context_settings": SUBCOMMAND_SETTINGS,
        **settings,
    }
    return typer.Typer(name=name, help=help, **options)


#: What a declared command runs: the flows module, the function and the own parameter names.
FlowTarget = tuple[str, str, tuple[str, ...]]


def flow_command(
    app: typer.Typer,
    name: str,
    *,
    output: Callable[[Any], object] | None = None,
    subcommand: bool = True,
    **settings: Any,
) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Register the decorated declaration as the command ``<group> <name>`` of ``app``.

    The flow is the declaration's namesake in ``dockyard.flows.ops.<group>`` (``exec_`` for
    ``exec_``); it is called as ``flow(ctx, **own_values)``, inside :func:`run_flow` with
    ``command=<group>`` and ``subcommand=<name>`` (none when ``subcommand`` is false), and
    ``output`` receives what it returns. ``settings`` go to Typer's ``command()`` (e.g.
    ``context_settings``). Returns the registered command function."""
    command_name = app.info.name
    if not isinstance(command_name, str):
        raise TypeError("flow_command needs a named group (see group())")

    def declare(declaration: Callable[..., None]) -> Callable[..., None]:
        own = tuple(p for p in inspect.signature(declaration).parameters if p != "opts")
        target: FlowTarget = (f"{FLOWS_PACKAGE}.{command_name}", declaration.__name__, own)

        @functools.wraps(declaration)  # the signature and help Typer reads are the declaration's
        def command(opts: GlobalOptions, **values: Any) -> None:
            module = importlib.import_module(target[0])
            flow = getattr(module, target[1])
            result = run_flow(
                opts,
                lambda ctx: flow(ctx, **values),
                command=command_name,
                subcommand=name if subcommand else None,
            )
            if output is not None:
                output(result)

        command.flow_target = target  # type: ignore[attr-defined]  # read by the tests
        registered = with_global_options(command)
        app.command(name, **settings)(registered)
        return registered

    return declare
