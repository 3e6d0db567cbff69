"""`python -m lab up / down / status`: a TLS registry and N "servers" (sshd + their own
Docker engine) on an internal Docker network."""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import os
import re
import secrets
import shutil
import ssl
import time
from dataclasses import dataclass
from pathlib import Path

from lab import certs, host, images
from lab.errors import LabError
from lab.locks import exclusive
from lab.paths import (
    LAB_FILTER,
    LAB_LABEL,
    LAB_VALUE,
    NETWORK,
    REGISTRY_CONTAINER,
    REGISTRY_IMAGE,
    REGISTRY_PORT,
    SERVER_IMAGE,
    SERVER_PREFIX,
    SHARED_STATE_DIR,
    STATE_DIR,
)
from lab.proc import run, tail
from lab.state import LabDoc, RegistryInfo, ServerInfo, SshInfo, load

log = logging.getLogger("lab")

REGISTRY_USER = "dockyard"
CERTS_D = Path("/etc/docker/certs.d")
# --privileged fails on VMs that lack CAP_SYS_RESOURCE ("unable to apply caps"); this set
# gives the inner engine what it needs there.
PRIVILEGED = ("--privileged",)
CAPS_FALLBACK = (
    "--cap-add",
    "ALL",
    "--cap-drop",
    "SYS_RESOURCE",
    "--security-opt",
    "seccomp=unconfined",
    "--security-opt",
    "apparmor=unconfined",
    "--security-opt",
    "systempaths=unconfined",
    "--device-cgroup-rule",
    "a *:* rwm",
)
_MEMORY = re.compile(r"^[1-9][0-9]*[bkmg]?$", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Paths:
    """The lab's files under lab/.state."""

    root: Path

    @property
    def doc(self) -> Path:
        return self.root / "lab.json"

    @property
    def ssh_key(self) -> Path:
        return self.root / "id_ed25519"

    @property
    def known_hosts(self) -> Path:
        return self.root / "known_hosts"

    @property
    def ca_cert(self) -> Path:
        return self.root / "ca" / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.root / "ca" / "ca.key"

    @property
    def registry_dir(self) -> Path:  # mounted on /lab in the registry container
        return self.root / "registry"

    @property
    def password(self) -> Path:
        return self.root / "registry-password"

    @property
    def run_mode(self) -> Path:  # which way of running servers works on this machine
        return self.root / "server-run-mode"


def server_name(index: int) -> str:
    return f"{SERVER_PREFIX}{index}"


def volume_name(index: int) -> str:
    return f"{server_name(index)}-docker"


def check_memory(memory: str | None) -> None:
    if memory is not None and not _MEMORY.match(memory):
        raise LabError(f"--memory {memory!r}: expected a size such as 512m or 1g")


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.chmod(0o600)
    path.write_bytes(data)


# -- identity: SSH key, CA, password ------------------------------------------------------
def ensure_ssh_key(paths: Paths) -> str:
    """The lab's SSH key pair (made once); returns the public key line."""
    if not paths.ssh_key.exists():
        paths.root.mkdir(parents=True, exist_ok=True)
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "dockyard-lab",
             "-f", str(paths.ssh_key)])  # fmt: skip
    pub = paths.ssh_key.with_suffix(".pub")
    if not pub.exists():
        pub.write_text(run(["ssh-keygen", "-y", "-f", str(paths.ssh_key)]).stdout)
    return pub.read_text().strip()


def ensure_ca(paths: Paths) -> certs.Pem:
    if paths.ca_cert.exists() and paths.ca_key.exists():
        return certs.Pem(paths.ca_cert.read_bytes(), paths.ca_key.read_bytes())
    ca = certs.make_ca()
    _write_private(paths.ca_key, ca.key)
    paths.ca_cert.write_bytes(ca.cert)
    return ca


def ensure_password(paths: Paths) -> str:
    if not paths.password.exists():
        _write_private(paths.password, secrets.token_urlsafe(18).encode())
    return paths.password.read_text().strip()


# -- docker helpers -----------------------------------------------------------------------
def container_ip(name: str) -> str:
    fmt = f'{{{{ (index .NetworkSettings.Networks "{NETWORK}").IPAddress }}}}'
    ip = run(["docker", "inspect", "-f", fmt, name]).stdout.strip()
    if not ip or ip == "<no value>":
        raise LabError(f"container {name} has no address on network {NETWORK}")
    return ip


