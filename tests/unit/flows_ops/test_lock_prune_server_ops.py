from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from dockyard.commands.app import SURVEY_FORMAT
from dockyard.commands.lock import encode_details
from dockyard.errors import DockyardError, LockHeldError
from dockyard.flows.context import Selection
from dockyard.flows.errors import DockerError
from dockyard.flows.ops import app, details, lock, prune, server
from dockyard.remote import FakePool, FakeTransport, Result
from dockyard.remote.argv import ArgvLike, raw_args
from dockyard.remote.fanout import HostsFailedError

from .conftest import MakeConfig, make_ctx, run, without_lock_and_audit

DETAILS = "Locked by: Ann at 2026-11-28T08:00:00Z\nVersion: v0\nMessage: migrating"


def test_lock_acquire_writes_details_on_the_primary_host(make_config: MakeConfig) -> None:
    pool = FakePool()
    ctx, _ = make_ctx(make_config(), pool)
    assert run(lock.acquire(ctx, "hold on")) == "Acquired the deploy lock on 10.0.0.1"
    primary = pool.transports["10.0.0.1"]
    mkdir = primary.calls[-2]
    assert mkdir.argv == ["mkdir", ".kamal/lock-hello"]
    written = primary.calls[-1]
    assert written.argv == ["tee", ".kamal/lock-hello/details"]
    assert written.stdin == (
        encode_details(
            "Locked by: Dev at 2026-11-28T09:00:00Z\nVersion: v1\nMessage: hold on"
        ).encode()
        + b"\n"
    )
    # every host gets the run directory; only the primary holds the lock
    assert pool.transports["10.0.0.4"].commands == [["mkdir", "-p", ".kamal"]]


def test_lock_contention_names_who_when_and_why(make_config: MakeConfig) -> None:
    def setup(fake: FakeTransport) -> None:
        fake.on(
            ["mkdir", ".kamal/lock-hello"],
            Result(1, "", "mkdir: cannot create directory '.kamal/lock-hello': File exists"),
        )
        fake.on(["cat", ".kamal/lock-hello/details"], Result(0, encode_details(DETAILS), ""))

    ctx, _ = make_ctx(make_config(), FakePool(setup=setup))
    with pytest.raises(LockHeldError) as info:
        run(lock.acquire(ctx, "mine"))
    assert "10.0.0.1" in info.value.message and "Message: migrating" in info.value.message
    assert "lock release" in (info.value.hint or "")


def test_lock_status_and_release(make_config: MakeConfig) -> None:
    def no_lock(fake: FakeTransport) -> None:
        fake.on(["stat"], Result(1, "", "No such file or directory"))

    pool = FakePool(setup=no_lock)
    ctx, _ = make_ctx(make_config(), pool)
    assert run(lock.status(ctx)) == lock.NO_LOCK
    assert run(lock.release(ctx)) == lock.NO_LOCK
    assert not any(c[0] == "rm" for c in pool.transports["10.0.0.1"].commands)

    def held(fake: FakeTransport) -> None:
        fake.on(["cat", ".kamal/lock-hello/details"], Result(0, encode_details(DETAILS), ""))

    pool = FakePool(setup=held)
    ctx, _ = make_ctx(make_config(), pool)
    assert run(lock.status(ctx)) == DETAILS
    assert run(lock.release(ctx)) == "Released the deploy lock on 10.0.0.1"
    assert pool.transports["10.0.0.1"].commands[-2:] == [
        ["rm", ".kamal/lock-hello/details"],
        ["rm", "-r", ".kamal/lock-hello"],
    ]


def test_prune_keeps_retained_containers_and_their_images(make_config: MakeConfig) -> None:
    repo = "registry.test:5000/hello"

    def setup(fake: FakeTransport) -> None:
        rows = [f"c5\trunning\t{repo}:v5\n", f"c4\texited\t{repo}:v4\n"]
        rows += [f"c{n}\texited\t{repo}:v3\n" for n in (3, 2, 1)]
        fake.on(["docker", "ps", "-a"], Result(0, "".join(rows), ""))
        fake.on(
            ["docker", "image", "ls"],
            Result(
                0,
                f"i5 {repo}:v5\ni4 {repo}:v4\ni3 {repo}:v3\ni0 {repo}:latest\ni9 {repo}:<none>\n",
                "",
            ),
        )

    pool = FakePool(setup=setup)
    ctx, _ = make_ctx(make_config(), pool, Selection.parse("10.0.0.2"))
    removed = run(prune.all_(ctx, retain=2))
    # stopped: c4, c3, c2, c1; the newest two stay, and with them the images v5 (running), v4, v3
    assert removed == {"10.0.0.2": ["c2", "c1"]}
    calls = without_lock_and_audit(pool.transports["10.0.0.2"].commands)
    assert [c for c in calls if c[:2] in (["docker", "rm"], ["docker", "rmi"])] == [
        ["docker", "rm", "c2"],
        ["docker", "rm", "c1"],
    ]
    # the untagged image is listed: the dangling images go
    assert ["docker", "image", "prune", "--force", "--filter", "label=service=hello"] in calls


