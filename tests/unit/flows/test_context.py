from __future__ import annotations

import asyncio
import stat
from pathlib import Path

import pytest

from dockyard.commands.argv import Argv
from dockyard.commands.lock import encode_details
from dockyard.errors import ConfigError, LockHeldError
from dockyard.flows.context import DeployContext, Event, Selection, audit_command, ssh_options
from dockyard.flows.errors import DockerError, HookError
from dockyard.remote import FakePool, FakeTransport, Result
from tests.unit._flowkit import NOW, MakeConfig, make_ctx


def test_selection_filters_hosts_and_roles_with_wildcards(make_config: MakeConfig) -> None:
    config = make_config()
    ctx, _ = make_ctx(config, FakePool())
    assert ctx.app_hosts == ["10.0.0.1", "10.0.0.2", "10.0.0.3"]
    ctx.selection = Selection.parse("10.0.0.[12]", None)
    assert ctx.app_hosts == ["10.0.0.1", "10.0.0.2"]
    assert [r.name for r in ctx.roles] == ["web"]
    ctx.selection = Selection.parse(None, "work*")
    assert ctx.app_hosts == ["10.0.0.3"]
    assert ctx.primary_host == "10.0.0.3"
    ctx.selection = Selection.parse(None, None, primary=True)
    assert ctx.app_hosts == ["10.0.0.1"]
    ctx.selection = Selection.parse("nope*", None)
    with pytest.raises(ConfigError, match="No servers match --hosts nope"):
        _ = ctx.app_hosts
    ctx.selection = Selection.parse(None, "db")
    with pytest.raises(ConfigError, match="No --roles match for db"):
        _ = ctx.roles


def test_roles_on_host_put_the_primary_role_first(make_config: MakeConfig) -> None:
    config = make_config(
        "service: s\nimage: s\nservers:\n  jobs:\n    hosts: [h1]\n    cmd: x\n  web: [h1]\n"
        "primary_role: web\nbuilder:\n  arch: amd64\nregistry:\n  username: u\n  password: p\n"
    )
    ctx, _ = make_ctx(config, FakePool())
    assert [r.name for r in ctx.roles_on("h1")] == ["web", "jobs"]


def test_lock_acquires_on_primary_and_releases_after_failure(make_config: MakeConfig) -> None:
    config = make_config()
    pool = FakePool()
    ctx, events = make_ctx(config, pool)

    async def go() -> None:
        async with ctx.lock("Automatic deploy lock"):
            assert ctx.holding_lock
            raise DockerError("boom")

    with pytest.raises(DockerError):
        asyncio.run(go())
    assert not ctx.holding_lock
    primary = pool.transports["10.0.0.1"]
    assert primary.commands[:2] == [
        ["mkdir", "-p", ".kamal"],
        ["mkdir", ".kamal/lock-hello"],
    ]
    assert primary.commands[2] == ["tee", ".kamal/lock-hello/details"]
    details = "Locked by: Dev at 2026-11-28T09:00:00Z\nVersion: v1\nMessage: Automatic deploy lock"
    assert primary.calls[2].stdin == (encode_details(details) + "\n").encode()
    assert primary.commands[3:] == [
        ["rm", ".kamal/lock-hello/details"],
        ["rm", "-r", ".kamal/lock-hello"],
    ]
    assert pool.transports["10.0.0.3"].commands == [["mkdir", "-p", ".kamal"]]
    assert any(e.text.startswith("Releasing") for e in events)


def test_lock_contention_names_holder(make_config: MakeConfig) -> None:
    config = make_config()
    held = "Locked by: Alice at 2026-11-28T08:00:00Z\nVersion: v0\nMessage: hot fix"

    def script(fake: FakeTransport) -> None:
        fake.on(
            ["mkdir", ".kamal/lock-hello"],
            Result(1, "", "mkdir: cannot create directory '.kamal/lock-hello': File exists\n"),
        )
        fake.on(["cat", ".kamal/lock-hello/details"], Result(0, encode_details(held), ""))

    pool = FakePool(setup=script)
    ctx, _ = make_ctx(config, pool)

    # the queries sent with the lock (in a deploy: the "Pulled image" audit line and the
    # survey) run on the primary host only once the lock is ours
    query = ["sh", "-c", "echo audit line >> .kamal/hello-audit.log"]
    then = {host: [Argv(query)] for host in ("10.0.0.1", "10.0.0.2")}

    async def go() -> None:
        async with ctx.lock(then=then):
            pytest.fail("must not enter")

    with pytest.raises(LockHeldError) as info:
        asyncio.run(go())
    text = info.value.render()
    assert "Deploy lock already in place on 10.0.0.1" in text
    assert "Locked by: Alice" in text and "Message: hot fix" in text
    assert "dockyard lock release" in text
    primary = pool.transports["10.0.0.1"].commands
    assert primary[:2] == [["mkdir", "-p", ".kamal"], ["mkdir", ".kamal/lock-hello"]]
    assert ["tee", ".kamal/lock-hello/details"] not in primary  # Alice's details stay
    assert query not in primary  # not run under someone else's lock
    assert query in pool.transports["10.0.0.2"].commands  # (a query may run elsewhere)
    # nothing was released: it is not ours
    assert ["rm", "-r", ".kamal/lock-hello"] not in primary