def container_running(name: str) -> bool:
    proc = run(["docker", "inspect", "-f", "{{ .State.Running }}", name], check=False)
    return proc.returncode == 0 and proc.stdout.strip() == "true"


def ensure_network() -> None:
    if run(["docker", "network", "inspect", NETWORK], check=False).returncode == 0:
        return
    log.info("creating internal network %s", NETWORK)
    label = f"{LAB_LABEL}={LAB_VALUE}"
    run(["docker", "network", "create", "--internal", "--label", label, NETWORK])


_SERVER_ROLE = f"label={LAB_LABEL}.role=server"


def remove_servers() -> None:
    names = run(
        ["docker", "ps", "-aq", "--filter", LAB_FILTER, "--filter", _SERVER_ROLE]
    ).stdout.split()
    if names:
        run(["docker", "rm", "-f", "-v", *names], timeout=120)
    volumes = run(
        ["docker", "volume", "ls", "-q", "--filter", LAB_FILTER, "--filter", _SERVER_ROLE]
    ).stdout.split()
    if volumes:
        run(["docker", "volume", "rm", "-f", *volumes], timeout=120)


# -- registry -----------------------------------------------------------------------------
def registry_answers(address: str, ca_cert: Path, timeout: float = 3) -> bool:
    """True when the registry at `address` answers /v2/ over TLS (401: it wants a login)."""
    ip, _, port = address.rpartition(":")
    context = ssl.create_default_context(cafile=str(ca_cert))
    conn = http.client.HTTPSConnection(ip, int(port), context=context, timeout=timeout)
    try:
        conn.request("GET", "/v2/")
        return conn.getresponse().status in (200, 401)
    except (OSError, ssl.SSLError, http.client.HTTPException):
        return False
    finally:
        conn.close()


def ensure_registry(paths: Paths, ca: certs.Pem, password: str) -> str:
    """Start the registry unless it already runs with a certificate for its address;
    trust its CA in the host engine. Returns "IP:PORT"."""
    rdir = paths.registry_dir
    if container_running(REGISTRY_CONTAINER) and (rdir / "ready").exists():
        address = f"{container_ip(REGISTRY_CONTAINER)}:{REGISTRY_PORT}"
        if (rdir / "address").exists() and (rdir / "address").read_text() == address:
            _trust_on_host(paths, address)
            if _wait_registry(address, paths.ca_cert, 10):
                return address
    run(["docker", "rm", "-f", REGISTRY_CONTAINER], check=False)
    if rdir.exists():
        shutil.rmtree(rdir)
    rdir.mkdir(parents=True)
    log.info("starting the registry")
    run(
        [
            "docker", "run", "-d", "--name", REGISTRY_CONTAINER,
            "--network", NETWORK,
            "--label", f"{LAB_LABEL}={LAB_VALUE}", "--label", f"{LAB_LABEL}.role=registry",
            "-v", f"{rdir}:/lab:ro",
            REGISTRY_IMAGE,
        ]
    )  # fmt: skip
    ip = container_ip(REGISTRY_CONTAINER)
    address = f"{ip}:{REGISTRY_PORT}"
    server = certs.make_server_cert(ca, ip)
    (rdir / "registry.crt").write_bytes(server.cert + ca.cert)
    _write_private(rdir / "registry.key", server.key)
    (rdir / "htpasswd").write_text(certs.htpasswd_line(REGISTRY_USER, password))
    (rdir / "address").write_text(address)
    (rdir / "ready").write_text("1\n")
    _trust_on_host(paths, address)
    if not _wait_registry(address, paths.ca_cert, 30):
        logs = run(["docker", "logs", "--tail", "30", REGISTRY_CONTAINER], check=False)
        raise LabError(f"the registry at {address} does not answer:\n{tail(logs.stderr)}")
    return address


def _wait_registry(address: str, ca_cert: Path, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if registry_answers(address, ca_cert):
            return True
        time.sleep(0.2)
    return False


def _trust_on_host(paths: Paths, address: str) -> None:
    """The host engine reads certs.d at every push: no restart needed."""
    folder = CERTS_D / address
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "ca.crt").write_bytes(paths.ca_cert.read_bytes())


