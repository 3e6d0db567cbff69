"""``server bootstrap --log-rotation``: the daemon.json merge (pure) and the flow that writes
it and restarts dockerd only when it changed."""

from __future__ import annotations

import json

import pytest

from dockyard.errors import DockyardError
from dockyard.flows.context import Selection
from dockyard.flows.ops import log_rotation
from dockyard.remote import FakePool, FakeTransport, Result

from .conftest import MakeConfig, make_ctx, run

ROTATION = {"max-size": "10m", "max-file": "5"}


def test_merge_into_a_missing_or_empty_file() -> None:
    for current in (None, "", "\n"):
        merge = log_rotation.merge_daemon_json(current)
        assert merge.text is not None
        assert json.loads(merge.text) == {"log-opts": ROTATION}
        assert merge.added == ROTATION


def test_merge_keeps_every_other_key_and_the_users_values() -> None:
    current = json.dumps(
        {"registry-mirrors": ["https://m.test"], "live-restore": True,
         "log-driver": "json-file", "log-opts": {"max-size": "50m", "labels": "a"}}
    )  # fmt: skip
    merge = log_rotation.merge_daemon_json(current)
    assert merge.added == {"max-file": "5"}
    assert merge.text is not None
    assert json.loads(merge.text) == {
        "registry-mirrors": ["https://m.test"],
        "live-restore": True,
        "log-driver": "json-file",
        "log-opts": {"max-size": "50m", "labels": "a", "max-file": "5"},
    }


def test_merge_changes_nothing_when_set_or_another_driver() -> None:
    done = json.dumps({"log-opts": {"max-size": "1m", "max-file": "2"}})
    assert log_rotation.merge_daemon_json(done).text is None
    journald = log_rotation.merge_daemon_json('{"log-driver": "journald"}')
    assert journald.text is None and "journald" in journald.note


@pytest.mark.parametrize("broken", ["{not json", "[1, 2]", '{"log-opts": "max-size=1m"}'])
def test_merge_refuses_a_file_it_cannot_read(broken: str) -> None:
    with pytest.raises(DockyardError, match="left unchanged"):
        log_rotation.merge_daemon_json(broken)


def test_enable_writes_backs_up_and_restarts_only_when_changed(make_config: MakeConfig) -> None:
    def setup(fake: FakeTransport) -> None:
        if fake.host == "10.0.0.1":  # already rotating
            done = json.dumps({"log-opts": ROTATION})
            fake.on(["cat", log_rotation.DAEMON_JSON], Result(0, done, ""))
        elif fake.host == "10.0.0.2":  # a file with other settings
            fake.on(["cat", log_rotation.DAEMON_JSON], Result(0, '{"debug": true}', ""))
        else:  # no file yet
            fake.on(
                ["cat", log_rotation.DAEMON_JSON],
                Result(1, "", "cat: /etc/docker/daemon.json: No such file or directory"),
            )

    pool = FakePool(setup=setup)
    ctx, _ = make_ctx(make_config(), pool, Selection.parse("10.0.0.1,10.0.0.2,10.0.0.3"))
    reports = run(log_rotation.enable_all(ctx))
    assert reports["10.0.0.1"].endswith(
        "log rotation already set, not changed (dockerd not restarted)"
    )
    assert reports["10.0.0.2"].endswith("added log-opts max-size=10m max-file=5; restarted dockerd")
    unchanged = pool.transports["10.0.0.1"]
    assert unchanged.commands == [["cat", "/etc/docker/daemon.json"]] and not unchanged.uploads
    changed = pool.transports["10.0.0.2"]
    assert changed.commands == [
        ["cat", "/etc/docker/daemon.json"],
        ["mkdir", "-p", "/etc/docker"],
        ["cp", "-p", "/etc/docker/daemon.json", "/etc/docker/daemon.json.dockyard-bak"],
        ["sh", "-c", log_rotation.RESTART_SCRIPT],
    ]
    [upload] = changed.uploads
    assert upload.path == "/etc/docker/daemon.json" and upload.mode == 0o644
    assert json.loads(upload.data) == {"debug": True, "log-opts": ROTATION}
    fresh = pool.transports["10.0.0.3"]
    assert [
        "cp",
        "-p",
        "/etc/docker/daemon.json",
        "/etc/docker/daemon.json.dockyard-bak",
    ] not in fresh.commands
    assert json.loads(fresh.uploads[0].data) == {"log-opts": ROTATION}


def test_enable_without_restart_and_a_failed_restart(make_config: MakeConfig) -> None:
    def setup(fake: FakeTransport) -> None:
        fake.on(["cat", log_rotation.DAEMON_JSON], Result(0, "{}", ""))
        fake.on(["sh", "-c"], Result(1, "", "Failed to restart docker.service"))

    pool = FakePool(setup=setup)
    ctx, events = make_ctx(make_config(), pool, Selection.parse("10.0.0.1"))
    assert run(log_rotation.enable(ctx, "10.0.0.1", restart=False)).endswith(
        "restart dockerd to apply"
    )
    assert ["sh", "-c", log_rotation.RESTART_SCRIPT] not in pool.transports["10.0.0.1"].commands
    assert run(log_rotation.enable(ctx, "10.0.0.1")).endswith("restart dockerd by hand to apply")
    assert any(e.kind == "warn" and "Failed to restart" in e.text for e in events)
