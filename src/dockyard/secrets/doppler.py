"""Doppler through `doppler secrets get`.

Names are `PROJECT/CONFIG/NAME` (usually `--from PROJECT/CONFIG` and bare names); keys are the
bare names. With a service token in `DOPPLER_TOKEN` (`dp.st...`) project and config come from the
token and are not passed.
"""

from __future__ import annotations

import os
from typing import Any

from .base import Adapter, SecretsError, VendorCli, prefixed

DOPPLER = VendorCli("doppler", "the Doppler CLI", "https://docs.doppler.com/docs/install-cli")


class Doppler(Adapter):
    name = "doppler"
    cli = DOPPLER
    requires_account = False

    def login(self, account: str | None) -> str | None:
        if not DOPPLER.run("me", "--json").ok:
            result = DOPPLER.interactive("login", "-y")
            if not result.ok:
                raise SecretsError("Failed to log in to Doppler (`doppler login -y` failed)")
        return None

    def fetch_secrets(
        self, names: list[str], *, account: str | None, from_: str | None, session: str | None
    ) -> dict[str, Any]:
        full = prefixed(names, from_)
        if not full:
            raise SecretsError("name the Doppler secrets to fetch")
        args = ["secrets", "get", *(name.split("/")[-1] for name in full), "--json"]
        if not os.environ.get("DOPPLER_TOKEN", "").startswith("dp.st"):
            parts = full[0].split("/")
            if len(parts) < 3 or not parts[0] or not parts[1]:
                raise SecretsError("Missing project or config from '--from=project/config' option")
            args += ["-p", parts[0], "-c", parts[1]]
        data = DOPPLER.json(*args, failure=f"Could not read {', '.join(full)} from Doppler")
        if not isinstance(data, dict):
            raise SecretsError("Doppler returned unexpected JSON")
        return {
            key: (value.get("computed") if isinstance(value, dict) else value)
            for key, value in data.items()
        }
