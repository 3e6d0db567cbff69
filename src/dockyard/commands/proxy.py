"""kamal-proxy: its container (run, start/stop, logs, removal), the legacy boot-config files, and
the ``docker exec kamal-proxy kamal-proxy deploy|remove|resume|stop`` calls made per app.

Kamal's legacy boot pipes ``echo $(cat options || echo default) ...`` into ``xargs docker run``;
we ``cat`` each file separately and build the run argv in Python (:func:`legacy_run`).
"""

from __future__ import annotations

import ipaddress
import posixpath
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from dockyard.commands.argv import (
    Argv,
    HomePath,
    OptionValue,
    Pipeline,
    argv,
    docker,
    optionize,
)
from dockyard.commands.paths import (
    PROXY_APPS_CONTAINER_DIRECTORY,
    PROXY_APPS_DIRECTORY,
    PROXY_DIRECTORY,
)

if TYPE_CHECKING:
    from dockyard.config.models import Config
    from dockyard.config.models import ProxyRun as ProxyRunConfig

CONTAINER_NAME = "kamal-proxy"
NETWORK = "kamal"
MINIMUM_VERSION = "v0.9.2"
DEFAULT_REPOSITORY = "basecamp/kamal-proxy"
DEFAULT_HTTP_PORT = 80
DEFAULT_HTTPS_PORT = 443
DEFAULT_LOG_MAX_SIZE = "10m"
#: Dockyard-only: rotated log files kept for the proxy container (Kamal keeps docker's default, 1).
DEFAULT_LOG_MAX_FILE = 5
#: The proxy's state volume (its config directory), by name and as mounted.
CONFIG_VOLUME_NAME = "kamal-proxy-config"
CONFIG_VOLUME = f"{CONFIG_VOLUME_NAME}:/home/kamal-proxy/.config/kamal-proxy"
IMAGE_TITLE_LABEL = "label=org.opencontainers.image.title=kamal-proxy"
TRAEFIK_TITLE_LABEL = "label=org.opencontainers.image.title=Traefik"
DEFAULT_LOG_REQUEST_HEADERS = ("Cache-Control", "Last-Modified", "User-Agent")

OPTIONS_FILE = posixpath.join(PROXY_DIRECTORY, "options")
IMAGE_FILE = posixpath.join(PROXY_DIRECTORY, "image")
IMAGE_VERSION_FILE = posixpath.join(PROXY_DIRECTORY, "image_version")
RUN_COMMAND_FILE = posixpath.join(PROXY_DIRECTORY, "run_command")
BOOT_FILES = (OPTIONS_FILE, IMAGE_FILE, IMAGE_VERSION_FILE, RUN_COMMAND_FILE)


# --- running the container -------------------------------------------------------------------


def _format_bind_ip(ip: str) -> str:
    try:
        if isinstance(ipaddress.ip_address(ip), ipaddress.IPv6Address):
            return f"[{ip}]"
    except ValueError:
        pass
    return ip


def publish_args(
    http_port: int | str, https_port: int | str, bind_ips: Sequence[str] | None = None
) -> tuple[str, ...]:
    """``--publish [ip:]<http>:80 --publish [ip:]<https>:443`` per bind IP (IPv6 in ``[]``)."""
    out: list[str] = []
    ips: list[str | None] = list(bind_ips) if bind_ips else [None]
    for ip in ips:
        prefix = f"{_format_bind_ip(ip)}:" if ip else ""
        out += ["--publish", f"{prefix}{http_port}:{DEFAULT_HTTP_PORT}"]
        out += ["--publish", f"{prefix}{https_port}:{DEFAULT_HTTPS_PORT}"]
    return tuple(out)


def _base_run() -> tuple[str | HomePath, ...]:
    return (
        "run",
        "--name",
        CONTAINER_NAME,
        "--network",
        NETWORK,
        "--detach",
        "--restart",
        "unless-stopped",
        "--volume",
        CONFIG_VOLUME,
        "--volume",
        HomePath(f"{PROXY_APPS_DIRECTORY}:{PROXY_APPS_CONTAINER_DIRECTORY}"),
    )


