"""One place that attaches every command group to the application.

Each module named here defines `register(app)` and imports only Typer at module level.
"""

from __future__ import annotations

import importlib

import typer

#: Modules under dockyard.cli that add commands. Keep their top-level imports light.
COMMAND_MODULES: tuple[str, ...] = (
    "secrets_cmd",
    "config_cmd",
    "docs_cmd",
    "init_cmd",
    "deploy_cmd",
    "app_cmd",
    "proxy_cmd",
    "accessory_cmd",
    "server_cmd",
    "lock_cmd",
    "prune_cmd",
    "details_cmd",
)


def add_commands(app: typer.Typer) -> None:
    for name in COMMAND_MODULES:
        module = importlib.import_module(f"dockyard.cli.{name}")
        module.register(app)
