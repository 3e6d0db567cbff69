"""``dockyard doctor``: checks, layer by layer, each with a verdict and, when it fails, the fix.

Layers, in the order a deploy meets them: ``local`` (Docker and buildx here, secrets),
``lint`` (known production traps in the project; warnings only), ``ssh`` (reach, host key,
auth), ``server`` (Docker version and permission, disk, memory, ports 80/443), ``registry``
(login from here and from each server), ``proxy`` (running, version, services) and ``app``
(the health path answering from the container, app_port matching what it listens on, /up not
redirecting to https, the Host the proxy sends being accepted).

Every server is probed in one SSH round trip (:func:`dockyard.commands.doctor.probe_script`);
servers are probed in parallel. Nothing is changed anywhere except registry credentials, which
``docker login`` stores as a deploy would (here in a throw-away DOCKER_CONFIG).
"""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from dockyard.commands import app as app_commands
from dockyard.commands import doctor as probe
from dockyard.commands import proxy as proxy_commands
from dockyard.commands import registry as registry_commands
from dockyard.commands.argv import argv
from dockyard.config.models import SecretRef
from dockyard.config.sizes import human
from dockyard.errors import DockyardError
from dockyard.flows import memory

if TYPE_CHECKING:
    from dockyard.config import Config, Role
    from dockyard.flows.context import DeployContext

LAYERS = ("local", "lint", "ssh", "server", "registry", "proxy", "app")
_TRUTHY = {"1", "true", "yes", "on"}


@dataclass(frozen=True, slots=True)
class Check:
    layer: str
    name: str
    ok: bool
    detail: str = ""
    fix: str = ""
    host: str | None = None
    #: A lint finding: shown, but it does not make doctor fail.
    warning: bool = False


def failed(checks: Sequence[Check]) -> list[Check]:
    return [c for c in checks if not c.ok and not c.warning]


# -- local ------------------------------------------------------------------------------------


def secret_names(config: Config) -> list[str]:
    """Every secret the config refers to (env of roles and accessories, registry, builder)."""
    names: list[str] = []
    for role in config.roles:
        for env in role.envs.values():
            names += env.secrets.values()
    for accessory in config.accessories:
        names += accessory.env.secrets.values()
        if accessory.registry is not None:
            names += [
                v.name
                for v in (accessory.registry.username, accessory.registry.password)
                if isinstance(v, SecretRef)
            ]
    names += [
        v.name
        for v in (config.registry.username, config.registry.password)
        if isinstance(v, SecretRef)
    ]
    names += list(config.builder.secrets)
    return list(dict.fromkeys(names))


async def local_checks(ctx: DeployContext) -> list[Check]:
    checks = []
    docker = await ctx.local.run(argv("docker", "version", "--format", "{{.Server.Version}}"))
    if docker.ok:
        checks.append(Check("local", "docker", True, f"Docker {docker.stdout.strip()}"))
    else:
        text = (docker.stderr or docker.stdout).strip().splitlines()
        missing = docker.exit_status == 127 or "not found" in " ".join(text).lower()
        checks.append(
            Check(
                "local",
                "docker",
                False,
                text[-1] if text else f"exit {docker.exit_status}",
                "install Docker here (builds run on this machine)"
                if missing
                else "start the Docker engine here, or check that you may use it "
                "(`docker version`)",
            )
        )
    buildx = await ctx.local.run(argv("docker", "buildx", "version"))
    checks.append(
        Check("local", "buildx", True, buildx.stdout.strip().split("\n")[0])
        if buildx.ok
        else Check(
            "local",
            "buildx",
            True,
            "not installed: builds use the legacy builder (no multi-arch, no remote builder)",
            warning=True,
        )
    )
    missing_secrets = []
    for name in secret_names(ctx.config):
        try:
            ctx.config.secret(name)
        except DockyardError as exc:
            missing_secrets.append(str(exc))
    if missing_secrets:
        checks.append(
            Check(
                "local",
                "secrets",
                False,
                "; ".join(missing_secrets),
                f"add them to {', '.join(ctx.config.secrets.filenames)} "
                "(or fetch them with `dockyard secrets fetch`)",
            )
        )
    else:
        checks.append(Check("local", "secrets", True, "every secret the config uses resolves"))
    return checks


