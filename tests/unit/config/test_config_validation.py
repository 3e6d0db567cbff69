"""Validation errors name the file, the key path (Kamal's form), the line, and what was expected."""

from __future__ import annotations

import pytest

from dockyard.config import ConfigError, ConfigValidationError, load_config

from .conftest import WriteProject

ENV = {"VERSION": "v1", "PATH": "/usr/bin:/bin"}

# (deploy.yml after the 7 base lines, expected key path, expected line, expected problem)
CASES = [
    ("servers: [10.0.0.1]\nsrevers: []\n", "", 9, "unknown key: srevers"),
    (
        "servers:\n  web:\n    - 10.0.0.1\n    - 10.0.0.2: [a, 3, [x]]\n",
        "servers/web/1/10.0.0.2/2",
        11,
        "should be a string",
    ),
    (
        "servers:\n  web:\n    hosts:\n      - 10.0.0.1\n      - [10.0.0.2]\n",
        "servers/web/hosts/1",
        12,
        "should be a string or a hash",
    ),
    (
        "servers:\n  web:\n    hosts: [10.0.0.1]\n    proxy:\n      app_port: http\n",
        "servers/web/proxy/app_port",
        12,
        "should be an integer",
    ),
    (
        "servers: [10.0.0.1]\nproxy:\n  healthcheck:\n    retries: 3\n",
        "proxy/healthcheck",
        11,
        "unknown key: retries",
    ),
    (
        "servers: [10.0.0.1]\naccessories:\n  db:\n    image: x\n    host: h\n"
        "    files:\n      - local: a\n        remote: /b\n        owner: [x]\n",
        "accessories/db/files/0/owner",
        16,
        "should be a string",
    ),
    (
        "servers: [10.0.0.1]\nenv:\n  clear:\n    A: {b: c}\n",
        "env/clear/A",
        11,
        "should be a string",
    ),
    (
        "servers: [10.0.0.1]\nssh:\n  keys_only: maybe\n",
        "ssh/keys_only",
        10,
        "should be a boolean",
    ),
    (
        "servers: [10.0.0.1]\nssh:\n  config: {a: b}\n",
        "ssh/config",
        10,
        "should be a boolean or a string or an array",
    ),
    (
        "servers: [10.0.0.1]\nproxy:\n  ssl: yes please\n",
        "proxy/ssl",
        10,
        "should be a boolean or a hash",
    ),
    (
        "servers: [10.0.0.1]\nservers_extra: 1\n",
        "",
        9,
        "unknown key: servers_extra",
    ),
]


@pytest.mark.parametrize(("body", "key", "line", "problem"), CASES)
def test_error_names_file_key_path_and_line(
    project: WriteProject, body: str, key: str, line: int, problem: str
) -> None:
    root = project(body)
    with pytest.raises(ConfigValidationError) as exc:
        load_config(root=root, env=ENV)
    error = exc.value
    assert error.kamal_key == key
    assert error.line == line
    assert error.problem == problem
    assert str(error.file) == "config/deploy.yml"
    prefix = f"{key}: " if key else ""
    assert error.message == f"config/deploy.yml:{line}: {prefix}{problem}"


def test_unknown_keys_are_listed_together(project: WriteProject) -> None:
    root = project("servers:\n  web:\n    hosts: [a]\n    cmdd: x\n    lables: {}\n")
    with pytest.raises(ConfigValidationError) as exc:
        load_config(root=root, env=ENV)
    assert exc.value.message == "config/deploy.yml:11: servers/web: unknown keys: cmdd, lables"


def test_error_in_destination_file_names_that_file(project: WriteProject) -> None:
    root = project(
        "servers: [10.0.0.1]\n",
        files={"config/deploy.staging.yml": "# staging\nproxy:\n  host: a\n  hots: b\n"},
    )
    with pytest.raises(ConfigValidationError) as exc:
        load_config(destination="staging", root=root, env=ENV)
    assert exc.value.message == "config/deploy.staging.yml:4: proxy: unknown key: hots"


def test_missing_required_key_names_the_file(project: WriteProject) -> None:
    root = project(
        "image: a/b\nregistry: {username: u, password: p}\nbuilder: {arch: amd64}\nservers: [h]\n",
        base=False,
    )
    with pytest.raises(ConfigError) as exc:
        load_config(root=root, env=ENV)
    assert exc.value.message == "config/deploy.yml: Missing required configuration for service"


def test_registry_credentials_required_unless_local(project: WriteProject) -> None:
    root = project(
        "service: app\nimage: a\nregistry:\n  server: ghcr.io\nbuilder: {arch: amd64}\n"
        "servers: [h]\n",
        base=False,
    )
    with pytest.raises(ConfigValidationError) as exc:
        load_config(root=root, env=ENV)
    assert exc.value.message == "config/deploy.yml:3: registry/username: is required"
    local = project(
        "service: app\nregistry:\n  server: localhost:5000\nbuilder: {arch: amd64}\nservers: [h]\n",
        base=False,
    )
    config = load_config(root=local, env=ENV)
    assert config.registry.local and config.registry.local_port == 5000
    assert config.image == "app"  # defaults to the service with a local registry
    assert config.repository == "localhost:5000/app"


