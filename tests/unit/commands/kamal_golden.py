"""Cases whose expected command comes from the real Kamal 2.11, recorded in ``kamal_2_11.json``.

Each case names a config, a Ruby expression that asks Kamal's own command classes for the
command, and a Python function that asks ours. ``test_kamal_golden.py`` compares the recorded
Kamal command (split as the remote shell would split it) with our argv.

Regenerate the recording (needs the Kamal 2.11 binary, ~10 s)::

    .venv/bin/python -m tests.unit.commands.kamal_golden

It runs ``kamal config`` on a throw-away project whose ``deploy.yml`` ERB evaluates the Ruby
expressions with Kamal's classes loaded, and writes what they return. No server is contacted.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dockyard.commands import accessory as acc
from dockyard.commands import app, audit, builder, hooks, lock, proxy, prune, registry, server
from dockyard.commands.argv import Argv, argv
from dockyard.commands.envfile import contents as env_file_contents
from dockyard.config import Config
from dockyard.flows.context import DeployContext
from dockyard.flows.ops.base import ssh_session
from dockyard.remote import FakePool

GOLDEN_FILE = Path(__file__).with_name("kamal_2_11.json")
#: The clock the recording runs with (Kamal's Time.now is stubbed to it).
FIXED_TIME = datetime(2026, 11, 28, 9, 30, 5, tzinfo=UTC)
KAMAL_BIN = Path(
    os.environ.get(
        "DOCKYARD_KAMAL_BIN",
        Path(__file__).resolve().parents[3] / ".cache" / "kamal-venv" / "bin" / "kamal",
    )
)

Ours = Callable[[Config], "Argv | Sequence[Argv] | str | dict[str, str] | list[str]"]


@dataclass(frozen=True)
class Case:
    name: str
    config: str
    ruby: str
    ours: Ours
    destination: str | None = None
    version: str = "999"
    #: "argv": one command, or commands joined by && / || / ; ; "text": compare strings as is;
    #: "env": a hash; "pipeline": a shell pipeline, run under ``sh`` against a fake ``docker``
    #: (ours may be the local ``ssh`` argv whose last word is the remote pipeline).
    kind: str = "argv"
    files: dict[str, str] = field(default_factory=dict)
    #: Secrets file content (``KEY=value`` lines) for configs that resolve secrets.
    secrets: str | None = None


def _registry() -> dict[str, Any]:
    return {"username": "dhh", "password": "secret"}


CONFIGS: dict[str, dict[str, Any]] = {
    "app": {
        "service": "app",
        "image": "dhh/app",
        "registry": _registry(),
        "servers": {"web": ["1.1.1.1"], "workers": ["1.1.1.2"]},
        "env": {
            # No "#{" here: Kamal's dump escaping leaves a literal backslash before it (Dockyard
            # passes the value as written; see test_app.py).
            "clear": {"A": 'x $y "q" `z` \\ #w ${HOME}/bin', "LANG_NAME": "héllo wörld"},
            "secret": ["RAILS_MASTER_KEY"],
        },
        "builder": {"arch": "amd64"},
    },
    "app_full": {
        "service": "app",
        "image": "dhh/app",
        "registry": {"server": "registry.example.com:4443", "username": "u", "password": "p"},
        "servers": {
            "web": {
                "hosts": [{"1.1.1.1": ["tag1"]}, "1.1.1.3"],
                "labels": {"tier": "front"},
                "logging": {"options": {"max-size": "100m"}},
            },
            "jobs": {
                "hosts": ["1.1.1.2"],
                "cmd": "bin/jobs --queue 'high prio'",
                "options": {"mount": "somewhere", "cap-add": True, "dns": ["1.1.1.1", "8.8.8.8"]},
                "proxy": {"app_port": 3000, "hosts": ["jobs.example.com"]},
            },
        },
        "labels": {"team": "ops"},
        "volumes": ["/local/path:/container/path"],
        "asset_path": "/public/assets:ro",
        "logging": {"driver": "local", "options": {"max-file": "3"}},
        "env": {"clear": {"ROOT": "1"}, "tags": {"tag1": {"ENV1": "value1"}}},
        "drain_timeout": 20,
        "deploy_timeout": 45,
        "proxy": {
            "hosts": ["example.com", "www.example.com"],
            "ssl": False,
            "app_port": 8080,
            "healthcheck": {"interval": 2, "timeout": 3, "path": "/health"},
            "response_timeout": 15,
            "buffering": {"requests": False, "memory": 1000, "max_request_body": 2000},
            "path_prefix": "/api,/v2",
            "strip_path_prefix": False,
            "forward_headers": True,
            "ssl_redirect": False,
            "logging": {"request_headers": ["X-Request-Id"], "response_headers": ["X-Runtime"]},
        },
        "builder": {
            "arch": "amd64",
            "args": {"a": 1, "b": "two words"},
            "secrets": ["token_a"],
            "dockerfile": "Dockerfile.xyz",
            "target": "prod",
            "ssh": "default=$SSH_AUTH_SOCK",
            "provenance": "mode=max",
            "sbom": False,
            "context": "./foo",
            "cache": {"type": "registry", "options": "mode=max", "image": "app-cache"},
        },
        "ssh": {
            "user": "deploy",
            "port": 2222,
            "proxy": "2.2.2.2",
            "keys": ["k1.pem", "k2.pem"],
            "keys_only": True,
            "config": ["~/.ssh/c1", "~/.ssh/c2"],
        },
    },
    "proxy_run": {
        "service": "app",
        "image": "dhh/app",
        "registry": _registry(),
        "servers": ["1.1.1.1"],
        "builder": {"arch": "amd64"},
        "proxy": {
            "ssl": {"certificate_pem": "CERT", "private_key_pem": "KEY"},
            "host": "a.example.com",
            "run": {
                "http_port": 8080,
                "https_port": 8443,
                "bind_ips": ["0.0.0.0", "::1"],
                "log_max_size": "50m",
                "debug": True,
                "metrics_port": 9090,
                "registry": "registry:4443",
                "repository": "custom/kamal-proxy",
                "version": "v0.9.3",
                "options": {"cpus": "2", "init": True},
            },
        },
        "error_pages_path": "public",
    },
    "proxy_no_publish": {
        "service": "app",
        "image": "dhh/app",
        "registry": _registry(),
        "servers": ["1.1.1.1"],
        "builder": {"arch": "amd64"},
        "proxy": {"run": {"publish": False}},
    },
    "accessories": {
        "service": "app",
        "image": "dhh/app",
        "registry": {"server": "private.registry", "username": "dhh", "password": "secret"},
        "servers": ["1.1.1.1"],
        "builder": {"arch": "amd64"},
        "logging": {"driver": "local", "options": {"max-size": "100m"}},
        "accessories": {
            "mysql": {
                "image": "private.registry/mysql:8.0",
                "host": "1.1.1.5",
                "port": "3306",
                "env": {"clear": {"MYSQL_ROOT_HOST": "%"}, "secret": ["MYSQL_ROOT_PASSWORD"]},
                "options": {"cpus": "4", "memory": "2GB"},
                "files": ["config/my.cnf:/etc/mysql/my.cnf"],
                "directories": [
                    "data:/var/lib/mysql",
                    "/srv/backups:/backups:ro",
                    {"local": "logs", "remote": "/var/log/mysql", "mode": "0700"},
                ],
                "cmd": "mysqld --max-connections 10",
            },
            "redis": {
                "image": "redis:latest",
                "host": "1.1.1.6",
                "port": "127.0.0.1:6379:6379",
                "labels": {"cache": "true"},
                "env": {"SOMETHING": "else"},
                "volumes": ["/var/lib/redis:/data"],
                "network": "custom",
            },
            "busybox": {
                "service": "custom-busybox",
                "image": "busybox:latest",
                "registry": {"server": "other.registry", "username": "user", "password": "pw"},
                "host": "1.1.1.7",
                "proxy": {"host": "busybox.example.com", "app_port": 8080},
            },
            "web2": {
                "image": "nginx:1",
                "host": "1.1.1.8",
                "proxy": {
                    "host": "static.example.com",
                    "ssl": {"certificate_pem": "CERT", "private_key_pem": "KEY"},
                    "healthcheck": {"path": "/ok"},
                },
            },
        },
    },
    "hybrid": {
        "service": "app",
        "image": "dhh/app",
        "registry": {"server": "localhost:5000"},
        "servers": ["1.1.1.1"],
        "builder": {"arch": ["amd64", "arm64"], "remote": "ssh://app@1.1.1.5"},
    },
    "remote": {
        "service": "app",
        "image": "dhh/app",
        "registry": _registry(),
        "servers": ["1.1.1.1"],
        "builder": {
            "arch": "arm64",
            "remote": "ssh://app@host",
            "cache": {"type": "gha", "options": "mode=max,scope=x"},
        },
    },
    "pack": {
        "service": "app",
        "image": "dhh/app",
        "registry": _registry(),
        "servers": ["1.1.1.1"],
        "builder": {
            "arch": "amd64",
            "args": {"a": 1},
            "pack": {"builder": "heroku/builder:24", "buildpacks": ["heroku/ruby"]},
        },
    },
    "cloud": {
        "service": "app",
        "image": "dhh/app",
        "registry": _registry(),
        "servers": ["1.1.1.1"],
        "builder": {"arch": "amd64", "driver": "cloud docker-org-name/builder-name"},
    },
    "docker_driver": {
        "service": "app",
        "image": "dhh/app",
        "registry": _registry(),
        "servers": ["1.1.1.1"],
        "builder": {"arch": "amd64", "driver": "docker"},
    },
}

APP = 'Kamal::Commands::App.new(config, role: config.role("{role}"), host: "{host}")'


def _app(role: str = "web", host: str = "1.1.1.1") -> str:
    return APP.format(role=role, host=host)


def _role(config: Config, name: str = "web") -> Any:
    found = config.role(name)
    assert found is not None
    return found


def _context(config: Config) -> DeployContext:
    """The flows' context for ``config`` (no connection is made)."""
    return DeployContext(config=config, pool=FakePool())