@dataclass(frozen=True, slots=True)
class ProxyRun:
    """The ``proxy.run`` settings (all defaults as Kamal's)."""

    http_port: int = DEFAULT_HTTP_PORT
    https_port: int = DEFAULT_HTTPS_PORT
    metrics_port: int | None = None
    debug: bool = False
    log_max_size: str | None = DEFAULT_LOG_MAX_SIZE
    publish: bool = True
    bind_ips: tuple[str, ...] | None = None
    registry: str | None = None
    repository: str = DEFAULT_REPOSITORY
    version: str = MINIMUM_VERSION
    options: tuple[tuple[str, OptionValue], ...] = field(default_factory=tuple)

    @property
    def image(self) -> str:
        prefix = f"{self.registry}/" if self.registry else ""
        return f"{prefix}{self.repository}:{self.version}"


def run_settings(run_config: ProxyRunConfig | None) -> ProxyRun | None:
    """The ``proxy.run`` section of the config as :class:`ProxyRun` (``None`` stays ``None``)."""
    if run_config is None:
        return None
    return ProxyRun(
        http_port=run_config.http_port,
        https_port=run_config.https_port,
        metrics_port=run_config.metrics_port,
        debug=bool(run_config.debug),
        log_max_size=run_config.log_max_size,
        publish=run_config.publish,
        bind_ips=tuple(run_config.bind_ips) if run_config.bind_ips else None,
        registry=run_config.registry,
        repository=run_config.repository,
        version=run_config.version,
        options=tuple(run_config.options.items()),
    )


def run_for_host(config: Config, host: str) -> Argv | None:
    """The run argv from the host's ``proxy.run`` settings, or ``None`` when it has none (then
    the legacy boot-config files decide: read them with :func:`read_boot_file` and call
    :func:`legacy_run`)."""
    settings = run_settings(config.proxy_run(host))
    return run(settings) if settings is not None else None


def run(settings: ProxyRun) -> Argv:
    """``docker run --name kamal-proxy ... <image> kamal-proxy run [--debug] [--metrics-port P]``"""
    docker_options: list[str] = []
    if settings.publish:
        docker_options += publish_args(settings.http_port, settings.https_port, settings.bind_ips)
    if settings.log_max_size:
        docker_options += ["--log-opt", f"max-size={settings.log_max_size}"]
        if not any(key in ("log-opt", "log-driver") for key, _ in settings.options):
            docker_options += ["--log-opt", f"max-file={DEFAULT_LOG_MAX_FILE}"]
    if settings.metrics_port is not None:
        docker_options.append(f"--expose={settings.metrics_port}")
    docker_options += optionize(settings.options)
    run_command = optionize(
        (("debug", settings.debug or None), ("metrics-port", settings.metrics_port))
    )
    return docker(*_base_run(), *docker_options, settings.image, "kamal-proxy", "run", *run_command)


def read_boot_file(path: str) -> Argv:
    """``cat <file>``: a failure means "absent" and the default applies (see :func:`legacy_run`)."""
    return argv("cat", path)


def default_boot_options() -> str:
    return " ".join(
        (
            *publish_args(DEFAULT_HTTP_PORT, DEFAULT_HTTPS_PORT),
            "--log-opt",
            f"max-size={DEFAULT_LOG_MAX_SIZE}",
        )
    )


def legacy_run(
    options: str | None = None,
    image: str | None = None,
    image_version: str | None = None,
    run_command: str | None = None,
) -> Argv:
    """The run argv from the boot-config files' contents (``None`` = file absent, use default).

    Kamal echoes ``<options> <image>:<version> <run_command>`` into ``xargs``; we split the same
    text with shell-like rules.
    """
    text = boot_config_text(options, image, image_version, run_command)
    return docker(*_base_run(), *with_log_rotation(shlex.split(text)))


