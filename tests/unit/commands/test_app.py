"""Golden tests: app commands, for the configs of Kamal's ``test/commands/app_test.rb``.

Each expected argv is Kamal 2.11's command for the same config with the shell quoting removed
(``--env KAMAL_VERSION="999"`` is the two arguments ``--env`` and ``KAMAL_VERSION=999``).
Tests whose name says ``instead_of`` pin a deliberate difference (no shell pipelines).
"""

from __future__ import annotations

import os
import subprocess
from typing import Any

import pytest

from dockyard.commands import app
from dockyard.commands.argv import Argv, HomePath
from dockyard.config import Config, Role

from .conftest import LoadConfig

#: Dockyard's log-rotation default after the size cap (deliberately not in Kamal's argv).
ROTATE = ("--log-opt", "max-file=5")

SECRETS = "RAILS_MASTER_KEY=456\n"


def base() -> dict[str, Any]:
    return {
        "service": "app",
        "image": "dhh/app",
        "registry": {"username": "dhh", "password": "secret"},
        "servers": {"web": ["1.1.1.1"], "workers": ["1.1.1.2"]},
        "env": {"secret": ["RAILS_MASTER_KEY"]},
        "builder": {"arch": "amd64"},
    }


def role(config: Config, name: str = "web") -> Role:
    found = config.role(name)
    assert found is not None
    return found


KAMAL_ENV = ("--env", "KAMAL_CONTAINER_NAME=app-web-999", "--env", "KAMAL_VERSION=999",
             "--env", "KAMAL_HOST=1.1.1.1")  # fmt: skip
LABELS = ("--label", "service=app", "--label", "role=web", "--label", "destination")
ENV_FILE = ("--env-file", ".kamal/apps/app/env/roles/web.env")
RUN = ("docker", "run", "--detach", "--restart", "unless-stopped", "--name", "app-web-999",
       "--network", "kamal")  # fmt: skip


def test_run(load: LoadConfig) -> None:
    config = load(base(), secrets=SECRETS)
    assert app.run(config, role(config), "1.1.1.1") == (
        *RUN, *KAMAL_ENV, *ENV_FILE, "--log-opt", "max-size=10m", *ROTATE, *LABELS, "dhh/app:999",
    )  # fmt: skip


def test_run_with_destination(load: LoadConfig) -> None:
    config = load(base(), "staging", secrets=SECRETS)
    assert app.run(config, role(config), "1.1.1.1") == (
        "docker", "run", "--detach", "--restart", "unless-stopped",
        "--name", "app-web-staging-999", "--network", "kamal",
        "--env", "KAMAL_CONTAINER_NAME=app-web-staging-999", "--env", "KAMAL_VERSION=999",
        "--env", "KAMAL_HOST=1.1.1.1", "--env", "KAMAL_DESTINATION=staging",
        "--env-file", ".kamal/apps/app-staging/env/roles/web.env",
        "--log-opt", "max-size=10m", *ROTATE,
        "--label", "service=app", "--label", "role=web", "--label", "destination=staging",
        "dhh/app:999",
    )  # fmt: skip


def test_run_with_hostname(load: LoadConfig) -> None:
    config = load(base())
    command = app.run(config, role(config), "1.1.1.1", hostname="myhost")
    assert command[:11] == (*RUN, "--hostname", "myhost")


def test_container_hostname_truncates_host_and_appends_hex() -> None:
    assert app.container_hostname("web-1.example.com.", "0123456789ab") == (
        "web-1.example.com-0123456789ab"
    )
    assert app.container_hostname("a" * 60, "x") == "a" * 51 + "-x"
    assert app.container_hostname("host..", "x") == "host.-x"  # Ruby chomp(".") removes one
    assert len(app.random_hex(12)) == 12
    assert len(app.random_hex(6)) == 6