def test_lock_is_reentrant_with_kamal_lock(make_config: MakeConfig) -> None:
    pool = FakePool()
    ctx, _ = make_ctx(make_config(), pool, holding_lock=True)

    async def go() -> None:
        async with ctx.lock():
            pass

    asyncio.run(go())
    assert pool.transports == {}


def test_failure_names_layer_host_and_hint(make_config: MakeConfig) -> None:
    pool = FakePool(setup=lambda f: f.on(["docker"], Result(1, "", "no space left on device\n")))
    ctx, _ = make_ctx(make_config(), pool)
    with pytest.raises(DockerError) as info:
        asyncio.run(ctx.run("10.0.0.2", ["docker", "pull", "x"], what="pulling x"))
    text = info.value.render()
    assert text.startswith("docker on 10.0.0.2: pulling x failed (exit 1)")
    assert "no space left on device" in text and "disk is full" in text


def test_hook_runs_with_kamal_env_and_failure_raises(
    make_config: MakeConfig, tmp_path: Path
) -> None:
    config = make_config()
    hooks = tmp_path / ".kamal" / "hooks"
    hooks.mkdir(parents=True)
    out = tmp_path / "env.txt"
    hook = hooks / "pre-deploy"
    hook.write_text(f'#!/bin/sh\nenv | grep -E "^KAMAL_|^KAMAL_REGISTRY" | sort > {out}\nexit 0\n')
    hook.chmod(hook.stat().st_mode | stat.S_IEXEC)
    from dockyard.remote import LocalTransport

    events: list[Event] = []
    ctx = DeployContext(
        config=config,
        pool=FakePool(),
        reporter=events.append,
        local=LocalTransport(),
        clock=lambda: NOW,
        performer_name="dev@example.com",
        command="deploy",
    )
    assert asyncio.run(ctx.run_hook("pre-deploy"))
    env = dict(line.split("=", 1) for line in out.read_text().splitlines())
    assert env["KAMAL_SERVICE"] == "hello"
    assert env["KAMAL_VERSION"] == "v1"
    assert env["KAMAL_SERVICE_VERSION"] == "hello@v1"
    assert env["KAMAL_HOSTS"] == "10.0.0.1,10.0.0.2,10.0.0.3"
    assert env["KAMAL_COMMAND"] == "deploy"
    assert env["KAMAL_LOCK"] == "false"
    assert env["KAMAL_PERFORMER"] == "dev@example.com"
    assert env["KAMAL_RECORDED_AT"] == "2026-11-28T09:00:00Z"
    assert env["KAMAL_REGISTRY_PASSWORD"] == "s3cret"  # pre-deploy gets the secrets
    assert not asyncio.run(ctx.run_hook("post-deploy"))  # missing: skipped
    hook.write_text("#!/bin/sh\necho nope >&2\nexit 3\n")
    with pytest.raises(HookError, match="Hook `pre-deploy` failed \\(exit 3\\)"):
        asyncio.run(ctx.run_hook("pre-deploy"))
    ctx.skip_hooks = True
    assert not asyncio.run(ctx.run_hook("pre-deploy"))


def test_audit_command_appends_the_line_verbatim(tmp_path: Path) -> None:
    import subprocess

    argv = audit_command("hello", None, '[t] [me] Booted "app" $HOME `x`')
    subprocess.run(list(argv.raw()), cwd=tmp_path, check=True)
    subprocess.run(list(argv.raw()), cwd=tmp_path, check=True)
    text = (tmp_path / ".kamal" / "hello-audit.log").read_text()
    assert text == '[t] [me] Booted "app" $HOME `x`\n' * 2


def test_ssh_options_known_hosts_from_ssh_config(make_config: MakeConfig, tmp_path: Path) -> None:
    kh = tmp_path / "kh"
    cfg = tmp_path / "ssh_config"
    cfg.write_text(f"Host *\n  UserKnownHostsFile {kh}\n  StrictHostKeyChecking yes\n")
    config = make_config(
        "service: s\nimage: s\nservers: [h1]\nbuilder:\n  arch: amd64\n"
        f"registry:\n  username: u\n  password: p\nssh:\n  user: deploy\n  keys: [/k]\n"
        f"  keys_only: true\n  config: {cfg}\n"
    )
    options = ssh_options(config, {})
    assert options.known_hosts == (str(kh),)
    assert options.user == "deploy" and options.keys == ("/k",) and options.keys_only
    assert ssh_options(config, {"DOCKYARD_SSH_KNOWN_HOSTS": "/a:/b"}).known_hosts == ("/a", "/b")