def _acc(config: Config, name: str) -> Any:
    found = config.accessory(name)
    assert found is not None
    return found


ACC = 'Kamal::Commands::Accessory.new(config, name: "{name}")'
PROXY = 'Kamal::Commands::Proxy.new(config, host: "1.1.1.1")'
BUILDER = "Kamal::Commands::Builder.new(config)"


TRICKY_ENV = {
    "CTRL": "a\x01b\x7fc\x1bd\re\bf\ag\vh\fi",
    "HASHES": "#{x} #$y #@z # plain #",
    "MIXED": 'é"ü\\ñ\t"',
    "EMOJI": "snow ☃ man",
}


def _b64_json(value: object) -> str:
    return base64.b64encode(json.dumps(value).encode()).decode()


def _without_last(command: Argv) -> Argv:
    return Argv(command.parts[:-1])


def _plan(config: Config) -> builder.Plan:
    return builder.plan(config, "amd64")


CASES: list[Case] = [
    # --- app ------------------------------------------------------------------------------------
    Case("app run", "app", f"{_app()}.run", lambda c: app.run(c, _role(c), "1.1.1.1")),
    Case(
        "app run with destination and hostname",
        "app",
        f'{_app()}.run(hostname: "myhost-0123")',
        lambda c: app.run(c, _role(c), "1.1.1.1", hostname="myhost-0123"),
        destination="staging",
    ),
    Case(
        "app run full web",
        "app_full",
        f"{_app('web', '1.1.1.1')}.run",
        lambda c: app.run(c, _role(c, "web"), "1.1.1.1"),
    ),
    Case(
        "app run full jobs",
        "app_full",
        f"{_app('jobs', '1.1.1.2')}.run",
        lambda c: app.run(c, _role(c, "jobs"), "1.1.1.2"),
        destination="production",
    ),
    Case("app start", "app", f"{_app()}.start", lambda c: app.start(c, _role(c))),
    Case("app info", "app", f"{_app()}.info", lambda c: app.info(c, _role(c))),
    Case(
        "app info with destination",
        "app",
        f"{_app()}.info",
        lambda c: app.info(c, _role(c)),
        destination="staging",
    ),
    Case(
        "app container_id_for",
        "app",
        f'{_app()}.container_id_for(container_name: "app-web-999")',
        lambda c: app.container_id_for("app-web-999"),
    ),
    Case(
        "app container_id_for_version running",
        "app",
        f'{_app()}.container_id_for_version("123", only_running: true)',
        lambda c: app.container_id_for_version(c, _role(c), "123", only_running=True),
    ),
    Case(
        "app list_versions",
        "app",
        f"{_app()}.list_versions[0..-3]",
        lambda c: app.list_versions(c, _role(c)),
    ),
    Case(
        "app list_versions latest active",
        "app",
        f'{_app()}.list_versions("--latest", statuses: [:running, :restarting])[0..-3]',
        lambda c: app.list_versions(c, _role(c), "--latest", statuses=app.ACTIVE_STATUSES),
    ),
    Case(
        "app list_containers",
        "app",
        f"{_app()}.list_containers",
        lambda c: app.list_containers(c, _role(c)),
    ),
    Case(
        "app list_container_names",
        "app",
        f"{_app()}.list_container_names",
        lambda c: app.list_container_names(c, _role(c)),
    ),
    Case(
        "app remove_containers",
        "app",
        f"{_app()}.remove_containers",
        lambda c: app.remove_containers(c, _role(c)),
        destination="staging",
    ),
    Case(
        "app rename_container",
        "app",
        f'{_app()}.rename_container(version: "999", new_version: "999_replaced_abc")',
        lambda c: app.rename_container(c, _role(c), "999", "999_replaced_abc"),
    ),
    Case("app list_images", "app_full", f"{_app()}.list_images", lambda c: app.list_images(c)),
    Case("app remove_images", "app", f"{_app()}.remove_images", lambda c: app.remove_images(c)),
    Case(
        "app tag_latest_image",
        "app_full",
        f"{_app()}.tag_latest_image",
        lambda c: app.tag_latest_image(c),
        destination="staging",
    ),
    Case(
        "app execute_in_existing_container with env",
        "app",
        f"{_app()}.execute_in_existing_container("
        '"bin/rails", "db:setup", env: { "foo" => "b a r" })',
        lambda c: app.execute_in_existing_container(
            c, _role(c), ["bin/rails", "db:setup"], env={"foo": "b a r"}
        ),
    ),
    Case(
        "app execute_in_new_container",
        "app_full",
        f"{_app('jobs', '1.1.1.2')}.execute_in_new_container("
        '"bin/rails", "c", env: { "x" => "1" })',
        lambda c: app.execute_in_new_container(
            c, _role(c, "jobs"), "1.1.1.2", ["bin/rails", "c"], suffix="a1b2c3", env={"x": "1"}
        ),
    ),
    Case(
        "app execute_in_new_container detached",
        "app",
        f'{_app()}.execute_in_new_container("bin/jobs", detach: true, env: {{}})',
        lambda c: app.execute_in_new_container(
            c, _role(c), "1.1.1.1", ["bin/jobs"], suffix="a1b2c3", detach=True
        ),
    ),
    Case(
        "app deploy",
        "app",
        f'{_app()}.deploy(target: "172.1.0.2")',
        lambda c: app.deploy(c, _role(c), "172.1.0.2"),
    ),
    Case(
        "app deploy full proxy",
        "app_full",
        f'{_app()}.deploy(target: "c1")',
        lambda c: app.deploy(c, _role(c), "c1"),
        destination="production",
    ),
    Case(
        "app deploy role proxy merged over root",
        "app_full",
        f'{_app("jobs", "1.1.1.2")}.deploy(target: "c1")',
        lambda c: app.deploy(c, _role(c, "jobs"), "c1"),
    ),
    Case(
        "app deploy custom tls and error pages",
        "proxy_run",
        f'{_app()}.deploy(target: "c1")',
        lambda c: app.deploy(c, _role(c), "c1"),
        destination="staging",
    ),
    Case("app remove", "app", f"{_app()}.remove", lambda c: app.remove(c, _role(c))),
    Case("app live", "app", f"{_app()}.live", lambda c: app.live(c, _role(c))),
    Case(
        "app maintenance",
        "app",
        f'{_app()}.maintenance(drain_timeout: 10, message: "Back soon, really")',
        lambda c: app.maintenance(c, _role(c), drain_timeout=10, message="Back soon, really"),
    ),
    Case(
        "app remove_proxy_app_directory",
        "app",
        f"{_app()}.remove_proxy_app_directory",
        lambda c: app.remove_proxy_app_directory(c),
        destination="staging",
    ),
    Case(
        "app create_ssl_directory",
        "proxy_run",
        f"{_app()}.create_ssl_directory",
        lambda c: app.create_ssl_directory(c, _role(c)),
    ),
    Case(
        "app extract_assets",
        "app_full",
        f"{_app()}.extract_assets.map(&:to_s)"
        ".reject { |p| p == '2> /dev/null' || p == '|| true' }",
        lambda c: app.extract_assets(c, _role(c)),
    ),
    Case(
        "app sync_asset_volumes",
        "app_full",
        f'{_app()}.sync_asset_volumes(old_version: "998").map(&:to_s)'
        '.reject { |p| p == "|| true" }',
        lambda c: app.sync_asset_volumes(c, _role(c), old_version="998"),
    ),
    Case(
        "app clean_up_assets",
        "app_full",
        f"{_app()}.clean_up_assets",
        lambda c: app.clean_up_assets(c, _role(c)),
    ),
    Case(
        "app status container lookup",
        "app",
        f'{_app()}.status(version: "123")[0..-7]',
        lambda c: app.container_id_for_version(c, _role(c), "123"),
    ),
    # Where Kamal pipes an ID into `xargs <cmd>`, we run `<cmd> <id>`: compare the <cmd> part.
    Case(
        "app status after xargs",
        "app",
        f'{_app()}.status(version: "123")[-4..]',
        lambda c: _without_last(app.status("ID")),
    ),
    Case(
        "app stop proxy role after xargs",
        "app",
        f'{_app()}.stop(version: "123")[-2..]',
        lambda c: _without_last(app.stop(_role(c), "ID")),
    ),
    Case(
        "app stop non-proxy role after xargs",
        "app",
        f'{_app("workers", "1.1.1.2")}.stop(version: "123")[-4..]',
        lambda c: _without_last(app.stop(_role(c, "workers"), "ID")),
    ),
    Case(
        "app remove_container after xargs",
        "app",
        f'{_app()}.remove_container(version: "123")[-3..]',
        lambda c: _without_last(app.remove_container("ID")),
    ),
    Case(
        "app container_health_log after xargs",
        "app",
        f'{_app()}.container_health_log(version: "123")[-4..]',
        lambda c: _without_last(app.container_health_log("ID")),
    ),
    # --- accessory ------------------------------------------------------------------------------
    Case(
        "accessory run mysql",
        "accessories",
        f'{ACC.format(name="mysql")}.run(host: "1.1.1.5")',
        lambda c: acc.run(c, _acc(c, "mysql"), "1.1.1.5"),
        files={"config/my.cnf": "[mysqld]\n"},
    ),
    Case(
        "accessory run redis",
        "accessories",
        f"{ACC.format(name='redis')}.run",
        lambda c: acc.run(c, _acc(c, "redis")),
        destination="staging",
    ),
    Case(
        "accessory run busybox",
        "accessories",
        f"{ACC.format(name='busybox')}.run",
        lambda c: acc.run(c, _acc(c, "busybox")),
    ),
    Case(
        "accessory start",
        "accessories",
        f"{ACC.format(name='mysql')}.start",
        lambda c: acc.start(_acc(c, "mysql")),
    ),
    Case(
        "accessory stop",
        "accessories",
        f"{ACC.format(name='mysql')}.stop",
        lambda c: acc.stop(_acc(c, "mysql")),
    ),
    Case(
        "accessory info all quiet",
        "accessories",
        f"{ACC.format(name='mysql')}.info(all: true, quiet: true)",
        lambda c: acc.info(_acc(c, "mysql"), all=True, quiet=True),
    ),
    Case(
        "accessory execute_in_new_container",
        "accessories",
        f'{ACC.format(name="redis")}.execute_in_new_container("redis-cli", "-h", "x")',
        lambda c: acc.execute_in_new_container(c, _acc(c, "redis"), ["redis-cli", "-h", "x"]),
    ),
    Case(
        "accessory execute_in_existing_container",
        "accessories",
        f'{ACC.format(name="mysql")}.execute_in_existing_container("mysql", "-u", "root")',
        lambda c: acc.execute_in_existing_container(_acc(c, "mysql"), ["mysql", "-u", "root"]),
    ),
    Case(
        "accessory pull_image",
        "accessories",
        f"{ACC.format(name='busybox')}.pull_image",
        lambda c: acc.pull_image(_acc(c, "busybox")),
    ),
    Case(
        "accessory remove_container",
        "accessories",
        f"{ACC.format(name='busybox')}.remove_container",
        lambda c: acc.remove_container(_acc(c, "busybox")),
    ),
    Case(
        "accessory remove_image",
        "accessories",
        f"{ACC.format(name='mysql')}.remove_image",
        lambda c: acc.remove_image(_acc(c, "mysql")),
    ),
    Case(
        "accessory remove_service_directory",
        "accessories",
        f"{ACC.format(name='mysql')}.remove_service_directory",
        lambda c: acc.remove_service_directory(_acc(c, "mysql")),
    ),
    Case(
        "accessory ensure_env_directory",
        "accessories",
        f"{ACC.format(name='mysql')}.ensure_env_directory",
        lambda c: acc.ensure_env_directory(c),
        destination="staging",
    ),
    Case(
        "accessory deploy",
        "accessories",
        f'{ACC.format(name="busybox")}.deploy(target: "c9")',
        lambda c: acc.deploy(c, _acc(c, "busybox"), "c9"),
    ),
    Case(
        "accessory deploy with custom certificate",
        "accessories",
        f'{ACC.format(name="web2")}.deploy(target: "c10")',
        lambda c: acc.deploy(c, _acc(c, "web2"), "c10"),
        destination="staging",
    ),
    Case(
        "accessory remove from proxy",
        "accessories",
        f"{ACC.format(name='busybox')}.remove",
        lambda c: acc.remove(_acc(c, "busybox")),
    ),
    Case(
        "accessory container id",
        "accessories",
        f"{ACC.format(name='busybox')}.container_id_for("
        'container_name: "custom-busybox", only_running: true)',
        lambda c: acc.container_id(_acc(c, "busybox")),
    ),
    # --- proxy -----------------------------------------------------------------------------------
    Case(
        "proxy run with run config",
        "proxy_run",
        f"{PROXY}.run",
        lambda c: proxy.run(proxy.run_settings(c.proxy_run("1.1.1.1")) or proxy.ProxyRun()),
    ),
    Case(
        "proxy run without publish",
        "proxy_no_publish",
        f"{PROXY}.run",
        lambda c: proxy.run(proxy.run_settings(c.proxy_run("1.1.1.1")) or proxy.ProxyRun()),
    ),
    Case("proxy start", "app", f"{PROXY}.start", lambda c: proxy.start()),
    Case("proxy stop", "app", f"{PROXY}.stop", lambda c: proxy.stop()),
    Case(
        "proxy start_or_run",
        "proxy_no_publish",
        f"{PROXY}.start_or_run",
        lambda c: proxy.start_or_run(proxy.run_settings(c.proxy_run("1.1.1.1"))),
    ),
    Case("proxy info", "app", f"{PROXY}.info", lambda c: proxy.info()),
    Case("proxy version first stage", "app", f"{PROXY}.version[0..-5]", lambda c: proxy.version()),
    Case(
        "proxy remove_container",
        "app",
        f"{PROXY}.remove_container",
        lambda c: proxy.remove_container(),
    ),
    Case("proxy remove_image", "app", f"{PROXY}.remove_image", lambda c: proxy.remove_image()),
    Case(
        "proxy cleanup_traefik",
        "app",
        f"{PROXY}.cleanup_traefik",
        lambda c: proxy.cleanup_traefik(),
    ),
    Case(
        "proxy ensure_proxy_directory",
        "app",
        f"{PROXY}.ensure_proxy_directory",
        lambda c: proxy.ensure_proxy_directory(),
    ),
    Case(
        "proxy remove_proxy_directory",
        "app",
        f"{PROXY}.remove_proxy_directory",
        lambda c: proxy.remove_proxy_directory(),
    ),
    Case(
        "proxy ensure_apps_config_directory",
        "app",
        f"{PROXY}.ensure_apps_config_directory",
        lambda c: proxy.ensure_apps_config_directory(),
    ),
    Case(
        "proxy reset files",
        "app",
        f"[{PROXY}.reset_boot_options, {PROXY}.reset_image, {PROXY}.reset_image_version, "
        f"{PROXY}.reset_run_command].map {{ |c| c.join(' ') }}.join(' ; ')",
        lambda c: [proxy.reset_boot_file(f) for f in proxy.BOOT_FILES],
    ),
    Case(
        "proxy default boot options",
        "app",
        "config.proxy_boot.default_boot_options.join(' ')",
        lambda c: proxy.default_boot_options(),
        kind="text",
    ),
    # --- registry, lock, audit, prune, server, docker --------------------------------------------
    Case(
        "registry login",
        "app_full",
        "Kamal::Commands::Registry.new(config).login",
        # Deliberately unlike Kamal: we send the password on stdin (--password-stdin); the
        # same login written Kamal's way (-p) must equal Kamal's.
        lambda c: _login_with_password_flag(registry.login(c.registry.server, "u", "p")),
    ),
    Case(
        "registry logout",
        "app_full",
        "Kamal::Commands::Registry.new(config).logout",
        lambda c: registry.logout(c.registry.server),
    ),
    Case(
        "registry local setup",
        "hybrid",
        "Kamal::Commands::Registry.new(config).setup",
        lambda c: [registry.start_local(), registry.run_local(5000)],
    ),
    Case(
        "registry local remove",
        "hybrid",
        "Kamal::Commands::Registry.new(config).remove",
        lambda c: registry.remove_local(),
    ),
    Case(
        "lock release",
        "app",
        "Kamal::Commands::Lock.new(config).release",
        lambda c: lock.release("app", "production"),
        destination="production",
    ),
    Case(
        "lock acquire mkdir",
        "app",
        'Kamal::Commands::Lock.new(config).acquire("m", "1")[0..1]',
        lambda c: lock.acquire("app", None, "x")[0],
    ),
    # (Kamal 2.11's Lock#ensure_locks_directory raises NameError: it is dead code there.)
    Case(
        "audit reveal",
        "app",
        "Kamal::Commands::Auditor.new(config).reveal",
        lambda c: audit.reveal("app", "staging"),
        destination="staging",
    ),
    Case(
        "prune dangling images",
        "app",
        "Kamal::Commands::Prune.new(config).dangling_images",
        lambda c: prune.dangling_images("app"),
    ),
    Case(
        "prune containers list",
        "app",
        "Kamal::Commands::Prune.new(config).app_containers(retain: 3)[0..-5]",
        lambda c: prune.list_stopped_containers("app"),
    ),
    Case(
        "server ensure_run_directory",
        "app",
        "Kamal::Commands::Server.new(config).ensure_run_directory",
        lambda c: server.ensure_run_directory(),
    ),
    Case(
        "server remove_app_directory",
        "app",
        "Kamal::Commands::Server.new(config).remove_app_directory",
        lambda c: server.remove_app_directory("app", "staging"),
        destination="staging",
    ),
    Case(
        "docker installed",
        "app",
        "Kamal::Commands::Docker.new(config).installed?",
        lambda c: server.docker_installed(),
    ),
    Case(
        "docker running",
        "app",
        "Kamal::Commands::Docker.new(config).running?",
        lambda c: server.docker_running(),
    ),
    Case(
        "docker create_network",
        "app",
        "Kamal::Commands::Docker.new(config).create_network",
        lambda c: server.create_network(),
    ),
    Case(
        "hook run",
        "app",
        'Kamal::Commands::Hook.new(config).run("pre-deploy")',
        # Kamal runs the path relative to the project root; Dockyard runs the absolute path
        # with the root as working directory (DeployContext.run_hook).
        lambda c: _context(c).hook_path("pre-deploy").relative_to(c.root).as_posix(),
        kind="text",
    ),
    Case(
        "hook env",
        "app",
        'Kamal::Commands::Hook.new(config).env(hosts: "1.1.1.1,1.1.1.2", lock: "true", '
        'command: "deploy", runtime: "12").except(:recorded_at, :performer)'
        '.transform_keys(&:to_s).except("KAMAL_RECORDED_AT", "KAMAL_PERFORMER")',
        lambda c: {
            k: v
            for k, v in hooks.hook_env(
                service=c.service,
                version=c.version,
                destination=c.destination,
                recorded_at=FIXED_TIME,
                performer="x",
                hosts=["1.1.1.1", "1.1.1.2"],
                lock=True,
                command="deploy",
                runtime=12,
            ).items()
            if k not in ("KAMAL_RECORDED_AT", "KAMAL_PERFORMER")
        },
        destination="staging",
        version="0123456789abcdef",
        kind="env",
    ),
    Case(
        "audit line",
        "app",
        'Kamal::Commands::Auditor.new(config, role: "web")'
        '.record("Booted app version 999", detail: "x")[5].undump',
        lambda c: audit.audit_line(
            "Booted app version 999",
            recorded_at=FIXED_TIME,
            performer="ada@example.com",
            destination=c.destination,
            details={"role": "web", "detail": "x"},
        ),
        destination="staging",
        kind="text",
    ),
    Case(
        "lock details base64",
        "app",
        'Kamal::Commands::Lock.new(config).acquire("Automatic deploy lock", "999")[4][1..-2]',
        lambda c: lock.encode_details(
            lock.lock_details(
                "Automatic deploy lock", "999", locked_by="Ada Lovelace", at=FIXED_TIME
            )
        ),
        kind="text",
    ),
    Case(
        "env file escaping",
        "app",
        'Kamal::EnvFile.new({ "A" => "x $y \\"q\\" `z` \\#{w} \\\\ end\\n", "B" => "héllo\\tw", '
        '"C" => "" }).to_s',
        lambda c: env_file_contents({"A": 'x $y "q" `z` #{w} \\ end\n', "B": "héllo\tw", "C": ""}),
        kind="text",
    ),
    Case(
        "env file escaping of control and unicode characters",
        "app",
        f'Kamal::EnvFile.new(JSON.parse(Base64.decode64("{_b64_json(TRICKY_ENV)}"))).to_s',
        lambda c: env_file_contents(TRICKY_ENV),
        kind="text",
    ),
    # --- builder ---------------------------------------------------------------------------------
    Case(
        "builder push local", "app", f"{BUILDER}.push[0..-2]", lambda c: builder.push(c, _plan(c))
    ),
    Case(
        "builder push full options",
        "app_full",
        f"{BUILDER}.push[0..-2]",
        lambda c: builder.push(c, _plan(c)),
        version="123",
        files={"Dockerfile.xyz": "FROM scratch\n"},
        secrets="token_a=foo\n",
    ),
    Case(
        "builder dev",
        "app",
        f'{BUILDER}.push("docker", tag_as_dirty: true, no_cache: true)[0..-2]',
        lambda c: builder.push(c, _plan(c), output="docker", dirty=True, no_cache=True),
    ),
    Case(
        "builder push hybrid",
        "hybrid",
        f"{BUILDER}.push[0..-2]",
        lambda c: builder.push(c, _plan(c)),
    ),
    Case(
        "builder push remote",
        "remote",
        f"{BUILDER}.push[0..-2]",
        lambda c: builder.push(c, _plan(c)),
    ),
    Case("builder push pack", "pack", f"{BUILDER}.push", lambda c: builder.push(c, _plan(c))),
    Case(
        "builder push cloud", "cloud", f"{BUILDER}.push[0..-2]", lambda c: builder.push(c, _plan(c))
    ),
    Case(
        "builder push docker driver",
        "docker_driver",
        f"{BUILDER}.push[0..-2]",
        lambda c: builder.push(c, _plan(c)),
    ),
    Case("builder create local", "app", f"{BUILDER}.create", lambda c: builder.create(c, _plan(c))),
    Case(
        "builder create hybrid",
        "hybrid",
        f"{BUILDER}.create",
        lambda c: builder.create(c, _plan(c)),
    ),
    Case(
        "builder create remote",
        "remote",
        f"{BUILDER}.create",
        lambda c: builder.create(c, _plan(c)),
    ),
    Case(
        "builder create cloud", "cloud", f"{BUILDER}.create", lambda c: builder.create(c, _plan(c))
    ),
    Case("builder remove local", "app", f"{BUILDER}.remove", lambda c: builder.remove(c, _plan(c))),
    Case(
        "builder remove remote",
        "remote",
        f"{BUILDER}.remove",
        lambda c: builder.remove(c, _plan(c)),
    ),
    Case(
        "builder remove cloud", "cloud", f"{BUILDER}.remove", lambda c: builder.remove(c, _plan(c))
    ),
    Case("builder info local", "app", f"{BUILDER}.info", lambda c: builder.info(_plan(c))),
    Case(
        "builder inspect local",
        "app",
        f"{BUILDER}.inspect_builder",
        lambda c: builder.inspect_builder(c, _plan(c)),
    ),
    Case("builder clean", "app", f"{BUILDER}.clean", lambda c: builder.clean(c)),
    Case("builder pull", "app", f"{BUILDER}.pull", lambda c: app.pull_image(c)),
    Case("builder first_mirror", "app", f"{BUILDER}.first_mirror", lambda c: app.first_mirror()),
    Case(
        "builder ensure docker installed",
        "app",
        f"{BUILDER}.ensure_docker_installed",
        lambda c: builder.ensure_docker_installed(),
    ),
    Case(
        "builder push env remote",
        "remote",
        f"{BUILDER}.push_env",
        lambda c: builder.push_env(c, _plan(c)),
        kind="env",
    ),
    # --- shell pipelines: run by test_kamal_golden under sh with a fake `docker` --------------
    Case(
        "pipeline prune tagged images",
        "app",
        "Kamal::Commands::Prune.new(config).tagged_images",
        lambda c: "",
        kind="pipeline",
    ),
    Case(
        "pipeline prune containers",
        "app",
        "Kamal::Commands::Prune.new(config).app_containers(retain: 3)",
        lambda c: "",
        kind="pipeline",
    ),
    Case(
        "pipeline list versions",
        "app",
        f"{_app()}.list_versions",
        lambda c: "",
        kind="pipeline",
    ),
    Case(
        "pipeline current running version",
        "app",
        f"{_app()}.current_running_version",
        lambda c: "",
        kind="pipeline",
    ),
    Case(
        "pipeline app logs",
        "app",
        f'{_app()}.logs(container_id: "ID321", since: "5m", lines: 100, grep: "GET /", '
        'grep_options: "-i -v")',
        lambda c: app.logs("ID321", since="5m", lines=100, grep="GET /", grep_options="-i -v"),
        kind="pipeline",
    ),
    Case(
        "pipeline app follow logs over ssh",
        "app_full",
        f'{_app()}.follow_logs(host: "1.1.1.1", container_id: "ID321", lines: 10, '
        'grep: "Completed")',
        # what `app logs -f` execs: the local ssh argv of flows.ops.base.ssh_session
        lambda c: (
            ssh_session(
                _context(c), "1.1.1.1", app.follow_logs("ID321", lines=10, grep="Completed")
            ).argv
        ),
        kind="pipeline",
    ),
    Case(
        "pipeline proxy logs",
        "app",
        f'{PROXY}.logs(since: "2h", lines: 10, grep: "hello!")',
        lambda c: proxy.logs(since="2h", lines=10, grep="hello!"),
        kind="pipeline",
    ),
    Case(
        "pipeline accessory logs",
        "accessories",
        f'{ACC.format(name="mysql")}.logs(timestamps: false, since: "5m", lines: 100, '
        'grep: "thing", grep_options: "-C 2")',
        lambda c: acc.logs(
            _acc(c, "mysql"),
            timestamps=False,
            since="5m",
            lines=100,
            grep="thing",
            grep_options="-C 2",
        ),
        kind="pipeline",
    ),
    Case(
        "pipeline current running container id",
        "app",
        f"{_app()}.current_running_container_id",
        lambda c: "",
        kind="pipeline",
    ),
]