def lint_checks(config: Config, root: Path) -> list[Check]:
    """Known production traps, as warnings."""
    checks = []
    vite = root / "config" / "vite.json"
    if vite.is_file():
        try:
            data = json.loads(vite.read_text())
        except (OSError, ValueError):
            data = {}
        for section in ("production", "all"):
            block = data.get(section) if isinstance(data, dict) else None
            if isinstance(block, dict) and block.get("autoBuild") is True:
                checks.append(
                    Check(
                        "lint",
                        "vite",
                        False,
                        f"config/vite.json: autoBuild is true for {section!r}: the app would "
                        "build assets on the server at the first request",
                        'set "autoBuild": false outside development, and build assets in the '
                        "Dockerfile (`bin/vite build`)",
                        warning=True,
                    )
                )
    for role in config.roles:
        for env in role.envs.values():
            for key, value in env.clear.items():
                upper = key.upper()
                debug = upper in ("DEBUG", "DJANGO_DEBUG", "FLASK_DEBUG", "APP_DEBUG")
                if debug and str(value).strip().lower() in _TRUTHY:
                    checks.append(
                        Check(
                            "lint",
                            "debug",
                            False,
                            f"env {key}={value} for role {role.name}: debug mode in production "
                            "shows stack traces and settings to anyone",
                            f"remove {key} from env.clear (or set it to false)",
                            warning=True,
                        )
                    )
                if upper in ("RAILS_ENV", "RACK_ENV", "NODE_ENV") and value in (
                    "development",
                    "test",
                ):
                    checks.append(
                        Check(
                            "lint",
                            "environment",
                            False,
                            f"env {key}={value} for role {role.name}",
                            f"use {key}=production on servers",
                            warning=True,
                        )
                    )
            break  # the env is per host; the first host shows the role's settings
    # One finding per kind and role is enough.
    unique: dict[tuple[str, str], Check] = {}
    for check in checks:
        unique.setdefault((check.name, check.detail), check)
    return list(unique.values())


# -- ssh ----------------------------------------------------------------------------------------


def _ssh_fix(message: str) -> tuple[str, str]:
    low = message.lower()
    if "host key" in low:
        return "host key", "verify the server's key fingerprint, then update known_hosts"
    if "authentication refused" in low:
        return "auth", "check ssh.user and ssh.keys, and the server's authorized_keys"
    return "reach", "check the address, that sshd runs, and the firewall (port ssh.port)"


async def ssh_checks(ctx: DeployContext, hosts: Sequence[str]) -> tuple[list[Check], list[str]]:
    await ctx.pre_connect()
    outcomes = await ctx.pool.connect_all(list(hosts))
    checks, reachable = [], []
    for outcome in outcomes:
        if outcome.ok:
            reachable.append(outcome.host)
            checks.append(
                Check(
                    "ssh",
                    "connect",
                    True,
                    "reached, host key known, authenticated",
                    host=outcome.host,
                )
            )
        else:
            message = str(outcome.error)
            kind, fix = _ssh_fix(message)
            hint = getattr(outcome.error, "hint", None)
            checks.append(Check("ssh", kind, False, message, hint or fix, host=outcome.host))
    return checks, reachable


# -- servers ------------------------------------------------------------------------------------


def _app_probes(ctx: DeployContext, host: str) -> tuple[probe.AppProbe, ...]:
    probes = []
    for role in ctx.roles_on(host):
        if role.proxy is None:
            continue
        filters = app_commands.container_filters(ctx.config, role)
        probes.append(
            probe.AppProbe(
                role=role.name,
                filters=tuple(v for v in filters if v != "--filter"),
                port=role.proxy.app_port,
                health_path=role.proxy.healthcheck.path or "/up",
                host_header=role.proxy.hosts[0] if role.proxy.hosts else None,
            )
        )
    return tuple(probes)


