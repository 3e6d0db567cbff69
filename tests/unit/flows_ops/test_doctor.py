"""`dockyard doctor`: reading the server probe's answers and the verdicts drawn from them."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from dockyard.commands import doctor as probe
from dockyard.flows.ops import doctor
from dockyard.remote import FakePool, FakeTransport, Result

from .conftest import MakeConfig, make_ctx, run

ROLE_CONFIG = """service: hello
image: hello
servers:
  web:
    - 10.0.0.1
registry:
  server: registry.test:5000
  username: bob
  password:
    - KAMAL_REGISTRY_PASSWORD
builder:
  arch: amd64
proxy:
  app_port: 3000
  host: app.example.com
env:
  clear:
    DEBUG: "1"
    RAILS_ENV: development
"""

HEALTHY = """@@docker
server 26.1.5
@@root
/var/lib/docker
@@df
/dev/sda1 41152736 10288184 28755944 27% /
@@memory
/proc/meminfo:MemTotal:        2000000 kB
/proc/meminfo:MemAvailable:    1200000 kB
/sys/fs/cgroup/memory.max:max
@@listen
00000000:0050
00000000:01BB
00000000:0016
@@published
kamal-proxy\t0.0.0.0:80->80/tcp, 0.0.0.0:443->443/tcp
hello-web-v1\t
@@proxy
running registry.test:5000/dockyard-proxy:v0.9.2
@@services
Service      Host  Path  Target              State    TLS
hello-web    *     /     abc123:3000         running  no
@@app web
hello-web-v1 4242 172.18.0.5
@@applisten web
0B00007F:88F7
00000000:0BB8
@@health web
HTTP/1.1 200 OK
@@hostcheck web
HTTP/1.1 200 OK
"""


def _role(make_config: MakeConfig):  # type: ignore[no-untyped-def]
    return make_config(ROLE_CONFIG).roles[0]


def _findings(make_config: MakeConfig, text: str) -> list[doctor.Check]:
    return doctor.server_findings(
        "10.0.0.1",
        probe.sections(text),
        [_role(make_config)],
        proxy_host=True,
        service_names=["hello-web"],
    )


def _failed(checks: list[doctor.Check]) -> dict[str, doctor.Check]:
    return {c.name: c for c in doctor.failed(checks)}


def test_a_healthy_server_passes_every_check(make_config: MakeConfig) -> None:
    checks = _findings(make_config, HEALTHY)
    assert doctor.failed(checks) == []
    names = [c.name for c in checks]
    for name in ("docker", "disk", "memory", "port 80", "port 443", "running", "service"):
        assert name in names
    assert {"web port", "web health", "web host"} <= set(names)


def test_docker_permission_and_missing_docker_say_what_to_do(make_config: MakeConfig) -> None:
    denied = HEALTHY.replace(
        "server 26.1.5",
        "server \npermission denied while trying to connect to the Docker daemon socket\nexit 1",
    )
    (check,) = _findings(make_config, denied)  # nothing else is checked without Docker
    assert not check.ok and "docker group" in check.fix
    assert check.detail == "permission denied while trying to connect to the Docker daemon socket"
    missing = HEALTHY.replace("server 26.1.5", "bash: docker: command not found\nexit 127")
    assert "dockyard server bootstrap" in _findings(make_config, missing)[0].fix


def test_full_disk_and_low_memory_fail(make_config: MakeConfig) -> None:
    full = HEALTHY.replace(
        "/dev/sda1 41152736 10288184 28755944 27% /", "/dev/sda1 41152736 40000000 1152736 98% /"
    )
    assert "disk" in _failed(_findings(make_config, full))
    cgroup = HEALTHY.replace(
        "/sys/fs/cgroup/memory.max:max",
        "/sys/fs/cgroup/memory.max:1073741824\n/sys/fs/cgroup/memory.current:1000000000",
    )
    failed = _failed(_findings(make_config, cgroup))
    assert "memory" in failed and "cgroup limit 1.0 GiB" in failed["memory"].detail
    assert "--strategy swap" in failed["memory"].fix


def test_ports_taken_by_another_container_or_a_host_process(make_config: MakeConfig) -> None:
    other = HEALTHY.replace(
        "kamal-proxy\t0.0.0.0:80->80/tcp, 0.0.0.0:443->443/tcp",
        "kamal-proxy\t\nold-nginx\t0.0.0.0:80->80/tcp",
    )
    failed = _failed(_findings(make_config, other))
    assert "old-nginx" in failed["port 80"].detail
    assert "outside Docker" in failed["port 443"].detail


def test_proxy_stopped_old_or_missing_the_service(make_config: MakeConfig) -> None:
    stopped = HEALTHY.replace("running registry", "exited registry")
    assert "proxy start" in _failed(_findings(make_config, stopped))["running"].fix
    old = HEALTHY.replace("dockyard-proxy:v0.9.2", "kamal-proxy:v0.8.4")
    assert "older than v0.9.2" in _failed(_findings(make_config, old))["version"].detail
    unrouted = HEALTHY.replace("hello-web    *", "other-web    *")
    assert "no service hello-web" in _failed(_findings(make_config, unrouted))["service"].detail


def test_app_port_mismatch_loopback_only_https_redirect_and_host_rejected(
    make_config: MakeConfig,
) -> None:
    wrong_port = HEALTHY.replace("00000000:0BB8", "00000000:1F90")  # listens on 8080
    failed = _failed(_findings(make_config, wrong_port))
    assert "listens on 8080, but proxy.app_port is 3000" in failed["web port"].detail
    assert failed["web port"].fix.startswith("set proxy.app_port: 8080")
    loopback = HEALTHY.replace("00000000:0BB8", "0100007F:0BB8")
    assert "127.0.0.1 only" in _failed(_findings(make_config, loopback))["web port"].detail
    redirect = HEALTHY.replace(
        "@@health web\nHTTP/1.1 200 OK",
        "@@health web\nHTTP/1.1 301 Moved Permanently\nlocation: https://localhost/up",
    )
    failed = _failed(_findings(make_config, redirect))
    assert "redirects to https://localhost/up" in failed["web health"].detail
    assert "assume_ssl" in failed["web health"].fix
    rejected = HEALTHY.replace("@@hostcheck web\nHTTP/1.1 200 OK", "@@hostcheck web\nHTTP/1.1 400")
    failed = _failed(_findings(make_config, rejected))
    assert "Host: app.example.com -> 400" in failed["web host"].detail
    assert "ALLOWED_HOSTS" in failed["web host"].fix
    refused = HEALTHY.replace("@@health web\nHTTP/1.1 200 OK", "@@health web\nno answer (1)")
    assert "no answer" in _failed(_findings(make_config, refused))["web health"].detail


def test_no_running_container(make_config: MakeConfig) -> None:
    gone = HEALTHY.replace("@@app web\nhello-web-v1 4242 172.18.0.5\n", "@@app web\n")
    assert "no running container" in _failed(_findings(make_config, gone))["web"].detail


@pytest.mark.parametrize(
    ("entry", "port", "address"),
    [
        ("0100007F:1F90", 8080, "127.0.0.1"),
        ("00000000000000000000000000000000:0050", 80, "::"),
        ("00000000000000000000000001000000:0050", 80, "::1"),
        ("0000000000000000FFFF00000100007F:0050", 80, "127.0.0.1"),
    ],
)
def test_proc_net_tcp_addresses(entry: str, port: int, address: str) -> None:
    assert probe.listeners([entry]) == {port: {address}}


def test_lint_warns_about_vite_autobuild_debug_and_dev_environments(
    make_config: MakeConfig, tmp_path: Path
) -> None:
    config = make_config(ROLE_CONFIG)
    (config.root / "config" / "vite.json").write_text('{"production": {"autoBuild": true}}')
    checks = doctor.lint_checks(config, config.root)
    assert all(c.warning for c in checks)
    assert doctor.failed(checks) == []
    text = " ".join(c.detail for c in checks)
    assert "autoBuild" in text and "DEBUG=1" in text and "RAILS_ENV=development" in text


def test_secret_names_cover_env_registry_and_builder(make_config: MakeConfig) -> None:
    config = make_config()
    names = doctor.secret_names(config)
    assert "KAMAL_REGISTRY_PASSWORD" in names and "CACHE_PASSWORD" in names


def test_probe_script_is_valid_bash() -> None:
    script = probe.probe_script(
        (probe.AppProbe("web", ("label=service=hello",), 3000, "/up", "app.example.com"),)
    )
    check = subprocess.run(["bash", "-n", "-c", script], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr


@pytest.mark.parametrize(
    ("message", "kind"),
    [
        ("ssh: host key of root@10.0.0.1:22 has CHANGED since it was recorded", "host key"),
        ("ssh: host key of root@10.0.0.1:22 is unknown (not in known_hosts)", "host key"),
        ("ssh: authentication refused by root@10.0.0.1:22", "auth"),
        ("ssh: cannot reach root@10.0.0.1:22: connection refused", "reach"),
    ],
)
def test_ssh_failures_are_named_by_kind(message: str, kind: str) -> None:
    assert doctor._ssh_fix(message)[0] == kind


def test_local_checks_name_a_missing_secret_and_a_missing_docker(make_config: MakeConfig) -> None:
    config = make_config()
    # The secrets are read on first use: this file is what the checks see.
    (config.root / ".kamal" / "secrets").write_text("KAMAL_REGISTRY_PASSWORD=x\n")
    ctx, _ = make_ctx(config, FakePool())
    local = FakeTransport(host="local", default=None)
    local.on(["docker", "version"], Result(127, "", "bash: docker: command not found"))
    local.on(["docker", "buildx"], Result(1, "", "docker: 'buildx' is not a docker command"))
    ctx.local = local
    checks = {c.name: c for c in run(doctor.local_checks(ctx))}
    assert not checks["docker"].ok and "install Docker" in checks["docker"].fix
    assert checks["buildx"].warning and checks["buildx"].ok
    assert not checks["secrets"].ok and "CACHE_PASSWORD" in checks["secrets"].detail
