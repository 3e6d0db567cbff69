"""Golden tests: accessory commands, for the config of Kamal's ``accessory_test.rb``."""

from __future__ import annotations

from typing import Any

import pytest

from dockyard.commands import accessory as acc
from dockyard.commands.argv import Argv, HomePath
from dockyard.config import Accessory, Config

from .conftest import LoadConfig

#: Dockyard's log-rotation default after the size cap (deliberately not in Kamal's argv).
ROTATE = ("--log-opt", "max-file=5")


def base() -> dict[str, Any]:
    return {
        "service": "app",
        "image": "dhh/app",
        "registry": {"server": "private.registry", "username": "dhh", "password": "secret"},
        "servers": ["1.1.1.1"],
        "builder": {"arch": "amd64"},
        "accessories": {
            "mysql": {
                "image": "private.registry/mysql:8.0",
                "host": "1.1.1.5",
                "port": "3306",
                "env": {"clear": {"MYSQL_ROOT_HOST": "%"}, "secret": ["MYSQL_ROOT_PASSWORD"]},
                "options": {"cpus": "4", "memory": "2GB"},
            },
            "redis": {
                "image": "redis:latest",
                "host": "1.1.1.6",
                "port": "6379:6379",
                "labels": {"cache": "true"},
                "env": {"SOMETHING": "else"},
                "volumes": ["/var/lib/redis:/data"],
            },
            "busybox": {
                "service": "custom-busybox",
                "image": "busybox:latest",
                "registry": {"server": "other.registry", "username": "user", "password": "pw"},
                "host": "1.1.1.7",
                "proxy": {"host": "busybox.example.com"},
            },
        },
    }


SECRETS = "MYSQL_ROOT_PASSWORD=secret123\n"


def accessory(config: Config, name: str) -> Accessory:
    found = config.accessory(name)
    assert found is not None
    return found


def test_run(load: LoadConfig) -> None:
    config = load(base(), secrets=SECRETS)
    assert acc.run(config, accessory(config, "mysql")) == (
        "docker", "run", "--name", "app-mysql", "--detach", "--restart", "unless-stopped",
        "--network", "kamal", "--log-opt", "max-size=10m", *ROTATE, "--publish", "3306:3306",
        "--env", "MYSQL_ROOT_HOST=%", "--env-file", ".kamal/apps/app/env/accessories/mysql.env",
        "--label", "service=app-mysql", "--cpus", "4", "--memory", "2GB",
        "private.registry/mysql:8.0",
    )  # fmt: skip
    assert acc.run(config, accessory(config, "redis")) == (
        "docker", "run", "--name", "app-redis", "--detach", "--restart", "unless-stopped",
        "--network", "kamal", "--log-opt", "max-size=10m", *ROTATE, "--publish", "6379:6379",
        "--env", "SOMETHING=else", "--env-file", ".kamal/apps/app/env/accessories/redis.env",
        "--volume", "/var/lib/redis:/data", "--label", "service=app-redis",
        "--label", "cache=true", "redis:latest",
    )  # fmt: skip
    assert acc.run(config, accessory(config, "busybox")) == (
        "docker", "run", "--name", "custom-busybox", "--detach", "--restart", "unless-stopped",
        "--network", "kamal", "--log-opt", "max-size=10m", *ROTATE,
        "--env-file", ".kamal/apps/app/env/accessories/busybox.env",
        "--label", "service=custom-busybox", "other.registry/busybox:latest",
    )  # fmt: skip


