"""Where Kamal keeps things on a server, relative to the SSH user's login directory.

Kamal 2.11 hard-codes the run directory ``.kamal`` (its ``run_directory`` key is ignored), so
these are plain functions of the service and destination.
"""

from __future__ import annotations

import posixpath

RUN_DIRECTORY = ".kamal"
APPS_DIRECTORY = posixpath.join(RUN_DIRECTORY, "apps")
PROXY_DIRECTORY = posixpath.join(RUN_DIRECTORY, "proxy")
PROXY_APPS_DIRECTORY = posixpath.join(PROXY_DIRECTORY, "apps-config")
PROXY_APPS_CONTAINER_DIRECTORY = "/home/kamal-proxy/.apps-config"


def service_and_destination(service: str, destination: str | None) -> str:
    """``service`` or ``service-destination``."""
    return f"{service}-{destination}" if destination else service


def lock_directory(service: str, destination: str | None) -> str:
    return posixpath.join(RUN_DIRECTORY, f"lock-{service_and_destination(service, destination)}")


def audit_log_file(service: str, destination: str | None) -> str:
    return posixpath.join(
        RUN_DIRECTORY, f"{service_and_destination(service, destination)}-audit.log"
    )


def app_directory(service: str, destination: str | None) -> str:
    return posixpath.join(APPS_DIRECTORY, service_and_destination(service, destination))


def env_directory(service: str, destination: str | None) -> str:
    return posixpath.join(app_directory(service, destination), "env")


def role_env_directory(service: str, destination: str | None) -> str:
    return posixpath.join(env_directory(service, destination), "roles")


def role_env_file(service: str, destination: str | None, role: str) -> str:
    return posixpath.join(role_env_directory(service, destination), f"{role}.env")


def accessory_env_directory(service: str, destination: str | None) -> str:
    return posixpath.join(env_directory(service, destination), "accessories")


def accessory_env_file(service: str, destination: str | None, accessory: str) -> str:
    return posixpath.join(accessory_env_directory(service, destination), f"{accessory}.env")


def assets_directory(service: str, destination: str | None) -> str:
    return posixpath.join(app_directory(service, destination), "assets")


def asset_extracted_directory(
    service: str, destination: str | None, role: str, version: str
) -> str:
    return posixpath.join(assets_directory(service, destination), "extracted", f"{role}-{version}")


def asset_volume_directory(service: str, destination: str | None, role: str, version: str) -> str:
    return posixpath.join(assets_directory(service, destination), "volumes", f"{role}-{version}")


def proxy_app_directory(service: str, destination: str | None) -> str:
    return posixpath.join(PROXY_APPS_DIRECTORY, service_and_destination(service, destination))


def proxy_app_container_directory(service: str, destination: str | None) -> str:
    return posixpath.join(
        PROXY_APPS_CONTAINER_DIRECTORY, service_and_destination(service, destination)
    )


def error_pages_directory(service: str, destination: str | None) -> str:
    return posixpath.join(proxy_app_directory(service, destination), "error_pages")


def error_pages_container_directory(service: str, destination: str | None) -> str:
    return posixpath.join(proxy_app_container_directory(service, destination), "error_pages")


def tls_directory(service: str, destination: str | None) -> str:
    return posixpath.join(proxy_app_directory(service, destination), "tls")


def tls_container_directory(service: str, destination: str | None) -> str:
    return posixpath.join(proxy_app_container_directory(service, destination), "tls")
