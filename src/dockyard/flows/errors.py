"""Errors a flow raises, each naming the layer that failed so the user knows where to look."""

from __future__ import annotations

from dockyard.errors import DockyardError


class DockerError(DockyardError):
    """A docker command failed on a server (daemon down, permission, disk full, port taken)."""

    layer = "docker"


class RegistryError(DockyardError):
    """Login to, push to or pull from the registry failed."""

    layer = "registry"


class BuildError(DockyardError):
    """The local image build failed."""

    layer = "build"


class HealthCheckError(DockyardError):
    """A new container did not become healthy; the old one keeps serving."""

    layer = "health check"


class HookError(DockyardError):
    """A local hook exited with a non-zero status."""

    layer = "hook"


class FlowProxyError(DockyardError):
    """kamal-proxy could not be booted or refused a deploy."""

    layer = "proxy"


#: Error class for a layer name given to ``DeployContext.run``.
LAYERS: dict[str, type[DockyardError]] = {
    "docker": DockerError,
    "registry": RegistryError,
    "build": BuildError,
    "health check": HealthCheckError,
    "hook": HookError,
    "proxy": FlowProxyError,
}


def error_for(layer: str) -> type[DockyardError]:
    return LAYERS.get(layer, DockerError)