def server_findings(
    host: str,
    found: dict[str, list[str]],
    roles: Sequence[Role],
    *,
    proxy_host: bool,
    service_names: Sequence[str],
) -> list[Check]:
    """Verdicts for one server from its probe output (pure)."""
    checks = []
    lines = found.get("docker", [])
    docker = " ".join(lines)
    version = re.fullmatch(r"server (\d[\w.+~-]*)", lines[0].strip()) if len(lines) == 1 else None
    if version is not None:
        checks.append(Check("server", "docker", True, f"Docker {version[1]}", host=host))
    else:
        low = docker.lower()
        if "permission denied" in low:
            fix = (
                "the SSH user may not use Docker: add it to the docker group "
                "(`sudo usermod -aG docker $USER`, then log in again) or use root"
            )
        elif "command not found" in low or "not found" in low:
            fix = "Docker is not installed: run `dockyard server bootstrap`"
        else:
            fix = "start the Docker engine on the server (`systemctl start docker`)"
        detail = " ".join(
            line.strip()
            for line in lines
            if line.strip() != "server" and not re.fullmatch(r"exit \d+", line.strip())
        )
        checks.append(Check("server", "docker", False, detail or "no answer", fix, host=host))
        return checks  # nothing else on this server can be checked
    for disk in probe.disks(found.get("df", [])):
        free = disk.available
        detail = (
            f"{disk.mount}: {human(disk.used)} used of {human(disk.total)} "
            f"({disk.fraction:.0%}), {human(free)} free"
        )
        ok = free >= probe.DISK_MIN_FREE and disk.fraction < probe.DISK_MAX_USED
        checks.append(
            Check(
                "server",
                "disk",
                ok,
                detail,
                ""
                if ok
                else "free space: `dockyard prune`, `docker system prune`, "
                "rotate logs (Dockyard's default log rotation applies to new containers)",
                host=host,
            )
        )
    mem = memory.parse_host_memory("\n".join(found.get("memory", [])))
    available = mem.available
    if available is not None:
        limit = f", cgroup limit {human(mem.cgroup_limit)}" if mem.cgroup_limit else ""
        ok = available >= probe.MEMORY_MIN_AVAILABLE
        checks.append(
            Check(
                "server",
                "memory",
                ok,
                f"{human(available)} available of {human(mem.mem_total)}{limit}",
                ""
                if ok
                else "the server is nearly out of memory: a deploy starts a second "
                "container next to the first; use `dockyard deploy --strategy swap` or add "
                "memory/swap",
                host=host,
            )
        )
    if proxy_host:
        listening = probe.listening_ports(found.get("listen", []))
        for port in (80, 443):
            holders, taken = probe.port_holders(found.get("published", []), listening, port)
            others = [h for h in holders if h != "kamal-proxy"]
            if others:
                checks.append(
                    Check(
                        "server",
                        f"port {port}",
                        False,
                        f"published by container {others[0]}",
                        f"stop or remove {others[0]} (kamal-proxy needs port {port})",
                        host=host,
                    )
                )
            elif taken and not holders:
                checks.append(
                    Check(
                        "server",
                        f"port {port}",
                        False,
                        f"a process outside Docker listens on port {port}",
                        f"find it with `sudo ss -ltnp 'sport = :{port}'` and stop it "
                        "(nginx? apache?)",
                        host=host,
                    )
                )
            else:
                who = "kamal-proxy" if holders else "nothing yet"
                checks.append(Check("server", f"port {port}", True, who, host=host))
        checks += _proxy_findings(host, found, service_names)
    for role in roles:
        if role.proxy is not None:
            checks += _app_findings(host, role, probe.app_state(found, role.name))
    return checks


