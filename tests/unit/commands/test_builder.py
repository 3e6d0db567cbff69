"""Golden tests: image builds, for the configs of Kamal's ``test/commands/builder_test.rb``.

Kamal reads the local arch from ``docker info``; here it is a parameter (``amd64`` below, so the
"remote arch" is ``arm64``).
"""

from __future__ import annotations

from typing import Any

import pytest

from dockyard.commands import builder
from dockyard.commands.argv import Argv, Secret, ShellExpanded

from .conftest import LoadConfig

LOCAL, REMOTE = "amd64", "arm64"


def base(**builder_raw: Any) -> dict[str, Any]:
    return {
        "service": "app",
        "image": "dhh/app",
        "registry": {"username": "dhh", "password": "secret"},
        "servers": ["1.1.1.1"],
        "builder": {"arch": "amd64", **builder_raw},
    }


BUILD = ("docker", "buildx", "build", "--output=type=registry")
TAGS = ("-t", "dhh/app:123", "-t", "dhh/app:latest")
LOCAL_BUILDER = ("--builder", "kamal-local-docker-container")


def test_local_build_with_gha_cache(load: LoadConfig) -> None:
    config = load(base(cache={"type": "gha"}), version="123")
    build_plan = builder.plan(config, LOCAL)
    assert build_plan.kind == "local"
    assert builder.push(config, build_plan) == [
        (*BUILD, "--platform", "linux/amd64", *LOCAL_BUILDER, *TAGS,
         "--cache-to", "type=gha", "--cache-from", "type=gha",
         "--label", "service=app", "--file", "Dockerfile", "."),
    ]  # fmt: skip


def test_push_without_2_and_1_redirect_and_with_no_cache(load: LoadConfig) -> None:
    config = load(base(), version="123")
    assert builder.push(config, builder.plan(config, LOCAL), no_cache=True) == [
        (*BUILD, "--platform", "linux/amd64", *LOCAL_BUILDER, *TAGS,
         "--label", "service=app", "--file", "Dockerfile", "--no-cache", "."),
    ]  # fmt: skip


def test_hybrid_build_when_remote_is_set_and_building_multiarch(load: LoadConfig) -> None:
    config = load(
        base(arch=["amd64", "arm64"], remote="ssh://app@127.0.0.1", cache={"type": "gha"}),
        version="123",
    )
    build_plan = builder.plan(config, LOCAL)
    assert build_plan.kind == "hybrid"
    assert build_plan.local_arches == ("amd64",)
    assert build_plan.remote_arches == ("arm64",)
    assert builder.push(config, build_plan) == [
        (*BUILD, "--platform", "linux/amd64,linux/arm64",
         "--builder", "kamal-hybrid-docker-container-ssh---app-127-0-0-1", *TAGS,
         "--cache-to", "type=gha", "--cache-from", "type=gha",
         "--label", "service=app", "--file", "Dockerfile", "."),
    ]  # fmt: skip


def test_remote_build_when_local_disabled(load: LoadConfig) -> None:
    config = load(
        base(arch=["amd64", "arm64"], remote="ssh://app@127.0.0.1", local=False), version="123"
    )
    build_plan = builder.plan(config, LOCAL)
    assert build_plan.kind == "remote"
    assert builder.push(config, build_plan)[0][4:8] == (
        "--platform", "linux/amd64,linux/arm64", "--builder", "kamal-remote-ssh---app-127-0-0-1",
    )  # fmt: skip


def test_remote_when_arch_is_not_local_and_local_when_it_is(load: LoadConfig) -> None:
    remote = load(base(arch=[REMOTE], remote="ssh://app@host"), version="123")
    assert builder.plan(remote, LOCAL).kind == "remote"
    assert builder.plan(remote, LOCAL).name == "kamal-remote-ssh---app-host"
    local = load(base(arch=[LOCAL], remote="ssh://app@host"), version="123")
    assert builder.plan(local, LOCAL).kind == "local"
    assert builder.plan(local, LOCAL).name == "kamal-local-docker-container"


