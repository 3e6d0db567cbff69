"""AWS Secrets Manager through `aws secretsmanager batch-get-secret-value`.

Names are secret ids. A secret holding a JSON object gives one key per member (`NAME/KEY`);
any other secret string is keyed by the secret's name. `--account` is the AWS CLI profile.
"""

from __future__ import annotations

import json
from typing import Any

from .base import Adapter, SecretsError, VendorCli, prefixed

AWS = VendorCli(
    "aws",
    "the AWS CLI",
    "https://docs.aws.amazon.com/cli/latest/userguide/getting-started-install.html",
)


class AwsSecretsManager(Adapter):
    name = "aws_secrets_manager"
    cli = AWS
    requires_account = False

    def fetch_secrets(
        self, names: list[str], *, account: str | None, from_: str | None, session: str | None
    ) -> dict[str, Any]:
        ids = prefixed(names, from_)
        if not ids:
            raise SecretsError("name the AWS secrets to fetch")
        args = ["secretsmanager", "batch-get-secret-value", "--secret-id-list", *ids]
        if account:
            args += ["--profile", account]
        args += ["--output", "json"]
        data = AWS.json(*args, failure=f"Could not read {', '.join(ids)} from AWS Secrets Manager")
        if not isinstance(data, dict):
            raise SecretsError("AWS Secrets Manager returned unexpected JSON")
        errors = data.get("Errors") or []
        if errors:
            raise SecretsError(" ".join(f"{e.get('SecretId')}: {e.get('Message')}" for e in errors))
        results: dict[str, Any] = {}
        for secret in data.get("SecretValues") or []:
            name = str(secret.get("Name"))
            text = secret.get("SecretString")
            try:
                members = json.loads(text) if isinstance(text, str) else None
            except ValueError:
                members = None
            if isinstance(members, dict):
                for key, value in members.items():
                    results[f"{name}/{key}"] = value
            else:
                results[name] = text
        return results
