"""The `dockyard` command line.

The entry point imports nothing heavy: Typer is loaded in `main()`, and each command imports
the layers it needs (config, remote, flows) inside its own body, so `dockyard --help` stays fast.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    """Run the CLI and turn every Dockyard error into a message and an exit code."""
    from dockyard.errors import DockyardError

    from .app import build_app

    app = build_app()
    args = sys.argv[1:] if argv is None else argv
    try:
        # Without standalone mode, click returns typer.Exit's code instead of raising it.
        code = app(args=args, prog_name="dockyard", standalone_mode=False)
    except DockyardError as exc:
        sys.stderr.write(f"Error: {exc.render()}\n")
        return exc.exit_code
    except KeyboardInterrupt:
        sys.stderr.write("Interrupted.\n")
        return 130
    except SystemExit as exc:  # raised by typer.Exit and --help
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    except Exception as exc:  # the one place that renders unexpected errors
        return _unexpected(exc, args)
    return code if isinstance(code, int) else 0


def _unexpected(exc: BaseException, args: list[str]) -> int:
    import typer
    from typer._click.exceptions import ClickException  # Typer's own copy of click

    if isinstance(exc, typer.Abort):
        sys.stderr.write("Aborted.\n")
        return 1
    if isinstance(exc, ClickException):
        exc.show()
        return int(exc.exit_code)
    if "-v" in args or "--verbose" in args:
        import traceback

        traceback.print_exception(exc)
    else:
        sys.stderr.write(
            f"Error: unexpected {type(exc).__name__}: {exc}\n"
            "  hint: run again with -v for the details, and report it as a bug.\n"
        )
    return 1