def test_pack_build_then_push_both_tags(load: LoadConfig) -> None:
    pack = {"builder": "heroku/builder:24", "buildpacks": ["heroku/ruby", "heroku/procfile"]}
    config = load(base(pack=pack, args={"a": 1, "b": 2}), version="123")
    build_plan = builder.plan(config, LOCAL)
    assert build_plan.kind == "pack"
    assert builder.push(config, build_plan, no_cache=True) == [
        ("pack", "build", "dhh/app", "--platform", "linux/amd64", "--creation-time", "now",
         "--builder", "heroku/builder:24", "--buildpack", "heroku/ruby",
         "--buildpack", "heroku/procfile", "--buildpack", "paketo-buildpacks/image-labels",
         *TAGS, "--clear-cache", "--env", "BP_IMAGE_LABELS=service=app",
         "--env", "a=1", "--env", "b=2", "--path", "."),
        ("docker", "push", "dhh/app:123"),
        ("docker", "push", "dhh/app:latest"),
    ]  # fmt: skip


def test_pack_build_secrets_as_env_are_masked(load: LoadConfig) -> None:
    pack = {"builder": "heroku/builder:24", "buildpacks": ["heroku/ruby"]}
    config = load(base(pack=pack, secrets=["token_a"]), version="123", secrets="token_a=foo\n")
    build = builder.push(config, builder.plan(config, LOCAL))[0]
    assert build[-4:] == ("--env", "token_a=foo", "--path", ".")
    assert "token_a=[REDACTED]" in build.display()
    assert "foo" not in build.display()


def test_cloud_builder(load: LoadConfig) -> None:
    config = load(base(driver="cloud docker-org-name/builder-name"), version="123")
    build_plan = builder.plan(config, LOCAL)
    assert build_plan.kind == "cloud"
    assert builder.push(config, build_plan)[0][6:8] == (
        "--builder", "cloud-docker-org-name-builder-name",
    )  # fmt: skip
    assert builder.create(config, build_plan) == [
        ("docker", "buildx", "create", "--driver", "cloud", "docker-org-name/builder-name"),
    ]
    assert builder.remove(config, build_plan) == [
        ("docker", "buildx", "rm", "cloud-docker-org-name-builder-name"),
    ]


def test_build_args_are_secret_in_display(load: LoadConfig) -> None:
    config = load(base(args={"a": 1, "b": 2}), version="123")
    options = builder.build_options(config)
    assert [str(p) if not isinstance(p, Secret) else p.reveal() for p in options] == [
        "--label", "service=app", "--build-arg", "a=1", "--build-arg", "b=2",
        "--file", "Dockerfile",
    ]  # fmt: skip
    build = builder.push(config, builder.plan(config, LOCAL))[0]
    assert "--build-arg a=[REDACTED] --build-arg b=[REDACTED]" in build.display()


def test_build_secrets_dockerfile_target_ssh(load: LoadConfig) -> None:
    config = load(
        base(
            secrets=["token_a", "token_b"],
            dockerfile="Dockerfile.xyz",
            target="prod",
            ssh="default=$SSH_AUTH_SOCK",
        ),
        version="123",
    )
    options = builder.build_options(config)
    assert Argv(options).plain() == (
        "--label", "service=app", "--secret", "id=token_a", "--secret", "id=token_b",
        "--file", "Dockerfile.xyz", "--target", "prod", "--ssh", "default=$SSH_AUTH_SOCK",
    )  # fmt: skip
    # Expanded by the local shell, as Kamal's unquoted word is.
    assert options[-1] == ShellExpanded("default=$SSH_AUTH_SOCK", variables=True)
    assert Argv(options).shell().endswith('--ssh "default=$SSH_AUTH_SOCK"')


def test_push_env_exports_secrets_and_remote_token_flag(load: LoadConfig) -> None:
    config = load(
        base(secrets=["a"], arch=[REMOTE], remote="ssh://app@host"),
        version="123",
        secrets="a=foo\n",
    )
    build_plan = builder.plan(config, LOCAL)
    assert builder.push_env(config, build_plan) == {"a": "foo", "BUILDKIT_NO_CLIENT_TOKEN": "1"}
    assert builder.push_env(config, build_plan, {"a": "bar"}, legacy=True) == {
        "a": "bar",
        "BUILDKIT_NO_CLIENT_TOKEN": "1",
        "DOCKER_BUILDKIT": "1",
    }
    assert not builder.login_to_registry_locally(build_plan)