def test_run_with_volumes(load: LoadConfig) -> None:
    config = load({**base(), "volumes": ["/local/path:/container/path"]})
    assert app.run(config, role(config), "1.1.1.1") == (
        *RUN, *KAMAL_ENV, *ENV_FILE, "--log-opt", "max-size=10m", *ROTATE,
        "--volume", "/local/path:/container/path", *LABELS, "dhh/app:999",
    )  # fmt: skip


def test_run_with_custom_options_and_cmd(load: LoadConfig) -> None:
    raw = base()
    raw["servers"] = {
        "web": ["1.1.1.1"],
        "jobs": {
            "hosts": ["1.1.1.2"],
            "cmd": "bin/jobs --queue 'high prio'",
            "options": {"mount": "somewhere", "cap-add": True, "dns": ["1.1.1.1", "8.8.8.8"]},
        },
    }
    config = load(raw)
    assert app.run(config, role(config, "jobs"), "1.1.1.2") == (
        "docker", "run", "--detach", "--restart", "unless-stopped", "--name", "app-jobs-999",
        "--network", "kamal",
        "--env", "KAMAL_CONTAINER_NAME=app-jobs-999", "--env", "KAMAL_VERSION=999",
        "--env", "KAMAL_HOST=1.1.1.2", "--env-file", ".kamal/apps/app/env/roles/jobs.env",
        "--log-opt", "max-size=10m", *ROTATE,
        "--label", "service=app", "--label", "role=jobs", "--label", "destination",
        "--mount", "somewhere", "--cap-add", "--dns", "1.1.1.1", "--dns", "8.8.8.8",
        "dhh/app:999", "bin/jobs", "--queue", "high prio",
    )  # fmt: skip


def test_run_with_logging_config(load: LoadConfig) -> None:
    config = load(
        {**base(), "logging": {"driver": "local", "options": {"max-size": "100m", "max-file": "3"}}}
    )
    command = app.run(config, role(config), "1.1.1.1")
    assert command[17:25] == (
        "--log-driver", "local", "--log-opt", "max-size=100m", "--log-opt", "max-file=3",
        "--label", "service=app",
    )  # fmt: skip


def test_run_with_role_logging_config_merged_over_root(load: LoadConfig) -> None:
    raw = {
        **base(),
        "logging": {"driver": "local", "options": {"max-size": "10m", "max-file": "3"}},
        "servers": {
            "web": {"hosts": ["1.1.1.1"], "logging": {"options": {"max-size": "100m"}}},
        },
    }
    config = load(raw)
    assert app.logging_args(role(config).logging) == (
        "--log-driver", "local", "--log-opt", "max-size=100m", "--log-opt", "max-file=3",
    )  # fmt: skip


