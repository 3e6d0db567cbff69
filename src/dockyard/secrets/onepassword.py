"""1Password through `op`.

Names are `VAULT/ITEM[/SECTION/FIELD]` (an `op://` prefix is allowed); a name without a field
means the item's `password` field. Keys in the result are the field references without `op://`
and without a trailing `/password`. With no names, `--from VAULT/ITEM` fetches every field.
"""

from __future__ import annotations

from typing import Any

from .base import Adapter, SecretsError, VendorCli, parse_json, prefixed

OP = VendorCli("op", "the 1Password CLI", "https://developer.1password.com/docs/cli/get-started/")


class OnePassword(Adapter):
    name = "1password"
    cli = OP

    def login(self, account: str | None) -> str | None:
        assert account is not None  # guaranteed by Adapter.fetch
        if OP.run("account", "get", "--account", account).ok:
            return None
        result = OP.interactive("signin", "--account", account, "--force", "--raw")
        if not result.ok:
            raise SecretsError(f"Failed to sign in to 1Password account {account}")
        return result.stdout.strip() or None

    def fetch_secrets(
        self, names: list[str], *, account: str | None, from_: str | None, session: str | None
    ) -> dict[str, Any]:
        results: dict[str, Any] = {}
        if not names:
            if not from_:
                raise SecretsError(
                    "name the secrets to fetch, or give --from VAULT/ITEM to fetch a whole item"
                )
            vault, _, item = from_.removeprefix("op://").partition("/")
            item = item.split("/")[0]
            data = self._item_get(vault, item, None, account, session)
            if not isinstance(data, dict) or not isinstance(data.get("fields"), list):
                raise SecretsError(f"1Password returned no fields for {item} in vault {vault}")
            results.update(_fields_map(data["fields"]))
            return results
        for vault, items in _vaults_items_fields(prefixed(names, from_)).items():
            for item, fields in items.items():
                data = self._item_get(vault, item, fields, account, session)
                if len(fields) == 1:
                    data = [data]
                if not isinstance(data, list):
                    raise SecretsError(f"1Password returned unexpected JSON for {item}")
                results.update(_fields_map(data))
        return results

    def _item_get(
        self,
        vault: str,
        item: str,
        fields: list[str] | None,
        account: str | None,
        session: str | None,
    ) -> Any:
        args = ["item", "get", item, "--vault", vault, "--format", "json"]
        if account:
            args += ["--account", account]
        if session:
            args += ["--session", session]
        if fields:
            args += ["--fields", ",".join(f"label={field}" for field in fields)]
        what = f"{', '.join(fields)} " if fields else ""
        failure = f"Could not read {what}from {item} in the {vault} 1Password vault"
        return parse_json(OP.output(*args, failure=failure), "op", failure)


def _vaults_items_fields(names: list[str]) -> dict[str, dict[str, list[str]]]:
    vaults: dict[str, dict[str, list[str]]] = {}
    for name in names:
        parts = name.removeprefix("op://").split("/")
        if len(parts) < 2 or not parts[0] or not parts[1]:
            raise SecretsError(
                f"1Password secret {name!r} must be VAULT/ITEM[/FIELD]",
                hint="or pass --from VAULT/ITEM and give field names",
            )
        vault, item, fields = parts[0], parts[1], parts[2:] or ["password"]
        vaults.setdefault(vault, {}).setdefault(item, []).append(".".join(fields))
    return vaults


def _fields_map(fields: list[Any]) -> dict[str, Any]:
    mapped: dict[str, Any] = {}
    for field in fields:
        if not isinstance(field, dict) or not isinstance(field.get("reference"), str):
            continue
        key = field["reference"].removeprefix("op://").removesuffix("/password")
        mapped[key] = field.get("value")
    return mapped
