"""Running host commands: argv lists, no shell, failures become LabError with the output tail."""

from __future__ import annotations

import logging
import os
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from lab.errors import LabError

log = logging.getLogger("lab")


def tail(text: str, lines: int = 25) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


def run(
    argv: Sequence[str],
    *,
    check: bool = True,
    input: str | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float | None = 600,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run argv, capture stdout and stderr as text; raise LabError when it fails and `check`."""
    full_env = {**os.environ, **env} if env else None
    try:
        proc = subprocess.run(
            list(argv),
            input=input,
            capture_output=True,
            text=True,
            env=full_env,
            timeout=timeout,
            cwd=cwd,
            stdin=None if input is not None else subprocess.DEVNULL,
        )
    except FileNotFoundError as exc:
        raise LabError(f"{argv[0]}: command not found") from exc
    except subprocess.TimeoutExpired as exc:
        raise LabError(f"{' '.join(argv[:3])} ... did not finish within {timeout} s") from exc
    if check and proc.returncode != 0:
        raise LabError(
            f"`{' '.join(argv[:4])}{' ...' if len(argv) > 4 else ''}` failed "
            f"(exit {proc.returncode}):\n{tail(proc.stderr or proc.stdout)}"
        )
    return proc


def run_logged(
    argv: Sequence[str],
    logfile: Path,
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 1800,
) -> None:
    """Run a long command (a build) with its output in `logfile`; on failure show its tail."""
    logfile.parent.mkdir(parents=True, exist_ok=True)
    full_env = {**os.environ, **env} if env else None
    with logfile.open("w") as out:
        out.write(f"$ {' '.join(argv)}\n")
        out.flush()
        try:
            code = subprocess.call(
                list(argv),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=full_env,
                cwd=cwd,
                timeout=timeout,
            )
        except FileNotFoundError as exc:
            raise LabError(f"{argv[0]}: command not found") from exc
        except subprocess.TimeoutExpired as exc:
            raise LabError(f"{argv[0]} did not finish within {timeout} s; see {logfile}") from exc
    if code != 0:
        raise LabError(
            f"`{' '.join(argv[:3])} ...` failed (exit {code}); end of {logfile}:\n"
            f"{tail(logfile.read_text(errors='replace'))}"
        )