def test_run_with_host_logging_network_and_cmd(load: LoadConfig) -> None:
    raw = base()
    raw["logging"] = {"driver": "local", "options": {"max-size": "100m", "max-file": "3"}}
    raw["accessories"]["busybox"]["network"] = "custom"
    raw["accessories"]["busybox"]["cmd"] = "sh -c 'sleep infinity'"
    config = load(raw)
    assert acc.run(config, accessory(config, "busybox"), host="1.1.1.7") == (
        "docker", "run", "--name", "custom-busybox", "--detach", "--restart", "unless-stopped",
        "--network", "custom", "--log-driver", "local", "--log-opt", "max-size=100m",
        "--log-opt", "max-file=3", "--env", "KAMAL_HOST=1.1.1.7",
        "--env-file", ".kamal/apps/app/env/accessories/busybox.env",
        "--label", "service=custom-busybox", "other.registry/busybox:latest",
        "sh", "-c", "sleep infinity",
    )  # fmt: skip


def test_files_and_directories_mount_from_the_home_directory(load: LoadConfig) -> None:
    raw = base()
    raw["accessories"]["mysql"]["files"] = ["config/my.cnf:/etc/mysql/my.cnf"]
    raw["accessories"]["mysql"]["directories"] = [
        "data:/var/lib/mysql",
        "/srv/backups:/backups:ro",
        {"local": "logs", "remote": "/var/log/mysql", "mode": "0700", "owner": "999:999"},
    ]
    config = load(raw)
    mysql = accessory(config, "mysql")
    args = acc.volume_args(mysql)
    assert Argv(args).plain() == (
        "--volume", "$PWD/app-mysql/etc/mysql/my.cnf:/etc/mysql/my.cnf",
        "--volume", "$PWD/app-mysql/data:/var/lib/mysql",
        "--volume", "/srv/backups:/backups:ro",
        "--volume", "$PWD/app-mysql/logs:/var/log/mysql",
    )  # fmt: skip
    assert args[1] == HomePath("app-mysql/etc/mysql/my.cnf:/etc/mysql/my.cnf")
    assert args[5] == "/srv/backups:/backups:ro"

    file_entry = mysql.files[0]
    assert acc.file_directory(file_entry) == ("mkdir", "-p", "app-mysql/etc/mysql")
    assert acc.file_permissions(file_entry) == [("chmod", "755", "app-mysql/etc/mysql/my.cnf")]

    data, backups, logs = mysql.directories
    assert acc.directory_steps(data) == [("mkdir", "-p", "app-mysql/data")]
    assert acc.directory_steps(backups) == [("mkdir", "-p", "/srv/backups")]
    assert acc.directory_steps(logs) == [
        ("mkdir", "-p", "app-mysql/logs"),
        ("chmod", "0700", "app-mysql/logs"),
        ("chown", "999:999", "app-mysql/logs"),
    ]


def test_env_file(load: LoadConfig) -> None:
    config = load(base(), secrets=SECRETS)
    mysql = accessory(config, "mysql")
    assert acc.env_file_contents(config, mysql).reveal() == "MYSQL_ROOT_PASSWORD=secret123\n"
    assert acc.ensure_env_directory(config) == (
        "mkdir", "-p", ".kamal/apps/app/env/accessories",
    )  # fmt: skip
    staging = load(base(), "staging")
    assert acc.env_file_path(staging, accessory(staging, "mysql")) == (
        ".kamal/apps/app-staging/env/accessories/mysql.env"
    )


def test_start_stop_info(load: LoadConfig) -> None:
    mysql = accessory(load(base()), "mysql")
    assert acc.start(mysql) == ("docker", "container", "start", "app-mysql")
    assert acc.stop(mysql) == ("docker", "container", "stop", "app-mysql")
    assert acc.info(mysql) == ("docker", "ps", "--filter", "label=service=app-mysql")
    assert acc.info(mysql, all=True, quiet=True) == (
        "docker", "ps", "-a", "-q", "--filter", "label=service=app-mysql",
    )  # fmt: skip


