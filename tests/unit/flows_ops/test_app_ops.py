from __future__ import annotations

import shlex
from collections.abc import Sequence
from typing import Any

import pytest

from dockyard.flows.context import Selection
from dockyard.flows.errors import DockerError
from dockyard.flows.ops import app
from dockyard.flows.ops.base import Interactive, Section
from dockyard.remote import FakePool, FakeTransport, Result
from dockyard.remote.argv import ArgvLike
from dockyard.remote.fanout import HostsFailedError

from .conftest import MakeConfig, make_ctx, run, without_lock_and_audit

WEB_FILTERS = [
    "--filter",
    "label=service=hello",
    "--filter",
    "label=destination=",
    "--filter",
    "label=role=web",
]
RUNNING = ["--filter", "status=running", "--filter", "status=restarting"]


def running_web(fake: FakeTransport) -> None:
    """A host where hello-web-v1 (container abc123) runs from the image tagged latest."""
    fake.on(["docker", "image", "ls"], Result(0, "img1\n", ""))
    fake.on(["docker", "ps", "--latest", "--quiet"], Result(0, "abc123\n", ""))
    fake.on(["docker", "ps", "--latest", "--format"], Result(0, "hello-web-v1\n", ""))


def test_details_runs_docker_ps_per_role_on_each_selected_host(make_config: MakeConfig) -> None:
    pool = FakePool(setup=lambda f: f.on(["docker", "ps"], Result(0, f"ps on {f.host}\n", "")))
    ctx, _ = make_ctx(make_config(), pool)
    sections = run(app.details(ctx))
    assert [s.host for s in sections] == ["10.0.0.1", "10.0.0.2", "10.0.0.3"]
    assert sections[0] == Section("App Host: 10.0.0.1", "10.0.0.1", "ps on 10.0.0.1\n")
    assert pool.transports["10.0.0.1"].commands == [["docker", "ps", *WEB_FILTERS]]
    assert pool.transports["10.0.0.3"].commands[0][-1] == "label=role=workers"


def test_details_lists_the_roles_of_a_host_in_one_round_trip(make_config: MakeConfig) -> None:
    from tests.unit.flows_ops.conftest import BASE

    config = make_config(BASE.replace("      - 10.0.0.3\n", "      - 10.0.0.3\n      - 10.0.0.1\n"))

    def setup(fake: FakeTransport) -> None:
        fake.on(["docker", "ps"], Result(0, "any\n", ""))
        fake.on(["docker", "ps", *WEB_FILTERS[:4], "--filter", "label=role=workers"],
                Result(0, "workers table\n", ""))  # fmt: skip

    pool = FakePool(setup=setup)
    ctx, _ = make_ctx(config, pool, Selection.parse("10.0.0.1"))
    rounds: list[int] = []
    original = ctx.batch

    async def batch(host: str, commands: Sequence[ArgvLike], **kw: Any) -> list[Result]:
        rounds.append(len(commands))
        return await original(host, commands, **kw)

    ctx.batch = batch  # type: ignore[method-assign]
    sections = run(app.details(ctx))
    assert rounds == [2]
    assert [s.text for s in sections] == ["any\n", "workers table\n"]  # primary role first


def test_host_filter_limits_the_hosts(make_config: MakeConfig) -> None:
    pool = FakePool()
    ctx, _ = make_ctx(make_config(), pool, Selection.parse("10.0.0.2"))
    run(app.details(ctx))
    assert set(pool.transports) == {"10.0.0.2"}


def test_logs_finds_the_current_container_and_defaults_to_100_lines(
    make_config: MakeConfig,
) -> None:
    def setup(fake: FakeTransport) -> None:
        running_web(fake)
        fake.on(["bash", "-c"], Result(0, "a log line\n", ""))
        fake.on(["sh", "-c"], Result(0, "a log line\n", ""))

    pool = FakePool(setup=setup)
    ctx, _ = make_ctx(make_config(), pool, Selection.parse(None, "web"))
    sections = run(app.logs(ctx))
    assert [s.text for s in sections] == ["a log line\n", "a log line\n"]
    calls = pool.transports["10.0.0.1"].commands
    assert calls[0] == [
        "docker",
        "image",
        "ls",
        "--filter",
        "reference=registry.test:5000/hello:latest",
        "--format",
        "{{.ID}}",
    ]
    assert calls[1] == ["docker", "ps", "--latest", "--quiet", *WEB_FILTERS, *RUNNING]
    ancestor = ["--filter", "ancestor=img1"]
    assert calls[2] == ["docker", "ps", "--latest", "--quiet", *WEB_FILTERS, *RUNNING, *ancestor]
    assert calls[3][-1].endswith("docker logs --timestamps --tail 100 abc123 2>&1")


