"""The resolved models: roles merged over globals, accessories, sections and their defaults."""

from __future__ import annotations

from pathlib import Path

import pydantic
import pytest

from dockyard.config import (
    ConfigError,
    Env,
    Logging,
    Secret,
    SecretRef,
    SecretStore,
    load_config,
)
from dockyard.config.summary import logging_args

from .conftest import WriteProject

ENV = {"VERSION": "v1", "PATH": "/usr/bin:/bin"}


def test_role_env_merges_root_role_and_host_tags_in_order(project: WriteProject) -> None:
    root = project(
        """
        servers:
          web:
            - h1: [monitoring, replica]
            - h2
          jobs:
            hosts: [h3]
            env:
              clear: {QUEUE: jobs, MODE: jobs}
              secret: [REDIS_URL, DB_PASSWORD:JOBS_DB_PASSWORD]
        env:
          clear: {MODE: base, MYSQL_USER: app}
          secret: [DB_PASSWORD:MAIN_DB_PASSWORD]
          tags:
            monitoring:
              MYSQL_USER: monitoring
            replica:
              clear: {MYSQL_USER: readonly}
              secret: [READONLY_PASSWORD]
        """
    )
    config = load_config(root=root, env=ENV)
    web, jobs = config.role("web"), config.role("jobs")
    assert web is not None and jobs is not None
    assert web.tags("h1") == ("monitoring", "replica")
    assert web.env("h1") == Env(
        clear={"MODE": "base", "MYSQL_USER": "readonly"},
        secrets={"DB_PASSWORD": "MAIN_DB_PASSWORD", "READONLY_PASSWORD": "READONLY_PASSWORD"},
    )
    assert web.env("h2").clear == {"MODE": "base", "MYSQL_USER": "app"}
    assert jobs.env("h3") == Env(
        clear={"MODE": "jobs", "MYSQL_USER": "app", "QUEUE": "jobs"},
        secrets={"DB_PASSWORD": "JOBS_DB_PASSWORD", "REDIS_URL": "REDIS_URL"},
    )
    with pytest.raises(ConfigError, match="Host h9 is not in role web"):
        web.env("h9")


def test_roles_are_sorted_and_carry_their_own_settings(project: WriteProject) -> None:
    root = project(
        """
        servers:
          workers:
            hosts: [h3]
            cmd: bin/jobs
            options: {memory: 2g, init: true, add-host: [a:1, b:2], cpus: 0.5}
            labels: {team: be}
            logging: {options: {max-size: 5m}}
            asset_path: /public:ro
          web: [h1, h2]
        labels: {app: yes, team: all}
        logging:
          driver: json-file
          options: {max-file: 3}
        asset_path: /rails/public
        drain_timeout: 12
        """
    )
    config = load_config(root=root, env=ENV)
    assert config.role_names == ["web", "workers"]  # sorted, not in the order written
    assert [r.name for r in config.roles] == ["web", "workers"]
    workers = config.roles[1]
    assert workers.cmd == "bin/jobs"
    assert workers.options == {
        "memory": "2g",
        "init": True,
        "add-host": ["a:1", "b:2"],
        "cpus": "0.5",
    }
    assert workers.labels == {"service": "app", "role": "workers", "app": "true", "team": "be"}
    assert workers.logging == Logging(
        driver="json-file", options={"max-file": "3", "max-size": "5m"}
    )
    assert (workers.asset_path, workers.asset_path_options) == ("/public", "ro")
    assert workers.container_prefix == "app-workers"
    assert workers.container_name("v1") == "app-workers-v1"
    assert workers.running_proxy is False and workers.assets is False
    assert workers.stop_timeout == 12
    web = config.roles[0]
    assert web.primary and web.running_proxy and web.stop_timeout is None
    assert (web.asset_path, web.assets) == ("/rails/public", True)


def test_proxy_rules_per_role(project: WriteProject) -> None:
    root = project(
        """
        servers:
          web: [h1]
          api:
            hosts: [h2]
            proxy:
              host: api.example.com
              healthcheck: {path: /up}
          admin:
            hosts: [h3]
            proxy: true
          jobs:
            hosts: [h4]
        proxy:
          host: www.example.com
          app_port: 3000
          healthcheck: {interval: 2}
        """
    )
    config = load_config(root=root, env=ENV)
    web, api, admin, jobs = (config.role(n) for n in ("web", "api", "admin", "jobs"))
    assert web and api and admin and jobs
    assert web.proxy and web.proxy.hosts == ("www.example.com",) and web.proxy.app_port == 3000
    assert api.proxy and api.proxy.hosts == ("api.example.com",)
    assert api.proxy.app_port == 3000  # deep-merged over the root proxy
    assert (api.proxy.healthcheck.interval, api.proxy.healthcheck.path) == (2, "/up")
    assert api.proxy.role_name == "api"
    assert admin.proxy and admin.proxy.hosts == ("www.example.com",)
    assert jobs.proxy is None
    assert [r.name for r in config.proxy_roles] == ["admin", "api", "web"]  # sorted, as Kamal
    assert config.proxy_hosts == ["h3", "h2", "h1"]


