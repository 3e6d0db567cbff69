"""Accessory containers (databases, caches, ...): run, start/stop, exec, logs, removal, their
files, directories, volumes and env file, and their kamal-proxy registration.

Pure functions of the validated :class:`~dockyard.config.models.Config` and
:class:`~dockyard.config.models.Accessory`.
"""

from __future__ import annotations

import posixpath
import shlex
from collections.abc import Sequence
from typing import TYPE_CHECKING

from dockyard.commands import app as app_commands
from dockyard.commands import paths
from dockyard.commands import proxy as proxy_commands
from dockyard.commands.argv import (
    Argv,
    HomePath,
    Part,
    Pipeline,
    Secret,
    argv,
    docker,
    key_value_pairs,
)
from dockyard.commands.envfile import secret_contents

if TYPE_CHECKING:
    from dockyard.config.models import Accessory, AccessoryPath, Config


def _service_filter(accessory: Accessory) -> tuple[str, str]:
    return ("--filter", f"label=service={accessory.service_name}")


def env_file_path(config: Config, accessory: Accessory) -> str:
    return paths.accessory_env_file(config.service, config.destination, accessory.name)


def env_args(config: Config, accessory: Accessory) -> tuple[Part, ...]:
    return (
        *key_value_pairs("--env", accessory.env.clear.items()),
        "--env-file",
        env_file_path(config, accessory),
    )


def env_file_contents(config: Config, accessory: Accessory) -> Secret:
    return secret_contents(config.env_secrets(accessory.env))


def ensure_env_directory(config: Config) -> Argv:
    return argv("mkdir", "-p", paths.accessory_env_directory(config.service, config.destination))


def _mount(host_path: str, container_path: str, options: str | None) -> Part:
    spec = f"{host_path}:{container_path}" + (f":{options}" if options else "")
    return spec if posixpath.isabs(host_path) else HomePath(spec)


def volume_args(accessory: Accessory) -> tuple[Part, ...]:
    """``volumes`` verbatim, then each file and each directory mounted from the host."""
    parts: list[Part] = []
    for volume in accessory.volumes:
        parts += ["--volume", volume]
    for entry in (*accessory.files, *accessory.directories):
        parts += ["--volume", _mount(entry.volume_host_path, entry.remote, entry.options)]
    return tuple(parts)


def label_args(accessory: Accessory) -> tuple[Part, ...]:
    return key_value_pairs("--label", accessory.labels.items())


def run(config: Config, accessory: Accessory, host: str | None = None) -> Argv:
    """``docker run --name <svc> --detach --restart unless-stopped --network <net> ...``."""
    return docker(
        "run",
        "--name",
        accessory.service_name,
        "--detach",
        "--restart",
        "unless-stopped",
        "--network",
        accessory.network,
        *app_commands.logging_args(config.logging),
        *(("--publish", accessory.port) if accessory.port else ()),
        *(("--env", f"KAMAL_HOST={host}") if host else ()),
        *env_args(config, accessory),
        *volume_args(accessory),
        *label_args(accessory),
        *app_commands.option_args(accessory.options),
        accessory.image,
        *(shlex.split(accessory.cmd) if accessory.cmd else ()),
    )


def start(accessory: Accessory) -> Argv:
    return docker("container", "start", accessory.service_name)


def stop(accessory: Accessory) -> Argv:
    return docker("container", "stop", accessory.service_name)


def info(accessory: Accessory, *, all: bool = False, quiet: bool = False) -> Argv:
    """``docker ps [-a] [-q] --filter label=service=<svc>`` (``-a -q`` is the boot skip check)."""
    return docker("ps", "-a" if all else None, "-q" if quiet else None, *_service_filter(accessory))


def container_id(accessory: Accessory) -> Argv:
    """The running container's ID, for ``kamal-proxy deploy --target``."""
    return app_commands.container_id_for(accessory.service_name, only_running=True)


