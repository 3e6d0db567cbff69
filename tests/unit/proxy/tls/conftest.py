"""Fixtures for the TLS tests (helpers live in tls_support.py)."""

from __future__ import annotations

import pytest
from tls_support import MiniCA


@pytest.fixture(scope="session")
def ca() -> MiniCA:
    return MiniCA()