def test_execute_in_new_container(load: LoadConfig) -> None:
    config = load(base())
    mysql = accessory(config, "mysql")
    assert acc.execute_in_new_container(config, mysql, ["mysql", "-u", "root"]) == (
        "docker", "run", "--rm", "--network", "kamal", "--env", "MYSQL_ROOT_HOST=%",
        "--env-file", ".kamal/apps/app/env/accessories/mysql.env", "--cpus", "4",
        "--memory", "2GB", "private.registry/mysql:8.0", "mysql", "-u", "root",
    )  # fmt: skip
    interactive = acc.execute_in_new_container(
        config, accessory(config, "mysql"), ["mysql"], interactive=True
    )
    assert interactive[:4] == ("docker", "run", "-it", "--rm")


def test_execute_in_existing_container(load: LoadConfig) -> None:
    mysql = accessory(load(base()), "mysql")
    assert acc.execute_in_existing_container(mysql, ["mysql", "-u", "root"]) == (
        "docker", "exec", "app-mysql", "mysql", "-u", "root",
    )  # fmt: skip
    assert acc.execute_in_existing_container(mysql, ["mysql"], interactive=True) == (
        "docker", "exec", "-it", "app-mysql", "mysql",
    )  # fmt: skip
    assert acc.execute_in_existing_container(mysql, ["mysql"], interactive=True, tty=False) == (
        "docker", "exec", "-i", "app-mysql", "mysql",
    )  # fmt: skip


def test_logs(load: LoadConfig) -> None:
    mysql = accessory(load(base()), "mysql")
    assert acc.logs(mysql).shell() == "docker logs app-mysql --timestamps 2>&1"
    assert acc.logs(mysql, since="5m", lines=100, grep="thing", grep_options="-C 2").shell() == (
        "docker logs app-mysql --since 5m --tail 100 --timestamps 2>&1 | grep thing -C 2"
    )
    assert acc.logs(mysql, timestamps=False, since="5m", lines=100).stages == (
        ("docker", "logs", "app-mysql", "--since", "5m", "--tail", "100"),
    )


def test_follow_logs(load: LoadConfig) -> None:
    mysql = accessory(load(base()), "mysql")
    assert acc.follow_logs(mysql).shell() == (
        "docker logs app-mysql --timestamps --tail 10 --follow 2>&1"
    )
    assert acc.follow_logs(mysql, timestamps=False).shell() == (
        "docker logs app-mysql --tail 10 --follow 2>&1"
    )


def test_removal_and_pull(load: LoadConfig) -> None:
    mysql = accessory(load(base()), "mysql")
    assert acc.remove_container(mysql) == (
        "docker", "container", "prune", "--force", "--filter", "label=service=app-mysql",
    )  # fmt: skip
    assert acc.pull_image(mysql) == ("docker", "image", "pull", "private.registry/mysql:8.0")
    assert acc.remove_image(mysql) == (
        "docker", "image", "rm", "--force", "private.registry/mysql:8.0",
    )  # fmt: skip
    assert acc.remove_service_directory(mysql) == ("rm", "-rf", "app-mysql")


def test_proxy_deploy_and_remove(load: LoadConfig) -> None:
    config = load(base())
    busybox = accessory(config, "busybox")
    assert acc.container_id(busybox) == (
        "docker", "container", "ls", "--filter", "name=^custom-busybox$", "--quiet",
    )  # fmt: skip
    assert acc.deploy(config, busybox, "172.1.0.2") == (
        "docker", "exec", "kamal-proxy", "kamal-proxy", "deploy", "custom-busybox",
        "--target=172.1.0.2:80", "--host=busybox.example.com", "--deploy-timeout=30s",
        "--drain-timeout=30s", "--buffer-requests", "--buffer-responses",
        "--log-request-header=Cache-Control", "--log-request-header=Last-Modified",
        "--log-request-header=User-Agent",
    )  # fmt: skip
    assert acc.remove(busybox) == (
        "docker", "exec", "kamal-proxy", "kamal-proxy", "remove", "custom-busybox",
    )  # fmt: skip
    with pytest.raises(ValueError, match="mysql"):
        acc.deploy(config, accessory(config, "mysql"), "c1")