def with_log_rotation(words: Sequence[str]) -> list[str]:
    """Dockyard's rotation default for the proxy (a deliberate difference from Kamal): when the
    docker options cap the log size (``--log-opt max-size=X``) and set neither a file count nor
    a log driver, add ``--log-opt max-file=5`` right after the size cap."""
    words = list(words)
    if "--log-driver" in words or any(w.startswith("max-file=") for w in words):
        return words
    for index in range(len(words) - 1):
        if words[index] == "--log-opt" and words[index + 1].startswith("max-size="):
            return [
                *words[: index + 2],
                "--log-opt",
                f"max-file={DEFAULT_LOG_MAX_FILE}",
                *words[index + 2 :],
            ]
    return words


def start() -> Argv:
    return docker("container", "start", CONTAINER_NAME)


def stop(name: str = CONTAINER_NAME) -> Argv:
    return docker("container", "stop", name)


def start_or_run(settings: ProxyRun | None) -> tuple[Argv, Argv]:
    """Kamal's ``start || run``: try the first; run the second only if it failed.

    Without ``proxy.run`` settings the second argv is the legacy run with default files; a flow
    that wants the files honoured reads them and calls :func:`legacy_run` itself.
    """
    return start(), run(settings) if settings is not None else legacy_run()


def info() -> Argv:
    return docker("ps", "--filter", f"name=^{CONTAINER_NAME}$")


def version() -> Argv:
    """The running proxy's image; take the tag with :func:`parse_version`."""
    return docker("inspect", CONTAINER_NAME, "--format", "{{.Config.Image}}")


def parse_version(stdout: str) -> str | None:
    """Kamal's ``awk -F: '{print $NF}'``: the text after the last colon, or ``None`` if empty."""
    text = stdout.strip()
    return text.rsplit(":", 1)[-1] or None if text else None


def _version_key(version: str) -> tuple[int, ...]:
    parts: list[int] = []
    for piece in version.removeprefix("v").split("."):
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


def is_older(version: str, other: str = MINIMUM_VERSION) -> bool:
    return _version_key(version) < _version_key(other)


def grep_stage(grep: str, grep_options: str | None = None) -> Argv:
    """``grep <pattern> [options]``; the options string is split like a shell would."""
    return argv("grep", grep, *shlex.split(grep_options or ""))


def logs(
    *,
    timestamps: bool = True,
    since: str | None = None,
    lines: int | None = None,
    grep: str | None = None,
    grep_options: str | None = None,
) -> Pipeline:
    logs_argv = docker(
        "logs",
        CONTAINER_NAME,
        *(("--since", since) if since else ()),
        *(("--tail", str(lines)) if lines is not None else ()),
        "--timestamps" if timestamps else None,
    )
    return _with_grep(logs_argv, grep, grep_options)


def follow_logs(
    *, timestamps: bool = True, grep: str | None = None, grep_options: str | None = None
) -> Pipeline:
    logs_argv = docker(
        "logs",
        CONTAINER_NAME,
        "--timestamps" if timestamps else None,
        "--tail",
        "10",
        "--follow",
    )
    return _with_grep(logs_argv, grep, grep_options)


def _with_grep(first: Argv, grep: str | None, grep_options: str | None) -> Pipeline:
    stages = (first, grep_stage(grep, grep_options)) if grep else (first,)
    return Pipeline(stages, merge_stderr=True)


def remove_container() -> Argv:
    return docker("container", "prune", "--force", "--filter", IMAGE_TITLE_LABEL)


def remove_image() -> Argv:
    return docker("image", "prune", "--all", "--force", "--filter", IMAGE_TITLE_LABEL)


def cleanup_traefik() -> tuple[Argv, Argv, Argv]:
    """Stop Traefik (errors ignored), then prune its container and image by title label."""
    return (
        docker("container", "stop", "traefik"),
        docker("container", "prune", "--force", "--filter", TRAEFIK_TITLE_LABEL),
        docker("image", "prune", "--all", "--force", "--filter", TRAEFIK_TITLE_LABEL),
    )


