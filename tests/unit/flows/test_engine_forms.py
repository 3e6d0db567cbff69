"""The docker calls a deploy makes most are the forms remote.engine answers from the Engine API
(so a changed builder that would silently fall back to the CLI is caught here)."""

from __future__ import annotations

from dockyard.commands import app as app_commands
from dockyard.commands import prune as prune_commands
from dockyard.commands.argv import docker
from dockyard.flows import build
from dockyard.flows.boot import PROXY_STATE_FORMAT
from dockyard.remote.engine import engine_call
from tests.unit.flows.conftest import MakeConfig


def test_the_deploy_queries_are_answered_by_the_api(make_config: MakeConfig) -> None:
    config = make_config()
    role = config.roles[0]
    answered = [
        app_commands.list_app_containers(config),  # the survey
        docker("inspect", "--format", PROXY_STATE_FORMAT, "kamal-proxy"),
        build.pull_check(config),
        app_commands.image_service_label(config),  # after a pull
        app_commands.tag_latest_image(config),
        docker("stop", "-t", "30", f"{app_commands.container_prefix(config, role)}-v0"),
        prune_commands.list_service_containers(config.service),
        prune_commands.list_images(config.service),
    ]
    for command in answered:
        assert engine_call(command) is not None, command.display()
    # what only the CLI does stays with it
    host = role.hosts[0]
    assert engine_call(app_commands.run(config, role, host, hostname=f"{host}-1")) is None
    assert engine_call(app_commands.deploy(config, role, "0123456789ab")) is None
