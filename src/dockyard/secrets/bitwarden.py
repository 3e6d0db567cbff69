"""Bitwarden through `bw`, and Bitwarden Secrets Manager through `bws`.

`bw`: names are `ITEM` (the login password, or every custom field when the item has no
password) or `ITEM/FIELD` (a custom field, keyed `ITEM/FIELD`). The adapter logs in and unlocks
when needed and passes the session in `BW_SESSION`, then runs `bw sync`.

`bws`: names are secret ids, or `all`, or `PROJECT/all`; keys are the secrets' own keys. The
access token comes from the environment (`BWS_ACCESS_TOKEN`), as `bws` expects.
"""

from __future__ import annotations

from typing import Any

from .base import Adapter, SecretsError, VendorCli, parse_json, prefixed

BW = VendorCli("bw", "the Bitwarden CLI", "https://bitwarden.com/help/cli/")
BWS = VendorCli(
    "bws", "the Bitwarden Secrets Manager CLI", "https://bitwarden.com/help/secrets-manager-cli/"
)


def _session_env(session: str | None) -> dict[str, str] | None:
    return {"BW_SESSION": session} if session else None


def _status(session: str | None) -> str:
    data = BW.json(
        "status", failure="Could not read the Bitwarden status", env=_session_env(session)
    )
    return str(data.get("status")) if isinstance(data, dict) else ""


class Bitwarden(Adapter):
    name = "bitwarden"
    cli = BW

    def login(self, account: str | None) -> str | None:
        assert account is not None
        session: str | None = None
        status = _status(None)
        if status == "unauthenticated":
            BW.interactive("login", account)
            status = _status(None)
        if status == "locked":
            session = BW.interactive("unlock", "--raw").stdout.strip() or None
            status = _status(session)
        if status != "unlocked":
            raise SecretsError(
                f"Failed to log in to and unlock Bitwarden (status: {status or 'unknown'})"
            )
        BW.output("sync", failure="Failed to sync Bitwarden", env=_session_env(session))
        return session

    def fetch_secrets(
        self, names: list[str], *, account: str | None, from_: str | None, session: str | None
    ) -> dict[str, Any]:
        items: dict[str, list[str]] = {}
        for name in prefixed(names, from_):
            item, _, rest = name.partition("/")
            fields = items.setdefault(item, [])
            field = rest.split("/")[0]
            if field:
                fields.append(field)
        results: dict[str, Any] = {}
        for item, fields in items.items():
            failure = f"Could not read {item} from Bitwarden"
            data = parse_json(
                BW.output("get", "item", item, failure=failure, env=_session_env(session)),
                "bw",
                failure,
            )
            if not isinstance(data, dict):
                raise SecretsError(f"{failure}: unexpected JSON")
            password = (data.get("login") or {}).get("password")
            custom = data.get("fields") or []
            if fields:
                results.update(_pick_fields(item, fields, custom))
            elif password:
                results[item] = password
            elif custom:
                names_ = [str(f.get("name")) for f in custom if isinstance(f, dict)]
                results.update(_pick_fields(item, names_, custom))
            else:
                raise SecretsError(
                    f"Item {item} is not a login type item and no fields were specified"
                )
        return results


def _pick_fields(item: str, fields: list[str], custom: list[Any]) -> dict[str, Any]:
    picked: dict[str, Any] = {}
    for field in fields:
        found = next((f for f in custom if isinstance(f, dict) and f.get("name") == field), None)
        if found is None:
            raise SecretsError(f"Could not find field {field} in item {item} in Bitwarden")
        picked[f"{item}/{field}"] = found.get("value")
    return picked


class BitwardenSecretsManager(Adapter):
    name = "bitwarden-sm"
    cli = BWS
    requires_account = False

    def login(self, account: str | None) -> str | None:
        BWS.check(
            BWS.run("project", "list"),
            "Could not authenticate to Bitwarden Secrets Manager. "
            "Did you set a valid access token (BWS_ACCESS_TOKEN)?",
        )
        return None

    def fetch_secrets(
        self, names: list[str], *, account: str | None, from_: str | None, session: str | None
    ) -> dict[str, Any]:
        if not names:
            raise SecretsError(
                "You must specify what to retrieve from Bitwarden Secrets Manager",
                hint="give secret ids, `all`, or `PROJECT_ID/all`",
            )
        names = prefixed(names, from_)
        results: dict[str, Any] = {}
        listing: list[str] | None = None
        if len(names) == 1 and names[0] == "all":
            listing = ["secret", "list"]
        elif len(names) == 1 and names[0].endswith("/all"):
            listing = ["secret", "list", names[0].removesuffix("/all")]
        if listing is not None:
            failure = "Could not read secrets from Bitwarden Secrets Manager"
            entries = BWS.json(*listing, failure=failure)
            if not isinstance(entries, list):
                raise SecretsError(f"{failure}: unexpected JSON")
            for entry in entries:
                results[str(entry["key"])] = entry.get("value")
            return results
        for secret_id in names:
            failure = f"Could not read {secret_id} from Bitwarden Secrets Manager"
            entry = BWS.json("secret", "get", secret_id, failure=failure)
            if not isinstance(entry, dict) or "key" not in entry:
                raise SecretsError(f"{failure}: unexpected JSON")
            results[str(entry["key"])] = entry.get("value")
        return results
