"""Kamal's `test` adapter: each name maps to itself reversed. Useful to try a secrets file."""

from __future__ import annotations

from typing import Any

from .base import Adapter, prefixed


class Test(Adapter):
    name = "test"
    cli = None

    def fetch_secrets(
        self, names: list[str], *, account: str | None, from_: str | None, session: str | None
    ) -> dict[str, Any]:
        return {
            name: name.replace("LPAREN", "(").replace("RPAREN", ")")[::-1]
            for name in prefixed(names, from_)
        }
