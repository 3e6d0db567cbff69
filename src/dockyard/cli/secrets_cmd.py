"""`dockyard secrets fetch | extract | print` (runs locally, like `kamal secrets`)."""

from __future__ import annotations

from typing import Annotated

import typer

from dockyard.cli._factory import group

secrets_app = group(
    "secrets",
    "Fetch secrets from a password manager, pick one out, or show the resolved secrets.",
    context_settings=None,  # its help option comes from the root (--help), as before
)


@secrets_app.command("fetch")
def fetch(
    adapter: Annotated[
        str,
        typer.Option(
            "-a",
            "--adapter",
            help="Vault adapter: 1password, bitwarden, bitwarden-sm, aws_secrets_manager, gcp, "
            "doppler, enpass, lastpass, passbolt.",
            show_default=False,
        ),
    ],
    secrets: Annotated[
        list[str] | None,
        typer.Argument(
            help="Names to fetch (their form depends on the adapter).", show_default=False
        ),
    ] = None,
    account: Annotated[
        str | None,
        typer.Option("--account", help="The account identifier or username."),
    ] = None,
    from_: Annotated[
        str | None,
        typer.Option("--from", help="A vault, folder or project to fetch the secrets from."),
    ] = None,
    inline: Annotated[bool, typer.Option("--inline", hidden=True)] = False,
) -> str | None:
    """Fetch secrets from a vault and print them as a JSON object."""
    from dockyard.secrets.ops import fetch as fetch_secrets

    text = fetch_secrets(adapter, secrets or [], account=account, from_=from_, inline=inline)
    typer.echo(text)
    return text


@secrets_app.command("extract")
def extract(
    name: Annotated[str, typer.Argument(help="The secret to pick out.", show_default=False)],
    secrets: Annotated[
        str, typer.Argument(help="The JSON printed by `secrets fetch`.", show_default=False)
    ],
    inline: Annotated[bool, typer.Option("--inline", hidden=True)] = False,
) -> str:
    """Print one secret from the output of `secrets fetch` (by name, or by a `/NAME` suffix)."""
    from dockyard.secrets.ops import extract as extract_secret

    value = extract_secret(name, secrets)
    typer.echo(value)
    return value


@secrets_app.command("print")
def print_secrets(
    config_file: Annotated[
        str, typer.Option("-c", "--config-file", help="Path to the config file.")
    ] = "config/deploy.yml",
    destination: Annotated[
        str | None,
        typer.Option("-d", "--destination", help="Destination (reads .kamal/secrets.DEST)."),
    ] = None,
) -> None:
    """Print every resolved secret as KEY=value, unredacted (for debugging)."""
    from pathlib import Path

    from dockyard.config import load_config
    from dockyard.config.secrets import load_secrets

    root = Path.cwd()
    secrets_path = load_config(config_file, destination, root=root).secrets_path
    for key, value in load_secrets(root, destination, secrets_path).items():
        typer.echo(f"{key}={value}")


def register(app: typer.Typer) -> None:
    app.add_typer(secrets_app, name="secrets")
