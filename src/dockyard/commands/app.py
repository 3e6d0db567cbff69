"""The app's containers: run, start, stop, exec, logs, listing, versions, images, assets and the
per-role kamal-proxy calls.

Every function is pure: it reads the validated :class:`~dockyard.config.models.Config` and
:class:`~dockyard.config.models.Role` and returns argv. Where Kamal uses a shell (``sh -c``,
``|``, ``xargs``, ``while read``), the flow runs the argvs given here one after another and
hands the output to the paired ``parse_*`` function.

Deliberate differences from Kamal, each pinned by a test name:

* the current container is found with up to three separate argvs (:func:`latest_image_id`,
  then :func:`current_container_queries`) instead of one ``sh -c '...; ...' | head -1``;
* ``stop``/``logs``/``inspect`` take a container ID instead of ``... | xargs docker ...``;
* versions are stripped from container names in Python (:func:`parse_versions`) instead of a
  ``while read line; do echo ${line#prefix-}; done`` loop;
* the boot's survey (Dockyard's own, before a deploy or rollback) lists every container of the
  service once (:func:`list_app_containers`) and finds each role's current, running and
  existing versions in that listing, instead of a ``docker ps`` per question and role.

Kept from Kamal on purpose: a clear env value (or label, log option) holding ``${VAR}`` is a
:class:`~dockyard.commands.argv.ShellExpanded` part, which the remote shell expands.
"""

from __future__ import annotations

import os
import posixpath
import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from dockyard.commands import paths
from dockyard.commands import proxy as proxy_commands
from dockyard.commands.argv import (
    Argv,
    HomePath,
    OptionValue,
    Part,
    Pipeline,
    Secret,
    argv,
    docker,
    key_value_pairs,
    optionize,
)
from dockyard.commands.envfile import secret_contents

if TYPE_CHECKING:
    from dockyard.config.models import Config, Logging, ProxyConfig, Role

NETWORK = "kamal"
ACTIVE_STATUSES = ("running", "restarting")
HEALTH_STATUS_FORMAT = (
    "{{if .State.Health}}{{.State.Health.Status}}{{else}}{{.State.Status}}{{end}}"
)
HEALTH_LOG_FORMAT = "{{json .State.Health}}"


# --- small pieces --------------------------------------------------------------------------------


def container_name(config: Config, role: Role, version: str | None = None) -> str:
    """``<service>-<role>[-<dest>]-<version>`` (the config's version by default)."""
    return f"{container_prefix(config, role)}-{version or config.version}"


def container_prefix(config: Config, role: Role) -> str:
    return "-".join(p for p in (config.service, role.name, config.destination) if p)


def env_file_path(config: Config, role: Role) -> str:
    return paths.role_env_file(config.service, config.destination, role.name)


def env_args(config: Config, role: Role, host: str) -> tuple[Part, ...]:
    """``--env K=v`` for each clear value (root, role, host tags), then ``--env-file <file>``."""
    env = role.env(host)
    return (*key_value_pairs("--env", env.clear.items()), "--env-file", env_file_path(config, role))


def env_file_contents(config: Config, role: Role, host: str) -> Secret:
    """The role's env file for ``host``: every secret variable, resolved (read lazily)."""
    return secret_contents(config.env_secrets(role.env(host)))


#: Kamal's default when no ``logging`` driver or options are set: ``--log-opt max-size=10m``.
KAMAL_DEFAULT_LOG_OPTIONS = (("max-size", "10m"),)
#: Dockyard's default (a deliberate difference from Kamal): the same size cap plus a bounded
#: number of rotated files, so each container's logs stay under 50 MB (json-file and local
#: drivers) while keeping some history. Any ``logging`` driver or option in the config (root or
#: role) replaces the whole default, as in Kamal.
DEFAULT_LOG_OPTIONS = (*KAMAL_DEFAULT_LOG_OPTIONS, ("max-file", "5"))


def logging_args(logging: Logging) -> tuple[Part, ...]:
    """``--log-driver D`` and ``--log-opt k=v``; by default :data:`DEFAULT_LOG_OPTIONS`
    (``--log-opt max-size=10m --log-opt max-file=5``)."""
    if not logging.driver and not logging.options:
        return key_value_pairs("--log-opt", DEFAULT_LOG_OPTIONS)
    driver = ("--log-driver", logging.driver) if logging.driver else ()
    return (*driver, *key_value_pairs("--log-opt", logging.options.items()))


