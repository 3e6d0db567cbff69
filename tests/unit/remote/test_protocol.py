"""Every backend satisfies the Transport protocol (checked by mypy on this file, and here)."""

from __future__ import annotations

import inspect

from dockyard.remote import (
    FakePool,
    FakeTransport,
    HostPool,
    LocalTransport,
    SshPool,
    SshTransport,
    Transport,
)


def backends() -> list[Transport]:
    return [LocalTransport(), FakeTransport(), SshPool().transport("web1")]


def test_backends_share_the_run_signature() -> None:
    expected = inspect.signature(LocalTransport.run)
    for cls in (FakeTransport, SshTransport):
        assert inspect.signature(cls.run).parameters.keys() == expected.parameters.keys()
    assert [t.host for t in backends()] == ["localhost", "fake", "web1"]


def test_put_and_close_take_the_same_arguments() -> None:
    for cls in (LocalTransport, FakeTransport, SshTransport):
        assert list(inspect.signature(cls.put).parameters) == ["self", "data", "path", "mode"]
        assert list(inspect.signature(cls.close).parameters) == ["self"]


def pools() -> list[HostPool]:
    return [SshPool(), FakePool()]


def test_pools_hand_out_transports_per_host() -> None:
    for pool in pools():
        assert pool.transport("web1").host == "web1"
