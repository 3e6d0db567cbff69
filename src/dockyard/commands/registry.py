"""Registry login/logout, and the local registry container a ``localhost:PORT`` server means."""

from __future__ import annotations

import re

from dockyard.commands.argv import Argv, Secret, docker

LOCAL_REGISTRY_CONTAINER = "kamal-docker-registry"
LOCAL_REGISTRY_IMAGE = "registry:3"

# Kamal's test is /^localhost[:$]/: a character class, so "localhost" alone is not local.
_LOCAL = re.compile(r"^localhost[:$]")


def is_local(server: str | None) -> bool:
    return server is not None and _LOCAL.match(server) is not None


def local_port(server: str) -> int:
    """The port of a local registry server (``localhost:5000`` -> 5000; Ruby ``to_i`` rules)."""
    tail = server.rsplit(":", 1)[-1]
    digits = re.match(r"\d*", tail)
    return int(digits.group()) if digits and digits.group() else 0


def _secret(value: str | Secret) -> Secret:
    return value if isinstance(value, Secret) else Secret(value)


def login(server: str | None, username: str | Secret, password: str | Secret) -> Argv | None:
    """``docker login [<server>] -u <user> -p <password>``; ``None`` for a local registry.

    Both credentials are secret parts (Kamal redacts both in its logs).
    """
    if is_local(server):
        return None
    return docker("login", server, "-u", _secret(username), "-p", _secret(password))


def logout(server: str | None) -> Argv:
    return docker("logout", server)


def start_local() -> Argv:
    """First half of Kamal's ``docker start kamal-docker-registry || docker run ...``."""
    return docker("start", LOCAL_REGISTRY_CONTAINER)


def run_local(port: int) -> Argv:
    """Second half: run ``registry:3`` published on loopback only."""
    return docker(
        "run",
        "--detach",
        "-p",
        f"127.0.0.1:{port}:5000",
        "--name",
        LOCAL_REGISTRY_CONTAINER,
        LOCAL_REGISTRY_IMAGE,
    )


def remove_local() -> tuple[Argv, Argv]:
    return docker("stop", LOCAL_REGISTRY_CONTAINER), docker("rm", LOCAL_REGISTRY_CONTAINER)