def shell_words(text: str) -> list[str]:
    """POSIX word splitting and quote removal (``shlex`` gets ``"\\$"`` in double quotes wrong)."""
    words: list[str] = []
    word: list[str] | None = None
    i = 0
    while i < len(text):
        ch = text[i]
        if ch in " \t\n":
            if word is not None:
                words.append("".join(word))
                word = None
            i += 1
            continue
        word = word if word is not None else []
        if ch == "\\":
            word.append(text[i + 1])
            i += 2
        elif ch == "'":
            end = text.index("'", i + 1)
            word.append(text[i + 1 : end])
            i = end + 1
        elif ch == '"':
            i += 1
            while text[i] != '"':
                if text[i] == "\\" and text[i + 1] in '$`"\\\n':
                    word.append(text[i + 1])
                    i += 2
                else:
                    word.append(text[i])
                    i += 1
            i += 1
        else:
            word.append(ch)
            i += 1
    if word is not None:
        words.append("".join(word))
    return words


RUBY = r"""<%
require "json"
Kamal::Utils.define_singleton_method(:docker_arch) { "amd64" }
SecureRandom.define_singleton_method(:hex) { |*_| "a1b2c3" }
Kamal::Git.define_singleton_method(:email) { "ada@example.com" }
Kamal::Git.define_singleton_method(:user_name) { "Ada Lovelace" }
Time.define_singleton_method(:now) { Time.utc(2026, 11, 28, 9, 30, 5) }
configs = JSON.parse(File.read(ENV.fetch("GOLDEN_CONFIGS")))
cases = JSON.parse(File.read(ENV.fetch("GOLDEN_CASES")))
results = {}
cases.each do |c|
  begin
    raw = configs.fetch(c["config"]).transform_keys(&:to_sym)
    config = Kamal::Configuration.new(raw, destination: c["destination"], version: c["version"])
    value = eval(c["ruby"])
    value = value.join(" ") if value.is_a?(Array)
    value = value.to_s unless value.is_a?(Hash)
    results[c["name"]] = value
  rescue Exception => e
    results[c["name"]] = { "error" => "#{e.class}: #{e.message}" }
  end
end
File.write(ENV.fetch("GOLDEN_OUT"), JSON.pretty_generate(results))
%>
service: golden
image: golden
registry:
  server: localhost:5000
servers: [127.0.0.1]
builder:
  arch: amd64
"""