# The whole message: the file, the line of the key the check is about (none where Kamal names no
# key), and Kamal's words.
@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            "servers: [h]\nproxy:\n  ssl: true\n",
            "config/deploy.yml:9: proxy: Must set a host to enable automatic SSL",
        ),
        (
            "servers: [h1, h2]\nproxy:\n  ssl: true\n  host: a.example\n",
            "config/deploy.yml:8: SSL is only supported on a single server unless you provide "
            "custom certificates, found 2 servers for role web",
        ),
        (
            "servers:\n  web: [h1]\n  api:\n    hosts: [h2]\n    proxy: {ssl: true, host: a}\n"
            "proxy:\n  ssl: true\n  host: a\n",
            "config/deploy.yml: Different roles can't share the same host for SSL: a",
        ),
        (
            "servers:\n  web: [h1]\n  api:\n    hosts: [h1]\n"
            "    proxy:\n      run: {http_port: 81}\n"
            "proxy:\n  run: {http_port: 80}\n",
            "config/deploy.yml: Conflicting proxy run configurations for host h1",
        ),
        (
            "servers: [h]\nregistry:\n  server: localhost:5000\n"
            "builder:\n  arch: [amd64, arm64]\n  remote: tcp://b:2375\n  local: false\n",
            "config/deploy.yml:13: Local registry with remote builder requires an SSH URL "
            "(e.g., ssh://user@host)",
        ),
        (
            "servers: [h]\naccessories:\n  db:\n    image: x\n    role: jobs\n",
            "config/deploy.yml:10: accessories/db: unknown role jobs",
        ),
        (  # not a string: an unknown role, not a crash (Kamal 2.11 crashes here)
            "servers: [h]\naccessories:\n  db:\n    image: x\n    role: false\n",
            "config/deploy.yml:10: accessories/db: unknown role false",
        ),
        (
            "servers: [h]\naccessories:\n  db:\n    image: x\n    role:\n",
            "config/deploy.yml:12: accessories/db/role: should be a string",
        ),
        (
            "servers: [h]\naccessories:\n  db:\n    image: x\n    roles: [web, 7]\n",
            "config/deploy.yml:10: accessories/db: unknown roles 7",
        ),
        (
            "servers: [h]\naliases:\n  Bad_Name: x\n",
            "config/deploy.yml:10: aliases/Bad_Name: Invalid alias name: 'Bad_Name'. Must only "
            "contain lowercase letters, alphanumeric, hyphens and underscores.",
        ),
        (
            "servers: [h]\naliases:\n  deploy: x\n",
            "config/deploy.yml:10: aliases/deploy: Alias 'deploy' conflicts with a built-in "
            "command.",
        ),
        # Stricter than Kamal 2.11, which accepts these and fails later (or crashes):
        (
            "servers: [h]\naccessories:\n  db:\n    host: h\n",
            "config/deploy.yml:10: accessories/db: image is required (e.g. image: mysql:8.0)",
        ),
        (
            "servers: [h]\nservice: 123\n",
            "config/deploy.yml:9: Service name can only include alphanumeric characters, "
            "hyphens, and underscores",
        ),
        (
            "servers: [h]\nhooks_output:\n  pre-deploy: chatty\n",
            "config/deploy.yml:10: Invalid hooks_output 'chatty' for hook 'pre-deploy', must be "
            "one of: quiet, verbose",
        ),
    ],
)
def test_cross_section_checks(project: WriteProject, body: str, message: str) -> None:
    root = project(body)
    with pytest.raises(ConfigError) as exc:
        load_config(root=root, env=ENV)
    assert exc.value.message == message


def test_x_keys_are_only_ignored_at_the_top(project: WriteProject) -> None:
    ok = project("x-anything: {whatever: [1, 2]}\nservers: [h]\n")
    assert load_config(root=ok, env=ENV).role_names == ["web"]
    bad = project("servers: [h]\nssh:\n  x-note: 1\n")
    with pytest.raises(ConfigValidationError, match=r"deploy\.yml:10: ssh: unknown key: x-note"):
        load_config(root=bad, env=ENV)


def test_stringish_values_accept_numbers_and_booleans(project: WriteProject) -> None:
    root = project("servers: [h]\nenv:\n  PORT: 3000\n  ENABLED: true\n  RATIO: 0.5\n")
    assert load_config(root=root, env=ENV).env.clear == {
        "PORT": "3000",
        "ENABLED": "true",
        "RATIO": "0.5",
    }


def test_the_error_is_a_config_error_with_exit_code_2(project: WriteProject) -> None:
    root = project("servers: 3\n")
    with pytest.raises(ConfigError) as exc:
        load_config(root=root, env=ENV)
    assert exc.value.exit_code == 2
    assert exc.value.message == "config/deploy.yml:8: servers: should be an array or a hash"


@pytest.mark.parametrize(("limit", "resolved"), [("25%", 1), ("50%", 2), (3, 3), ("2", 2)])
def test_boot_limit(project: WriteProject, limit: object, resolved: int) -> None:
    root = project(f"servers: [h1, h2, h3, h4]\nboot:\n  limit: {limit}\n")
    assert load_config(root=root, env=ENV).boot.resolved_limit == resolved


def test_boot_limit_that_is_not_a_number(project: WriteProject) -> None:
    # Stricter than Kamal 2.11, which accepts any string here and fails when it deploys.
    root = project("servers: [h1]\nboot:\n  limit: some\n")
    with pytest.raises(ConfigValidationError) as exc:
        load_config(root=root, env=ENV)
    assert exc.value.message == (
        "config/deploy.yml:10: boot/limit: should be an integer or a percentage such as 25%"
    )


def test_unknown_key_hint_suggests_the_close_key(project: WriteProject) -> None:
    root = project("servers:\n  web:\n    hosts: [h]\n    comand: x\n    zzz: 1\n")
    with pytest.raises(ConfigValidationError) as exc:
        load_config(root=root, env=ENV)
    assert exc.value.message == "config/deploy.yml:11: servers/web: unknown keys: comand, zzz"
    assert exc.value.hint == "did you mean: comand -> cmd?"