def volume_args(config: Config) -> tuple[str, ...]:
    """The root ``volumes``, verbatim."""
    return tuple(p for volume in config.volumes for p in ("--volume", volume))


def asset_volume_args(config: Config, role: Role, version: str | None = None) -> tuple[Part, ...]:
    """``--volume $PWD/.kamal/apps/<svc-dest>/assets/volumes/<role>-<v>:<asset_path>[:opts]``."""
    if not role.assets or role.asset_path is None:
        return ()
    host_path = asset_volume_directory(config, role, version)
    spec = f"{host_path}:{role.asset_path}"
    if role.asset_path_options:
        spec += f":{role.asset_path_options}"
    return ("--volume", HomePath(spec))


def labels(config: Config, role: Role) -> list[tuple[str, str | None]]:
    """service, role, destination (a bare label without a destination), then custom labels."""
    defaults: list[tuple[str, str | None]] = [
        ("service", config.service),
        ("role", role.name),
        ("destination", config.destination),
    ]
    merged = dict(defaults)
    merged.update(role.custom_labels)
    return list(merged.items())


def label_args(config: Config, role: Role) -> tuple[Part, ...]:
    return key_value_pairs("--label", labels(config, role))


def option_args(options: Mapping[str, OptionValue]) -> tuple[str, ...]:
    """Role ``options``: ``--k v``; ``true`` is a bare ``--k``; a list repeats the flag."""
    return optionize(options.items())


def container_filters(
    config: Config, role: Role | None, statuses: Iterable[str] | None = None
) -> tuple[str, ...]:
    """``--filter label=service=S --filter label=destination=D --filter label=role=R ...``.

    Without a destination the destination filter is ``label=destination=`` (empty value), which
    matches the bare ``--label destination`` the containers are started with.
    """
    filters = [f"label=service={config.service}", f"label=destination={config.destination or ''}"]
    if role is not None:
        filters.append(f"label=role={role.name}")
    filters += [f"status={status}" for status in statuses or ()]
    return tuple(p for f in filters for p in ("--filter", f))


# --- running and stopping ------------------------------------------------------------------------


def run(config: Config, role: Role, host: str, *, hostname: str | None = None) -> Argv:
    """``docker run --detach --restart unless-stopped --name <name> --network kamal ...``."""
    name = container_name(config, role)
    kamal_env = [
        ("KAMAL_CONTAINER_NAME", name),
        ("KAMAL_VERSION", config.version),
        ("KAMAL_HOST", host),
    ]
    if config.destination:
        kamal_env.append(("KAMAL_DESTINATION", config.destination))
    return docker(
        "run",
        "--detach",
        "--restart",
        "unless-stopped",
        "--name",
        name,
        "--network",
        NETWORK,
        *(("--hostname", hostname) if hostname else ()),
        *key_value_pairs("--env", kamal_env),
        *env_args(config, role, host),
        *logging_args(role.logging),
        *volume_args(config),
        *asset_volume_args(config, role),
        *label_args(config, role),
        *option_args(role.options),
        config.absolute_image,
        *_cmd(role.cmd),
    )


def _cmd(cmd: str | None) -> tuple[str, ...]:
    # Kamal appends the role's cmd string to a shell command line, so the shell splits it.
    return tuple(shlex.split(cmd)) if cmd else ()


def container_hostname(host: str, suffix: str) -> str:
    """Kamal's ``--hostname``: the host (first 51 chars, one trailing dot removed) and 12 hex."""
    return f"{host[:51].removesuffix('.')}-{suffix}"


