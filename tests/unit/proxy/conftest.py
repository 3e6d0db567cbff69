"""The proxy's unit tests also run on the data plane compiled by mypyc (scripts/test runs them
again with PYTHONPATH=build/native and DOCKYARD_PROXY_COMPILED=1): make sure that run really
imports the compiled modules."""

from __future__ import annotations

import os

import pytest

from dockyard.proxy import native


@pytest.fixture(scope="session", autouse=True)
def _compiled_when_asked() -> None:
    if os.environ.get("DOCKYARD_PROXY_COMPILED") == "1" and not native.is_compiled():
        pytest.fail(
            "DOCKYARD_PROXY_COMPILED=1 but these modules are interpreted: "
            f"{', '.join(native.interpreted_modules())}; put a build of "
            "`python -m dockyard.proxy.native build src build/native` first on PYTHONPATH"
        )
