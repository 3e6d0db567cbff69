"""Registry login/logout, and the local registry container a ``localhost:PORT`` server means."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from dockyard.commands.argv import Argv, Revealable, as_secret, docker

if TYPE_CHECKING:
    from dockyard.config.models import Config
    from dockyard.config.models import Registry as RegistryConfig

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


def login(
    server: str | None, username: str | Revealable, password: str | Revealable
) -> Argv | None:
    """``docker login [<server>] -u <user> --password-stdin``, the password on stdin; ``None``
    for a local registry.

    Deliberately unlike Kamal (``-p <password>``): a password in argv is visible in the
    server's process list for as long as the login runs. The username stays a (masked) part.
    """
    if is_local(server):
        return None
    parts = docker("login", server, "-u", as_secret(username), "--password-stdin").parts
    return Argv(parts, stdin=as_secret(password))


def login_for(config: Config, registry: RegistryConfig | None = None) -> Argv | None:
    """:func:`login` for the root registry, or an accessory's, with secret names resolved."""
    registry = registry or config.registry
    if is_local(registry.server):
        return None
    username = config.resolve(registry.username) or ""
    password = config.resolve(registry.password) or ""
    return login(registry.server, username, password)


def logout_for(config: Config, registry: RegistryConfig | None = None) -> Argv:
    return logout((registry or config.registry).server)


def logout(server: str | None) -> Argv:
    return docker("logout", server)


def start_local() -> Argv:
    """First half of Kamal's ``docker start kamal-docker-registry || docker run ...``."""
    return docker("start", LOCAL_REGISTRY_CONTAINER)


def run_local(port: int, image: str = LOCAL_REGISTRY_IMAGE) -> Argv:
    """Second half: run the registry image (Kamal 2.11: ``registry:3``) published on loopback
    only. ``image`` is Dockyard's addition, for machines that cannot pull from Docker Hub."""
    return docker(
        "run",
        "--detach",
        "-p",
        f"127.0.0.1:{port}:5000",
        "--name",
        LOCAL_REGISTRY_CONTAINER,
        image,
    )


def remove_local() -> tuple[Argv, Argv]:
    return docker("stop", LOCAL_REGISTRY_CONTAINER), docker("rm", LOCAL_REGISTRY_CONTAINER)