def test_run_with_tag_env_and_braced_references_expanded_by_the_remote_shell_like_kamal(
    load: LoadConfig,
) -> None:
    raw = base()
    raw["servers"] = [{"1.1.1.1": "tag1"}]
    raw["env"] = {
        "clear": {"PATHS": "${HOME}/bin:$PATH", "QUOTE": 'say "hi" `x`'},
        "secret": ["RAILS_MASTER_KEY"],
        "tags": {"tag1": {"ENV1": "value1"}},
    }
    config = load(raw)
    args = app.env_args(config, role(config), "1.1.1.1")
    assert Argv(("docker", *args)).plain()[1:] == (
        "--env", "PATHS=${HOME}/bin:$PATH", "--env", 'QUOTE=say "hi" `x`', "--env", "ENV1=value1",
        *ENV_FILE,
    )  # fmt: skip
    command = app.run(config, role(config), "1.1.1.1")
    assert command.needs_shell
    assert '"PATHS=${HOME}/bin:\\$PATH"' in command.shell()
    # What the remote shell hands to docker: ${HOME} expanded, $PATH, quotes, backticks literal.
    words = subprocess.run(
        ["sh", "-c", f"printf '%s\\n' {command.shell()}"],
        env={"HOME": "/home/deploy", "PATH": os.environ["PATH"]},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert "PATHS=/home/deploy/bin:$PATH" in words
    assert 'QUOTE=say "hi" `x`' in words


def test_run_with_custom_labels(load: LoadConfig) -> None:
    raw = {**base(), "labels": {"team": "ops"}}
    raw["servers"] = {"web": {"hosts": ["1.1.1.1"], "labels": {"tier": "front"}}}
    config = load(raw)
    assert app.label_args(config, role(config)) == (
        *LABELS, "--label", "team=ops", "--label", "tier=front",
    )  # fmt: skip


def test_run_with_asset_volume(load: LoadConfig) -> None:
    config = load({**base(), "asset_path": "/public/assets:ro"})
    command = app.run(config, role(config), "1.1.1.1")
    spec = ".kamal/apps/app/assets/volumes/web-999:/public/assets:ro"
    assert command[21:23] == ("--volume", f"$PWD/{spec}")  # after the log options
    assert HomePath(spec) in command.parts
    workers = app.run(config, role(config, "workers"), "1.1.1.2")
    assert "--volume" not in workers.plain()  # no proxy, no asset bridging


def test_start(load: LoadConfig) -> None:
    config = load(base())
    assert app.start(config, role(config)) == ("docker", "start", "app-web-999")
    staging = load(base(), "staging")
    assert app.start(staging, role(staging)) == ("docker", "start", "app-web-staging-999")


def test_stop_takes_container_id_instead_of_xargs(load: LoadConfig) -> None:
    config = load({**base(), "drain_timeout": 20})
    assert app.stop(role(config), "c137") == ("docker", "stop", "c137")
    assert app.stop(role(config, "workers"), "c137") == ("docker", "stop", "-t", "20", "c137")


def test_container_id_for_version_filters_the_exact_versioned_name(load: LoadConfig) -> None:
    config = load(base())
    assert app.container_id_for_version(config, role(config), "123") == (
        "docker", "container", "ls", "--all", "--filter", "name=^app-web-123$", "--quiet",
    )  # fmt: skip


def test_container_id_for(load: LoadConfig) -> None:
    assert app.container_id_for("app-999") == (
        "docker", "container", "ls", "--all", "--filter", "name=^app-999$", "--quiet",
    )  # fmt: skip
    assert app.container_id_for("app-999", only_running=True) == (
        "docker", "container", "ls", "--filter", "name=^app-999$", "--quiet",
    )  # fmt: skip


def test_info(load: LoadConfig) -> None:
    config = load(base())
    assert app.info(config, role(config)) == (
        "docker", "ps", "--filter", "label=service=app", "--filter", "label=destination=",
        "--filter", "label=role=web",
    )  # fmt: skip
    staging = load(base(), "staging")
    assert app.info(staging, role(staging))[5] == "label=destination=staging"


def test_survey_lists_every_container_of_the_service_once_instead_of_a_ps_per_question(
    load: LoadConfig,
) -> None:
    config = load(base())
    assert app.list_app_containers(config) == (
        "docker", "ps", "--all", "--filter", "label=service=app", "--filter",
        "label=destination=", "--format", '{{.ID}}\t{{.State}}\t{{.Label "role"}}\t{{.Names}}',
    )  # fmt: skip
    staging = load(base(), "staging")
    assert app.list_app_containers(staging)[6] == "label=destination=staging"
    rows = app.parse_container_rows(
        "c3\trunning\tweb\tapp-web-v3\n"
        "c2\trestarting\tweb\tapp-web-v2\n"
        "\n"
        "garbage line\n"
        "c1\texited\t\tapp-web-v1\n"  # no role label
    )
    assert rows == [
        app.ContainerRow("c3", "running", "web", "app-web-v3"),
        app.ContainerRow("c2", "restarting", "web", "app-web-v2"),
        app.ContainerRow("c1", "exited", "", "app-web-v1"),
    ]
    assert [r.active for r in rows] == [True, True, False]


ACTIVE = ("--filter", "label=service=app", "--filter", "label=destination=",
          "--filter", "label=role=web", "--filter", "status=running",
          "--filter", "status=restarting")  # fmt: skip


def test_current_running_container_id_as_separate_queries_instead_of_sh_c_and_head(
    load: LoadConfig,
) -> None:
    config = load(base())
    assert app.latest_image_id(config) == (
        "docker", "image", "ls", "--filter", "reference=dhh/app:latest", "--format", "{{.ID}}",
    )  # fmt: skip
    with_image, without = app.current_container_queries(config, role(config), "abc123\n")
    assert with_image == (
        "docker", "ps", "--latest", "--quiet", *ACTIVE, "--filter", "ancestor=abc123",
    )  # fmt: skip
    assert without == ("docker", "ps", "--latest", "--quiet", *ACTIVE)
    # No image tagged latest: only the fallback query (Kamal's would yield nothing, then it).
    assert app.current_container_queries(config, role(config), "") == [without]
    assert app.first_line("\nc1\nc2\n") == "c1"
    assert app.first_line("") is None


def test_current_running_container_with_destination_uses_latest_dest_tag(
    load: LoadConfig,
) -> None:
    config = load(base(), "staging")
    assert app.latest_image_id(config)[4] == "reference=dhh/app:latest-staging"


def test_current_running_version_asks_names_and_strips_prefix_in_python(
    load: LoadConfig,
) -> None:
    config = load(base())
    queries = app.current_container_queries(config, role(config), "abc\n", names=True)
    assert len(queries) == 2
    # first the newest running container made from the latest image, then any of the role
    assert queries[0][:2] == ("docker", "ps") and "ancestor=abc" in queries[0]
    assert "{{.Names}}" in queries[0]
    assert queries[1] == ("docker", "ps", "--latest", "--format", "{{.Names}}", *ACTIVE)
    # no latest image: only the role's newest running container
    assert app.current_container_queries(config, role(config), "", names=True) == [queries[1]]
    assert app.version_from_name("app-web-999", "app-web") == "999"
    assert app.version_from_name("other", "app-web") == "other"


def test_list_versions_with_parse_instead_of_while_read(load: LoadConfig) -> None:
    config = load(base())
    r = role(config)
    assert app.list_versions(config, r) == (
        "docker", "ps", "--filter", "label=service=app", "--filter", "label=destination=",
        "--filter", "label=role=web", "--format", "{{.Names}}",
    )  # fmt: skip
    assert app.list_versions(config, r, "--latest", statuses=app.ACTIVE_STATUSES) == (
        "docker", "ps", *ACTIVE, "--latest", "--format", "{{.Names}}",
    )  # fmt: skip
    assert app.stale_versions(["999", "998", "997"], "999") == ["998", "997"]
    assert app.stale_versions(["999"], None) == ["999"]
    stdout = "app-web-999\napp-web-998_replaced_0123456789abcdef\n\n"
    assert app.parse_versions(stdout, app.container_prefix(config, r)) == [
        "999",
        "998_replaced_0123456789abcdef",
    ]


def test_list_containers_and_names(load: LoadConfig) -> None:
    config = load(base())
    filters = ("--filter", "label=service=app", "--filter", "label=destination=",
               "--filter", "label=role=web")  # fmt: skip
    assert app.list_containers(config, role(config)) == (
        "docker", "container", "ls", "--all", *filters,
    )  # fmt: skip
    assert app.list_container_names(config, role(config)) == (
        "docker", "container", "ls", "--all", *filters, "--format", "{{ .Names }}",
    )  # fmt: skip
    # Per host, without the role filter.
    assert app.list_containers(config, None)[-1] == "label=destination="


def test_remove_and_rename_containers(load: LoadConfig) -> None:
    config = load(base(), "staging")
    r = role(config)
    assert app.container_id_for_version(config, r, "999")[5] == "name=^app-web-staging-999$"
    assert app.remove_container("c1") == ("docker", "container", "rm", "c1")
    assert app.remove_containers(config, r) == (
        "docker", "container", "prune", "--force", "--filter", "label=service=app",
        "--filter", "label=destination=staging", "--filter", "label=role=web",
    )  # fmt: skip
    renamed = app.replaced_version("999", "0123456789abcdef")
    assert app.rename_container(config, r, "999", renamed) == (
        "docker", "rename", "app-web-staging-999",
        "app-web-staging-999_replaced_0123456789abcdef",
    )  # fmt: skip


def test_status_and_health_log_take_container_id(load: LoadConfig) -> None:
    assert app.status("c1") == (
        "docker", "inspect", "--format",
        "{{if .State.Health}}{{.State.Health.Status}}{{else}}{{.State.Status}}{{end}}", "c1",
    )  # fmt: skip
    assert app.container_health_log("c1") == (
        "docker", "inspect", "--format", "{{json .State.Health}}", "c1",
    )  # fmt: skip


def test_images(load: LoadConfig) -> None:
    config = load(base())
    assert app.list_images(config) == ("docker", "image", "ls", "dhh/app")
    assert app.remove_images(config) == (
        "docker", "image", "prune", "--all", "--force", "--filter", "label=service=app",
    )  # fmt: skip
    assert app.tag_latest_image(config) == ("docker", "tag", "dhh/app:999", "dhh/app:latest")
    staging = load(base(), "staging")
    assert app.tag_latest_image(staging) == (
        "docker", "tag", "dhh/app:999", "dhh/app:latest-staging",
    )  # fmt: skip
    assert app.remove_images(staging)[-1] == "label=service=app"


def test_pull_and_validate_image_with_python_check_instead_of_grep(load: LoadConfig) -> None:
    config = load({**base(), "registry": {"server": "reg.example", "username": "u",
                                          "password": "p"}})  # fmt: skip
    assert app.remove_local_image(config) == (
        "docker", "image", "rm", "--force", "reg.example/dhh/app:999",
    )  # fmt: skip
    assert app.pull_image(config) == ("docker", "pull", "reg.example/dhh/app:999")
    assert app.image_service_label(config) == (
        "docker", "inspect", "-f", "{{ .Config.Labels.service }}", "reg.example/dhh/app:999",
    )  # fmt: skip
    assert app.has_service_label("app\n", "app")
    assert app.missing_service_label_message(config) == (
        "Image reg.example/dhh/app:999 is missing the 'service' label"
    )
    assert not app.has_service_label("application\n", "app")
    assert app.first_mirror() == (
        "docker", "info", "--format", "{{index .RegistryConfig.Mirrors 0}}",
    )  # fmt: skip


def test_logs_take_container_id_instead_of_xargs(load: LoadConfig) -> None:
    assert app.logs("C137").shell() == "docker logs --timestamps C137 2>&1"
    assert app.logs("C137", since="5m", lines=100).stages == (
        ("docker", "logs", "--timestamps", "--since", "5m", "--tail", "100", "C137"),
    )
    pipeline = app.logs("C137", since="5m", grep="my-id", grep_options="-C 2")
    assert pipeline.stages == (
        ("docker", "logs", "--timestamps", "--since", "5m", "C137"),
        ("grep", "my-id", "-C", "2"),
    )
    assert pipeline.merge_stderr


def test_follow_logs(load: LoadConfig) -> None:
    assert app.follow_logs("ID321").shell() == "docker logs --timestamps --follow ID321 2>&1"
    assert app.follow_logs("ID321", timestamps=False, lines=123, grep="Completed").shell() == (
        "docker logs --tail 123 --follow ID321 2>&1 | grep Completed"
    )


EXEC_PREFIX = ("docker", "run", "--rm", "--name", "app-web-exec-999-a1b2c3", "--network", "kamal")


def test_execute_in_new_container(load: LoadConfig) -> None:
    config = load(base())
    command = app.execute_in_new_container(
        config, role(config), "1.1.1.1", ["bin/rails", "db:setup"], suffix="a1b2c3"
    )
    assert command == (
        *EXEC_PREFIX, *ENV_FILE, "--log-opt", "max-size=10m", *ROTATE, "dhh/app:999",
        "bin/rails", "db:setup",
    )  # fmt: skip


def test_execute_in_new_container_with_env_logging_options_and_detach(load: LoadConfig) -> None:
    raw = {
        **base(),
        "logging": {"driver": "local", "options": {"max-size": "100m"}},
        "volumes": ["/data:/data"],
    }
    raw["servers"] = {"web": {"hosts": ["1.1.1.1"], "options": {"mount": "somewhere",
                                                                 "cap-add": True}}}  # fmt: skip
    config = load(raw)
    command = app.execute_in_new_container(
        config, role(config), "1.1.1.1", ["bin/rails", "c"], suffix="a1b2c3",
        env={"foo": "bar"}, detach=True,
    )  # fmt: skip
    assert command == (
        "docker", "run", "--detach", "--name", "app-web-exec-999-a1b2c3", "--network", "kamal",
        *ENV_FILE, "--env", "foo=bar", "--log-driver", "local", "--log-opt", "max-size=100m",
        "--volume", "/data:/data", "--mount", "somewhere", "--cap-add", "dhh/app:999",
        "bin/rails", "c",
    )  # fmt: skip


def test_execute_in_new_container_interactive_with_or_without_tty(load: LoadConfig) -> None:
    config = load(base())
    tty = app.execute_in_new_container(
        config, role(config), "1.1.1.1", ["bin/rails", "c"], suffix="a1b2c3", interactive=True
    )
    assert tty[:4] == ("docker", "run", "-it", "--rm")
    piped = app.execute_in_new_container(
        config, role(config), "1.1.1.1", ["bin/rails", "c"], suffix="a1b2c3",
        interactive=True, tty=False,
    )  # fmt: skip
    assert piped[:4] == ("docker", "run", "-i", "--rm")


def test_execute_in_existing_container(load: LoadConfig) -> None:
    config = load(base())
    r = role(config)
    assert app.execute_in_existing_container(config, r, ["bin/rails", "db:setup"]) == (
        "docker", "exec", "app-web-999", "bin/rails", "db:setup",
    )  # fmt: skip
    assert app.execute_in_existing_container(
        config, r, ["bin/rails", "db:setup"], env={"foo": "bar"}
    ) == ("docker", "exec", "--env", "foo=bar", "app-web-999", "bin/rails", "db:setup")
    assert app.execute_in_existing_container(
        config, r, ["bin/rails", "c"], interactive=True, tty=False
    ) == ("docker", "exec", "-i", "app-web-999", "bin/rails", "c")


def test_env_file_contents_resolve_secrets_and_escape_like_kamal(load: LoadConfig) -> None:
    raw = base()
    raw["env"] = {"secret": ["RAILS_MASTER_KEY", "DB_PASSWORD:MAIN_DB_PASSWORD"]}
    config = load(raw, secrets="RAILS_MASTER_KEY=456\nMAIN_DB_PASSWORD='pa\"ss#{x}\\y'\n")
    contents = app.env_file_contents(config, role(config), "1.1.1.1")
    assert contents.reveal() == 'RAILS_MASTER_KEY=456\nDB_PASSWORD=pa"ss#{x}\\\\y\n'
    assert "456" not in str(contents)
    assert app.env_file_path(config, role(config)) == ".kamal/apps/app/env/roles/web.env"


def test_env_file_without_secrets_is_a_single_newline(load: LoadConfig) -> None:
    raw = base()
    del raw["env"]
    config = load(raw)
    assert app.env_file_contents(config, role(config), "1.1.1.1").reveal() == "\n"


DEPLOY_DEFAULTS = (
    "--deploy-timeout=30s", "--drain-timeout=30s", "--buffer-requests", "--buffer-responses",
    "--log-request-header=Cache-Control", "--log-request-header=Last-Modified",
    "--log-request-header=User-Agent",
)  # fmt: skip
PROXY_EXEC = ("docker", "exec", "kamal-proxy", "kamal-proxy")


def test_deploy(load: LoadConfig) -> None:
    config = load(base())
    assert app.deploy(config, role(config), "172.1.0.2") == (
        *PROXY_EXEC, "deploy", "app-web", "--target=172.1.0.2:80", *DEPLOY_DEFAULTS,
    )  # fmt: skip


def test_deploy_with_ssl_and_hosts(load: LoadConfig) -> None:
    config = load({**base(), "proxy": {"ssl": True, "host": "example.com"}})
    assert app.deploy(config, role(config), "172.1.0.2") == (
        *PROXY_EXEC, "deploy", "app-web", "--target=172.1.0.2:80", "--host=example.com",
        "--tls", *DEPLOY_DEFAULTS,
    )  # fmt: skip
    config = load({**base(), "proxy": {"ssl": False, "hosts": ["a.example", "b.example"]}})
    assert app.deploy(config, role(config), "172.1.0.2")[7:9] == (
        "--host=a.example",
        "--host=b.example",
    )


def test_deploy_with_full_proxy_config_in_kamal_order(load: LoadConfig) -> None:
    raw = {
        **base(),
        "deploy_timeout": 60,
        "drain_timeout": 10,
        "error_pages_path": "public",
        "proxy": {
            "host": "example.com",
            "app_port": 3000,
            "ssl": {"certificate_pem": "CERT", "private_key_pem": "KEY"},
            "healthcheck": {"interval": 2, "timeout": 3, "path": "/health"},
            "response_timeout": 15,
            "buffering": {"requests": False, "memory": 1000},
            "path_prefix": "/api,/v2",
            "strip_path_prefix": False,
            "forward_headers": True,
            "ssl_redirect": False,
            "logging": {"request_headers": ["X-Request-Id"], "response_headers": ["X-Runtime"]},
        },
    }
    config = load(raw, "staging")
    assert app.deploy(config, role(config), "c1")[5:] == (
        "app-web-staging",
        "--target=c1:3000",
        "--host=example.com",
        "--tls",
        "--tls-certificate-path=/home/kamal-proxy/.apps-config/app-staging/tls/web/cert.pem",
        "--tls-private-key-path=/home/kamal-proxy/.apps-config/app-staging/tls/web/key.pem",
        "--deploy-timeout=60s",
        "--drain-timeout=10s",
        "--health-check-interval=2s",
        "--health-check-timeout=3s",
        "--health-check-path=/health",
        "--target-timeout=15s",
        "--buffer-requests=false",
        "--buffer-responses",
        "--buffer-memory=1000",
        "--path-prefix=/api",
        "--path-prefix=/v2",
        "--strip-path-prefix=false",
        "--forward-headers",
        "--tls-redirect=false",
        "--log-request-header=X-Request-Id",
        "--log-response-header=X-Runtime",
        "--error-pages=/home/kamal-proxy/.apps-config/app-staging/error_pages/999",
    )
    assert app.tls_files(config, role(config)) == (
        ".kamal/proxy/apps-config/app-staging/tls/web/cert.pem",
        ".kamal/proxy/apps-config/app-staging/tls/web/key.pem",
    )
    assert app.create_ssl_directory(config, role(config)) == (
        "mkdir", "-p", ".kamal/proxy/apps-config/app-staging/tls/web",
    )  # fmt: skip


def test_deploy_refuses_a_role_without_proxy(load: LoadConfig) -> None:
    config = load(base())
    with pytest.raises(ValueError, match="workers"):
        app.deploy(config, role(config, "workers"), "c1")


def test_remove_live_and_maintenance(load: LoadConfig) -> None:
    config = load(base())
    r = role(config)
    assert app.remove(config, r) == (*PROXY_EXEC, "remove", "app-web")
    assert app.live(config, r) == (*PROXY_EXEC, "resume", "app-web")
    assert app.maintenance(config, r) == (*PROXY_EXEC, "stop", "app-web")
    assert app.maintenance(config, r, drain_timeout=10, message="Hi") == (
        *PROXY_EXEC, "stop", "app-web", "--drain-timeout=10s", "--message=Hi",
    )  # fmt: skip
    assert app.remove_proxy_app_directory(config) == ("rm", "-r", ".kamal/proxy/apps-config/app")


def test_error_pages(load: LoadConfig) -> None:
    config = load({**base(), "error_pages_path": "public"})
    assert app.create_error_pages_directory(config) == (
        "mkdir", "-p", ".kamal/proxy/apps-config/app/error_pages",
    )  # fmt: skip
    assert app.clean_up_error_pages(config) == (
        "find", ".kamal/proxy/apps-config/app/error_pages", "-mindepth", "1", "-maxdepth", "1",
        "!", "-name", "999", "-exec", "rm", "-rf", "{}", "+",
    )  # fmt: skip


def test_extract_assets_as_separate_steps_instead_of_and_chain(load: LoadConfig) -> None:
    config = load({**base(), "asset_path": "/public/assets"})
    assert app.extract_assets(config, role(config)) == (
        ("mkdir", "-p", ".kamal/apps/app/assets/extracted/web-999"),
        ("docker", "container", "rm", "app-web-assets"),
        ("docker", "container", "create", "--name", "app-web-assets", "dhh/app:999"),
        ("docker", "container", "cp", "-L", "app-web-assets:/public/assets/.",
         ".kamal/apps/app/assets/extracted/web-999"),
        ("docker", "container", "rm", "app-web-assets"),
    )  # fmt: skip


def test_sync_asset_volumes(load: LoadConfig) -> None:
    config = load({**base(), "asset_path": "/public/assets"})
    r = role(config)
    base_dir = ".kamal/apps/app/assets"
    assert app.sync_asset_volumes(config, r) == [
        ("mkdir", "-p", f"{base_dir}/volumes/web-999"),
        ("cp", "-rnT", f"{base_dir}/extracted/web-999", f"{base_dir}/volumes/web-999"),
    ]
    assert app.sync_asset_volumes(config, r, old_version="998") == [
        ("mkdir", "-p", f"{base_dir}/volumes/web-999"),
        ("cp", "-rnT", f"{base_dir}/extracted/web-999", f"{base_dir}/volumes/web-999"),
        ("cp", "-rnT", f"{base_dir}/extracted/web-999", f"{base_dir}/volumes/web-998"),
        ("cp", "-rnT", f"{base_dir}/extracted/web-998", f"{base_dir}/volumes/web-999"),
    ]


def test_clean_up_assets(load: LoadConfig) -> None:
    config = load({**base(), "asset_path": "/public/assets"})
    assert app.clean_up_assets(config, role(config)) == (
        ("find", ".kamal/apps/app/assets/extracted", "-maxdepth", "1", "-name", "web-*",
         "!", "-name", "web-999", "-exec", "rm", "-rf", "{}", "+"),
        ("find", ".kamal/apps/app/assets/volumes", "-maxdepth", "1", "-name", "web-*",
         "!", "-name", "web-999", "-exec", "rm", "-rf", "{}", "+"),
    )  # fmt: skip


def test_clear_env_hash_brace_passed_as_written_instead_of_kamal_backslash(
    load: LoadConfig,
) -> None:
    # Kamal dumps the value as `"#\{x}"`-style `\#{x}` inside double quotes, which a POSIX shell
    # leaves as a literal backslash; Dockyard hands Docker the value as configured.
    raw = base()
    raw["env"] = {"clear": {"GREETING": "hi #{name}"}}
    config = load(raw)
    assert app.env_args(config, role(config), "1.1.1.1")[:2] == ("--env", "GREETING=hi #{name}")
