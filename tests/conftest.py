"""Shared pytest configuration: tests without a marker are unit tests."""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("integration") is None:
            item.add_marker(pytest.mark.unit)


@pytest.fixture(autouse=True)
def _no_ssh_helper_in_unit_tests(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Unit tests never start the SSH helper process (dockyard.remote.mux); the lab tests use
    it as users do."""
    if request.node.get_closest_marker("integration") is None:
        monkeypatch.setenv("DOCKYARD_SSH_PERSIST", "0")
