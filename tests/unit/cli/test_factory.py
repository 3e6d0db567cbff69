"""`flow_command`: a declaration (signature and docstring) becomes a command that runs its
namesake in dockyard.flows.ops.<group> with the command's own values; every declared command
names a flow that exists and takes those values."""

from __future__ import annotations

import importlib
import inspect
import sys
import types
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import pytest
import typer
from typer.testing import CliRunner

from dockyard.cli import _factory
from dockyard.cli._factory import flow_command, group
from dockyard.cli.options import GlobalOptions
from dockyard.cli.register import COMMAND_MODULES, load_module_commands


def _declared() -> dict[str, _factory.FlowTarget]:
    found: dict[str, _factory.FlowTarget] = {}
    for module in COMMAND_MODULES:
        for name, command in load_module_commands(module).items():
            for sub, subcommand in getattr(command, "commands", {}).items():
                target = getattr(subcommand.callback, "flow_target", None)
                if target is not None:
                    found[f"{name} {sub}"] = target
    return found


def test_the_operational_groups_declare_their_simple_commands() -> None:
    declared = _declared()
    assert declared["app details"] == ("dockyard.flows.ops.app", "details", ())
    assert declared["accessory boot"] == ("dockyard.flows.ops.accessory", "boot", ("name",))
    assert declared["prune all"] == ("dockyard.flows.ops.prune", "all_", ("retain",))
    assert declared["build dev"] == ("dockyard.flows.ops.build", "dev", ("output", "no_cache"))
    assert len(declared) >= 30


def test_every_declared_command_names_a_flow_that_takes_its_values() -> None:
    for command, (module, function, own) in _declared().items():
        flow = getattr(importlib.import_module(module), function, None)
        assert flow is not None, f"{command}: no {module}.{function}"
        assert inspect.iscoroutinefunction(flow), command
        inspect.signature(flow).bind(object(), **dict.fromkeys(own))  # TypeError if not


Ran = list[tuple[str | None, str | None, Any]]


@pytest.fixture
def probe(monkeypatch: pytest.MonkeyPatch) -> tuple[typer.Typer, Ran]:
    """A group `probe` whose flows are a stand-in module, and a run_flow that runs a flow
    with a stand-in context and records the command and subcommand it was given."""
    flows = types.ModuleType("dockyard.flows.ops.probe")

    async def greet(ctx: object, *, who: str, loud: bool = False) -> str:
        return f"{ctx} greets {who}{'!' if loud else '.'}"

    async def greet_all(ctx: object) -> str:
        return "all greeted"

    flows.greet = greet  # type: ignore[attr-defined]
    flows.greet_all = greet_all  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "dockyard.flows.ops.probe", flows)
    ran: Ran = []

    def run_flow(
        opts: GlobalOptions,
        flow: Callable[[object], Awaitable[Any]],
        *,
        command: str | None = None,
        subcommand: str | None = None,
    ) -> Any:
        import asyncio

        ran.append((command, subcommand, opts))
        return asyncio.run(flow(f"ctx[{opts.hosts}]"))  # type: ignore[arg-type]

    monkeypatch.setattr(_factory, "run_flow", run_flow)
    return group("probe", "Probe things."), ran


def test_a_declared_command_runs_its_flow_with_its_own_values(
    probe: tuple[typer.Typer, Ran],
) -> None:
    app, ran = probe
    printed: list[str] = []

    @flow_command(app, "greet", output=printed.append)
    def greet(
        opts: GlobalOptions,
        who: Annotated[str, typer.Argument(help="Whom to greet.")],
        loud: Annotated[bool, typer.Option("--loud", help="Shout.")] = False,
    ) -> None:
        """Greet someone, from the servers."""

    @flow_command(app, "greet-all", output=printed.append, subcommand=False)
    def greet_all(opts: GlobalOptions) -> None:
        """Greet everyone (the command's word is `probe` alone, as `lock acquire`'s is)."""

    @flow_command(app, "wave")
    def wave(opts: GlobalOptions) -> None:
        """Not a flow of the module: fails when run."""

    runner = CliRunner()
    result = runner.invoke(app, ["greet", "bob", "--loud", "-h", "web1"])
    assert result.exit_code == 0, result.output
    assert printed == ["ctx[web1] greets bob!"]
    assert ran[0][:2] == ("probe", "greet")
    assert ran[0][2] == GlobalOptions(hosts="web1")

    help_text = runner.invoke(app, ["greet", "--help"]).output
    assert "Greet someone, from the servers." in help_text
    assert "--loud" in help_text and "--hosts" in help_text and "{who}" in help_text

    assert runner.invoke(app, ["greet-all"]).exit_code == 0
    assert printed[-1] == "all greeted"
    assert ran[-1][:2] == ("probe", None)

    missing = runner.invoke(app, ["wave"])
    assert isinstance(missing.exception, AttributeError)  # no dockyard.flows.ops.probe.wave
    assert len(ran) == 2  # nothing ran