def test_prune_removes_the_images_only_stopped_containers_beyond_retain_used(
    make_config: MakeConfig,
) -> None:
    repo = "registry.test:5000/hello"
    versions = range(7, 0, -1)  # c7 (v7) newest ... c1 (v1), all stopped

    def setup(fake: FakeTransport) -> None:
        rows = [f"c{n}\texited\t{repo}:v{n}\n" for n in versions]
        fake.on(["docker", "ps", "-a"], Result(0, "".join(rows), ""))
        tags = "".join(f"i{n} {repo}:v{n}\n" for n in versions)
        fake.on(["docker", "image", "ls"], Result(0, tags + f"i0 {repo}:latest\n", ""))

    pool = FakePool(setup=setup)
    config = make_config()
    assert config.retain_containers == 5
    ctx, _ = make_ctx(config, pool, Selection.parse("10.0.0.2"))
    assert run(prune.containers(ctx, retain=3)) == {"10.0.0.2": ["c4", "c3", "c2", "c1"]}
    audits = " ".join(" ".join(c) for c in pool.transports["10.0.0.2"].commands)
    assert "Pruned containers" in audits and "Pruned images" not in audits
    # images alone: every container stays, so every listed image is in use
    assert run(prune.images(ctx)) == {"10.0.0.2": []}
    assert run(prune.all_(ctx)) == {"10.0.0.2": ["c2", "c1", f"{repo}:v2", f"{repo}:v1"]}
    calls = without_lock_and_audit(pool.transports["10.0.0.2"].commands)
    assert ["docker", "image", "prune", "--force", "--filter", "label=service=hello"] not in calls


def test_prune_runs_on_accessory_hosts_too_and_checks_retain(make_config: MakeConfig) -> None:
    pool = FakePool()
    ctx, _ = make_ctx(make_config(), pool)
    assert set(run(prune.containers(ctx))) == {"10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"}
    with pytest.raises(DockyardError, match="--retain must be at least 1"):
        run(prune.containers(ctx, retain=0))


def test_prune_releases_the_lock_after_every_host_has_removed(make_config: MakeConfig) -> None:
    """The primary host's removals go with the lock's release, after the other hosts'
    removals: no other deploy starts while this prune still removes containers."""
    repo = "registry.test:5000/hello"

    def setup(fake: FakeTransport) -> None:
        rows = f"c2\texited\t{repo}:v2\nc1\texited\t{repo}:v1\n"
        fake.on(["docker", "ps", "-a"], Result(0, rows, ""))

    pool = FakePool(setup=setup)
    ctx, _ = make_ctx(make_config(), pool)
    batches: list[tuple[str, list[list[str]]]] = []
    original = ctx.batch

    async def batch(host: str, commands: Sequence[ArgvLike], **kw: Any) -> list[Result]:
        batches.append((host, [list(raw_args(c)) for c in commands]))
        return await original(host, commands, **kw)

    ctx.batch = batch  # type: ignore[method-assign]
    removed = run(prune.containers(ctx, retain=1))
    assert removed == {f"10.0.0.{n}": ["c1"] for n in (1, 2, 3, 4)}
    release = [["rm", ".kamal/lock-hello/details"], ["rm", "-r", ".kamal/lock-hello"]]
    assert batches[-1] == ("10.0.0.1", [["docker", "rm", "c1"], *release])
    removals = [host for host, commands in batches if ["docker", "rm", "c1"] in commands]
    assert sorted(removals[:-1]) == ["10.0.0.2", "10.0.0.3", "10.0.0.4"]
    assert removals[-1] == "10.0.0.1"
    assert not ctx.holding_lock


