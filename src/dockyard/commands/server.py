"""Server bootstrap: Docker presence, root/sudo/group checks, install, run directory, network.

Kamal's checks are shell snippets (``[ "${EUID:-$(id -u)}" -eq 0 ] || sudo -nl usermod``,
``id -nG ... | grep -qw docker``, ``kill -HUP $PPID``). We run the plain programs and decide in
Python with the paired parsers. Kamal's ``kill -HUP $PPID`` (end the SSH session so the new
group applies) has no argv here: the transport reconnects instead.
"""

from __future__ import annotations

from dockyard.commands.argv import Argv, Pipeline, argv, docker
from dockyard.commands.paths import APPS_DIRECTORY, RUN_DIRECTORY, app_directory

DOCKER_INSTALL_URL = "https://get.docker.com"
NETWORK = "kamal"


def docker_installed() -> Argv:
    return docker("-v")


def docker_running() -> Argv:
    return docker("version")


def user_id() -> Argv:
    return argv("id", "-u")


def is_root(stdout: str) -> bool:
    return stdout.strip() == "0"


def sudo_can_usermod() -> Argv:
    """Succeeds when the user may run ``usermod`` through sudo without a password."""
    return argv("sudo", "-nl", "usermod")


def user_groups() -> Argv:
    return argv("id", "-nG")


def in_docker_group(stdout: str) -> bool:
    return "docker" in stdout.split()


def user_name() -> Argv:
    return argv("id", "-un")


def add_to_docker_group(user: str) -> Argv:
    return argv("sudo", "-n", "usermod", "-aG", "docker", user)


def install_docker() -> tuple[Pipeline, Pipeline]:
    """The get.docker.com script piped to ``sh``: with curl, and the wget fallback to try next."""
    sh = argv("sh")
    return (
        Pipeline((argv("curl", "-fsSL", DOCKER_INSTALL_URL), sh)),
        Pipeline((argv("wget", "-O", "-", DOCKER_INSTALL_URL), sh)),
    )


def ensure_run_directory() -> Argv:
    return argv("mkdir", "-p", RUN_DIRECTORY)


def create_network() -> Argv:
    """``docker network create kamal``; an "already exists" failure is fine (see below)."""
    return docker("network", "create", NETWORK)


def network_already_exists(stderr: str) -> bool:
    return "already exists" in stderr


def remove_app_directory(service: str, destination: str | None) -> Argv:
    return argv("rm", "-r", app_directory(service, destination))


def list_app_directories() -> Argv:
    """Kamal pipes this into ``wc -l``; count with :func:`count_lines`."""
    return argv("ls", APPS_DIRECTORY)


def count_lines(stdout: str) -> int:
    return len([line for line in stdout.splitlines() if line.strip()])