def test_primary_role_proxy_can_be_disabled(project: WriteProject) -> None:
    root = project("servers:\n  web:\n    hosts: [h1]\n    proxy: false\n")
    config = load_config(root=root, env=ENV)
    assert config.roles[0].running_proxy is False
    assert config.proxy_hosts == []


def test_proxy_values_and_defaults(project: WriteProject) -> None:
    root = project(
        """
        servers: [h1]
        proxy:
          host: a.example.com,b.example.com
          ssl: {certificate_pem: CERT, private_key_pem: KEY}
          path_prefix: /api,/admin
          buffering: {responses: false, memory: 2_000_000}
          logging: {response_headers: [X-Id]}
          run: {http_port: 8080, bind_ips: [0.0.0.0], options: {memory: 512m}}
        """
    )
    proxy = load_config(root=root, env=ENV).proxy
    assert proxy.hosts == ("a.example.com", "b.example.com")
    assert proxy.ssl and proxy.custom_ssl_certificate
    assert proxy.ssl_certificate and proxy.ssl_certificate.private_key_pem == "KEY"
    assert proxy.path_prefixes == ("/api", "/admin")
    assert (proxy.buffering.requests, proxy.buffering.responses) == (True, False)
    assert proxy.buffering.memory == 2_000_000
    assert proxy.logging.request_headers == ("Cache-Control", "Last-Modified", "User-Agent")
    assert proxy.logging.response_headers == ("X-Id",)
    assert proxy.run is not None
    assert (proxy.run.http_port, proxy.run.https_port, proxy.run.publish) == (8080, 443, True)
    assert proxy.run.image == "basecamp/kamal-proxy:v0.9.2"
    assert proxy.run.options == {"memory": "512m"}


def test_accessories(project: WriteProject) -> None:
    root = project(
        """
        servers:
          web:
            - h1: [db]
            - h2
          jobs:
            - h3: [db, cache]
        accessories:
          mysql:
            image: mysql:8
            host: h9
            port: 3306
            files:
              - config/my.cnf:/etc/mysql/my.cnf
              - local: config/init.sql.erb
                remote: /init.sql
                mode: "0600"
            directories:
              - data:/var/lib/mysql:z
              - {local: /srv/logs, remote: /logs, owner: "999"}
            env:
              clear: {A: 1}
              secret: [MYSQL_PASSWORD]
            options: {memory: 1g}
            labels: {tier: db}
          redis:
            image: redis
            roles: [web, jobs]
            port: "127.0.0.1:6379:6379"
            service: cache
            network: private
            registry: {server: ghcr.io, username: u, password: [GH]}
          tagged:
            image: busybox
            tag: db
          by_role:
            image: busybox
            role: jobs
        """
    )
    config = load_config(root=root, env=ENV)
    mysql, redis, tagged, by_role = config.accessories
    assert mysql.service_name == "app-mysql" and mysql.port == "3306:3306"
    assert mysql.labels == {"service": "app-mysql", "tier": "db"}
    assert mysql.network == "kamal" and mysql.running_proxy is False
    cnf, init = mysql.files
    assert cnf.local == str(root / "config" / "my.cnf") and not cnf.is_template
    assert (cnf.host_path, cnf.remote, cnf.mode) == (
        "app-mysql/etc/mysql/my.cnf",
        "/etc/mysql/my.cnf",
        "755",
    )
    assert init.is_template and init.mode == "0600"
    data, logs = mysql.directories
    assert (data.host_path, data.volume_host_path, data.options) == (
        "$PWD/app-mysql/data",
        "app-mysql/data",
        "z",
    )
    assert (logs.host_path, logs.volume_host_path, logs.owner) == ("/srv/logs", "/srv/logs", "999")
    assert mysql.env == Env(clear={"A": "1"}, secrets={"MYSQL_PASSWORD": "MYSQL_PASSWORD"})
    assert redis.hosts == ("h1", "h2", "h3") and redis.service_name == "cache"
    assert redis.image == "ghcr.io/redis" and redis.port == "127.0.0.1:6379:6379"
    assert redis.registry and redis.registry.password == SecretRef(name="GH")
    assert tagged.hosts == ("h1", "h3")
    assert by_role.hosts == ("h3",)
    assert config.all_hosts == ["h3", "h1", "h2", "h9"]
    assert config.host_accessories("h3") == [redis, tagged, by_role]


def test_accessories_only(project: WriteProject) -> None:
    # Kamal 2.11 loads this but its `kamal config` crashes on it (`keys` for nil); we print it.
    root = project("accessories:\n  db:\n    image: postgres\n    host: h9\n")
    config = load_config(root=root, env=ENV)
    assert config.roles == () and config.primary_host is None
    assert config.all_hosts == ["h9"]


