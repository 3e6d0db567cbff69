"""app boot, proxy boot/reboot, registry setup/remove/login/logout with the local registry and
its SSH reverse forward, build create/remove/details/dev, accessories in setup/remove:
the exact commands against FakePool / a fake local transport."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from dockyard.commands.app import SURVEY_FORMAT
from dockyard.errors import DockyardError
from dockyard.flows import build as build_flow
from dockyard.flows import deploy as deploy_flow
from dockyard.flows.boot import env_file_written
from dockyard.flows.context import DeployContext, Selection
from dockyard.flows.errors import BuildError, RegistryError
from dockyard.flows.ops import app, proxy, registry
from dockyard.flows.ops import build as build_ops
from dockyard.remote import FakePool, FakeTransport, Result

from .conftest import BASE, MakeConfig, make_ctx, run, without_lock_and_audit

LOCAL = BASE.replace(
    """registry:
  server: registry.test:5000
  username: bob
  password:
    - KAMAL_REGISTRY_PASSWORD
""",
    """registry:
  server: localhost:5555
""",
)


def _shape(args: list[str]) -> list[str]:
    if args[:2] == ["bash", "-c"] and args[2].startswith("docker run --name "):
        return ["docker", "run", args[2].split()[3]]  # a run with $PWD in a volume
    if args[:2] == ["docker", "run"]:
        return ["docker", "run", args[args.index("--name") + 1]]
    if args[:2] == ["docker", "login"]:
        return ["docker", "login", args[2]]
    return args


# --- registry ---------------------------------------------------------------------------------


def test_registry_setup_logs_in_locally_and_on_every_host(make_config: MakeConfig) -> None:
    pool = FakePool()
    ctx, _ = make_ctx(make_config(), pool)
    run(registry.setup(ctx))
    local = [c.argv for c in ctx.local.calls if c.argv[:2] != ["git", "config"]]  # type: ignore[attr-defined]
    assert local[0] == ["docker", "--version"]
    assert _shape(local[1]) == ["docker", "login", "registry.test:5000"]
    login_call = next(c for c in ctx.local.calls if c.argv[:2] == ["docker", "login"])  # type: ignore[attr-defined]
    assert login_call.stdin == b"s3cret" and "s3cret" not in login_call.argv
    assert sorted(pool.transports) == ["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"]
    for fake in pool.transports.values():
        assert [_shape(c) for c in fake.commands] == [["docker", "login", "registry.test:5000"]]


def test_registry_setup_skip_local_and_remote(make_config: MakeConfig) -> None:
    pool = FakePool()
    ctx, _ = make_ctx(make_config(), pool)
    run(registry.setup(ctx, skip_local=True))
    assert not [c for c in ctx.local.calls if c.argv[0] == "docker"]  # type: ignore[attr-defined]
    assert sorted(pool.transports) == ["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"]
    for fake in pool.transports.values():
        assert [_shape(c) for c in fake.commands] == [["docker", "login", "registry.test:5000"]]
    pool2 = FakePool()
    ctx2, _ = make_ctx(make_config(), pool2)
    run(registry.setup(ctx2, skip_remote=True))
    assert pool2.transports == {}


def test_registry_login_refused_on_a_server_names_the_host(make_config: MakeConfig) -> None:
    pool = FakePool(setup=lambda f: f.on(["docker", "login"], Result(1, "", "unauthorized")))
    ctx, _ = make_ctx(make_config(), pool, Selection.parse("10.0.0.2"))
    with pytest.raises(DockyardError, match=r"10\.0\.0\.2.*docker login"):
        run(registry.login(ctx, skip_local=True))


def test_registry_logout_locally_and_remotely(make_config: MakeConfig) -> None:
    pool = FakePool()
    ctx, _ = make_ctx(make_config(), pool, Selection.parse("10.0.0.1"))
    run(registry.logout(ctx))
    assert ["docker", "logout", "registry.test:5000"] in [c.argv for c in ctx.local.calls]  # type: ignore[attr-defined]
    assert pool.transports["10.0.0.1"].commands == [["docker", "logout", "registry.test:5000"]]


def test_local_registry_setup_starts_or_runs_the_container(
    make_config: MakeConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(registry.IMAGE_ENV, raising=False)
    pool = FakePool()
    ctx, _ = make_ctx(make_config(LOCAL), pool)
    ctx.local.on(["docker", "start"], Result(1, "", "No such container"))  # type: ignore[attr-defined]
    run(registry.setup(ctx))
    docker_calls = [c.argv for c in ctx.local.calls if c.argv[0] == "docker"]  # type: ignore[attr-defined]
    assert docker_calls == [
        ["docker", "--version"],
        ["docker", "start", "kamal-docker-registry"],
        ["docker", "run", "--detach", "-p", "127.0.0.1:5555:5000",
         "--name", "kamal-docker-registry", "registry:3"],
    ]  # fmt: skip
    assert pool.transports == {}  # no login anywhere


def test_local_registry_image_comes_from_the_environment(
    make_config: MakeConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(registry.IMAGE_ENV, "dockyard-lab/local-registry:test")
    ctx, _ = make_ctx(make_config(LOCAL), FakePool())
    ctx.local.on(["docker", "start"], Result(1, "", "No such container"))  # type: ignore[attr-defined]
    run(registry.start_local_registry(ctx))
    assert ctx.local.calls[-1].argv[-1] == "dockyard-lab/local-registry:test"  # type: ignore[attr-defined]


def test_local_registry_remove_and_login_refused(make_config: MakeConfig) -> None:
    ctx, _ = make_ctx(make_config(LOCAL), FakePool())
    run(registry.remove(ctx))
    assert [c.argv for c in ctx.local.calls][-2:] == [  # type: ignore[attr-defined]
        ["docker", "stop", "kamal-docker-registry"],
        ["docker", "rm", "kamal-docker-registry"],
    ]
    with pytest.raises(RegistryError, match="cannot use `registry login` with a local"):
        run(registry.login(ctx))
    with pytest.raises(RegistryError, match="cannot use `registry logout`") as caught:
        run(registry.logout(ctx))
    assert caught.value.hint == "use `dockyard registry remove` instead"


@dataclass
class ForwardingPool(FakePool):
    forwards: list[tuple[tuple[str, ...], int, int, str]] = field(default_factory=list)
    open_during: list[list[str]] = field(default_factory=list)
    active: bool = False

    @contextlib.asynccontextmanager
    async def reverse_forward(
        self,
        hosts: Sequence[str],
        *,
        remote_port: int,
        local_port: int,
        local_host: str = "localhost",
        remote_host: str = "127.0.0.1",
    ) -> AsyncIterator[None]:
        self.forwards.append((tuple(hosts), remote_port, local_port, local_host))
        self.active = True
        try:
            yield
        finally:
            self.active = False


def test_pull_with_a_local_registry_goes_through_a_reverse_forward_without_login(
    make_config: MakeConfig,
) -> None:
    pool = ForwardingPool()
    seen: list[bool] = []

    def setup(fake: FakeTransport) -> None:
        def respond(args: list[str]) -> Result | None:
            if args[:2] == ["docker", "pull"]:
                seen.append(pool.active)
            if args[:3] == ["docker", "inspect", "-f"]:
                return Result(0, "hello\n", "")
            return None

        fake.responder = respond

    pool.setup = setup
    ctx, _ = make_ctx(make_config(LOCAL), pool, Selection.parse(roles="web"))
    run(build_flow.pull(ctx))
    assert pool.forwards == [(("10.0.0.1", "10.0.0.2"), 5555, 5555, "127.0.0.1")]
    assert seen == [True, True]  # every pull ran while the forward was open
    for host in ("10.0.0.1", "10.0.0.2"):
        calls = pool.transports[host].commands
        assert ["docker", "pull", "localhost:5555/hello:v1"] in calls
        assert not [c for c in calls if c[:2] == ["docker", "login"]]


def test_pull_without_a_local_registry_opens_no_forward(make_config: MakeConfig) -> None:
    pool = ForwardingPool(setup=lambda f: f.on(["docker", "inspect"], Result(0, "hello\n", "")))
    ctx, _ = make_ctx(make_config(), pool, Selection.parse(roles="web"))
    run(build_flow.pull(ctx))
    assert pool.forwards == []


def test_a_pool_that_cannot_forward_is_a_clear_error(make_config: MakeConfig) -> None:
    ctx, _ = make_ctx(make_config(LOCAL), FakePool(), Selection.parse(roles="web"))
    with pytest.raises(DockyardError, match="cannot forward ports"):
        run(build_flow.pull(ctx))


# --- proxy boot / reboot ----------------------------------------------------------------------


def _proxy_state(state: str | None) -> FakePool:
    """`docker inspect kamal-proxy` answers `state` (None: no such container)."""

    def setup(fake: FakeTransport) -> None:
        def respond(args: list[str]) -> Result | None:
            if args[:2] == ["docker", "inspect"] and args[-1] == "kamal-proxy":
                if state is None:
                    return Result(1, "", "Error: No such object: kamal-proxy")
                return Result(0, state + "\n", "")
            return None

        fake.responder = respond

    return FakePool(setup=setup)


def test_proxy_boot_leaves_a_running_proxy_alone(make_config: MakeConfig) -> None:
    pool = _proxy_state("basecamp/kamal-proxy:v0.9.2\ttrue\tkamal ")
    ctx, _ = make_ctx(make_config(), pool)
    run(proxy.boot(ctx))
    calls = without_lock_and_audit(pool.transports["10.0.0.1"].commands)
    assert not [c for c in calls if c[:2] in (["docker", "run"], ["docker", "login"])]
    # the kamal network on every host, the accessory's too
    for host in ("10.0.0.1", "10.0.0.3", "10.0.0.4"):
        assert ["docker", "network", "create", "kamal"] in pool.transports[host].commands


def test_proxy_boot_runs_a_missing_proxy_after_login(make_config: MakeConfig) -> None:
    pool = _proxy_state(None)
    pool.setup = _with_list_ok(pool.setup)
    pool.setup = _without_boot_files(pool.setup)
    ctx, _ = make_ctx(make_config(), pool, Selection.parse("10.0.0.2"))
    run(proxy.boot(ctx))
    calls = [_shape(c) for c in without_lock_and_audit(pool.transports["10.0.0.2"].commands)]
    login = calls.index(["docker", "login", "registry.test:5000"])
    assert calls.index(["docker", "run", "kamal-proxy"]) > login
    # no proxy.run in this config: the boot-config files were read for the legacy run
    assert ["cat", ".kamal/proxy/options"] in calls


def _without_boot_files(setup):  # type: ignore[no-untyped-def]
    def wrapped(fake: FakeTransport) -> None:
        setup(fake)
        fake.on(["cat"], Result(1, "", "cat: No such file or directory"))

    return wrapped


def _with_list_ok(setup):  # type: ignore[no-untyped-def]
    def wrapped(fake: FakeTransport) -> None:
        setup(fake)
        fake.on(["docker", "exec", "kamal-proxy", "kamal-proxy", "list"], Result(0, "", ""))

    return wrapped


def test_proxy_boot_refuses_an_old_proxy(make_config: MakeConfig) -> None:
    pool = _proxy_state("basecamp/kamal-proxy:v0.8.4\ttrue\tkamal ")
    ctx, _ = make_ctx(make_config(), pool, Selection.parse("10.0.0.1"))
    with pytest.raises(DockyardError, match=r"v0\.8\.4 is too old"):
        run(proxy.boot(ctx))


def _hooks(root: Path, *names: str) -> None:
    hooks = root / ".kamal" / "hooks"
    hooks.mkdir(parents=True, exist_ok=True)
    for name in names:
        (hooks / name).write_text("#!/bin/sh\n")
        (hooks / name).chmod(0o755)


def _hook_calls(ctx: DeployContext) -> list[tuple[str, str]]:
    out = []
    for call in ctx.local.calls:  # type: ignore[attr-defined]
        if call.argv[:2] == ["sh", "-c"] and "hooks" in call.argv[-1]:
            out.append((Path(call.argv[-1]).name, (call.env or {}).get("KAMAL_HOSTS", "")))
    return out


@pytest.mark.parametrize("rolling", [False, True])
def test_proxy_reboot_all_at_once_or_rolling(
    make_config: MakeConfig, tmp_path: Path, rolling: bool
) -> None:
    config = make_config()
    _hooks(tmp_path, "pre-proxy-reboot", "post-proxy-reboot")
    pool = FakePool(setup=_without_boot_files(lambda f: None))
    ctx, _ = make_ctx(config, pool)
    run(proxy.reboot(ctx, rolling=rolling))
    for host in ("10.0.0.1", "10.0.0.2"):
        calls = [_shape(c) for c in without_lock_and_audit(pool.transports[host].commands)]
        assert calls[1:] == [
            ["docker", "login", "registry.test:5000"],
            ["cat", ".kamal/proxy/options"],
            ["cat", ".kamal/proxy/image"],
            ["cat", ".kamal/proxy/image_version"],
            ["cat", ".kamal/proxy/run_command"],
            ["docker", "container", "stop", "kamal-proxy"],
            ["docker", "container", "prune", "--force", "--filter",
             "label=org.opencontainers.image.title=kamal-proxy"],
            ["mkdir", "-p", ".kamal/proxy/apps-config"],
            ["docker", "run", "kamal-proxy"],
            ["docker", "exec", "kamal-proxy", "kamal-proxy", "list"],
        ]  # fmt: skip
        assert "Rebooted proxy" in " ".join(" ".join(c) for c in pool.transports[host].commands)
    # workers (no proxy) are not touched beyond the lock
    assert without_lock_and_audit(pool.transports.get("10.0.0.3", FakeTransport()).commands) == []
    if rolling:
        assert _hook_calls(ctx) == [
            ("pre-proxy-reboot", "10.0.0.1"), ("post-proxy-reboot", "10.0.0.1"),
            ("pre-proxy-reboot", "10.0.0.2"), ("post-proxy-reboot", "10.0.0.2"),
        ]  # fmt: skip
    else:
        assert _hook_calls(ctx) == [
            ("pre-proxy-reboot", "10.0.0.1,10.0.0.2"),
            ("post-proxy-reboot", "10.0.0.1,10.0.0.2"),
        ]


# --- app boot ---------------------------------------------------------------------------------


def _app_server(fake: FakeTransport) -> None:
    def respond(args: list[str]) -> Result | None:
        if args[:2] == ["docker", "run"]:
            return Result(0, "abcdef1234567890\n", "")
        if args[:2] == ["docker", "ps"] and SURVEY_FORMAT in args:  # the boot's survey
            return Result(0, "c0c0c0c0c0c0\trunning\tweb\thello-web-v0\n", "")
        if args[:2] == ["docker", "ps"] and ("--latest" in args or "--format" in args):
            return Result(0, "hello-web-v0\n", "")
        if args[:2] == ["docker", "inspect"] and args[-1] == "kamal-proxy":
            return Result(0, "basecamp/kamal-proxy:v0.9.2\ttrue\tkamal \n", "")
        if args[:2] == ["docker", "inspect"] and args[-1] == "abcdef123456":
            return Result(0, "healthy\n", "")  # the workers' container (no proxy)
        return None

    fake.responder = respond


def test_app_boot_without_version_boots_the_latest_tag(make_config: MakeConfig) -> None:
    pool = FakePool(setup=_app_server)
    ctx, _ = make_ctx(make_config(), pool, Selection.parse(roles="web"))
    assert run(app.boot(ctx)) == "latest"
    calls = [_shape(c) for c in without_lock_and_audit(pool.transports["10.0.0.1"].commands)]
    run_index = calls.index(["docker", "run", "hello-web-latest"])
    deploy = [c for c in calls if c[:4] == ["docker", "exec", "kamal-proxy", "kamal-proxy"]]
    assert deploy and deploy[0][4:6] == ["deploy", "hello-web"]
    assert calls.index(deploy[0]) > run_index
    assert ["docker", "stop", "hello-web-v0"] in calls  # the old container after the switch
    assert calls[-1] == ["docker", "tag", "registry.test:5000/hello:latest",
                         "registry.test:5000/hello:latest"]  # fmt: skip
    assert not [c for c in calls if c[:2] in (["docker", "pull"], ["docker", "login"])]
    transport = pool.transports["10.0.0.1"]
    assert env_file_written(  # the env file went up (within the batch, or over SFTP)
        transport.commands,
        [u.path for u in transport.uploads],
        ".kamal/apps/hello/env/roles/web.env",
    )


def test_app_boot_with_a_version_and_hooks(make_config: MakeConfig, tmp_path: Path) -> None:
    config = make_config()
    _hooks(tmp_path, "pre-app-boot", "post-app-boot")
    pool = FakePool(setup=_app_server)
    ctx, _ = make_ctx(config, pool, Selection.parse(roles="web"))
    assert run(app.boot(ctx, "v7")) == "v7"
    calls = [_shape(c) for c in pool.transports["10.0.0.2"].commands]
    assert ["docker", "run", "hello-web-v7"] in calls
    assert calls[-1] == ["docker", "tag", "registry.test:5000/hello:v7",
                         "registry.test:5000/hello:latest"]  # fmt: skip
    assert [name for name, _ in _hook_calls(ctx)] == ["pre-app-boot", "post-app-boot"]


# --- accessories in setup / remove ------------------------------------------------------------


def test_setup_boots_the_accessories_and_remove_removes_them(make_config: MakeConfig) -> None:
    runs: list[str] = []  # the containers `docker run` started, in order, on every host

    def setup(fake: FakeTransport) -> None:
        _app_server(fake)
        answer = fake.responder
        assert answer is not None

        def respond(args: list[str]) -> Result | None:
            shaped = _shape(args)
            if shaped[:2] == ["docker", "run"]:
                runs.append(shaped[2])
            return answer(args)

        fake.responder = respond
        fake.on(["docker", "inspect", "-f"], Result(0, "hello\n", ""))
        fake.on(["docker", "version"], Result(0, "24.0\n", ""))

    pool = FakePool(setup=setup)
    ctx, _ = make_ctx(make_config(), pool)
    run(deploy_flow.setup(ctx, skip_push=True))
    acc = [_shape(c) for c in pool.transports["10.0.0.4"].commands]
    assert ["docker", "run", "hello-cache"] in acc
    assert "Booted cache accessory" in " ".join(" ".join(c) for c in acc)
    web = pool.transports["10.0.0.1"].commands
    assert ["docker", "run", "hello-web-v1"] in [_shape(c) for c in web]
    # the accessory is booted before the app
    assert runs.index("hello-cache") < runs.index("hello-web-v1")

    pool2 = FakePool()
    ctx2, _ = make_ctx(make_config(), pool2)
    run(deploy_flow.remove(ctx2))
    acc = pool2.transports["10.0.0.4"].commands
    assert ["docker", "container", "stop", "hello-cache"] in acc
    assert ["rm", "-rf", "hello-cache"] in acc


# --- build create / remove / details / dev ----------------------------------------------------


def _local(ctx: DeployContext, buildx: bool) -> FakeTransport:
    local = ctx.local
    assert isinstance(local, FakeTransport)
    if not buildx:
        local.on(["docker", "buildx"], Result(1, "", "docker: unknown command: docker buildx"))
    local.on(["docker", "info"], Result(0, "x86_64\n", ""))
    return local


def test_build_create_remove_need_buildx(make_config: MakeConfig) -> None:
    ctx, _ = make_ctx(make_config(), FakePool())
    _local(ctx, buildx=False)
    for flow in (build_ops.create, build_ops.remove, build_ops.details):
        with pytest.raises(BuildError, match="needs the Docker buildx plugin, which is missing"):
            run(flow(ctx))


def test_build_create_remove_details_with_buildx(make_config: MakeConfig) -> None:
    ctx, _ = make_ctx(make_config(), FakePool())
    local = _local(ctx, buildx=True)
    local.on(["docker", "buildx", "ls"], Result(0, "NAME/NODE DRIVER\ndefault docker\n", ""))
    assert run(build_ops.create(ctx)) == "Created the builder kamal-local-docker-container"
    assert ["docker", "buildx", "create", "--name", "kamal-local-docker-container",
            "--driver=docker-container"] in local.commands  # fmt: skip
    run(build_ops.remove(ctx))
    assert local.commands[-1] == ["docker", "buildx", "rm", "kamal-local-docker-container"]
    sections = run(build_ops.details(ctx))
    assert sections[0].title == "Builder: kamal-local-docker-container"
    assert "default docker" in sections[0].text
    assert local.commands[-1] == ["docker", "buildx", "inspect", "kamal-local-docker-container"]


def test_build_dev_without_buildx_uses_the_classic_builder_with_dirty_tags(
    make_config: MakeConfig, tmp_path: Path
) -> None:
    ctx, events = make_ctx(make_config(), FakePool())
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    (tmp_path / ".dockerignore").write_text("secret.txt\n")
    local = _local(ctx, buildx=False)
    local.on(["git", "-C"], Result(0, " M Dockerfile\n?? notes.md\n?? secret.txt\n", ""))
    tags = run(build_ops.dev(ctx))
    assert tags == ["registry.test:5000/hello:v1-dirty", "registry.test:5000/hello:latest-dirty"]
    build = [c for c in local.calls if c.argv[:2] == ["sh", "-c"] and "build" in c.argv]
    assert len(build) == 1
    args = build[0].argv[5:]
    assert args[:6] == ["docker", "build", "--platform", "linux/amd64",
                        "-t", "registry.test:5000/hello:v1-dirty"]  # fmt: skip
    assert "push" not in args and build[0].env == {"DOCKER_BUILDKIT": "0"}
    warnings = [e.text for e in events if e.kind == "warn"]
    assert any("uncommitted" in w and "Dockerfile" in w for w in warnings)
    assert any("Untracked" in w and "notes.md" in w and "secret.txt" not in w for w in warnings)
    with pytest.raises(BuildError, match="--output=registry needs the Docker buildx plugin"):
        run(build_ops.dev(ctx, output="registry"))


def test_build_dev_with_buildx_builds_to_the_local_store(
    make_config: MakeConfig, tmp_path: Path
) -> None:
    ctx, _ = make_ctx(make_config(), FakePool())
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    local = _local(ctx, buildx=True)
    run(build_ops.dev(ctx, no_cache=True))
    build = [c.argv for c in local.calls if c.argv[:2] == ["sh", "-c"]][-1][5:]
    assert build[:4] == ["docker", "buildx", "build", "--output=type=docker"]
    assert "--no-cache" in build and "registry.test:5000/hello:latest-dirty" in build


def test_build_dev_missing_dockerfile(make_config: MakeConfig) -> None:
    ctx, _ = make_ctx(make_config(), FakePool())
    _local(ctx, buildx=False)
    with pytest.raises(BuildError, match="Missing Dockerfile"):
        run(build_ops.dev(ctx))


def test_porcelain_and_dockerignore_filtering() -> None:
    changed, new = build_ops.parse_porcelain(
        " M app.py\nR  old.py -> new.py\n?? tmp/x.log\n?? web/a.js\n"
    )
    assert changed == ["app.py", "new.py"] and new == ["tmp/x.log", "web/a.js"]
    assert build_ops.in_context(new, ".", ["tmp", "*.md"]) == ["web/a.js"]
    assert build_ops.in_context(new, "web", []) == ["web/a.js"]
    assert build_ops.in_context(["web/a.js", "web/b.js"], ".", ["web", "!web/b.js"]) == ["web/b.js"]


def test_a_proxied_accessory_boots_kamal_proxy_where_it_is_missing(
    make_config: MakeConfig,
) -> None:
    text = BASE.replace(
        "    cmd: cache-server --appendonly yes\n",
        "    cmd: cache-server --appendonly yes\n    proxy:\n      host: cache.example\n"
        "      app_port: 6379\n",
    )
    pool = _proxy_state(None)
    scripted = _with_list_ok(_without_boot_files(pool.setup))

    def setup(fake: FakeTransport) -> None:
        scripted(fake)
        fake.on(["docker", "container", "ls"], Result(0, "c0ffee123456\n", ""))

    pool.setup = setup
    ctx, _ = make_ctx(make_config(text), pool)
    from dockyard.flows.ops import accessory

    run(accessory.boot(ctx, "cache"))
    calls = [_shape(c) for c in without_lock_and_audit(pool.transports["10.0.0.4"].commands)]
    proxy_run = calls.index(["docker", "run", "kamal-proxy"])
    assert calls.index(["docker", "run", "hello-cache"]) > proxy_run
    deploys = [
        c for c in calls if c[:5] == ["docker", "exec", "kamal-proxy", "kamal-proxy", "deploy"]
    ]
    assert deploys and deploys[0][5] == "hello-cache"


def test_build_push_without_buildx_for_two_arches_says_buildx_is_needed(
    make_config: MakeConfig,
) -> None:
    ctx, _ = make_ctx(make_config(BASE.replace("arch: amd64", "arch: [amd64, arm64]")), FakePool())
    _local(ctx, buildx=False)
    with pytest.raises(BuildError, match="one architecture only") as caught:
        run(build_flow.push(ctx))
    assert caught.value.hint is not None and "buildx plugin" in caught.value.hint


def test_a_remote_builder_gets_the_local_registry_forwarded_during_the_build(
    make_config: MakeConfig,
) -> None:
    from dockyard.commands import builder as builder_commands

    text = LOCAL.replace(
        "builder:\n  arch: amd64\n",
        "builder:\n  arch: arm64\n  remote: ssh://builder@10.9.0.9:2222\n",
    )
    ctx, _ = make_ctx(make_config(text), FakePool())
    plan = builder_commands.plan(ctx.config, "amd64")
    assert plan.kind == "remote"
    # the build itself runs while the forward is open
    pools: list[ForwardingPool] = []
    made_options: list[object] = []

    def keep(options: object) -> ForwardingPool:
        made_options.append(options)
        pools.append(ForwardingPool())
        return pools[-1]

    async def during() -> bool:
        async with registry.forward_local_registry_to_builder(ctx, plan, make_pool=keep):
            return pools[0].active

    assert run(during()) is True
    options = made_options[0]
    assert (options.user, options.port) == ("builder", 2222)  # type: ignore[attr-defined]
    assert pools[0].forwards == [(("10.9.0.9",), 5555, 5555, "127.0.0.1")]
    assert pools[0].closed and not pools[0].active

    # a local builder, or another registry: no forward
    local_plan = builder_commands.plan(make_config(LOCAL), "amd64")
    pools.clear()

    async def none() -> None:
        async with registry.forward_local_registry_to_builder(ctx, local_plan, make_pool=keep):
            pass

    run(none())
    assert pools == []