def test_context_provenance_and_sbom(load: LoadConfig) -> None:
    config = load(base(context="./foo", provenance="mode=max", sbom=False), version="123")
    assert builder.push(config, builder.plan(config, LOCAL))[0][-6:] == (
        "Dockerfile", "--provenance", "mode=max", "--sbom", "false", "./foo",
    )  # fmt: skip
    config = load(base(provenance=False, sbom=True), version="123")
    assert builder.push(config, builder.plan(config, LOCAL))[0][-6:] == (
        "Dockerfile", "--provenance", "false", "--sbom", "true", ".",
    )  # fmt: skip


def test_registry_cache(load: LoadConfig) -> None:
    raw = base(cache={"type": "registry", "options": "mode=max", "image": "app-cache"})
    raw["registry"]["server"] = "reg.example"
    config = load(raw, version="123")
    assert builder.cache_to(config) == "type=registry,ref=reg.example/app-cache,mode=max"
    assert builder.cache_from(config) == "type=registry,ref=reg.example/app-cache"
    config = load(base(cache={"type": "registry"}), version="123")
    assert builder.cache_from(config) == "type=registry,ref=dhh/app-build-cache"


def test_gha_cache_options_only_some_go_to_cache_from(load: LoadConfig) -> None:
    config = load(base(cache={"type": "gha", "options": "mode=max,scope=x,url=u"}), version="1")
    assert builder.cache_to(config) == "type=gha,mode=max,scope=x,url=u"
    assert builder.cache_from(config) == "type=gha,scope=x,url=u"


def test_docker_driver_has_no_builder_flag_and_no_create(load: LoadConfig) -> None:
    config = load(base(driver="docker"), version="123")
    build_plan = builder.plan(config, LOCAL)
    assert "--builder" not in builder.push(config, build_plan)[0].plain()
    assert builder.create(config, build_plan) == []
    assert builder.remove(config, build_plan) == []
    assert builder.inspect_builder(config, build_plan) == []


def test_dev_build_tags_dirty_and_exports_to_docker(load: LoadConfig) -> None:
    config = load(base(), version="123")
    build = builder.push(config, builder.plan(config, LOCAL), output="docker", dirty=True)[0]
    assert build[3] == "--output=type=docker"
    assert build[8:12] == ("-t", "dhh/app:123-dirty", "-t", "dhh/app:latest-dirty")


def test_local_builder_create_with_local_registry(load: LoadConfig) -> None:
    raw = base()
    raw["registry"] = {"server": "localhost:5000"}
    config = load(raw, version="123")
    build_plan = builder.plan(config, LOCAL)
    assert build_plan.name == "kamal-local-registry-docker-container"
    assert builder.create(config, build_plan) == [
        ("docker", "buildx", "create", "--name", "kamal-local-registry-docker-container",
         "--driver=docker-container", "--driver-opt", "network=host"),
    ]  # fmt: skip


def test_remote_builder_create_with_local_registry(load: LoadConfig) -> None:
    raw = base(arch=REMOTE, remote="ssh://app@1.1.1.5")
    raw["registry"] = {"server": "localhost:5000"}
    config = load(raw, version="123")
    build_plan = builder.plan(config, LOCAL)
    name = "kamal-remote-ssh---app-1-1-1-5-local-registry"
    assert build_plan.kind == "remote"
    assert builder.create(config, build_plan) == [
        ("docker", "context", "create", f"{name}-context", "--description", f"{name} host",
         "--docker", "host=ssh://app@1.1.1.5"),
        ("docker", "buildx", "create", "--name", name, "--driver-opt", "network=host",
         f"{name}-context"),
    ]  # fmt: skip
    assert builder.remove(config, build_plan) == [
        ("docker", "context", "rm", f"{name}-context"),
        ("docker", "buildx", "rm", name),
    ]


