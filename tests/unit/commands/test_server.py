"""Golden tests: server bootstrap (Kamal ``test/commands/docker_test.rb``, ``server_test.rb``)."""

from __future__ import annotations

from dockyard.commands import server


def test_docker_checks() -> None:
    assert server.docker_installed() == ("docker", "-v")
    assert server.docker_running() == ("docker", "version")


def test_install_is_curl_or_wget_piped_to_sh_as_two_pipelines_instead_of_sh_c_or_chain() -> None:
    curl, wget = server.install_docker()
    assert curl.stages == (("curl", "-fsSL", "https://get.docker.com"), ("sh",))
    assert wget.stages == (("wget", "-O", "-", "https://get.docker.com"), ("sh",))
    assert curl.shell() == "curl -fsSL https://get.docker.com | sh"


def test_root_check_is_id_u_parsed_instead_of_euid_test() -> None:
    assert server.user_id() == ("id", "-u")
    assert server.is_root("0\n")
    assert not server.is_root("1000\n")
    assert server.sudo_can_usermod() == ("sudo", "-nl", "usermod")


def test_docker_group_check_is_id_nG_parsed_instead_of_grep_qw() -> None:
    assert server.user_groups() == ("id", "-nG")
    assert server.in_docker_group("deploy sudo docker\n")
    assert not server.in_docker_group("deploy dockerish\n")
    assert server.user_name() == ("id", "-un")
    assert server.add_to_docker_group("deploy") == (
        "sudo", "-n", "usermod", "-aG", "docker", "deploy",
    )  # fmt: skip


def test_run_directory_network_and_app_directories() -> None:
    assert server.ensure_run_directory() == ("mkdir", "-p", ".kamal")
    assert server.create_network() == ("docker", "network", "create", "kamal")
    assert server.network_already_exists(
        "Error response from daemon: network with name kamal already exists"
    )
    assert server.remove_app_directory("app", None) == ("rm", "-r", ".kamal/apps/app")
    assert server.remove_app_directory("app", "staging") == ("rm", "-r", ".kamal/apps/app-staging")
    assert server.list_app_directories() == ("ls", ".kamal/apps")
    assert server.count_lines("app\nother\n") == 2
    assert server.count_lines("") == 0