def _proxy_findings(host: str, found: dict[str, list[str]], names: Sequence[str]) -> list[Check]:
    line = " ".join(found.get("proxy", []))
    if not line:
        return [
            Check(
                "proxy",
                "running",
                False,
                "no kamal-proxy container",
                "run `dockyard proxy boot` (or `dockyard setup`)",
                host=host,
            )
        ]
    state, _, image = line.partition(" ")
    if state != "running":
        return [
            Check(
                "proxy",
                "running",
                False,
                f"kamal-proxy is {state}",
                "`dockyard proxy start` (its logs: `dockyard proxy logs`)",
                host=host,
            )
        ]
    checks = [Check("proxy", "running", True, image, host=host)]
    tag = image.rsplit(":", 1)[-1] if ":" in image.rsplit("/", 1)[-1] else ""
    if re.fullmatch(r"v?\d+(\.\d+)*", tag) and proxy_commands.is_older(tag):
        checks.append(
            Check(
                "proxy",
                "version",
                False,
                f"{tag} is older than {proxy_commands.MINIMUM_VERSION}",
                "`dockyard proxy reboot` with a newer proxy.run version",
                host=host,
            )
        )
    listed = "\n".join(found.get("services", []))
    for name in names:
        if name in listed:
            checks.append(Check("proxy", "service", True, f"routes {name}", host=host))
        else:
            checks.append(
                Check(
                    "proxy",
                    "service",
                    False,
                    f"no service {name} in the proxy",
                    "`dockyard deploy` (or `dockyard app boot`)",
                    host=host,
                )
            )
    return checks


def _app_findings(host: str, role: Role, state: probe.AppState) -> list[Check]:
    assert role.proxy is not None
    name = f"{role.name}"
    if not state.container:
        return [
            Check(
                "app",
                name,
                False,
                f"no running container of role {role.name}",
                "`dockyard deploy`; if it keeps stopping, `dockyard app logs`",
                host=host,
            )
        ]
    port = role.proxy.app_port
    checks = []
    if state.listening and port not in state.listening:
        ports = ", ".join(str(p) for p in sorted(state.listening))
        checks.append(
            Check(
                "app",
                f"{name} port",
                False,
                f"{state.container} listens on {ports}, but proxy.app_port is {port}",
                f"set proxy.app_port: {sorted(state.listening)[0]} (or make the app listen on "
                f"{port})",
                host=host,
            )
        )
    elif not state.listening and port in state.loopback:
        checks.append(
            Check(
                "app",
                f"{name} port",
                False,
                f"{state.container} listens on port {port} on 127.0.0.1 only: the proxy, in "
                "another container, cannot reach it",
                "make the app bind 0.0.0.0 (e.g. `--host 0.0.0.0` / `-b 0.0.0.0`)",
                host=host,
            )
        )
    elif not state.listening:
        checks.append(
            Check(
                "app",
                f"{name} port",
                False,
                f"{state.container} listens on no TCP port (yet?)",
                "check `dockyard app logs`: the app may still be booting or crashing",
                host=host,
            )
        )
    else:
        checks.append(Check("app", f"{name} port", True, f"listens on {port}", host=host))
    path = role.proxy.healthcheck.path or "/up"
    answer = state.health
    if answer.status == 200:
        checks.append(Check("app", f"{name} health", True, f"GET {path} -> 200", host=host))
    elif answer.status in (301, 302, 307, 308) and answer.location.startswith("https"):
        checks.append(
            Check(
                "app",
                f"{name} health",
                False,
                f"GET {path} redirects to {answer.location}",
                "the app forces HTTPS on its health check: the proxy terminates TLS and checks "
                "over plain HTTP (Rails: `config.assume_ssl = true` and exclude the path from "
                "force_ssl: "
                '`config.ssl_options = { redirect: { exclude: ->(r) { r.path == "/up" } } }`; '
                "Django: SECURE_REDIRECT_EXEMPT = [r'^up$'])",
                host=host,
            )
        )
    elif answer.status is not None:
        checks.append(
            Check(
                "app",
                f"{name} health",
                False,
                f"GET {path} -> {answer.status}",
                f"make {path} answer 200 when the app is ready (or set proxy.healthcheck.path)",
                host=host,
            )
        )
    else:
        checks.append(
            Check(
                "app",
                f"{name} health",
                False,
                f"GET {path} on port {port}: {answer.failure or 'no answer'}",
                f"check proxy.app_port ({port}) and `dockyard app logs`",
                host=host,
            )
        )
    hostcheck = state.hostcheck
    if hostcheck is not None and role.proxy.hosts:
        header = role.proxy.hosts[0]
        if hostcheck.status in (400, 403):
            checks.append(
                Check(
                    "app",
                    f"{name} host",
                    False,
                    f"GET / with Host: {header} -> {hostcheck.status}: the app rejects that host",
                    f"allow {header} (Django: ALLOWED_HOSTS; Rails: config.hosts)",
                    host=host,
                )
            )
        elif hostcheck.status is not None:
            checks.append(
                Check(
                    "app",
                    f"{name} host",
                    True,
                    f"accepts Host: {header} ({hostcheck.status})",
                    host=host,
                )
            )
    return checks