def _case_inputs() -> list[dict[str, Any]]:
    return [
        {
            "name": c.name,
            "config": c.config,
            "ruby": c.ruby,
            "destination": c.destination,
            "version": c.version,
        }
        for c in CASES
    ]


def _login_with_password_flag(command: Argv | None) -> Argv:
    """Our ``docker login ... --password-stdin`` (password on stdin) in Kamal's ``-p`` form."""
    if command is None:
        return argv("none")
    assert command.stdin is not None
    parts = [p for p in command.parts if p != "--password-stdin"]
    return Argv((*parts, "-p", command.stdin))


def fingerprint() -> str:
    """A digest of everything Kamal is given, so a stale recording is noticed."""
    inputs = {
        "configs": CONFIGS,
        "cases": _case_inputs(),
        "files": [c.files for c in CASES],
        "secrets": [c.secrets for c in CASES],
        "ruby": RUBY,
    }
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()


def load_recording(path: Path = GOLDEN_FILE) -> tuple[str, dict[str, Any]]:
    data = json.loads(path.read_text())
    return data["fingerprint"], data["cases"]


def generate(kamal: Path = KAMAL_BIN, out: Path | None = GOLDEN_FILE) -> dict[str, Any]:
    """Run the real Kamal once over every case and write the recording."""
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "config").mkdir()
        (work / "config" / "deploy.yml").write_text(RUBY)
        (work / "Dockerfile").write_text("FROM scratch\n")
        for case in CASES:
            for name, text in case.files.items():
                (work / name).parent.mkdir(parents=True, exist_ok=True)
                (work / name).write_text(text)
        (work / ".kamal").mkdir()
        (work / ".kamal" / "secrets-common").write_text(
            "".join(c.secrets for c in CASES if c.secrets)
        )
        (work / "configs.json").write_text(json.dumps(CONFIGS))
        (work / "cases.json").write_text(json.dumps(_case_inputs()))
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": tmp,
            "GOLDEN_CONFIGS": str(work / "configs.json"),
            "GOLDEN_CASES": str(work / "cases.json"),
            "GOLDEN_OUT": str(work / "out.json"),
        }
        subprocess.run(
            [str(kamal), "config", "--version", "golden"],
            cwd=work,
            env=env,
            check=True,
            capture_output=True,
            timeout=120,
        )
        results: dict[str, Any] = json.loads((work / "out.json").read_text())
    if out is not None:
        document = {"fingerprint": fingerprint(), "kamal": "2.11.0", "cases": results}
        out.write_text(json.dumps(document, indent=2, ensure_ascii=False, sort_keys=True) + "\n")
    return results


if __name__ == "__main__":
    recorded = generate()
    errors = {k: v for k, v in recorded.items() if isinstance(v, dict) and "error" in v}
    print(f"recorded {len(recorded)} cases to {GOLDEN_FILE}; {len(errors)} errors")
    for name, value in errors.items():
        print(f"  {name}: {value['error']}")
