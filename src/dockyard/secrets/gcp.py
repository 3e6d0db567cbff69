"""Google Cloud Secret Manager through `gcloud secrets versions access`.

Names are `[PROJECT/]SECRET[/VERSION]`; the project `default` means gcloud's configured project
and the version defaults to `latest`. Keys are `PROJECT/SECRET`. `--account` is `USER`,
`USER|SERVICE_ACCOUNT[,SERVICE_ACCOUNT...]` for impersonation, or `default`.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from .base import Adapter, SecretsError, VendorCli, prefixed

GCLOUD = VendorCli("gcloud", "the Google Cloud CLI", "https://cloud.google.com/sdk/docs/install")


def _logged_in() -> bool:
    accounts = GCLOUD.json(
        "auth", "list", "--format=json", failure="Could not list the gcloud accounts"
    )
    return bool(accounts)


class GcpSecretManager(Adapter):
    name = "gcp"
    cli = GCLOUD

    def login(self, account: str | None) -> str | None:
        if not _logged_in():
            GCLOUD.interactive("auth", "login")
            if not _logged_in():
                raise SecretsError("Could not log in to gcloud (`gcloud auth login` failed)")
        return None

    def fetch_secrets(
        self, names: list[str], *, account: str | None, from_: str | None, session: str | None
    ) -> dict[str, Any]:
        user, _, service_account = (account or "default").partition("|")
        results: dict[str, Any] = {}
        for name in prefixed(names, from_):
            parts = name.split("/")
            if len(parts) == 1:
                parts.insert(0, "default")
            project, secret = parts[0], parts[1]
            version = parts[2] if len(parts) > 2 else "latest"
            args = ["secrets", "versions", "access", version, f"--secret={secret}"]
            if project != "default":
                args.append(f"--project={project}")
            if user != "default":
                args.append(f"--account={user}")
            if service_account:
                args.append(f"--impersonate-service-account={service_account}")
            args.append("--format=json")
            key = f"{project}/{secret}"
            failure = f"Could not read {key} from Google Secret Manager"
            data = GCLOUD.json(*args, failure=failure)
            try:
                encoded = data["payload"]["data"]
                results[key] = base64.b64decode(encoded).decode("utf-8", errors="replace")
            except (KeyError, TypeError, binascii.Error) as exc:
                raise SecretsError(f"{failure}: no payload data in the answer") from exc
        return results