# -- servers ------------------------------------------------------------------------------
def _server_argv(
    index: int, pubkey: str, registry: str, paths: Paths, memory: str | None, mode: tuple[str, ...]
) -> list[str]:
    argv = [
        "docker", "run", "-d", "--name", server_name(index),
        "--hostname", f"server-{index}",
        "--network", NETWORK,
        "--label", f"{LAB_LABEL}={LAB_VALUE}", "--label", f"{LAB_LABEL}.role=server",
        "-e", f"LAB_AUTHORIZED_KEY={pubkey}",
        "-v", f"{volume_name(index)}:/var/lib/docker",
        "--mount", f"type=bind,source={paths.ca_cert},"
        f"target=/etc/docker/certs.d/{registry}/ca.crt,readonly",
        *mode,
    ]  # fmt: skip
    if memory:
        argv += ["--memory", memory, "--memory-swap", memory]
    return [*argv, SERVER_IMAGE]


def start_server(index: int, pubkey: str, registry: str, paths: Paths, memory: str | None) -> None:
    run(["docker", "volume", "create", "--label", f"{LAB_LABEL}={LAB_VALUE}",
         "--label", f"{LAB_LABEL}.role=server", volume_name(index)])  # fmt: skip
    known = paths.run_mode.read_text().strip() if paths.run_mode.exists() else ""
    modes = [CAPS_FALLBACK] if known == "caps" else [PRIVILEGED, CAPS_FALLBACK]
    errors = []
    for mode in modes:
        proc = run(_server_argv(index, pubkey, registry, paths, memory, mode), check=False)
        if proc.returncode == 0:
            paths.run_mode.write_text("caps\n" if mode is CAPS_FALLBACK else "privileged\n")
            return
        errors.append(tail(proc.stderr, 3))
        run(["docker", "rm", "-f", server_name(index)], check=False)
        if mode is PRIVILEGED:
            log.info("--privileged failed (%s); trying the capability set", errors[-1][:200])
    raise LabError(f"cannot start {server_name(index)}:\n" + "\n".join(errors))


def ssh_argv(paths: Paths, address: str, *command: str) -> list[str]:
    return [
        "ssh", "-i", str(paths.ssh_key),
        "-o", f"UserKnownHostsFile={paths.known_hosts}",
        "-o", "StrictHostKeyChecking=yes",
        "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "ConnectTimeout=5",
        f"root@{address}", *command,
    ]  # fmt: skip


def wait_servers(paths: Paths, addresses: list[str], timeout: float = 120) -> None:
    """Scan every server's host key into known_hosts, then wait until its engine answers."""
    deadline = time.monotonic() + timeout
    keys: dict[str, str] = {}
    while len(keys) < len(addresses):
        for address in addresses:
            if address in keys:
                continue
            proc = run(["ssh-keyscan", "-T", "2", "-t", "ed25519", address], check=False)
            if proc.returncode == 0 and proc.stdout.strip():
                keys[address] = proc.stdout
        if time.monotonic() > deadline:
            missing = sorted(set(addresses) - set(keys))
            raise LabError(f"no sshd answers on {', '.join(missing)} within {timeout:.0f} s")
        if len(keys) < len(addresses):
            time.sleep(0.5)
    paths.known_hosts.write_text("".join(keys[a] for a in addresses))
    pending = list(addresses)
    while pending:
        for address in list(pending):
            proc = run(ssh_argv(paths, address, "docker", "info"), check=False, timeout=30)
            if proc.returncode == 0:
                pending.remove(address)
        if time.monotonic() > deadline:
            raise LabError(
                f"the Docker engine on {', '.join(pending)} does not answer within "
                f"{timeout:.0f} s: {tail(proc.stderr, 5)}"
            )
        if pending:
            time.sleep(0.5)


# -- the commands -------------------------------------------------------------------------
SESSION_ENV = "DOCKYARD_LAB_SESSION"  # "held": the caller holds the session lock


def session_lock(paths: Paths) -> Path:
    """Held by a test session for as long as it uses the lab."""
    return paths.root / "session.lock"