async def server_checks(ctx: DeployContext, host: str) -> list[Check]:
    config = ctx.config
    proxy_host = host in config.proxy_hosts
    roles = ctx.roles_on(host)
    script = probe.probe_script(
        _app_probes(ctx, host), proxy=proxy_host, memory_files=memory.CGROUP_FILES
    )
    result = await ctx.run(host, argv("bash", "-c", script), check=False, timeout=60)
    found = probe.sections(result.stdout)
    names = [app_commands.container_prefix(config, r) for r in roles if r.proxy is not None]
    return server_findings(host, found, roles, proxy_host=proxy_host, service_names=names)


# -- registry -----------------------------------------------------------------------------------


async def registry_checks(ctx: DeployContext, hosts: Sequence[str]) -> list[Check]:
    config = ctx.config
    server = config.registry.server or "Docker Hub"
    if config.registry.local:
        return [Check("registry", "login", True, f"{server}: local registry, reached over SSH")]
    try:
        login = registry_commands.login_for(config)
    except DockyardError as exc:
        return [Check("registry", "login", False, str(exc), "fix the registry credentials")]
    if login is None:
        return []
    checks = []
    with tempfile.TemporaryDirectory(prefix="dockyard-doctor-") as scratch:
        here = await ctx.local.run(login, env={"DOCKER_CONFIG": scratch}, timeout=60)
    checks.append(_login_check(here.ok, here.stderr or here.stdout, server, None))

    async def on_host(host: str) -> Check:
        result = await ctx.transport(host).run(login, timeout=60)
        return _login_check(result.ok, result.stderr or result.stdout, server, host)

    done = await ctx.pool.on(list(hosts), lambda t: on_host(t.host))
    checks += [o.value for o in done if o.ok and o.value is not None]
    return checks


def _login_check(ok: bool, output: str, server: str, host: str | None) -> Check:
    where = "from this machine" if host is None else "from the server"
    if ok:
        return Check("registry", "login", True, f"{server}: logged in {where}", host=host)
    lines = [line for line in output.strip().splitlines() if line.strip()]
    detail = lines[-1] if lines else "refused"
    low = output.lower()
    if "docker daemon socket" in low and "permission denied" in low:
        fix = "the SSH user may not use Docker: add it to the docker group"
    elif "unauthorized" in low or "denied" in low or "incorrect" in low:
        fix = "check registry.username and the password secret (KAMAL_REGISTRY_PASSWORD?)"
    elif "certificate" in low or "x509" in low:
        fix = "the registry's TLS certificate is not trusted there: install its CA"
    else:
        fix = f"check that {server} is reachable {where} (DNS, firewall, https)"
    return Check("registry", "login", False, f"{server}: {detail}", fix, host=host)


# -- everything ---------------------------------------------------------------------------------


async def run(ctx: DeployContext) -> list[Check]:
    config = ctx.config
    checks = await local_checks(ctx)
    checks += lint_checks(config, config.root)
    hosts = ctx.hosts
    ssh, reachable = await ssh_checks(ctx, hosts)
    checks += ssh
    if reachable:
        done = await ctx.pool.on(reachable, lambda t: server_checks(ctx, t.host))
        for outcome in done:
            if outcome.ok and outcome.value is not None:
                checks += outcome.value
            else:
                checks.append(
                    Check("server", "probe", False, str(outcome.error), host=outcome.host)
                )
        docker_ok = [c.host for c in checks if c.layer == "server" and c.name == "docker" and c.ok]
        checks += await registry_checks(ctx, [h for h in reachable if h in docker_ok])
    order = {layer: i for i, layer in enumerate(LAYERS)}
    return sorted(checks, key=lambda c: order.get(c.layer, len(order)))