def ensure_proxy_directory() -> Argv:
    return argv("mkdir", "-p", PROXY_DIRECTORY)


def remove_proxy_directory() -> Argv:
    return argv("rm", "-r", PROXY_DIRECTORY)


def ensure_apps_config_directory() -> Argv:
    return argv("mkdir", "-p", PROXY_APPS_DIRECTORY)


def reset_boot_file(path: str) -> Argv:
    return argv("rm", path)


# --- boot_config set ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BootConfigOptions:
    """The options of ``proxy boot_config set`` (defaults as Kamal's CLI)."""

    publish: bool = True
    publish_host_ips: tuple[str, ...] | None = None
    http_port: int = DEFAULT_HTTP_PORT
    https_port: int = DEFAULT_HTTPS_PORT
    log_max_size: str | None = DEFAULT_LOG_MAX_SIZE
    registry: str | None = None
    repository: str | None = None
    image_version: str | None = None
    metrics_port: int | None = None
    debug: bool = False
    docker_options: tuple[str, ...] = ()


def boot_config_files(options: BootConfigOptions) -> dict[str, str | None]:
    """For each boot-config file, the content to upload, or ``None`` to remove it (default).

    Kamal removes a file whose value equals the default, so an unchanged setting leaves no file.
    """
    boot_options: list[str] = []
    if options.publish:
        boot_options += publish_args(
            options.http_port, options.https_port, options.publish_host_ips
        )
    if options.log_max_size:
        boot_options += ["--log-opt", f"max-size={options.log_max_size}"]
    if options.metrics_port is not None:
        boot_options.append(f"--expose={options.metrics_port}")
    boot_options += [f"--{option}" for option in options.docker_options]
    options_text = " ".join(boot_options)

    image = "/".join(
        p for p in (options.registry or None, options.repository or "basecamp", "kamal-proxy") if p
    )
    run_options = optionize(
        (("debug", options.debug or None), ("metrics-port", options.metrics_port))
    )
    run_command = " ".join(("kamal-proxy", "run", *run_options)) if run_options else None
    return {
        OPTIONS_FILE: None if options_text == default_boot_options() else options_text,
        IMAGE_FILE: None if image == DEFAULT_REPOSITORY else image,
        IMAGE_VERSION_FILE: options.image_version or None,
        RUN_COMMAND_FILE: run_command,
    }


# --- per-app calls into the running proxy ------------------------------------------------------


def _seconds(value: int | float | None) -> str | None:
    return None if value is None else f"{value}s"


@dataclass(frozen=True, slots=True)
class ProxyDeploy:
    """The merged proxy settings of a role (or accessory) that shape ``kamal-proxy deploy``."""

    app_port: int = 80
    hosts: tuple[str, ...] = ()
    ssl: bool = False
    tls_certificate_path: str | None = None
    tls_private_key_path: str | None = None
    deploy_timeout: int = 30
    drain_timeout: int = 30
    health_check_interval: int | float | None = None
    health_check_timeout: int | float | None = None
    health_check_path: str | None = None
    response_timeout: int | float | None = None
    buffer_requests: bool = True
    buffer_responses: bool = True
    buffer_memory: int | None = None
    max_request_body: int | None = None
    max_response_body: int | None = None
    path_prefixes: tuple[str, ...] = ()
    strip_path_prefix: bool | None = None
    forward_headers: bool | None = None
    ssl_redirect: bool | None = None
    log_request_headers: tuple[str, ...] = DEFAULT_LOG_REQUEST_HEADERS
    log_response_headers: tuple[str, ...] = ()
    error_pages: str | None = None
    # dockyard-proxy only (kamal-proxy refuses these flags): access gates.
    basic_auth_user: str | None = None
    basic_auth_password_hash: str | None = None
    allow_ips: tuple[str, ...] = ()
    client_ip_header: str | None = None


