"""The `fetch` and `extract` operations, shared by the CLI and by secrets-file substitutions.

Output formats follow Kamal: `fetch` gives a compact JSON object; with `inline` (used when a
secrets file runs `$(kamal secrets fetch ...)`) the JSON comes back shell-escaped, so that a later
`$(kamal secrets extract NAME ${SECRETS})` can pass it as a single argument.
"""

from __future__ import annotations

import argparse
import importlib
import json
import re
import shlex
from collections.abc import Sequence
from typing import Any

from .base import Adapter, SecretsError

#: adapter name -> (module, class). Aliases are the spellings Kamal accepts.
ADAPTERS: dict[str, tuple[str, str]] = {
    "1password": ("onepassword", "OnePassword"),
    "bitwarden": ("bitwarden", "Bitwarden"),
    "bitwarden-sm": ("bitwarden", "BitwardenSecretsManager"),
    "aws_secrets_manager": ("aws", "AwsSecretsManager"),
    "gcp": ("gcp", "GcpSecretManager"),
    "doppler": ("doppler", "Doppler"),
    "lastpass": ("lastpass", "LastPass"),
    "passbolt": ("passbolt", "Passbolt"),
    "enpass": ("enpass", "Enpass"),
    "test": ("testing", "Test"),
}
_ALIASES = {
    "one_password": "1password",
    "onepassword": "1password",
    "bitwarden_secrets_manager": "bitwarden-sm",
    "awssecretsmanager": "aws_secrets_manager",
    "gcp_secret_manager": "gcp",
    "gcpsecretmanager": "gcp",
    "last_pass": "lastpass",
}


def adapter_names() -> list[str]:
    """The documented `--adapter` values (the `test` adapter is left out)."""
    return [name for name in ADAPTERS if name != "test"]


def lookup(name: str) -> Adapter:
    """The adapter called `name` (Kamal's spellings, any case)."""
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    if key not in ADAPTERS:
        raise SecretsError(
            f"Unknown secrets adapter: {name}",
            hint=f"use one of: {', '.join(adapter_names())}",
        )
    module_name, class_name = ADAPTERS[key]
    module = importlib.import_module(f"dockyard.secrets.{module_name}")
    adapter: Adapter = getattr(module, class_name)()
    return adapter


def fetch(
    adapter: str,
    names: Sequence[str],
    *,
    account: str | None = None,
    from_: str | None = None,
    inline: bool = False,
) -> str:
    """Fetch `names` with `adapter`; the JSON object as text (shell-escaped when `inline`)."""
    results = lookup(adapter).fetch(names, account=account, from_=from_)
    text = json.dumps(results, ensure_ascii=False, separators=(",", ":"))
    return shell_escape(text) if inline else text


def extract(name: str, secrets_json: str) -> str:
    """The value of `name` in the JSON from `fetch`: the exact key, else a key ending `/name`."""
    try:
        secrets = json.loads(secrets_json)
    except ValueError as exc:
        raise SecretsError(
            f"Could not read the secrets JSON to extract {name} from: {exc}",
            hint="pass the output of `dockyard secrets fetch` as one argument",
        ) from exc
    if not isinstance(secrets, dict):
        raise SecretsError(f"Could not find secret {name}: the secrets JSON is not an object")
    value = secrets.get(name)
    if value is None:
        value = next((v for k, v in secrets.items() if k.endswith(f"/{name}")), None)
    if value is None:
        raise SecretsError(f"Could not find secret {name}")
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


_SHELL_SAFE = re.compile(r"[^A-Za-z0-9_\-.,:+/@\n]")


def shell_escape(text: str) -> str:
    """Ruby's `Shellwords.escape`: backslash every unsafe character, quote newlines."""
    if not text:
        return "''"
    return _SHELL_SAFE.sub(lambda m: "\\" + m[0], text).replace("\n", "'\n'")


_INLINE = re.compile(r"\A\s*(?:kamal|dockyard)\s+secrets\s+")


def is_secrets_command(command: str) -> bool:
    """True for `kamal secrets ...` / `dockyard secrets ...` (run in-process, as Kamal does)."""
    return _INLINE.match(command) is not None


class _ArgumentParser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # argparse would print and exit
        raise SecretsError(f"{self.prog}: {message}")


def _parser(action: str) -> argparse.ArgumentParser:
    parser = _ArgumentParser(prog=f"secrets {action}", add_help=False, allow_abbrev=False)
    parser.add_argument("--inline", action="store_true")
    # Kamal's global options are accepted after any command; they do not matter here.
    for flag in ("-v", "--verbose", "-q", "--quiet", "-p", "--primary", "-H", "--skip-hooks"):
        parser.add_argument(flag, action="store_true", dest=f"ignored{flag}")
    for flag in ("-d", "--destination", "-c", "--config-file", "--version", "-h", "--hosts"):
        parser.add_argument(flag, dest=f"ignored{flag}")
    parser.add_argument("-r", "--roles", dest="ignored_roles")
    if action == "fetch":
        parser.add_argument("-a", "--adapter", required=True)
        parser.add_argument("--account")
        parser.add_argument("--from", dest="from_")
        parser.add_argument("names", nargs="*")
    else:
        parser.add_argument("name")
        parser.add_argument("secrets")
    return parser


def run_inline(command: str) -> str:
    """Evaluate `kamal secrets fetch|extract ...` in-process and return what it would print."""
    try:
        words = shlex.split(command)
    except ValueError as exc:
        raise SecretsError(f"cannot split `{command}` into words: {exc}") from exc
    action = words[2] if len(words) > 2 else ""
    if action not in ("fetch", "extract"):
        raise SecretsError(
            f"`{command}`: only `secrets fetch` and `secrets extract` can be used in a secrets file"
        )
    args = _parser(action).parse_intermixed_args(words[3:])
    if action == "fetch":
        return fetch(args.adapter, args.names, account=args.account, from_=args.from_, inline=True)
    return extract(args.name, args.secrets)
