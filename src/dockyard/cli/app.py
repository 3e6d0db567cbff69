"""Build the Typer application. Imports only Typer; commands import their layers lazily."""

from __future__ import annotations

import typer

from dockyard import __version__


def build_app() -> typer.Typer:
    from .register import LazyGroup

    app = typer.Typer(
        name="dockyard",
        cls=LazyGroup,
        help="Deploy containerized web apps to your own servers, with zero downtime.\n\n"
        "Reads Kamal 2 projects (config/deploy.yml, .kamal/secrets, .kamal/hooks) unchanged.",
        add_completion=False,
        no_args_is_help=True,
        rich_markup_mode=None,
        pretty_exceptions_enable=False,
        context_settings={"help_option_names": ["--help"]},
    )

    @app.callback()
    def root() -> None:
        """Deploy containerized web apps to your own servers, with zero downtime."""

    @app.command("version")
    def version() -> None:
        """Show the Dockyard version."""
        typer.echo(__version__)

    return app
