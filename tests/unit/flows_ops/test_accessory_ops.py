from __future__ import annotations

import pytest

from dockyard.errors import ConfigError
from dockyard.flows.context import Selection
from dockyard.flows.ops import accessory
from dockyard.remote import FakePool, FakeTransport, Result

from .conftest import MakeConfig, make_ctx, run, without_lock_and_audit

HOST = "10.0.0.4"


def test_boot_creates_directories_uploads_files_and_env_then_runs(
    make_config: MakeConfig,
) -> None:
    pool = FakePool()
    ctx, _ = make_ctx(make_config(), pool)
    assert run(accessory.boot(ctx, "cache")) == []
    fake = pool.transports[HOST]
    calls = without_lock_and_audit(fake.commands)
    assert calls[:4] == [
        ["docker", "login", "registry.test:5000", "-u", "bob", "--password-stdin"],
        ["docker", "network", "create", "kamal"],
        ["docker", "ps", "-a", "-q", "--filter", "label=service=hello-cache"],
        ["mkdir", "-p", "hello-cache/data"],
    ]
    assert calls[4:7] == [
        ["mkdir", "-p", "hello-cache/etc"],
        ["mkdir", "-p", ".kamal/apps/hello/env/accessories"],
        ["chmod", "755", "hello-cache/etc/cache.conf"],  # after the upload
    ]
    # bind mounts below the login directory: run by the remote shell, which expands $PWD
    assert calls[7][:2] in (["bash", "-c"], ["sh", "-c"])
    line = calls[7][2]
    assert line.startswith(
        "docker run --name hello-cache --detach --restart unless-stopped --network kamal "
        "--log-opt max-size=10m --log-opt max-file=5 --publish 6379:6379 "
        f"--env KAMAL_HOST={HOST} --env MODE=primary "
        "--env-file .kamal/apps/hello/env/accessories/cache.env --volume cache-logs:/logs "
        '--volume "$PWD"/hello-cache/etc/cache.conf:/etc/cache.conf '
        '--volume "$PWD"/hello-cache/data:/data --label service=hello-cache '
    )
    assert line.endswith("registry.test:5000/cache:7 cache-server --appendonly yes")
    uploads = {u.path: (u.data, u.mode) for u in fake.uploads}
    assert uploads["hello-cache/etc/cache.conf"][0] == b"maxmemory 10mb\n"
    env_data, env_mode = uploads[".kamal/apps/hello/env/accessories/cache.env"]
    assert env_data == b"CACHE_PASSWORD=pw\n" and env_mode == 0o600
    audit = [c for c in fake.commands if "audit.log" in " ".join(c)]
    assert audit and audit[0][-1].endswith("Booted cache accessory")
    # the app hosts are not touched beyond the lock
    assert without_lock_and_audit(pool.transports["10.0.0.2"].commands) == []


def test_boot_skips_hosts_where_a_container_exists(make_config: MakeConfig) -> None:
    def setup(fake: FakeTransport) -> None:
        fake.on(["docker", "ps", "-a", "-q"], Result(0, "deadbeef\n", ""))

    pool = FakePool(setup=setup)
    ctx, events = make_ctx(make_config(), pool)
    warnings = run(accessory.boot(ctx, "all"))
    assert warnings == [
        f"Skipping booting `cache` on {HOST}, a container already exists",
    ]
    assert any(e.kind == "warn" and "Skipping booting" in e.text for e in events)
    assert not any(c[:2] == ["docker", "run"] for c in pool.transports[HOST].commands)
    assert pool.transports[HOST].uploads == []


def test_remove_stops_prunes_and_deletes_image_and_directory(make_config: MakeConfig) -> None:
    pool = FakePool()
    ctx, _ = make_ctx(make_config(), pool)
    run(accessory.remove(ctx, "cache"))
    assert without_lock_and_audit(pool.transports[HOST].commands) == [
        ["docker", "container", "stop", "hello-cache"],
        ["docker", "container", "prune", "--force", "--filter", "label=service=hello-cache"],
        ["docker", "image", "rm", "--force", "registry.test:5000/cache:7"],
        ["rm", "-rf", "hello-cache"],
    ]