def test_without_a_latest_image_the_newest_running_container_is_current(
    make_config: MakeConfig,
) -> None:
    def setup(fake: FakeTransport) -> None:
        fake.on(["docker", "ps", "--latest", "--format"], Result(0, "hello-web-v0\n", ""))

    pool = FakePool(setup=setup)
    ctx, _ = make_ctx(make_config(), pool, Selection.parse("10.0.0.1"))
    assert [s.text for s in run(app.version(ctx))] == ["v0"]
    assert len(pool.transports["10.0.0.1"].commands) == 2  # one batch: one SSH round trip


def test_logs_grep_without_match_is_not_an_error(make_config: MakeConfig) -> None:
    def setup(fake: FakeTransport) -> None:
        running_web(fake)
        fake.on(["bash", "-c"], Result(1, "", ""))
        fake.on(["sh", "-c"], Result(1, "", ""))

    pool = FakePool(setup=setup)
    ctx, _ = make_ctx(make_config(), pool, Selection.parse("10.0.0.1"))
    sections = run(app.logs(ctx, grep="boom"))
    assert sections[0].text == ""
    assert "| grep boom" in pool.transports["10.0.0.1"].commands[-1][-1]
    assert "--tail" not in pool.transports["10.0.0.1"].commands[-1][-1]  # no default with grep


def test_exec_reuse_runs_docker_exec_in_the_running_version(make_config: MakeConfig) -> None:
    def setup(fake: FakeTransport) -> None:
        running_web(fake)
        fake.on(["docker", "exec"], Result(0, f"out {fake.host}\n", ""))

    pool = FakePool(setup=setup)
    ctx, _ = make_ctx(make_config(), pool, Selection.parse(None, "web"))
    result = run(app.exec_(ctx, ["ls", "-la"], reuse=True))
    assert isinstance(result, list)
    assert [s.text for s in result] == ["out 10.0.0.1\n", "out 10.0.0.2\n"]
    calls = without_lock_and_audit(pool.transports["10.0.0.2"].commands)
    assert calls[-1] == ["docker", "exec", "hello-web-v1", "ls", "-la"]
    audit = [c for c in pool.transports["10.0.0.2"].commands if "audit.log" in " ".join(c)]
    assert "Executed cmd 'ls -la' on app version v1" in audit[0][-1]


def test_exec_new_container_logs_in_and_runs_the_latest_image(make_config: MakeConfig) -> None:
    pool = FakePool()
    ctx, _ = make_ctx(make_config(), pool, Selection.parse("10.0.0.3"))
    run(app.exec_(ctx, ["env"], env={"A": "1"}))
    calls = without_lock_and_audit(pool.transports["10.0.0.3"].commands)
    assert calls[0] == ["docker", "login", "registry.test:5000", "-u", "bob", "--password-stdin"]
    login = next(c for c in pool.transports["10.0.0.3"].calls if c.argv[:2] == ["docker", "login"])
    assert login.stdin == b"s3cret"
    docker_run = calls[1]
    assert docker_run[:3] == ["docker", "run", "--rm"]
    assert docker_run[4].startswith("hello-workers-exec-latest-")
    assert docker_run[docker_run.index("A=1") - 1 : docker_run.index("A=1") + 1] == ["--env", "A=1"]
    assert docker_run[-2:] == ["registry.test:5000/hello:latest", "env"]


def test_exec_interactive_returns_ssh_t_on_the_primary_host(make_config: MakeConfig) -> None:
    ctx, _ = make_ctx(make_config(), FakePool())
    result = run(app.exec_(ctx, ["bin/console"], interactive=True, tty=True))
    assert isinstance(result, Interactive)
    assert result.host == "10.0.0.1"
    assert result.argv[:2] == ["ssh", "-t"]
    assert result.argv[-4:-1] == ["-p", "22", "root@10.0.0.1"]
    assert "docker run -it --rm" in result.argv[-1] and result.argv[-1].endswith("bin/console")


def test_exec_interactive_quotes_the_remote_command_once(make_config: MakeConfig) -> None:
    # The last ssh argument is one line for the remote shell (as in Kamal's run_over_ssh).
    ctx, _ = make_ctx(make_config(), FakePool())
    result = run(app.exec_(ctx, ["bin/rails", "runner", "puts 'hi'"], interactive=True))
    assert isinstance(result, Interactive)
    line = result.argv[-1]
    assert line.endswith(" bin/rails runner 'puts '\"'\"'hi'\"'\"''")
    assert shlex.split(line)[-3:] == ["bin/rails", "runner", "puts 'hi'"]


def test_exec_rejects_detach_with_reuse(make_config: MakeConfig) -> None:
    ctx, _ = make_ctx(make_config(), FakePool())
    with pytest.raises(Exception, match="--detach cannot be combined"):
        run(app.exec_(ctx, ["ls"], reuse=True, detach=True))


def test_stop_removes_from_proxy_then_stops_under_the_lock(make_config: MakeConfig) -> None:
    pool = FakePool(setup=running_web)
    ctx, _ = make_ctx(make_config(), pool, Selection.parse("10.0.0.2"))
    run(app.stop(ctx))
    calls = without_lock_and_audit(pool.transports["10.0.0.2"].commands)
    assert calls[-2:] == [
        ["docker", "exec", "kamal-proxy", "kamal-proxy", "remove", "hello-web"],
        ["docker", "stop", "abc123"],
    ]
    lock_calls = [c for c in pool.transports["10.0.0.2"].commands if ".kamal/lock-hello" in c[-1]]
    assert lock_calls[0] == ["mkdir", ".kamal/lock-hello"]  # the lock host is the selected one


