"""Enpass through `enpass-cli`. Enpass vaults are local files, so there is no account or login.

`--from` is the vault directory. Names are `TITLE` (every password field of the item) or
`TITLE/LABEL` (one field); keys are `TITLE/LABEL` (or `TITLE` for an unlabelled field).
"""

from __future__ import annotations

from typing import Any

from .base import Adapter, SecretsError, VendorCli

ENPASS = VendorCli("enpass-cli", "the Enpass CLI", "https://github.com/hazcod/enpass-cli")


class Enpass(Adapter):
    name = "enpass"
    cli = ENPASS
    requires_account = False

    def fetch_secrets(
        self, names: list[str], *, account: str | None, from_: str | None, session: str | None
    ) -> dict[str, Any]:
        if not from_:
            raise SecretsError("the enpass adapter needs --from VAULT_DIRECTORY")
        if not names:
            raise SecretsError("name the Enpass items to fetch")
        titles = list(dict.fromkeys(name.rpartition("/")[0] or name for name in names))
        entries = ENPASS.json(
            "-json", "-vault", from_, "show", *titles, failure="Could not read from Enpass"
        )
        if not isinstance(entries, list):
            raise SecretsError("Enpass returned unexpected JSON")
        results: dict[str, Any] = {}
        for entry in entries:
            if not isinstance(entry, dict):
                continue
            title, label, password = entry.get("title"), entry.get("label"), entry.get("password")
            if not title or not password:
                continue
            key = f"{title}/{label}" if label else str(title)
            if title in names or key in names:
                if key in results:
                    raise SecretsError(f"{key} is present more than once in Enpass")
                results[key] = password
        return results