def test_bootstrap_installs_docker_as_root_and_reports_hosts_without_root(
    make_config: MakeConfig,
) -> None:
    def setup(fake: FakeTransport) -> None:
        fake.on(["docker", "-v"], Result(127, "", "docker: command not found"))
        if fake.host == "10.0.0.3":  # not root, no sudo
            fake.on(["id", "-u"], Result(0, "1000\n", ""))
            fake.on(["sudo", "-nl", "usermod"], Result(1, "", "a password is required"))
        else:
            fake.on(["id", "-u"], Result(0, "0\n", ""))

    pool = FakePool(setup=setup)
    ctx, _ = make_ctx(make_config(), pool)
    with pytest.raises(DockerError, match=r"not installed on 10\.0\.0\.3 and cannot be installed"):
        run(server.bootstrap(ctx))
    root_calls = without_lock_and_audit(pool.transports["10.0.0.2"].commands)
    assert root_calls[:2] == [["id", "-u"], ["docker", "-v"]]
    assert root_calls[2][-1].endswith("curl -fsSL https://get.docker.com | sh")
    assert not any("get.docker.com" in " ".join(c) for c in pool.transports["10.0.0.3"].commands)
    # the lock was released although bootstrap failed
    assert ["rm", "-r", ".kamal/lock-hello"] in pool.transports["10.0.0.1"].commands


def test_bootstrap_adds_a_non_root_user_to_the_docker_group(make_config: MakeConfig) -> None:
    def setup(fake: FakeTransport) -> None:
        fake.on(["id", "-u"], Result(0, "1000\n", ""))
        fake.on(["id", "-nG"], Result(0, "deploy sudo\n", ""))
        fake.on(["id", "-un"], Result(0, "deploy\n", ""))

    pool = FakePool(setup=setup)
    ctx, _ = make_ctx(make_config(), pool, Selection.parse("10.0.0.2"))
    run(server.bootstrap(ctx))
    calls = without_lock_and_audit(pool.transports["10.0.0.2"].commands)
    assert ["sudo", "-n", "usermod", "-aG", "docker", "deploy"] in calls


def test_server_exec_runs_the_line_on_every_host(make_config: MakeConfig) -> None:
    pool = FakePool(setup=lambda f: f.on(["bash"], Result(0, f"up {f.host}\n", "")))
    ctx, _ = make_ctx(make_config(), pool)
    sections = run(server.exec_(ctx, ["uptime", "&&", "df -h"]))
    assert isinstance(sections, list)
    assert [s.text for s in sections] == [f"up 10.0.0.{n}\n" for n in (1, 2, 3, 4)]
    assert pool.transports["10.0.0.4"].calls[-1].line == "uptime && df -h"


def test_audit_tails_the_log_on_every_host(make_config: MakeConfig) -> None:
    pool = FakePool(setup=lambda f: f.on(["tail"], Result(0, "[t] [dev] Booted\n", "")))
    ctx, _ = make_ctx(make_config(), pool, Selection.parse("10.0.0.1"))
    sections = run(details.audit(ctx))
    assert sections[0].text == "[t] [dev] Booted\n"
    assert pool.transports["10.0.0.1"].commands == [["tail", "-n", "50", ".kamal/hello-audit.log"]]


def test_details_covers_proxy_app_and_accessories(make_config: MakeConfig) -> None:
    pool = FakePool()
    ctx, _ = make_ctx(make_config(), pool)
    titles = [s.title for s in run(details.details(ctx))]
    assert titles[:2] == ["Proxy Host: 10.0.0.1", "Proxy Host: 10.0.0.2"]
    assert "App Host: 10.0.0.3" in titles
    assert titles[-4] == "Accessory cache Host: 10.0.0.4"
    assert titles[-3:] == [f"Rollback versions on 10.0.0.{n}" for n in (1, 2, 3)]


def listing(*rows: tuple[str, str, str, str]) -> str:
    """Output of ``list_app_containers`` (ID, state, role label, name; newest first)."""
    return "".join("\t".join(row) + "\n" for row in rows)


HISTORY = listing(
    ("c3c3c3c3c3c3", "running", "web", "hello-web-v3"),
    ("c2c2c2c2c2c2", "exited", "web", "hello-web-v2"),
    ("cxcxcxcxcxcx", "exited", "web", "hello-web-v2_replaced_ab12"),
    ("c1c1c1c1c1c1", "exited", "web", "hello-web-v1"),
    ("w1w1w1w1w1w1", "running", "workers", "hello-workers-v3"),
)


def test_rollback_versions_leave_out_the_running_and_replaced_ones(
    make_config: MakeConfig,
) -> None:
    pool = FakePool(setup=lambda f: f.on(["docker", "ps", "--all"], Result(0, HISTORY, "")))
    ctx, _ = make_ctx(make_config(), pool, Selection.parse("10.0.0.1"))
    sections = run(app.rollback_versions(ctx))
    assert [s.text for s in sections] == ["web: v2 v1"]
    # one listing of the app's containers, nothing else (one container of the role runs)
    assert pool.transports["10.0.0.1"].commands == [
        ["docker", "ps", "--all", "--filter", "label=service=hello", "--filter",
         "label=destination=", "--format", SURVEY_FORMAT],
    ]  # fmt: skip