def test_reboot_pulls_stops_prunes_and_boots(make_config: MakeConfig) -> None:
    pool = FakePool()
    ctx, _ = make_ctx(make_config(), pool)
    run(accessory.reboot(ctx, "cache"))
    calls = without_lock_and_audit(pool.transports[HOST].commands)
    assert calls[2:5] == [
        ["docker", "image", "pull", "registry.test:5000/cache:7"],
        ["docker", "container", "stop", "hello-cache"],
        ["docker", "container", "prune", "--force", "--filter", "label=service=hello-cache"],
    ]
    assert calls[-1][2].startswith("docker run --name hello-cache")


def test_restart_details_and_logs(make_config: MakeConfig) -> None:
    def setup(fake: FakeTransport) -> None:
        fake.on(["docker", "ps"], Result(0, "CONTAINER ID\n", ""))
        fake.on(["bash", "-c"], Result(0, "ready\n", ""))
        fake.on(["sh", "-c"], Result(0, "ready\n", ""))

    pool = FakePool(setup=setup)
    ctx, _ = make_ctx(make_config(), pool)
    run(accessory.restart(ctx, "cache"))
    sections = run(accessory.details(ctx, "cache"))
    assert [(s.title, s.text) for s in sections] == [
        (f"Accessory cache Host: {HOST}", "CONTAINER ID\n")
    ]
    logs = run(accessory.logs(ctx, "cache", lines=5))
    assert logs[0].text == "ready\n"
    calls = without_lock_and_audit(pool.transports[HOST].commands)
    assert calls[:2] == [
        ["docker", "container", "stop", "hello-cache"],
        ["docker", "container", "start", "hello-cache"],
    ]
    assert calls[-1][-1].endswith("docker logs hello-cache --tail 5 --timestamps 2>&1")


def test_exec_reuse_and_new_container(make_config: MakeConfig) -> None:
    def setup(fake: FakeTransport) -> None:
        fake.on(["docker"], Result(0, "PONG\n", ""))
        fake.on(["bash", "-c"], Result(0, "PONG\n", ""))
        fake.on(["sh", "-c"], Result(0, "PONG\n", ""))

    pool = FakePool(setup=setup)
    ctx, _ = make_ctx(make_config(), pool)
    sections = run(accessory.exec_(ctx, "cache", ["cache-cli", "ping"], reuse=True))
    assert isinstance(sections, list) and sections[0].text == "PONG\n"
    fresh = run(accessory.exec_(ctx, "cache", ["cache-cli", "ping"]))
    assert isinstance(fresh, list) and [s.text for s in fresh] == ["PONG\n"]
    calls = without_lock_and_audit(pool.transports[HOST].commands)
    assert calls[0] == ["docker", "exec", "hello-cache", "cache-cli", "ping"]
    assert calls[1][2].startswith("docker run --rm --network kamal --env MODE=primary")
    assert calls[1][2].endswith("registry.test:5000/cache:7 cache-cli ping")


def test_unknown_accessory_names_the_config_and_the_choices(make_config: MakeConfig) -> None:
    ctx, _ = make_ctx(make_config(), FakePool())
    with pytest.raises(ConfigError, match="no accessory named 'db'") as info:
        run(accessory.boot(ctx, "db"))
    assert "cache" in (info.value.hint or "")


def test_missing_local_file_is_a_config_error_not_a_traceback(
    make_config: MakeConfig, tmp_path: object
) -> None:
    config = make_config()
    (config.root / "config" / "cache.conf").unlink()
    ctx, _ = make_ctx(config, FakePool(), Selection.parse(HOST))
    with pytest.raises(Exception, match=r"cache\.conf does not exist"):
        run(accessory.boot(ctx, "cache"))