def deploy_args(target: str, settings: ProxyDeploy) -> tuple[str, ...]:
    """The flags in Kamal's order, all ``--flag=value``; ``True`` is a bare ``--flag``."""
    return optionize(
        (
            ("target", f"{target}:{settings.app_port}"),
            ("host", list(settings.hosts)),
            ("tls", True if settings.ssl else None),
            ("tls-certificate-path", settings.tls_certificate_path),
            ("tls-private-key-path", settings.tls_private_key_path),
            ("deploy-timeout", _seconds(settings.deploy_timeout)),
            ("drain-timeout", _seconds(settings.drain_timeout)),
            ("health-check-interval", _seconds(settings.health_check_interval)),
            ("health-check-timeout", _seconds(settings.health_check_timeout)),
            ("health-check-path", settings.health_check_path),
            ("target-timeout", _seconds(settings.response_timeout)),
            ("buffer-requests", settings.buffer_requests),
            ("buffer-responses", settings.buffer_responses),
            ("buffer-memory", settings.buffer_memory),
            ("max-request-body", settings.max_request_body),
            ("max-response-body", settings.max_response_body),
            ("path-prefix", list(settings.path_prefixes)),
            ("strip-path-prefix", settings.strip_path_prefix),
            ("forward-headers", settings.forward_headers),
            ("tls-redirect", settings.ssl_redirect),
            ("log-request-header", list(settings.log_request_headers)),
            ("log-response-header", list(settings.log_response_headers)),
            ("error-pages", settings.error_pages),
            # dockyard-proxy only; absent unless the Dockyard-only proxy keys are set.
            ("basic-auth-user", settings.basic_auth_user),
            ("basic-auth-password-hash", settings.basic_auth_password_hash),
            ("allow-ip", list(settings.allow_ips)),
            ("client-ip-header", settings.client_ip_header),
        ),
        joined=True,
    )


def _exec(*parts: str) -> Argv:
    return docker("exec", CONTAINER_NAME, "kamal-proxy", *parts)


def deploy(name: str, target: str, settings: ProxyDeploy) -> Argv:
    """Register ``target`` (a container ID) as the backend of service ``name``."""
    return _exec("deploy", name, *deploy_args(target, settings))


def remove(name: str) -> Argv:
    return _exec("remove", name)


def resume(name: str) -> Argv:
    """``app live``."""
    return _exec("resume", name)


def pause_stop(name: str, *, drain_timeout: int | None = None, message: str | None = None) -> Argv:
    """``app maintenance``: ``kamal-proxy stop <name> [--drain-timeout=Ns] [--message=...]``."""
    return _exec(
        "stop",
        name,
        *optionize((("drain-timeout", _seconds(drain_timeout)), ("message", message)), joined=True),
    )


def pause(name: str, *, drain_timeout: int | None = None, max_pause: int | None = None) -> Argv:
    """``kamal-proxy pause <name>``: hold new requests (Kamal 2.11 itself never pauses)."""
    return _exec(
        "pause",
        name,
        *optionize(
            (("drain-timeout", _seconds(drain_timeout)), ("max-pause", _seconds(max_pause))),
            joined=True,
        ),
    )


def list_services() -> Argv:
    """``kamal-proxy list``: the services the running proxy knows, with their state."""
    return _exec("list")


def boot_config_text(
    options: str | None = None,
    image: str | None = None,
    image_version: str | None = None,
    run_command: str | None = None,
) -> str:
    """What ``proxy boot_config get`` prints for a host, from the files (``None`` = absent)."""
    return " ".join(
        (
            default_boot_options() if options is None else options.strip(),
            f"{DEFAULT_REPOSITORY if image is None else image.strip()}:"
            f"{MINIMUM_VERSION if image_version is None else image_version.strip()}",
            "" if run_command is None else run_command.strip(),
        )
    ).strip()