def random_hex(count: int) -> str:
    """``count`` random hex digits (the exec-name and hostname suffixes)."""
    return os.urandom((count + 1) // 2).hex()[:count]


def start(config: Config, role: Role, version: str | None = None) -> Argv:
    return docker("start", container_name(config, role, version))


def stop(role: Role, container_id: str) -> Argv:
    """``docker stop [-t <drain_timeout>] <id>``; no timeout behind the proxy (it drained)."""
    timeout = role.stop_timeout
    return docker("stop", *(("-t", str(timeout)) if timeout is not None else ()), container_id)


def container_id_for(name: str, *, only_running: bool = False) -> Argv:
    """``docker container ls [--all] --filter name=^<name>$ --quiet``."""
    return docker(
        "container",
        "ls",
        None if only_running else "--all",
        "--filter",
        f"name=^{name}$",
        "--quiet",
    )


def container_id_for_version(
    config: Config, role: Role, version: str, *, only_running: bool = False
) -> Argv:
    return container_id_for(container_name(config, role, version), only_running=only_running)


def status(container_id: str) -> Argv:
    """Health status (or plain state when there is no health check) of a container."""
    return docker("inspect", "--format", HEALTH_STATUS_FORMAT, container_id)


def container_health_log(container_id: str) -> Argv:
    return docker("inspect", "--format", HEALTH_LOG_FORMAT, container_id)


def info(config: Config, role: Role) -> Argv:
    return docker("ps", *container_filters(config, role))


# --- which container / version is current --------------------------------------------------------


def latest_image_id(config: Config) -> Argv:
    return docker(
        "image", "ls", "--filter", f"reference={config.latest_image}", "--format", "{{.ID}}"
    )


def _latest_container(
    config: Config, role: Role, *, names: bool, ancestor: str | None = None
) -> Argv:
    fmt = ("--format", "{{.Names}}") if names else ("--quiet",)
    return docker(
        "ps",
        "--latest",
        *fmt,
        *container_filters(config, role, ACTIVE_STATUSES),
        *(("--filter", f"ancestor={ancestor}") if ancestor else ()),
    )


def current_container_queries(
    config: Config, role: Role, latest_image_id: str | None, *, names: bool = False
) -> list[Argv]:
    """What to ask, in order, for the current container (ID, or name with ``names``).

    Kamal prefers the newest running container made from the image tagged latest, and falls
    back to the newest running container of the role. Run these in order and take the first
    non-empty :func:`first_line`. ``latest_image_id`` is the output of :func:`latest_image_id`.
    """
    queries = []
    image_id = first_line(latest_image_id or "")
    if image_id:
        queries.append(_latest_container(config, role, names=names, ancestor=image_id))
    queries.append(_latest_container(config, role, names=names))
    return queries


def first_line(stdout: str) -> str | None:
    """The first non-empty line (Kamal's ``| head -1``)."""
    for line in stdout.splitlines():
        if line.strip():
            return line.strip()
    return None


def version_from_name(name: str, prefix: str) -> str:
    """``${line#<prefix>-}``: strip ``<prefix>-`` when present, else keep the name."""
    return name.removeprefix(f"{prefix}-")


def parse_versions(stdout: str, prefix: str) -> list[str]:
    """Versions from ``docker ps --format {{.Names}}`` output (one name per line)."""
    return [version_from_name(line.strip(), prefix) for line in stdout.splitlines() if line.strip()]


def list_versions(
    config: Config, role: Role, *docker_args: str, statuses: Sequence[str] | None = None
) -> Argv:
    """Container names of the role; parse with :func:`parse_versions` and the prefix."""
    return docker(
        "ps", *container_filters(config, role, statuses), *docker_args, "--format", "{{.Names}}"
    )


#: One line per container for :func:`list_app_containers`: ID, state, role label, name.
SURVEY_FORMAT = '{{.ID}}\t{{.State}}\t{{.Label "role"}}\t{{.Names}}'


def list_app_containers(config: Config) -> Argv:
    """Every container of the service (and destination), of every role and state, newest
    first as docker lists them (Dockyard's survey, not a Kamal command): one ``docker ps``
    answers what the survey asked with four per role (:func:`parse_container_rows`)."""
    return docker("ps", "--all", *container_filters(config, None), "--format", SURVEY_FORMAT)


@dataclass(frozen=True, slots=True)
class ContainerRow:
    """One line of :func:`list_app_containers`."""

    id: str
    state: str
    role: str
    name: str

    @property
    def active(self) -> bool:
        """Running or restarting (what ``--filter status=running/restarting`` keeps)."""
        return self.state in ACTIVE_STATUSES


def parse_container_rows(stdout: str) -> list[ContainerRow]:
    """The lines of :func:`list_app_containers`, in docker's order (newest first); lines
    that are not four tab-separated fields are skipped."""
    rows = []
    for line in stdout.splitlines():
        fields = line.split("\t")
        if len(fields) == 4 and fields[0].strip() and fields[3].strip():
            ident, state, role, name = (f.strip() for f in fields)
            rows.append(ContainerRow(ident, state, role, name))
    return rows


def list_containers(config: Config, role: Role | None) -> Argv:
    return docker("container", "ls", "--all", *container_filters(config, role))


def list_container_names(config: Config, role: Role | None) -> Argv:
    return Argv((*list_containers(config, role), "--format", "{{ .Names }}"))


def remove_container(container_id: str) -> Argv:
    """After :func:`container_id_for_version`, instead of ``| xargs docker container rm``."""
    return docker("container", "rm", container_id)


def rename_container(config: Config, role: Role, version: str, new_version: str) -> Argv:
    return docker(
        "rename",
        container_name(config, role, version),
        container_name(config, role, new_version),
    )


def replaced_version(version: str, suffix: str) -> str:
    """The version a clashing container is renamed to: ``<v>_replaced_<16 hex>``."""
    return f"{version}_replaced_{suffix}"


def remove_containers(config: Config, role: Role | None) -> Argv:
    return docker("container", "prune", "--force", *container_filters(config, role))


# --- exec ----------------------------------------------------------------------------------------


def _interactive_flag(interactive: bool, tty: bool) -> str | None:
    if not interactive:
        return None
    return "-it" if tty else "-i"


def execute_in_existing_container(
    config: Config,
    role: Role,
    command: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    interactive: bool = False,
    tty: bool = True,
) -> Argv:
    """``docker exec [-it|-i] [--env K=v] <container> CMD`` (``--reuse``)."""
    return docker(
        "exec",
        _interactive_flag(interactive, tty),
        *key_value_pairs("--env", (env or {}).items()),
        container_name(config, role),
        *command,
    )


def exec_container_name(config: Config, role: Role, suffix: str) -> str:
    """``<prefix>-exec-<version>-<6 hex>``; ``suffix`` comes from :func:`random_hex`."""
    return f"{container_prefix(config, role)}-exec-{config.version}-{suffix}"


def execute_in_new_container(
    config: Config,
    role: Role,
    host: str,
    command: Sequence[str],
    *,
    suffix: str,
    env: Mapping[str, str] | None = None,
    interactive: bool = False,
    tty: bool = True,
    detach: bool = False,
) -> Argv:
    """A throw-away ``docker run --rm`` (or ``--detach``) of the current image with CMD."""
    return docker(
        "run",
        _interactive_flag(interactive, tty),
        "--detach" if detach else "--rm",
        "--name",
        exec_container_name(config, role, suffix),
        "--network",
        NETWORK,
        *env_args(config, role, host),
        *key_value_pairs("--env", (env or {}).items()),
        *logging_args(role.logging),
        *volume_args(config),
        *option_args(role.options),
        config.absolute_image,
        *command,
    )


# --- logs ----------------------------------------------------------------------------------------


def _grep(first: Argv, grep: str | None, grep_options: str | None) -> Pipeline:
    stages = (first, proxy_commands.grep_stage(grep, grep_options)) if grep else (first,)
    return Pipeline(stages, merge_stderr=True)


def logs(
    container_id: str,
    *,
    timestamps: bool = True,
    since: str | None = None,
    lines: int | None = None,
    grep: str | None = None,
    grep_options: str | None = None,
) -> Pipeline:
    """``docker logs [--timestamps] [--since X] [--tail N] <id> 2>&1 [| grep ...]``."""
    return _grep(
        docker(
            "logs",
            "--timestamps" if timestamps else None,
            *(("--since", since) if since else ()),
            *(("--tail", str(lines)) if lines is not None else ()),
            container_id,
        ),
        grep,
        grep_options,
    )


def follow_logs(
    container_id: str,
    *,
    timestamps: bool = True,
    lines: int | None = None,
    grep: str | None = None,
    grep_options: str | None = None,
) -> Pipeline:
    """``docker logs [--timestamps] [--tail N] --follow <id> 2>&1 [| grep ...]``."""
    return _grep(
        docker(
            "logs",
            "--timestamps" if timestamps else None,
            *(("--tail", str(lines)) if lines is not None else ()),
            "--follow",
            container_id,
        ),
        grep,
        grep_options,
    )


# --- images --------------------------------------------------------------------------------------


def list_images(config: Config) -> Argv:
    return docker("image", "ls", config.repository)


def remove_images(config: Config) -> Argv:
    return docker(
        "image", "prune", "--all", "--force", "--filter", f"label=service={config.service}"
    )


def tag_latest_image(config: Config) -> Argv:
    return docker("tag", config.absolute_image, config.latest_image)


def pull_image(config: Config) -> Argv:
    return docker("pull", config.absolute_image)


def remove_local_image(config: Config) -> Argv:
    """``docker image rm --force <ref>`` before a pull (errors ignored)."""
    return docker("image", "rm", "--force", config.absolute_image)


def image_service_label(config: Config) -> Argv:
    """Kamal pipes this into ``grep -x <service>``; compare with :func:`has_service_label`."""
    return docker("inspect", "-f", "{{ .Config.Labels.service }}", config.absolute_image)


def has_service_label(stdout: str, service: str) -> bool:
    return any(line.strip() == service for line in stdout.splitlines())


def first_mirror() -> Argv:
    return docker("info", "--format", "{{index .RegistryConfig.Mirrors 0}}")


# --- kamal-proxy ---------------------------------------------------------------------------------


def proxy_deploy_settings(
    config: Config, proxy: ProxyConfig, role_name: str | None
) -> proxy_commands.ProxyDeploy:
    """The ``kamal-proxy deploy`` settings of a role (or, with ``role_name=None``, an accessory)."""
    tls_cert = tls_key = None
    if proxy.custom_ssl_certificate:
        tls_dir = paths.tls_container_directory(config.service, config.destination)
        base = posixpath.join(tls_dir, role_name) if role_name else tls_dir
        tls_cert, tls_key = posixpath.join(base, "cert.pem"), posixpath.join(base, "key.pem")
    error_pages = None
    if config.error_pages_path:
        error_pages = posixpath.join(
            paths.error_pages_container_directory(config.service, config.destination),
            config.version,
        )
    return proxy_commands.ProxyDeploy(
        app_port=proxy.app_port,
        hosts=tuple(proxy.hosts),
        ssl=bool(proxy.ssl),
        tls_certificate_path=tls_cert,
        tls_private_key_path=tls_key,
        deploy_timeout=config.deploy_timeout,
        drain_timeout=config.drain_timeout,
        health_check_interval=proxy.healthcheck.interval,
        health_check_timeout=proxy.healthcheck.timeout,
        health_check_path=proxy.healthcheck.path,
        response_timeout=proxy.response_timeout,
        buffer_requests=proxy.buffering.requests,
        buffer_responses=proxy.buffering.responses,
        buffer_memory=proxy.buffering.memory,
        max_request_body=proxy.buffering.max_request_body,
        max_response_body=proxy.buffering.max_response_body,
        path_prefixes=tuple(proxy.path_prefixes),
        strip_path_prefix=proxy.strip_path_prefix,
        forward_headers=proxy.forward_headers,
        ssl_redirect=proxy.ssl_redirect,
        log_request_headers=tuple(proxy.logging.request_headers),
        log_response_headers=tuple(proxy.logging.response_headers or ()),
        error_pages=error_pages,
        basic_auth_user=proxy.basic_auth_user,
        basic_auth_password_hash=proxy.basic_auth_password_hash,
        allow_ips=tuple(proxy.allow_ips),
        client_ip_header=proxy.client_ip_header,
    )


def _role_proxy(role: Role) -> ProxyConfig:
    if role.proxy is None:
        raise ValueError(f"role {role.name} does not run behind kamal-proxy")
    return role.proxy


def deploy(config: Config, role: Role, target: str) -> Argv:
    """``docker exec kamal-proxy kamal-proxy deploy <prefix> --target=<id>:<port> ...``."""
    settings = proxy_deploy_settings(config, _role_proxy(role), role.name)
    return proxy_commands.deploy(container_prefix(config, role), target, settings)


def remove(config: Config, role: Role) -> Argv:
    return proxy_commands.remove(container_prefix(config, role))


def live(config: Config, role: Role) -> Argv:
    return proxy_commands.resume(container_prefix(config, role))


def maintenance(
    config: Config, role: Role, *, drain_timeout: int | None = None, message: str | None = None
) -> Argv:
    return proxy_commands.pause_stop(
        container_prefix(config, role), drain_timeout=drain_timeout, message=message
    )


def remove_proxy_app_directory(config: Config) -> Argv:
    return argv("rm", "-r", paths.proxy_app_directory(config.service, config.destination))


def create_ssl_directory(config: Config, role: Role) -> Argv:
    directory = paths.tls_directory(config.service, config.destination)
    return argv("mkdir", "-p", posixpath.join(directory, role.name))


def tls_files(config: Config, role: Role) -> tuple[str, str]:
    """Host paths of the role's custom certificate and key (uploaded with mode 0644)."""
    directory = posixpath.join(paths.tls_directory(config.service, config.destination), role.name)
    return posixpath.join(directory, "cert.pem"), posixpath.join(directory, "key.pem")


# --- error pages ---------------------------------------------------------------------------------


def create_error_pages_directory(config: Config) -> Argv:
    return argv("mkdir", "-p", paths.error_pages_directory(config.service, config.destination))


def clean_up_error_pages(config: Config) -> Argv:
    """Remove every other version's error-page directory (one ``find`` program)."""
    directory = paths.error_pages_directory(config.service, config.destination)
    return argv(
        "find", directory, "-mindepth", "1", "-maxdepth", "1", "!", "-name", config.version,
        "-exec", "rm", "-rf", "{}", "+",
    )  # fmt: skip


# --- asset bridging ------------------------------------------------------------------------------


def asset_extracted_directory(config: Config, role: Role, version: str | None = None) -> str:
    return paths.asset_extracted_directory(
        config.service, config.destination, role.name, version or config.version
    )


def asset_volume_directory(config: Config, role: Role, version: str | None = None) -> str:
    return paths.asset_volume_directory(
        config.service, config.destination, role.name, version or config.version
    )


def extract_assets(config: Config, role: Role) -> tuple[Argv, Argv, Argv, Argv, Argv]:
    """Copy the image's ``asset_path`` out through a created (never started) container.

    Run in order, stopping at the first failure, except that the second (removing a leftover
    ``<prefix>-assets`` container) may fail.
    """
    asset_container = f"{container_prefix(config, role)}-assets"
    extracted = asset_extracted_directory(config, role)
    return (
        argv("mkdir", "-p", extracted),
        docker("container", "rm", asset_container),
        docker("container", "create", "--name", asset_container, config.absolute_image),
        docker("container", "cp", "-L", f"{asset_container}:{role.asset_path}/.", extracted),
        docker("container", "rm", asset_container),
    )


def sync_asset_volumes(config: Config, role: Role, old_version: str | None = None) -> list[Argv]:
    """Give both the new and old containers the union of both asset sets.

    Kamal joins these with ``;``: run them all. The two copies involving the old version (3rd
    and 4th) may fail.
    """
    new_extracted = asset_extracted_directory(config, role)
    new_volume = asset_volume_directory(config, role)
    commands = [argv("mkdir", "-p", new_volume), argv("cp", "-rnT", new_extracted, new_volume)]
    if old_version:
        old_extracted = asset_extracted_directory(config, role, old_version)
        old_volume = asset_volume_directory(config, role, old_version)
        commands.append(argv("cp", "-rnT", new_extracted, old_volume))
        commands.append(argv("cp", "-rnT", old_extracted, new_volume))
    return commands


def clean_up_assets(config: Config, role: Role) -> tuple[Argv, Argv]:
    """Remove every ``<role>-*`` entry but the current version's, extracted and volumes."""
    return (
        _remove_older_siblings(asset_extracted_directory(config, role), role.name),
        _remove_older_siblings(asset_volume_directory(config, role), role.name),
    )


def _remove_older_siblings(path: str, role_name: str) -> Argv:
    return argv(
        "find", posixpath.dirname(path), "-maxdepth", "1", "-name", f"{role_name}-*",
        "!", "-name", posixpath.basename(path), "-exec", "rm", "-rf", "{}", "+",
    )  # fmt: skip


def missing_service_label_message(config: Config) -> str:
    """Kamal's error when a pulled image lacks the ``service`` label."""
    return f"Image {config.absolute_image} is missing the 'service' label"


def stale_versions(versions: Sequence[str], current: str | None) -> list[str]:
    """Running versions of a role other than the current one (``app stale_containers``)."""
    return [v for v in versions if v != (current or "")]