def test_section_defaults(project: WriteProject) -> None:
    config = load_config(root=project("servers: [h1]\n"), env=ENV)
    assert (config.ssh.user, config.ssh.port, config.ssh.log_level) == ("root", 22, "fatal")
    assert config.ssh.proxy is None and config.ssh.keepalive_interval == 30
    assert (config.sshkit.max_concurrent_starts, config.sshkit.pool_idle_timeout) == (30, 900)
    assert config.sshkit.dns_retries == 3
    assert config.builder.arch == ("amd64",) and config.builder.dockerfile == "Dockerfile"
    assert config.builder.driver == "docker-container" and config.builder.context is None
    assert config.builder.cache_image == "acme/app-build-cache"
    assert config.logging == Logging()
    assert logging_args(config) == ["--log-opt", 'max-size="10m"']  # Kamal's default
    assert (config.retain_containers, config.readiness_delay) == (5, 7)
    assert (config.deploy_timeout, config.drain_timeout) == (30, 30)
    assert (config.hooks_path, config.secrets_path, config.run_directory) == (
        ".kamal/hooks",
        ".kamal/secrets",
        ".kamal",
    )
    assert config.boot.resolved_limit is None and config.boot.parallel_roles is False
    assert config.primary_role_name == "web" and config.hooks_output_for("pre-deploy") is None


def test_sections_as_written(project: WriteProject) -> None:
    root = project(
        """
        servers: [h1, h2, h3, h4, h5]
        ssh: {user: app, port: "2222", proxy: bastion, keys: [~/.ssh/a], config: false}
        sshkit: {max_concurrent_starts: 5}
        boot: {limit: 25%, wait: 2}
        retain_containers: 0
        hooks_output: verbose
        run_directory: /etc/kamal
        """
    )
    with pytest.raises(ConfigError, match="Must retain at least 1 container"):
        load_config(root=root, env=ENV)
    text = (root / "config" / "deploy.yml").read_text().replace("retain_containers: 0", "")
    (root / "config" / "deploy.yml").write_text(text)
    config = load_config(root=root, env=ENV)
    assert (config.ssh.user, config.ssh.port, config.ssh.proxy) == ("app", 2222, "root@bastion")
    assert config.ssh.keys == ("~/.ssh/a",) and config.ssh.config is False
    assert config.sshkit.max_concurrent_starts == 5
    assert config.boot.resolved_limit == 1  # 25% of 5 hosts, at least 1
    assert config.hooks_output_for("pre-build") == "verbose"
    assert config.run_directory == ".kamal"  # accepted but ignored, as in Kamal 2.11


def test_models_are_frozen(project: WriteProject) -> None:
    config = load_config(root=project("servers: [h1]\n"), env=ENV)
    with pytest.raises(pydantic.ValidationError):
        config.service = "other"  # type: ignore[misc]
    with pytest.raises(pydantic.ValidationError):
        config.roles[0].cmd = "x"  # type: ignore[misc]


# --------------------------------------------------------------------------- secrets


def test_secret_is_masked() -> None:
    secret = Secret("DB_PASSWORD", "hunter2")
    assert str(secret) == "[REDACTED]"
    assert "hunter2" not in repr(secret) and "hunter2" not in f"{secret}"
    assert secret.reveal() == "hunter2"


def test_secrets_are_read_lazily_and_once(project: WriteProject) -> None:
    calls: list[tuple[Path, str | None, str]] = []

    def loader(root: Path, destination: str | None, path: str) -> dict[str, str]:
        calls.append((root, destination, path))
        return {"KAMAL_REGISTRY_PASSWORD": "pw", "MYSQL_PASSWORD": "secret"}

    root = project("servers: [h1]\nsecrets_path: .s/secrets\nenv:\n  secret: [DB:MYSQL_PASSWORD]\n")
    config = load_config(destination=None, root=root, env=ENV)
    store = SecretStore(root, None, config.secrets_path, loader=loader)
    config.use_secrets(store)
    assert calls == []  # loading the config reads no secrets
    password = config.resolve(config.registry.password)
    assert isinstance(password, Secret) and password.reveal() == "pw"
    assert config.resolve(config.registry.username) == "acme"
    env_secrets = config.env_secrets(config.roles[0].env("h1"))
    assert {k: v.reveal() for k, v in env_secrets.items()} == {"DB": "secret"}
    assert calls == [(root, None, ".s/secrets")]


def test_missing_secret_names_the_files(tmp_path: Path) -> None:
    (tmp_path / ".kamal").mkdir()
    (tmp_path / ".kamal" / "secrets-common").write_text("")
    store = SecretStore(tmp_path, "staging", loader=lambda *_: {})
    with pytest.raises(ConfigError, match=r"Secret 'X' not found in \.kamal/secrets-common$"):
        store.get("X")
    empty = SecretStore(tmp_path / "nothing", None, loader=lambda *_: {})
    with pytest.raises(
        ConfigError,
        match=r"no secret files \(\.kamal/secrets-common, \.kamal/secrets\) provided",
    ):
        empty.get("X")


def test_default_store_reads_the_secret_files(project: WriteProject) -> None:
    root = project(
        "servers: [h1]\n",
        files={".kamal/secrets-common": "A=common\nB=common\n", ".kamal/secrets.staging": "B=st\n"},
    )
    (root / "config" / "deploy.staging.yml").write_text("servers: [h2]\n")
    config = load_config(destination="staging", root=root, env=ENV)
    assert (config.secret("A").reveal(), config.secret("B").reveal()) == ("common", "st")