def test_start_registers_the_started_container_with_the_proxy(make_config: MakeConfig) -> None:
    def setup(fake: FakeTransport) -> None:
        running_web(fake)
        fake.on(["docker", "container", "ls"], Result(0, "abc123\n", ""))

    pool = FakePool(setup=setup)
    ctx, _ = make_ctx(make_config(), pool, Selection.parse("10.0.0.1"))
    run(app.start(ctx))
    calls = without_lock_and_audit(pool.transports["10.0.0.1"].commands)
    assert calls[0] == ["docker", "start", "hello-web-v1"]
    deploy = calls[-1]
    assert deploy[:6] == ["docker", "exec", "kamal-proxy", "kamal-proxy", "deploy", "hello-web"]
    assert deploy[6] == "--target=abc123:3000"


def test_start_fails_clearly_when_nothing_runs_after_start(make_config: MakeConfig) -> None:
    ctx, _ = make_ctx(make_config(), FakePool(), Selection.parse("10.0.0.1"))
    with pytest.raises(Exception, match=r"10\.0\.0\.1.*no running container of role web"):
        run(app.start(ctx))


def test_stale_containers_lists_and_stops_other_versions(make_config: MakeConfig) -> None:
    def setup(fake: FakeTransport) -> None:
        running_web(fake)
        fake.on(["docker", "ps", "--filter"], Result(0, "hello-web-v1\nhello-web-v0\n", ""))
        fake.on(["docker", "container", "ls"], Result(0, "old999\n", ""))

    pool = FakePool(setup=setup)
    ctx, _ = make_ctx(make_config(), pool, Selection.parse("10.0.0.1"))
    listed = run(app.stale_containers(ctx))
    assert [s.text for s in listed] == ["Detected stale container for role web with version v0"]
    assert not any(c[:2] == ["docker", "stop"] for c in pool.transports["10.0.0.1"].commands)
    run(app.stale_containers(ctx, stop=True))
    stops = [c for c in pool.transports["10.0.0.1"].commands if c[:2] == ["docker", "stop"]]
    assert stops == [["docker", "stop", "old999"]]


def test_maintenance_and_live_talk_to_the_proxy(make_config: MakeConfig) -> None:
    pool = FakePool()
    ctx, _ = make_ctx(make_config(), pool, Selection.parse("10.0.0.1"))
    run(app.maintenance(ctx, message="Back soon"))
    run(app.live(ctx))
    calls = without_lock_and_audit(pool.transports["10.0.0.1"].commands)
    assert calls == [
        [
            "docker",
            "exec",
            "kamal-proxy",
            "kamal-proxy",
            "stop",
            "hello-web",
            "--drain-timeout=30s",
            "--message=Back soon",
        ],
        ["docker", "exec", "kamal-proxy", "kamal-proxy", "resume", "hello-web"],
    ]


def test_version_prints_the_running_version_per_host(make_config: MakeConfig) -> None:
    pool = FakePool(setup=running_web)
    ctx, _ = make_ctx(make_config(), pool, Selection.parse(None, "web"))
    assert [s.text for s in run(app.version(ctx))] == ["v1", "v1"]


def test_remove_prunes_containers_images_and_directories(make_config: MakeConfig) -> None:
    pool = FakePool(setup=running_web)
    ctx, _ = make_ctx(make_config(), pool, Selection.parse("10.0.0.3"))
    run(app.remove(ctx))
    calls = without_lock_and_audit(pool.transports["10.0.0.3"].commands)
    assert calls[-4:] == [
        [
            "docker",
            "container",
            "prune",
            "--force",
            "--filter",
            "label=service=hello",
            "--filter",
            "label=destination=",
            "--filter",
            "label=role=workers",
        ],
        ["docker", "image", "prune", "--all", "--force", "--filter", "label=service=hello"],
        ["rm", "-r", ".kamal/apps/hello"],
        ["rm", "-r", ".kamal/proxy/apps-config/hello"],
    ]


def test_a_failing_docker_command_names_the_host(make_config: MakeConfig) -> None:
    pool = FakePool(
        setup=lambda f: f.on(["docker", "ps"], Result(1, "", "Cannot connect to the Docker daemon"))
    )
    ctx, _ = make_ctx(make_config(), pool, Selection.parse("10.0.0.2"))
    with pytest.raises(HostsFailedError, match=r"10\.0\.0\.2") as info:
        run(app.details(ctx))
    assert "Cannot connect to the Docker daemon" in str(info.value)
    assert str(info.value).startswith("failed on 1 of 1 host(s):")
    ((host, error),) = info.value.failures
    assert host == "10.0.0.2" and isinstance(error, DockerError)
