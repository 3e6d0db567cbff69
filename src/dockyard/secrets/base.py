"""What every adapter shares: the error type, the vendor-CLI runner and the adapter base class."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from dockyard.errors import DockyardError


class SecretsError(DockyardError):
    """A secret could not be fetched or extracted."""

    layer = "secrets"


@dataclass(frozen=True, slots=True)
class CliResult:
    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def _tail(text: str, lines: int = 10) -> str:
    kept = text.strip().splitlines()[-lines:]
    return "\n".join(kept)


@dataclass(frozen=True, slots=True)
class VendorCli:
    """One vendor command-line tool: how to find it, run it and explain its absence."""

    program: str
    title: str
    install_url: str

    def ensure_installed(self) -> None:
        if shutil.which(self.program) is None:
            raise self._missing()

    def _missing(self) -> SecretsError:
        return SecretsError(
            f"{self.title} (`{self.program}`) is not installed or not on PATH",
            hint=f"install it from {self.install_url}, then try again",
        )

    def _env(self, extra: Mapping[str, str] | None) -> dict[str, str] | None:
        return None if not extra else {**os.environ, **extra}

    def run(self, *args: str, env: Mapping[str, str] | None = None) -> CliResult:
        """Run non-interactively, capturing both output streams."""
        try:
            proc = subprocess.run(
                [self.program, *args],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                env=self._env(env),
                check=False,
            )
        except FileNotFoundError as exc:
            raise self._missing() from exc
        except OSError as exc:
            raise SecretsError(f"could not run `{self.program}`: {exc}") from exc
        return CliResult(
            proc.returncode,
            proc.stdout.decode("utf-8", errors="replace"),
            proc.stderr.decode("utf-8", errors="replace"),
        )

    def interactive(self, *args: str, env: Mapping[str, str] | None = None) -> CliResult:
        """Run with our terminal attached (for sign-in prompts); only standard output is kept."""
        try:
            proc = subprocess.run(
                [self.program, *args],
                stdout=subprocess.PIPE,
                env=self._env(env),
                check=False,
            )
        except FileNotFoundError as exc:
            raise self._missing() from exc
        except OSError as exc:
            raise SecretsError(f"could not run `{self.program}`: {exc}") from exc
        return CliResult(proc.returncode, proc.stdout.decode("utf-8", errors="replace"), "")

    def check(self, result: CliResult, message: str) -> CliResult:
        """Raise `message` plus the tool's error output when `result` failed."""
        if not result.ok:
            detail = _tail(result.stderr) or _tail(result.stdout)
            text = f"{message} (`{self.program}` exited with status {result.returncode})"
            if detail:
                text += f":\n{detail}"
            raise SecretsError(text)
        return result

    def output(self, *args: str, failure: str, env: Mapping[str, str] | None = None) -> str:
        """Run and return standard output; `failure` is the message when it fails."""
        return self.check(self.run(*args, env=env), failure).stdout

    def json(self, *args: str, failure: str, env: Mapping[str, str] | None = None) -> Any:
        """Run and parse standard output as JSON."""
        return parse_json(self.output(*args, failure=failure, env=env), self.program, failure)


def parse_json(text: str, program: str, failure: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        shown = _tail(text, 3) or "(nothing)"
        raise SecretsError(
            f"{failure}: `{program}` did not print JSON; it printed: {shown}"
        ) from exc


def prefixed(names: Sequence[str], from_: str | None) -> list[str]:
    """Kamal's `--from` handling: `NAME` becomes `FROM/NAME`."""
    return [f"{from_}/{name}" if from_ else name for name in names]


class Adapter:
    """Base of the vault adapters. Subclasses set the class attributes and two methods."""

    #: The `--adapter` name shown to users.
    name: ClassVar[str]
    cli: ClassVar[VendorCli | None]
    requires_account: ClassVar[bool] = True

    def fetch(
        self, names: Sequence[str], *, account: str | None = None, from_: str | None = None
    ) -> dict[str, Any]:
        """Sign in if needed, then return the requested secrets by name."""
        if self.requires_account and not (account and account.strip()):
            raise SecretsError(
                f"the {self.name} adapter needs --account",
                hint=f"dockyard secrets fetch --adapter {self.name} --account ACCOUNT ...",
            )
        if self.cli is not None:
            self.cli.ensure_installed()
        session = self.login(account)
        return self.fetch_secrets(list(names), account=account, from_=from_, session=session)

    def login(self, account: str | None) -> str | None:
        """Make sure the CLI is signed in; return a session token when the vendor uses one."""
        return None

    def fetch_secrets(
        self, names: list[str], *, account: str | None, from_: str | None, session: str | None
    ) -> dict[str, Any]:
        raise NotImplementedError