def test_rollback_versions_with_two_running_ask_which_is_current(make_config: MakeConfig) -> None:
    both = listing(
        ("c3c3c3c3c3c3", "running", "web", "hello-web-v3"),
        ("c2c2c2c2c2c2", "running", "web", "hello-web-v2"),
        ("c1c1c1c1c1c1", "exited", "web", "hello-web-v1"),
    )

    def setup(fake: FakeTransport) -> None:
        fake.on(["docker", "ps", "--all"], Result(0, both, ""))
        fake.on(["docker", "ps", "--latest"], Result(0, "hello-web-v2\n", ""))

    pool = FakePool(setup=setup)
    ctx, _ = make_ctx(make_config(), pool, Selection.parse("10.0.0.1"))
    # v2 was made from the image tagged latest: current, though v3 is newer
    assert [s.text for s in run(app.rollback_versions(ctx))] == ["web: v3 v1"]
    asked = pool.transports["10.0.0.1"].commands[1]
    assert asked[:3] == ["docker", "ps", "--latest"]
    assert asked[-2:] == ["--filter", "ancestor=registry.test:5000/hello:latest"]


def test_details_asks_each_host_once(make_config: MakeConfig) -> None:
    """Proxy, app, accessory and rollback listings: one round trip per host, the sections
    in the order of proxy/app/accessory details and the rollback versions."""
    config = make_config()

    def setup(fake: FakeTransport) -> None:
        fake.on(["docker", "ps"], Result(0, f"table on {fake.host}\n", ""))
        fake.on(["docker", "ps", "--all"], Result(0, HISTORY, ""))  # (the later rule wins)

    pool = FakePool(setup=setup)
    ctx, _ = make_ctx(config, pool)
    batches = []
    original = ctx.batch

    async def batch(host: str, commands: Sequence[ArgvLike], **kw: Any) -> list[Result]:
        batches.append(host)
        return await original(host, commands, **kw)

    ctx.batch = batch  # type: ignore[method-assign]
    found = run(details.details(ctx))
    assert sorted(batches) == ["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"]
    assert pool.transports["10.0.0.1"].commands == [
        ["docker", "ps", "--filter", "name=^kamal-proxy$"],
        ["docker", "ps", "--filter", "label=service=hello", "--filter", "label=destination=",
         "--filter", "label=role=web"],
        ["docker", "ps", "--all", "--filter", "label=service=hello", "--filter",
         "label=destination=", "--format", SURVEY_FORMAT],
    ]  # fmt: skip
    assert pool.transports["10.0.0.4"].commands == [
        ["docker", "ps", "--filter", "label=service=hello-cache"]
    ]
    assert [(s.title, s.text) for s in found] == [
        ("Proxy Host: 10.0.0.1", "table on 10.0.0.1\n"),
        ("Proxy Host: 10.0.0.2", "table on 10.0.0.2\n"),
        ("App Host: 10.0.0.1", "table on 10.0.0.1\n"),
        ("App Host: 10.0.0.2", "table on 10.0.0.2\n"),
        ("App Host: 10.0.0.3", "table on 10.0.0.3\n"),
        ("Accessory cache Host: 10.0.0.4", "table on 10.0.0.4\n"),
        ("Rollback versions on 10.0.0.1", "web: v2 v1"),
        ("Rollback versions on 10.0.0.2", "web: v2 v1"),
        ("Rollback versions on 10.0.0.3", "workers: (none)"),
    ]


def test_details_names_the_host_whose_docker_fails(make_config: MakeConfig) -> None:
    def setup(fake: FakeTransport) -> None:
        if fake.host == "10.0.0.2":
            fake.on(["docker", "ps"], Result(1, "", "Cannot connect to the Docker daemon\n"))

    pool = FakePool(setup=setup)
    ctx, _ = make_ctx(make_config(), pool)
    with pytest.raises(HostsFailedError) as info:
        run(details.details(ctx))
    assert [host for host, _ in info.value.failures] == ["10.0.0.2"]
    assert "Cannot connect to the Docker daemon" in info.value.render()


def test_aliases_expand_shell_style_with_extra_arguments() -> None:
    aliases = {"console": 'app exec -i --reuse "bin/rails console"', "self": "self x"}
    assert details.expand_alias(aliases, "console", ["-r", "web"]) == [
        "app",
        "exec",
        "-i",
        "--reuse",
        "bin/rails console",
        "-r",
        "web",
    ]
    with pytest.raises(DockyardError, match="expands to itself"):
        details.expand_alias(aliases, "self", [])
    with pytest.raises(DockyardError, match="no alias named 'nope'"):
        details.expand_alias(aliases, "nope", [])
