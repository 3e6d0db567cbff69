"""LastPass through `lpass show --json`; names are entry names or `FOLDER/NAME` paths."""

from __future__ import annotations

from typing import Any

from .base import Adapter, SecretsError, VendorCli, prefixed

LPASS = VendorCli("lpass", "the LastPass CLI", "https://github.com/lastpass/lastpass-cli")


class LastPass(Adapter):
    name = "lastpass"
    cli = LPASS

    def login(self, account: str | None) -> str | None:
        assert account is not None
        status = LPASS.run("status", "--color", "never").stdout.strip()
        if status != f"Logged in as {account}." and not LPASS.interactive("login", account).ok:
            raise SecretsError(f"Failed to log in to LastPass as {account}")
        return None

    def fetch_secrets(
        self, names: list[str], *, account: str | None, from_: str | None, session: str | None
    ) -> dict[str, Any]:
        full = prefixed(names, from_)
        if not full:
            raise SecretsError("name the LastPass entries to fetch")
        entries = LPASS.json(
            "show", *full, "--json", failure=f"Could not read {full} from LastPass"
        )
        if not isinstance(entries, list):
            raise SecretsError("LastPass returned unexpected JSON")
        results = {
            str(e.get("fullname")): e.get("password") for e in entries if isinstance(e, dict)
        }
        missing = [name for name in full if name not in results]
        if missing:
            raise SecretsError(f"Could not find {', '.join(missing)} in LastPass")
        return results
