"""Golden tests: interactive ssh (Kamal ``run_over_ssh`` cases in ``test/commands/app_test.rb``)."""

from __future__ import annotations

from typing import Any

import pytest

from dockyard.commands import app, ssh
from dockyard.commands.argv import argv

from .conftest import LoadConfig


def config_with(load: LoadConfig, ssh_raw: dict[str, Any] | None) -> Any:
    raw: dict[str, Any] = {
        "service": "app",
        "image": "dhh/app",
        "registry": {"username": "dhh", "password": "secret"},
        "servers": ["1.1.1.1"],
        "builder": {"arch": "amd64"},
    }
    if ssh_raw is not None:
        raw["ssh"] = ssh_raw
    return load(raw)


@pytest.mark.parametrize(
    ("ssh_raw", "expected"),
    [
        (None, ("ssh", "-t", "root@1.1.1.1", "-p", "22", "ls")),
        ({"user": "app"}, ("ssh", "-t", "app@1.1.1.1", "-p", "22", "ls")),
        ({"port": "2222"}, ("ssh", "-t", "root@1.1.1.1", "-p", "2222", "ls")),
        ({"proxy": "2.2.2.2"},
         ("ssh", "-J", "root@2.2.2.2", "-t", "root@1.1.1.1", "-p", "22", "ls")),
        ({"proxy": "app@2.2.2.2"},
         ("ssh", "-J", "app@2.2.2.2", "-t", "root@1.1.1.1", "-p", "22", "ls")),
        (
            {"user": "app", "proxy": "2.2.2.2"},
            ("ssh", "-J", "root@2.2.2.2", "-t", "app@1.1.1.1", "-p", "22", "ls"),
        ),
        (
            {"keys": ["path_to_key.pem"]},
            ("ssh", "-i", "path_to_key.pem", "-t", "root@1.1.1.1", "-p", "22", "ls"),
        ),
        (
            {"keys": ["path_to_key.pem"], "keys_only": True},
            ("ssh", "-i", "path_to_key.pem", "-o", "IdentitiesOnly=yes", "-t", "root@1.1.1.1",
             "-p", "22", "ls"),
        ),
        (
            {"proxy_command": "ssh -W %h:%p user@proxy-server"},
            ("ssh", "-o", "ProxyCommand=ssh -W %h:%p user@proxy-server", "-t", "root@1.1.1.1",
             "-p", "22", "ls"),
        ),
        (
            {"config": "~/.ssh/custom_config"},
            ("ssh", "-F", "~/.ssh/custom_config", "-t", "root@1.1.1.1", "-p", "22", "ls"),
        ),
        (
            {"config": ["~/.ssh/config1", "~/.ssh/config2"]},
            ("ssh", "-F", "~/.ssh/config1", "-F", "~/.ssh/config2", "-t", "root@1.1.1.1",
             "-p", "22", "ls"),
        ),
        ({"config": False}, ("ssh", "-F", "/dev/null", "-t", "root@1.1.1.1", "-p", "22", "ls")),
        ({"config": True}, ("ssh", "-t", "root@1.1.1.1", "-p", "22", "ls")),
    ],
)  # fmt: skip
def test_run_over_ssh(
    load: LoadConfig, ssh_raw: dict[str, Any] | None, expected: tuple[str, ...]
) -> None:
    config = config_with(load, ssh_raw)
    assert ssh.run_over_ssh(config.ssh, "1.1.1.1", argv("ls")) == expected


def test_run_over_ssh_quotes_the_remote_command_once(load: LoadConfig) -> None:
    config = config_with(load, None)
    web = config.role("web")
    command = app.execute_in_existing_container(
        config, web, ["bin/rails", "runner", "puts 'hi'"], interactive=True
    )
    assert ssh.run_over_ssh(config.ssh, "1.1.1.1", command)[-1] == (
        "docker exec -it app-web-999 bin/rails runner 'puts '\"'\"'hi'\"'\"''"
    )
    follow = app.follow_logs("c1", grep="Completed")
    assert ssh.run_over_ssh(config.ssh, "1.1.1.1", follow)[-1] == (
        "docker logs --timestamps --follow c1 2>&1 | grep Completed"
    )