def logs(
    accessory: Accessory,
    *,
    timestamps: bool = True,
    since: str | None = None,
    lines: int | None = None,
    grep: str | None = None,
    grep_options: str | None = None,
) -> Pipeline:
    first = docker(
        "logs",
        accessory.service_name,
        *(("--since", since) if since else ()),
        *(("--tail", str(lines)) if lines is not None else ()),
        "--timestamps" if timestamps else None,
    )
    stages = (first, proxy_commands.grep_stage(grep, grep_options)) if grep else (first,)
    return Pipeline(stages, merge_stderr=True)


def follow_logs(
    accessory: Accessory,
    *,
    timestamps: bool = True,
    grep: str | None = None,
    grep_options: str | None = None,
) -> Pipeline:
    first = docker(
        "logs",
        accessory.service_name,
        "--timestamps" if timestamps else None,
        "--tail",
        "10",
        "--follow",
    )
    stages = (first, proxy_commands.grep_stage(grep, grep_options)) if grep else (first,)
    return Pipeline(stages, merge_stderr=True)


def execute_in_existing_container(
    accessory: Accessory, command: Sequence[str], *, interactive: bool = False, tty: bool = True
) -> Argv:
    return docker(
        "exec",
        ("-it" if tty else "-i") if interactive else None,
        accessory.service_name,
        *command,
    )


def execute_in_new_container(
    config: Config,
    accessory: Accessory,
    command: Sequence[str],
    *,
    interactive: bool = False,
    tty: bool = True,
) -> Argv:
    return docker(
        "run",
        ("-it" if tty else "-i") if interactive else None,
        "--rm",
        "--network",
        accessory.network,
        *env_args(config, accessory),
        *volume_args(accessory),
        *app_commands.option_args(accessory.options),
        accessory.image,
        *command,
    )


def pull_image(accessory: Accessory) -> Argv:
    return docker("image", "pull", accessory.image)


def remove_container(accessory: Accessory) -> Argv:
    return docker("container", "prune", "--force", *_service_filter(accessory))


def remove_image(accessory: Accessory) -> Argv:
    return docker("image", "rm", "--force", accessory.image)


def remove_service_directory(accessory: Accessory) -> Argv:
    """``rm -rf <svc>``: the accessory's files and data directories in the home directory."""
    return argv("rm", "-rf", accessory.service_name)


# --- files and directories ------------------------------------------------------------------


def _relative_to_home(path: str) -> str:
    # Kamal writes "$PWD/<svc>/<dir>" and lets the shell expand it; the login directory is the
    # working directory, so the relative path names the same place without a shell.
    return path.removeprefix("$PWD/")


def _mode_and_owner(path: str, entry: AccessoryPath) -> list[Argv]:
    steps = []
    if entry.mode:
        steps.append(argv("chmod", entry.mode, path))
    if entry.owner:
        steps.append(argv("chown", entry.owner, path))
    return steps


def directory_steps(entry: AccessoryPath) -> list[Argv]:
    """``mkdir -p <dir>``, then ``chmod``/``chown`` when given."""
    path = _relative_to_home(entry.host_path)
    return [argv("mkdir", "-p", path), *_mode_and_owner(path, entry)]


def file_directory(entry: AccessoryPath) -> Argv:
    """``mkdir -p`` of the directory the file is uploaded into (before the upload)."""
    return argv("mkdir", "-p", posixpath.dirname(entry.host_path) or ".")


def file_permissions(entry: AccessoryPath) -> list[Argv]:
    """After the upload: ``chmod <mode>`` (default 755) and ``chown`` when given."""
    return _mode_and_owner(entry.host_path, entry)


# --- kamal-proxy ------------------------------------------------------------------------------


def deploy(config: Config, accessory: Accessory, target: str) -> Argv:
    if accessory.proxy is None:
        raise ValueError(f"accessory {accessory.name} does not run behind kamal-proxy")
    settings = app_commands.proxy_deploy_settings(config, accessory.proxy, None)
    return proxy_commands.deploy(accessory.service_name, target, settings)


def remove(accessory: Accessory) -> Argv:
    return proxy_commands.remove(accessory.service_name)