def _not_in_use(paths: Paths) -> contextlib.AbstractContextManager[None]:
    """Wait while a test session (other than the caller) uses the lab."""
    if os.environ.get(SESSION_ENV) == "held":
        return contextlib.nullcontext()
    return exclusive(session_lock(paths), wait=1800, what="the lab (a test session uses it)")


def up(servers: int, memory: str | None = None, state_dir: Path = STATE_DIR) -> LabDoc:
    if not 1 <= servers <= 20:
        raise LabError(f"--servers {servers}: expected 1 to 20")
    check_memory(memory)
    paths = Paths(state_dir)
    with _not_in_use(paths), exclusive(paths.root / "lab.lock", wait=900, what="`lab up/down`"):
        return _up(paths, servers, memory)


def _up(paths: Paths, servers: int, memory: str | None) -> LabDoc:
    images.build(("base", "server", "registry"))
    started = time.monotonic()
    pubkey = ensure_ssh_key(paths)
    ca = ensure_ca(paths)
    password = ensure_password(paths)
    paths.doc.unlink(missing_ok=True)
    remove_servers()
    ensure_network()
    registry = ensure_registry(paths, ca, password)
    log.info("starting %d server(s)", servers)
    for index in range(1, servers + 1):
        start_server(index, pubkey, registry, paths, memory)
    infos = tuple(ServerInfo(server_name(i), container_ip(server_name(i))) for i in
                  range(1, servers + 1))  # fmt: skip
    wait_servers(paths, [s.address for s in infos])
    doc = LabDoc(
        registry=RegistryInfo(registry, REGISTRY_USER, password, str(paths.ca_cert)),
        servers=infos,
        ssh=SshInfo("root", str(paths.ssh_key), str(paths.known_hosts)),
    )
    paths.doc.write_text(doc.to_json() + "\n")
    log.info("lab up in %.1f s: registry %s, %d server(s)", time.monotonic() - started,
             registry, servers)  # fmt: skip
    return doc


def down(state_dir: Path = STATE_DIR) -> None:
    paths = Paths(state_dir)
    if shutil.which("docker") is None:
        log.info("no docker on this machine: nothing to remove")
        return
    host.ensure_engine(SHARED_STATE_DIR)
    with _not_in_use(paths), exclusive(paths.root / "lab.lock", wait=900, what="`lab up/down`"):
        _down(paths)


def _down(paths: Paths) -> None:
    doc = load(paths.doc)
    containers = run(["docker", "ps", "-aq", "--filter", LAB_FILTER]).stdout.split()
    if containers:
        log.info("removing %d container(s)", len(containers))
        run(["docker", "rm", "-f", "-v", *containers], timeout=180)
    if run(["docker", "network", "inspect", NETWORK], check=False).returncode == 0:
        run(["docker", "network", "rm", NETWORK])
    volumes = run(["docker", "volume", "ls", "-q", "--filter", LAB_FILTER]).stdout
    if volumes.split():
        run(["docker", "volume", "rm", "-f", *volumes.split()], timeout=120)
    registry_address = paths.registry_dir / "address"
    addresses = {doc.registry.address} if doc else set()
    if registry_address.exists():
        addresses.add(registry_address.read_text().strip())
    for address in addresses:
        shutil.rmtree(CERTS_D / address, ignore_errors=True)
    if paths.registry_dir.exists():
        shutil.rmtree(paths.registry_dir)
    paths.doc.unlink(missing_ok=True)
    log.info("lab down")


def status(state_dir: Path = STATE_DIR) -> str:
    """The saved document and what runs now, as JSON."""
    paths = Paths(state_dir)
    doc = load(paths.doc)
    rows = []
    if host.engine_answers():
        out = run(
            ["docker", "ps", "-a", "--filter", LAB_FILTER,
             "--format", "{{ .Names }}\t{{ .State }}\t{{ .Status }}"]
        ).stdout  # fmt: skip
        for line in sorted(out.splitlines()):
            name, state, detail = [*line.split("\t"), "", ""][:3]
            rows.append({"name": name, "state": state, "status": detail})
    return json.dumps({"lab": doc.to_dict() if doc else None, "containers": rows}, indent=2)
