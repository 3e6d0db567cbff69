"""Loading: files, destinations and their merge, YAML anchors, `x-` extensions, ERB, versions."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from dockyard.commands.hooks import abbreviated_version
from dockyard.config import ConfigError, load_config
from dockyard.config._source import render_erb

from .conftest import WriteProject

ENV = {"VERSION": "v1", "PATH": "/usr/bin:/bin"}


def test_minimal_config_and_its_derived_names(project: WriteProject) -> None:
    root = project("servers: [10.0.0.1, 10.0.0.2]\n")
    config = load_config(root=root, env=ENV)
    assert config.service == "app"
    assert config.role_names == ["web"]
    assert config.primary_host == "10.0.0.1"
    assert config.all_hosts == ["10.0.0.1", "10.0.0.2"]
    assert config.version == "v1"
    assert config.repository == "acme/app"
    assert config.absolute_image == "acme/app:v1"
    assert config.latest_image == "acme/app:latest"
    assert config.service_with_version == "app-v1"
    assert config.env_directory == ".kamal/apps/app/env"
    assert config.config_file == root / "config" / "deploy.yml"


def test_explicit_path_and_version_argument(project: WriteProject, tmp_path: Path) -> None:
    root = project("servers: [10.0.0.1]\n")
    other = root / "elsewhere.yml"
    other.write_text((root / "config" / "deploy.yml").read_text().replace("app\n", "other\n", 1))
    config = load_config("elsewhere.yml", root=root, env=ENV, version="v9")
    assert config.service == "other"
    assert config.version == "v9"


def test_destination_deep_merges_hashes_and_replaces_arrays(project: WriteProject) -> None:
    root = project(
        """
        servers:
          web:
            hosts: [10.0.0.1, 10.0.0.2]
            options: {memory: 1g, cpus: 2}
        env:
          clear: {RAILS_ENV: production, KEEP: base}
        """,
        files={
            "config/deploy.staging.yml": """
                servers:
                  web:
                    hosts: [10.1.0.1]
                    options: {cpus: 1}
                env:
                  clear: {RAILS_ENV: staging}
                """
        },
    )
    config = load_config(destination="staging", root=root, env=ENV)
    web = config.roles[0]
    assert web.hosts == ["10.1.0.1"]  # arrays are replaced
    assert web.options == {"memory": "1g", "cpus": "1"}  # hashes merge, destination wins
    assert config.env.clear == {"RAILS_ENV": "staging", "KEEP": "base"}
    assert web.container_prefix == "app-web-staging"
    assert web.labels["destination"] == "staging"
    assert config.latest_tag == "latest-staging"
    assert config.service_and_destination == "app-staging"


def test_missing_destination_file_is_kamals_error(project: WriteProject) -> None:
    root = project("servers: [10.0.0.1]\n")
    with pytest.raises(ConfigError) as exc:
        load_config(destination="prod", root=root, env=ENV)
    assert exc.value.message == (
        f"Configuration file not found in {root / 'config' / 'deploy.prod.yml'}"
    )


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"Configuration file not found in .*deploy\.yml"):
        load_config(root=tmp_path, env=ENV)


def test_anchors_aliases_merge_keys_and_extensions(project: WriteProject) -> None:
    root = project(
        """
        x-hosts: &hosts [10.0.0.1, 10.0.0.2]
        x-acc: &acc
          image: busybox
          host: 10.0.0.9
        servers:
          web: {hosts: *hosts}
          jobs: {hosts: *hosts, cmd: bin/jobs}
        accessories:
          one:
            <<: *acc
          two:
            <<: *acc
            host: 10.0.0.8
        """
    )
    config = load_config(root=root, env=ENV)
    assert [r.hosts for r in config.roles] == [["10.0.0.1", "10.0.0.2"]] * 2
    assert [a.hosts for a in config.accessories] == [("10.0.0.9",), ("10.0.0.8",)]
    assert "x-hosts" in config.raw  # kept in the raw document, ignored by validation


@pytest.mark.parametrize("body", ["", "just a string\n", "- a\n- b\n"])
def test_a_document_that_is_not_a_mapping(project: WriteProject, body: str) -> None:
    root = project(body, base=False)
    with pytest.raises(ConfigError, match=r"config/deploy.yml:1: should be a hash"):
        load_config(root=root, env=ENV)


@pytest.mark.parametrize(
    ("body", "line", "problem"),
    [
        # 7 base lines; the value on line 10 opens a mapping where none may start
        ("servers: [10.0.0.1]\nenv:\n  A: b: c\n", 10, "mapping values are not allowed"),
        # a tab cannot indent YAML: named on its own line, not the line before or after
        ("servers: [10.0.0.1]\nenv:\n\tA: b\nproxy: {}\n", 10, "found character that cannot"),
    ],
)
def test_invalid_yaml_names_file_and_line(
    project: WriteProject, body: str, line: int, problem: str
) -> None:
    root = project(body)
    # named relative to the project, as every other config error names it
    with pytest.raises(ConfigError, match=rf"^config/deploy\.yml:{line}: invalid YAML: {problem}"):
        load_config(root=root, env=ENV)


# --------------------------------------------------------------------------- ERB


def _render(text: str, env: dict[str, str] | None = None, cwd: Path = Path("/")) -> str:
    return render_erb(text, file=Path("deploy.yml"), cwd=cwd, env=env or {})[0]


def test_erb_env_forms() -> None:
    env = {"HOST": "10.0.0.1", "EMPTY": ""}
    assert _render('a: <%= ENV["HOST"] %>', env) == "a: 10.0.0.1"
    assert _render("a: <%= ENV['NOPE'] %>.", env) == "a: ."  # nil renders as nothing
    assert _render('a: <%= ENV.fetch("HOST") %>', env) == "a: 10.0.0.1"
    assert _render('a: <%= ENV.fetch("NOPE", "dflt") %>', env) == "a: dflt"
    assert _render("a: <%= ENV.fetch('EMPTY', 'x') %>!", env) == "a: !"


def test_erb_commands_and_trim() -> None:
    assert _render("a: <%= `printf 'x y\\n'` %>") == "a: x y\n"
    assert _render("a: <%= %x(echo hi).strip %>;") == "a: hi;"
    assert _render("a: <%= %x{echo hi}.chomp %>;") == "a: hi;"
    assert _render("<%# comment %>\na: 1") == "\na: 1"
    assert _render("<%= ENV.fetch('X', '') -%>\na: 1") == "a: 1"


def test_erb_command_runs_in_the_project_directory(tmp_path: Path) -> None:
    (tmp_path / "marker").write_text("found")
    assert _render("<%= `cat marker` %>", cwd=tmp_path) == "found"


def test_erb_missing_env_fetch_is_an_error_with_file_and_line() -> None:
    with pytest.raises(ConfigError) as exc:
        _render('a: 1\nb: <%= ENV.fetch("DOCKYARD_NOT_SET") %>\n')
    assert "deploy.yml:2:" in exc.value.message
    assert "DOCKYARD_NOT_SET is not set" in exc.value.message


@pytest.mark.parametrize(
    "tag",
    ["<%= 1 + 1 %>", "<% if true %>", "<%= ENV['A'].upcase %>", "<%= File.read('x') %>"],
)
def test_other_erb_is_a_clear_error(tag: str) -> None:
    with pytest.raises(ConfigError) as exc:
        _render(f"a: 1\n\nb: {tag}\n")
    assert exc.value.message.startswith("deploy.yml:3: unsupported ERB")
    assert exc.value.hint and "ENV.fetch" in exc.value.hint


def test_erb_failing_command_is_an_error() -> None:
    with pytest.raises(ConfigError, match=r"deploy\.yml:1: command `exit 3` failed"):
        _render("a: <%= `exit 3` %>")


def test_erb_sees_kamal_destination(project: WriteProject) -> None:
    root = project(
        'servers: [10.0.0.1]\nlabels:\n  dest: "<%= ENV["KAMAL_DESTINATION"] %>"\n',
        files={"config/deploy.qa.yml": "service: <%= ENV.fetch('KAMAL_DESTINATION') %>app\n"},
    )
    config = load_config(destination="qa", root=root, env=ENV)
    assert config.labels == {"dest": "qa"}
    assert config.service == "qaapp"
    assert load_config(root=root, env={**ENV, "KAMAL_DESTINATION": "stale"}).labels == {"dest": ""}


def test_line_numbers_follow_the_template_after_multiline_erb(project: WriteProject) -> None:
    root = project(
        """
        servers:
          - <%= `printf '10.0.0.1\\n  - 10.0.0.2'` %>
        bogus: 1
        """
    )
    with pytest.raises(ConfigError) as exc:
        load_config(root=root, env=ENV)
    # Line 11 of the rendered text, but line 10 of the file (7 base lines + 3).
    assert exc.value.message == "config/deploy.yml:10: unknown key: bogus"


# --------------------------------------------------------------------------- versions


def _git(root: Path, *args: str) -> str:
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]
    return subprocess.run(
        [*git, *args], cwd=root, check=True, capture_output=True, text=True
    ).stdout.strip()


def test_version_from_git_head_and_uncommitted_suffix(project: WriteProject) -> None:
    root = project("servers: [10.0.0.1]\nbuilder:\n  arch: amd64\n  context: .\n", base=False)
    (root / "config" / "deploy.yml").write_text(
        "service: app\nimage: a/b\nregistry: {username: u, password: p}\n"
        + (root / "config" / "deploy.yml").read_text()
    )
    _git(root, "init", "-q")
    _git(root, "add", ".")
    _git(root, "commit", "-q", "-m", "one")
    head = _git(root, "rev-parse", "HEAD")
    env = {"PATH": "/usr/bin:/bin"}
    assert load_config(root=root, env=env).version == head
    (root / "dirty").write_text("x")
    # A dirty tree with an explicit build context gets Kamal's `_uncommitted_<hex>` suffix.
    version = load_config(root=root, env=env).version
    assert version.startswith(f"{head}_uncommitted_") and len(version) == len(head) + 29
    assert load_config(root=root, env=env).version != version  # random, as in Kamal
    assert abbreviated_version(version) == version  # Kamal keeps an uncommitted version whole


def test_no_git_and_no_version_is_an_error_only_when_used(project: WriteProject) -> None:
    root = project("servers: [10.0.0.1]\n")
    config = load_config(
        root=root, env={"PATH": "/usr/bin:/bin", "GIT_CEILING_DIRECTORIES": str(root.parent)}
    )
    assert config.service == "app"
    with pytest.raises(ConfigError, match="Can't use commit hash as version, no git repository"):
        _ = config.version
    assert config.with_version("abc1234567").version == "abc1234567"
    assert abbreviated_version("abc1234567") == "abc1234"


def test_render_template_for_accessory_files(tmp_path: Path) -> None:
    from dockyard.config import render_template

    template = tmp_path / "my.cnf.erb"
    template.write_text('[client]\npassword=<%= ENV["MYSQL_PASSWORD"] %>\n')
    assert render_template(template, env={"MYSQL_PASSWORD": "pw"}, cwd=tmp_path) == (
        "[client]\npassword=pw\n"
    )
    template.write_text("<% x = 1 %>\n")
    with pytest.raises(ConfigError, match=r"my\.cnf\.erb:1: unsupported ERB"):
        render_template(template, env={}, cwd=tmp_path)


def test_erb_defaults_with_or_and_fetch_block() -> None:
    assert _render('<%= ENV["NOPE"] || "fb" %>') == "fb"
    assert _render("<%= ENV['A'] || 'fb' %>", {"A": ""}) == ""  # "" is truthy in Ruby
    assert _render('<%= ENV.fetch("NOPE") { "blk" } %>') == "blk"


@pytest.mark.parametrize(
    ("scalar", "value"),
    [("1:30", 5400), ("3000:30", 10801800), ("12:30:45", 45045), ("8080:80", "8080:80")],
)
def test_base_60_integers_read_as_psych_reads_them(scalar: str, value: object) -> None:
    from dockyard.config._source import parse_yaml

    assert parse_yaml(f"port: {scalar}\n", file=Path("x.yml")).data == {"port": value}