def test_hybrid_builder_create_with_local_registry(load: LoadConfig) -> None:
    raw = base(arch=["amd64", "arm64"], remote="ssh://app@1.1.1.5")
    raw["registry"] = {"server": "localhost:5000"}
    config = load(raw, version="123")
    build_plan = builder.plan(config, LOCAL)
    name = "kamal-hybrid-docker-container-ssh---app-1-1-1-5-local-registry"
    assert builder.create(config, build_plan) == [
        ("docker", "buildx", "create", "--platform", "linux/amd64", "--name", name,
         "--driver=docker-container", "--driver-opt", "network=host"),
        ("docker", "context", "create", f"{name}-context", "--description", f"{name} host",
         "--docker", "host=ssh://app@1.1.1.5"),
        ("docker", "buildx", "create", "--platform", "linux/arm64", "--append", "--name", name,
         "--driver-opt", "network=host", f"{name}-context"),
    ]  # fmt: skip


def test_inspect_remote_builder_with_python_checks_instead_of_grep(load: LoadConfig) -> None:
    config = load(base(arch=REMOTE, remote="ssh://app@host"), version="123")
    build_plan = builder.plan(config, LOCAL)
    name = "kamal-remote-ssh---app-host"
    assert builder.inspect_builder(config, build_plan) == [
        ("docker", "buildx", "inspect", name),
        ("docker", "context", "inspect", f"{name}-context", "--format",
         "{{.Endpoints.docker.Host}}"),
    ]  # fmt: skip
    good = [f"Name: {name}\nNodes:\nEndpoint: {name}-context\n", "ssh://app@host\n"]
    assert builder.builder_is_usable(config, build_plan, good)
    assert not builder.builder_is_usable(config, build_plan, [good[0], "ssh://other\n"])
    assert not builder.builder_is_usable(config, build_plan, ["Endpoint: default\n", good[1]])


def test_info_clean_and_docker_checks(load: LoadConfig) -> None:
    config = load(base(), version="123")
    build_plan = builder.plan(config, LOCAL)
    assert builder.info(build_plan) == [("docker", "context", "ls"), ("docker", "buildx", "ls")]
    assert builder.clean(config) == ("docker", "image", "rm", "--force", "dhh/app:123")
    assert builder.ensure_docker_installed() == (
        ("docker", "--version"),
        ("docker", "buildx", "version"),
    )
    assert builder.local_arch_query() == ("docker", "info", "--format", "{{.Architecture}}")
    assert builder.parse_arch("x86_64\n") == "amd64"
    assert builder.parse_arch("aarch64") == "arm64"


def test_legacy_docker_build_without_buildx_is_a_dockyard_extension(load: LoadConfig) -> None:
    config = load(base(args={"a": 1}, provenance="mode=max", target="prod"), version="123")
    assert builder.legacy_build(config) == [
        ("docker", "build", "--platform", "linux/amd64", *TAGS, "--label", "service=app",
         "--build-arg", "a=1", "--file", "Dockerfile", "--target", "prod", "."),
        ("docker", "push", "dhh/app:123"),
        ("docker", "push", "dhh/app:latest"),
    ]  # fmt: skip
    with pytest.raises(ValueError, match="one architecture"):
        builder.legacy_build(load(base(arch=["amd64", "arm64"]), version="123"))


def test_clone_commands_take_paths_unescaped_instead_of_shellescaped() -> None:
    root = "/absolute/path with spaces"
    assert builder.clone(root, "/tmp/kamal-clones/app-0123") == (
        "git", "-C", "/tmp/kamal-clones/app-0123", "clone", root, "--recurse-submodules",
    )  # fmt: skip
    build_dir = "/tmp/kamal-clones/app-0123/path with spaces"
    assert builder.clone_reset_steps(root, build_dir, "abc") == [
        ("git", "-C", build_dir, "remote", "set-url", "origin", root),
        ("git", "-C", build_dir, "fetch", "origin"),
        ("git", "-C", build_dir, "reset", "--hard", "abc"),
        ("git", "-C", build_dir, "clean", "-fdx"),
        ("git", "-C", build_dir, "submodule", "update", "--init"),
    ]
    assert builder.clone_status(build_dir) == ("git", "-C", build_dir, "status", "--porcelain")
    assert builder.clone_revision(build_dir) == ("git", "-C", build_dir, "rev-parse", "HEAD")
