"""Load a project's secrets from `.kamal/secrets*`, as Kamal does.

Files, in order (later values win, missing files are skipped):

* without a destination: `<secrets_path>-common`, then `<secrets_path>`;
* with destination D: `<secrets_path>-common`, then `<secrets_path>.D`. The plain
  `<secrets_path>` file is *not* read then (Kamal 2.11 behaves the same way).

Each file is parsed on its own (`dockyard.config.dotenv`): `$VAR` sees earlier keys of the same
file and the process environment, not keys of the other file. `KAMAL_DESTINATION` is set to the
destination (or removed) for look-ups and commands, as Kamal sets it before reading its config.

Command substitutions:

* `$(kamal secrets fetch|extract ...)` and `$(dockyard secrets ...)` run in-process, exactly as
  Kamal runs `kamal secrets` in-process, so the usual
  `SECRETS=$(kamal secrets fetch ...)` / `X=$(kamal secrets extract X ${SECRETS})` pattern works
  without Kamal installed.
* Any other command runs through `/bin/sh` in the project root. So that a `kamal secrets ...`
  call nested deeper in such a command (in a pipeline, say) still works without Kamal, a
  stand-in `kamal` script is put at the *end* of `PATH`: an installed Kamal is found first and
  keeps working; otherwise the stand-in forwards `kamal secrets ...` to `dockyard secrets ...` and
  refuses anything else with a clear message.
* A command that exits non-zero is an error naming the file and line (Kamal would silently use
  whatever it printed).
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
import tempfile
from pathlib import Path

from dockyard.config.dotenv import Location, read_dotenv, run_in_shell
from dockyard.errors import ConfigError, DockyardError

__all__ = ["load_secrets", "secrets_files"]

_SHIM = """#!/bin/sh
# Dockyard's stand-in for `kamal` while it evaluates a secrets file. Only `kamal secrets ...`.
if [ "$1" = "secrets" ]; then
  shift
  exec {python} -m dockyard secrets "$@"
fi
echo "kamal: not installed; while reading secrets Dockyard only stands in for 'kamal secrets'" >&2
exit 127
"""


def secrets_files(
    root: Path, destination: str | None, secrets_path: str = ".kamal/secrets"
) -> list[Path]:
    """The files Kamal would read, in order, whether or not they exist."""
    base = Path(secrets_path)
    if not base.is_absolute():
        base = root / base
    last = base.with_name(f"{base.name}.{destination}") if destination else base
    return [base.with_name(f"{base.name}-common"), last]


def load_secrets(
    root: Path, destination: str | None, secrets_path: str = ".kamal/secrets"
) -> dict[str, str]:
    """Every secret of the project at `root` for `destination`, as plain strings."""
    environ = dict(os.environ)
    if destination:
        environ["KAMAL_DESTINATION"] = destination
    else:
        environ.pop("KAMAL_DESTINATION", None)
    runner = _Substitutions(root, environ)
    try:
        secrets: dict[str, str] = {}
        for path in secrets_files(root, destination, secrets_path):
            if path.is_file():
                shown = _display(path, root)
                secrets.update(
                    read_dotenv(path, environ=environ, run_command=runner, display_name=shown)
                )
        return secrets
    finally:
        runner.close()


def _display(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


class _Substitutions:
    """Evaluates the `$(...)` commands of secrets files (see the module docstring)."""

    def __init__(self, root: Path, environ: dict[str, str]) -> None:
        self.root = root
        self.environ = environ
        self._shim_dir: str | None = None

    def __call__(self, command: str, where: Location) -> str:
        from dockyard.secrets.ops import is_secrets_command, run_inline

        if is_secrets_command(command):
            try:
                return run_inline(command)
            except DockyardError as exc:
                raise ConfigError(f"{where}: {exc.message}", hint=exc.hint) from exc
        return run_in_shell(command, where, cwd=self.root, env=self._shell_env())

    def _shell_env(self) -> dict[str, str]:
        if self._shim_dir is None:
            self._shim_dir = tempfile.mkdtemp(prefix="dockyard-kamal-shim-")
            shim = Path(self._shim_dir) / "kamal"
            shim.write_text(_SHIM.format(python=shlex.quote(sys.executable)))
            shim.chmod(0o755)
        env = dict(self.environ)
        path = env.get("PATH", os.defpath)
        env["PATH"] = f"{path}{os.pathsep}{self._shim_dir}" if path else self._shim_dir
        return env

    def close(self) -> None:
        if self._shim_dir is not None:
            shutil.rmtree(self._shim_dir, ignore_errors=True)
            self._shim_dir = None
