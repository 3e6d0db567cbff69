"""Dockyard's deploy flows end to end on the lab's two servers (issue #6, "Done when"), with
the real Kamal 2.11 on the same servers and the same project directory:

- takeover both ways: Kamal reads and rolls back what Dockyard deployed, Dockyard reads, rolls
  back and deploys over what Kamal deployed (containers, labels, audit log, lock);
- zero failed requests from concurrent keep-alive and new-connection clients during 5 deploys
  and 2 rollbacks;
- a web role plus a workers role without the proxy;
- a destination (`-d staging`) beside the default deploy: names, labels, lock, audit;
- hooks: order and KAMAL_* environment, compared with Kamal running the same hooks;
- error paths a user can act on: host unreachable, SSH auth refused, registry login refused,
  image without the service label, port 80 taken.

The tests run in file order and share one project (module fixture)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab.state import LabDoc
from lab.testing import LabSsh
from tests.integration.e2e_support import (
    KAMAL,
    LoadLoop,
    Project,
    config_text,
    get,
    out,
)
from tests.integration.support import PROXY_VERSION, PYTHON, REPO, run, unavailable

pytestmark = pytest.mark.integration

# Tags pushed to the lab registry, and what `/` answers for each (the image's variant).
TAGS = {
    "v1": "v1",
    "v2": "v2",
    "t1": "v1",
    "t2": "v2",
    "t3": "v1",
    "t4": "v2",
    "t5": "v1",
}


@pytest.fixture(scope="module")
def project(lab: LabDoc) -> Iterator[Project]:
    if not KAMAL.is_file():
        unavailable(f"Kamal 2.11 is not installed at {KAMAL} (scripts/lib.sh ensure_kamal)")
    proxy_source = os.environ.get("DOCKYARD_TEST_PROXY_SOURCE")
    if not proxy_source:
        proxy_source = "dockyard-proxy:lab"
        build = run([str(PYTHON), "-m", "lab", "build", "proxy"], cwd=REPO, timeout=1800)
        assert build.returncode == 0, build.stderr[-3000:]
    reg = lab.registry.address
    with tempfile.TemporaryDirectory(prefix="dockyard-e2e-") as tmp:
        root = Path(tmp)
        env = {"DOCKER_CONFIG": str(root / "docker")}
        login = run(
            ["docker", "login", reg, "-u", lab.registry.username, "--password-stdin"],
            env=env,
            input=lab.registry.password,
        )
        assert login.returncode == 0, login.stderr
        pushes = [(proxy_source, f"{reg}/dockyard-proxy:{PROXY_VERSION}")] + [
            (f"dockyard-lab/hello:{variant}", f"{reg}/hello:{tag}") for tag, variant in TAGS.items()
        ]
        for source, ref in pushes:
            assert run(["docker", "tag", source, ref], env=env).returncode == 0
            pushed = run(["docker", "push", ref], env=env)
            assert pushed.returncode == 0, pushed.stderr
        ssh_config = root / "ssh_config"
        ssh_config.write_text(
            f"Host *\n  UserKnownHostsFile {lab.ssh.known_hosts}\n  StrictHostKeyChecking yes\n"
        )
        app = root / "app"
        (app / "config").mkdir(parents=True)
        (app / ".kamal").mkdir()
        (app / ".kamal" / "secrets").write_text(
            f"KAMAL_REGISTRY_PASSWORD={lab.registry.password}\nBAD_REGISTRY_PASSWORD=wrong\n"
        )
        for name in ("Dockerfile", "app.py"):  # the hello app, for builds
            (app / name).write_text((REPO / "lab" / "apps" / "hello" / name).read_text())
        s1, s2 = (s.address for s in lab.servers)
        (app / "config" / "deploy.yml").write_text(
            config_text(lab, ssh_config, web=[s1, s2], workers=[s2])
        )
        yield Project(app, env, lab, ssh_config)


def names(lab_ssh: LabSsh, address: str, *, all: bool = False) -> list[str]:
    args = ["docker", "ps", *(["-a"] if all else []), "--format", "{{.Names}}"]
    return lab_ssh(address, *args).stdout.split()


def proxy_services(lab_ssh: LabSsh, address: str) -> str:
    return lab_ssh(address, "docker", "exec", "kamal-proxy", "kamal-proxy", "list").stdout


def no_lock(lab_ssh: LabSsh, address: str) -> bool:
    return "lock-" not in lab_ssh(address, "ls", "-a", ".kamal").stdout


# --- 1. takeover, both ways --------------------------------------------------------------------


def test_kamal_takes_over_a_dockyard_deploy(project: Project, lab_ssh: LabSsh) -> None:
    s1, s2 = project.addresses
    setup = project.dockyard("setup", "-P", "--version", "v1")
    assert setup.returncode == 0, out(setup)
    deploy = project.dockyard("deploy", "-P", "--version", "v2")
    assert deploy.returncode == 0, out(deploy)
    assert project.answers() == [(200, "v2"), (200, "v2")]

    details = project.kamal("app", "details", version="v2")
    assert details.returncode == 0, out(details)
    # Kamal finds Dockyard's containers through its own label filters, on both hosts
    assert details.stdout.count("hello-web-v2") == 2, out(details)
    assert details.stdout.count("hello-workers-v2") == 1, out(details)

    rollback = project.kamal("rollback", "v1", version="v1")
    assert rollback.returncode == 0, out(rollback)
    assert "not available as a container" not in rollback.stdout, out(rollback)
    assert project.answers() == [(200, "v1"), (200, "v1")]
    assert "hello-workers-v1" in names(lab_ssh, s2)
    assert "hello-workers-v2" not in names(lab_ssh, s2)

    audit = project.kamal("audit", version="v1")
    assert audit.returncode == 0, out(audit)
    assert "[web] Booted app version v2" in audit.stdout  # written by Dockyard
    assert "[web] Booted app version v1" in audit.stdout  # written by Kamal's rollback
    assert "[workers] Booted app version v2" in audit.stdout

    # Dockyard's lock, as Kamal reads it; Kamal's release, as Dockyard sees it.
    held = project.dockyard("lock", "acquire", "-m", "e2e takeover", "--version", "v1")
    assert held.returncode == 0, out(held)
    status = project.kamal("lock", "status", version="v1")
    assert status.returncode == 0, out(status)
    assert "Message: e2e takeover" in status.stdout and "Version: v1" in status.stdout
    locked = project.kamal("deploy", "-P", "--version=v2", version="v2")
    assert locked.returncode != 0 and "Deploy lock already in place" in out(locked)
    released = project.kamal("lock", "release", version="v1")
    assert released.returncode == 0, out(released)
    after = project.dockyard("lock", "status")
    assert after.returncode == 0, out(after)
    assert "There is no deploy lock" in after.stdout, out(after)
    assert no_lock(lab_ssh, s1)


def test_dockyard_takes_over_a_kamal_deploy(project: Project, lab_ssh: LabSsh) -> None:
    s1, s2 = project.addresses
    removed = project.dockyard("remove", "-y")
    assert removed.returncode == 0, out(removed)
    for address in project.addresses:
        assert not [n for n in names(lab_ssh, address, all=True) if n.startswith("hello-")]

    setup = project.kamal("setup", "-P", "--version=v1", version="v1")
    assert setup.returncode == 0, out(setup)
    deploy = project.kamal("deploy", "-P", "--version=v2", version="v2")
    assert deploy.returncode == 0, out(deploy)
    assert project.answers() == [(200, "v2"), (200, "v2")]

    details = project.dockyard("app", "details")
    assert details.returncode == 0, out(details)
    assert details.stdout.count("hello-web-v2") == 2, out(details)
    assert details.stdout.count("hello-workers-v2") == 1, out(details)

    listed = project.dockyard("rollback")
    assert listed.returncode == 0, out(listed)
    assert "v1" in listed.stdout and "v2 (current)" in listed.stdout, out(listed)

    rollback = project.dockyard("rollback", "v1")
    assert rollback.returncode == 0, out(rollback)
    assert project.answers() == [(200, "v1"), (200, "v1")]
    assert "hello-workers-v1" in names(lab_ssh, s2)
    assert "hello-workers-v2" not in names(lab_ssh, s2)

    deploy = project.dockyard("deploy", "-P", "--version", "v2")
    assert deploy.returncode == 0, out(deploy)
    assert project.answers() == [(200, "v2"), (200, "v2")]
    for address in project.addresses:
        running = names(lab_ssh, address)
        assert "hello-web-v2" in running and "hello-web-v1" not in running
        assert running.count("kamal-proxy") == 1  # Kamal's proxy, kept

    audit = project.dockyard("audit")
    assert audit.returncode == 0, out(audit)
    assert "Booted app version v1" in audit.stdout  # Kamal's lines, read back
    assert "[web] Booted app version v2" in audit.stdout

    # Kamal's lock, as Dockyard reads it and refuses to deploy under it.
    held = project.kamal("lock", "acquire", "-m", "kamal holds it", version="v2")
    assert held.returncode == 0, out(held)
    try:
        status = project.dockyard("lock", "status")
        assert "Message: kamal holds it" in status.stdout, out(status)
        locked = project.dockyard("deploy", "-P", "--version", "v1")
        assert locked.returncode != 0 and "Deploy lock already in place" in locked.stderr
    finally:
        released = project.dockyard("lock", "release")
    assert released.returncode == 0, out(released)
    assert no_lock(lab_ssh, s1)
    assert project.answers() == [(200, "v2"), (200, "v2")]


# --- 2. zero failed requests during 5 deploys and 2 rollbacks ---------------------------------


def test_load_loop_during_five_deploys_and_two_rollbacks(project: Project, lab_ssh: LabSsh) -> None:
    steps = [
        ("deploy", "t1"),
        ("deploy", "t2"),
        ("deploy", "t3"),
        ("deploy", "t4"),
        ("deploy", "t5"),
        ("rollback", "t4"),
        ("rollback", "t3"),
    ]
    timings: list[str] = []
    with LoadLoop(project.addresses, ("v1", "v2")) as load:
        for action, tag in steps:
            started = time.monotonic()
            answered = load.ok
            if action == "deploy":
                done = project.dockyard("deploy", "-P", "--version", tag)
            else:
                done = project.dockyard("rollback", tag)
            timings.append(f"{action} {tag} {time.monotonic() - started:.1f}s")
            assert done.returncode == 0, f"{action} {tag}: {out(done)}"
            assert project.answers() == [(200, TAGS[tag])] * 2, f"after {action} {tag}"
            assert load.ok > answered, f"the load got no answer during {action} {tag}"
    print(f"\nload loop during {', '.join(timings)}: {load.summary()}")
    assert load.errors == [], f"{load.summary()}: {load.errors[:10]}"
    assert load.ok > 50 and load.reused > 10 and load.connections > 20, load.summary()
    assert load.seen["v1"] > 0 and load.seen["v2"] > 0, load.seen
    s2 = project.addresses[1]
    assert "hello-workers-t3" in names(lab_ssh, s2)


# --- 3. a web role and a workers role without the proxy ---------------------------------------


def test_workers_role_without_proxy(project: Project, lab_ssh: LabSsh) -> None:
    s1, s2 = project.addresses
    deploy = project.dockyard("deploy", "-P", "--version", "v2")
    assert deploy.returncode == 0, out(deploy)
    running = names(lab_ssh, s2)
    assert "hello-web-v2" in running and "hello-workers-v2" in running
    assert not [n for n in names(lab_ssh, s1) if n.startswith("hello-workers")]
    labels = lab_ssh(
        s2, "docker", "inspect", "-f",
        '{{index .Config.Labels "service"}} {{index .Config.Labels "role"}} '
        '{{index .Config.Cmd 0}} {{index .Config.Cmd 1}}',
        "hello-workers-v2",
    ).stdout.split()  # fmt: skip
    assert labels == ["hello", "workers", "python3", "/app/app.py"]
    for address in project.addresses:
        listed = proxy_services(lab_ssh, address)
        assert "hello-web" in listed and "hello-workers" not in listed

    details = project.dockyard("app", "details", "-r", "workers")
    assert details.returncode == 0, out(details)
    assert "hello-workers-v2" in details.stdout and "hello-web" not in details.stdout
    assert s2 in details.stdout and s1 not in details.stdout

    rollback = project.dockyard("rollback", "t5")
    assert rollback.returncode == 0, out(rollback)
    running = names(lab_ssh, s2)
    assert "hello-web-t5" in running and "hello-workers-t5" in running
    assert "hello-workers-v2" not in running
    assert project.answers() == [(200, "v1"), (200, "v1")]
    kamal_view = project.kamal("app", "details", "-r", "workers", version="t5")
    assert kamal_view.returncode == 0, out(kamal_view)
    assert "hello-workers-t5" in kamal_view.stdout and "hello-web" not in kamal_view.stdout


# --- 4. destinations ---------------------------------------------------------------------------


def write_staging(project: Project) -> None:
    s2 = project.addresses[1]
    (project.root / "config" / "deploy.staging.yml").write_text(
        f"""servers:
  web:
    - {s2}
  workers:
    hosts:
      - {s2}
proxy:
  host: staging.lab
env:
  clear:
    STAGE: staging
"""
    )
    (project.root / ".kamal" / "secrets.staging").write_text(
        f"KAMAL_REGISTRY_PASSWORD={project.lab.registry.password}\n"
    )


def test_destination_beside_the_default_deploy(
    project: Project, lab_ssh: LabSsh, tmp_path: Path
) -> None:
    s1, s2 = project.addresses
    write_staging(project)
    log = tmp_path / "hooks.log"
    install_hooks(project, log)
    try:
        deploy = project.dockyard("deploy", "-d", "staging", "-P", "--version", "v2")
    finally:
        remove_hooks(project)
    assert deploy.returncode == 0, out(deploy)
    hooks = dict(read_hooks(log))
    assert hooks["pre-deploy"]["KAMAL_DESTINATION"] == "staging"
    assert hooks["pre-deploy"]["KAMAL_HOSTS"] == s2
    assert hooks["post-deploy"]["KAMAL_DESTINATION"] == "staging"
    running = names(lab_ssh, s2)
    assert "hello-web-staging-v2" in running and "hello-workers-staging-v2" in running
    assert not [n for n in names(lab_ssh, s1, all=True) if "staging" in n]
    labels = lab_ssh(
        s2, "docker", "inspect", "-f",
        '{{index .Config.Labels "service"}} {{index .Config.Labels "role"}} '
        '{{index .Config.Labels "destination"}}',
        "hello-web-staging-v2",
    ).stdout.split()  # fmt: skip
    assert labels == ["hello", "web", "staging"]
    env = lab_ssh(s2, "docker", "exec", "hello-web-staging-v2", "env").stdout.splitlines()
    assert "KAMAL_DESTINATION=staging" in env and "STAGE=staging" in env
    assert "hello-web-staging" in proxy_services(lab_ssh, s2)
    # Both apps on one proxy: the staging host name and the default route.
    assert get(s2, host="staging.lab") == (200, "v2")
    assert project.answers() == [(200, "v1"), (200, "v1")]  # the default deploy (t5)

    audit = lab_ssh(s2, "cat", ".kamal/hello-staging-audit.log").stdout
    assert re.search(r"\] \[staging\] \[web\] Booted app version v2", audit), audit
    assert "hello-staging-audit.log" not in lab_ssh(s1, "ls", ".kamal").stdout
    env_file = ".kamal/apps/hello-staging/env/roles/web.env"
    assert lab_ssh(s2, "stat", "-c", "%a", env_file).stdout.strip() == "600"

    # The destination's lock is its own: the default deploy goes on while it is held.
    held = project.dockyard("lock", "acquire", "-d", "staging", "-m", "stage hold")
    assert held.returncode == 0, out(held)
    try:
        assert "lock-hello-staging" in lab_ssh(s2, "ls", ".kamal").stdout
        kamal_status = project.kamal("lock", "status", "-d", "staging", version="v2")
        assert "Message: stage hold" in kamal_status.stdout, out(kamal_status)
        default = project.dockyard("deploy", "-P", "--version", "v2")
        assert default.returncode == 0, out(default)
        locked = project.dockyard("deploy", "-d", "staging", "-P", "--version", "v1")
        assert locked.returncode != 0 and "Deploy lock already in place" in locked.stderr
    finally:
        released = project.dockyard("lock", "release", "-d", "staging")
    assert released.returncode == 0, out(released)
    assert project.answers() == [(200, "v2"), (200, "v2")]
    assert get(s2, host="staging.lab") == (200, "v2")
    assert "hello-web-staging-v2" in names(lab_ssh, s2)

    # Kamal sees the destination's containers under the same names.
    kamal_view = project.kamal("app", "details", "-d", "staging", version="v2")
    assert kamal_view.returncode == 0, out(kamal_view)
    assert "hello-web-staging-v2" in kamal_view.stdout
    assert "hello-web-v2" not in kamal_view.stdout

    # Removing the destination leaves the default deploy (and the shared proxy) alone.
    removed = project.dockyard("remove", "-d", "staging", "-y")
    assert removed.returncode == 0, out(removed)
    assert not [n for n in names(lab_ssh, s2, all=True) if "staging" in n]
    assert project.answers() == [(200, "v2"), (200, "v2")]


# --- 5. hooks ----------------------------------------------------------------------------------

HOOK_NAMES = (
    "pre-connect",
    "pre-build",
    "pre-deploy",
    "pre-app-boot",
    "post-app-boot",
    "post-deploy",
    "pre-proxy-reboot",
    "post-proxy-reboot",
    "docker-setup",
)


def install_hooks(project: Project, log: Path) -> None:
    hooks = project.root / ".kamal" / "hooks"
    hooks.mkdir(exist_ok=True)
    for name in HOOK_NAMES:
        script = hooks / name
        script.write_text(
            f'#!/bin/sh\n{{ echo "== {name}"; env | grep "^KAMAL_" | sort; }} >> "{log}"\n'
        )
        script.chmod(0o755)


def remove_hooks(project: Project) -> None:
    hooks = project.root / ".kamal" / "hooks"
    for name in HOOK_NAMES:
        (hooks / name).unlink(missing_ok=True)


def read_hooks(log: Path) -> list[tuple[str, dict[str, str]]]:
    calls: list[tuple[str, dict[str, str]]] = []
    for line in log.read_text().splitlines():
        if line.startswith("== "):
            calls.append((line[3:], {}))
        elif "=" in line and calls:
            key, _, value = line.partition("=")
            calls[-1][1][key] = value
    return calls


STABLE = (
    "KAMAL_SERVICE",
    "KAMAL_VERSION",
    "KAMAL_SERVICE_VERSION",
    "KAMAL_HOSTS",
    "KAMAL_COMMAND",
    "KAMAL_SUBCOMMAND",
    "KAMAL_DESTINATION",
    "KAMAL_ROLES",
    "KAMAL_LOCK",
)


def same_hooks_as_kamal(
    ours: Path,
    theirs: Path,
    our_version: str,
    their_version: str,
    *,
    ours_only: tuple[str, ...] = (),
) -> list[tuple[str, dict[str, str]]]:
    """The hooks Dockyard ran (logged in ``ours``) are those Kamal ran (``theirs``) for the
    same command, in the same order, with the same variables and values (but the time, the
    version and the runtime). ``ours_only``: variables only Dockyard sets (checked absent in
    Kamal's, then left out of the comparison)."""
    dockyard_calls, kamal_calls = read_hooks(ours), read_hooks(theirs)
    for name, kenv in kamal_calls:
        for key in ours_only:
            assert key not in kenv, f"{name}: Kamal set {key}={kenv[key]}"
    dockyard_calls = [
        (name, {k: v for k, v in env.items() if k not in ours_only}) for name, env in dockyard_calls
    ]
    assert [n for n, _ in dockyard_calls] == [n for n, _ in kamal_calls], (
        f"dockyard {[n for n, _ in dockyard_calls]} != kamal {[n for n, _ in kamal_calls]}"
    )
    for (name, env), (_, kenv) in zip(dockyard_calls, kamal_calls, strict=True):
        # the same variables (secrets included, for the hooks that get them)
        assert sorted(env) == sorted(kenv), f"{name}: {sorted(env)} != {sorted(kenv)}"
        for key in STABLE:
            if key in ("KAMAL_VERSION", "KAMAL_SERVICE_VERSION"):
                continue
            assert env.get(key) == kenv.get(key), f"{name} {key}: {env.get(key)} {kenv.get(key)}"
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", env["KAMAL_RECORDED_AT"])
        assert env["KAMAL_PERFORMER"] == kenv["KAMAL_PERFORMER"]
        assert env["KAMAL_VERSION"] == our_version and kenv["KAMAL_VERSION"] == their_version
        assert env["KAMAL_SERVICE_VERSION"] == f"hello@{our_version}"
    return dockyard_calls


def test_hooks_order_and_environment_match_kamal(project: Project, tmp_path: Path) -> None:
    s1, s2 = project.addresses
    ours, theirs, built = tmp_path / "dockyard.log", tmp_path / "kamal.log", tmp_path / "b.log"
    try:
        install_hooks(project, ours)
        deploy = project.dockyard("deploy", "-P", "--version", "v1")
        assert deploy.returncode == 0, out(deploy)
        install_hooks(project, theirs)
        kamal = project.kamal("deploy", "-P", "--version=v2", version="v2")
        assert kamal.returncode == 0, out(kamal)
        install_hooks(project, built)
        build = project.dockyard("deploy", "--version", "h1", "-r", "web")
        assert build.returncode == 0, out(build)
    finally:
        remove_hooks(project)

    dockyard_calls = same_hooks_as_kamal(ours, theirs, "v1", "v2")
    order = [name for name, _ in dockyard_calls]
    assert order == ["pre-connect", "pre-deploy", "pre-app-boot", "post-app-boot", "post-deploy"]
    by_name = dict(dockyard_calls)
    assert by_name["pre-deploy"]["KAMAL_HOSTS"] == f"{s1},{s2}"
    assert by_name["pre-deploy"]["KAMAL_COMMAND"] == "deploy"
    assert "KAMAL_DESTINATION" not in by_name["pre-deploy"]
    assert "KAMAL_ROLES" not in by_name["pre-deploy"]
    assert "KAMAL_RUNTIME" in by_name["post-deploy"]
    assert "KAMAL_RUNTIME" not in by_name["pre-deploy"]
    assert by_name["pre-deploy"]["KAMAL_REGISTRY_PASSWORD"] == project.lab.registry.password
    assert "KAMAL_REGISTRY_PASSWORD" not in by_name["pre-app-boot"]

    build_calls = read_hooks(built)
    assert [n for n, _ in build_calls] == [
        "pre-connect", "pre-build", "pre-deploy", "pre-app-boot", "post-app-boot", "post-deploy",
    ]  # fmt: skip
    for name, env in build_calls:
        assert env.get("KAMAL_ROLES") == "web", name
        assert env["KAMAL_VERSION"] == "h1", name
    assert project.answers() == [(200, "built"), (200, "built")]


def test_setup_and_proxy_reboot_hooks_match_kamal(project: Project, tmp_path: Path) -> None:
    s1, s2 = project.addresses
    logs = {name: tmp_path / f"{name}.log" for name in ("setup", "ksetup", "reboot", "kreboot")}
    try:
        install_hooks(project, logs["setup"])
        setup = project.dockyard("setup", "-P", "--version", "v1")
        assert setup.returncode == 0, out(setup)
        install_hooks(project, logs["ksetup"])
        ksetup = project.kamal("setup", "-P", "--version=v2", version="v2")
        assert ksetup.returncode == 0, out(ksetup)
        install_hooks(project, logs["reboot"])
        reboot = project.dockyard("proxy", "reboot", "-y", "--version", "v1")
        assert reboot.returncode == 0, out(reboot)
        install_hooks(project, logs["kreboot"])
        kreboot = project.kamal("proxy", "reboot", "-y", "--version=v2", version="v2")
        assert kreboot.returncode == 0, out(kreboot)
    finally:
        remove_hooks(project)
    calls = same_hooks_as_kamal(logs["setup"], logs["ksetup"], "v1", "v2")
    assert [n for n, _ in calls] == [
        "pre-connect", "docker-setup", "pre-deploy", "pre-app-boot", "post-app-boot", "post-deploy",
    ]  # fmt: skip
    by_name = dict(calls)
    assert by_name["post-deploy"]["KAMAL_LOCK"] == "true"  # setup holds it through post-deploy
    assert by_name["pre-deploy"]["KAMAL_COMMAND"] == "setup"
    # Kamal's CLI never sets KAMAL_SUBCOMMAND for `kamal proxy reboot` (Thor records the
    # `proxy` invocation of the main CLI first, and Kamal reads the first one); Dockyard sets
    # it, as kamal.md describes the variable: a deliberate difference.
    for name, env in read_hooks(logs["reboot"]):
        assert env["KAMAL_SUBCOMMAND"] == "reboot", name
    calls = same_hooks_as_kamal(
        logs["reboot"], logs["kreboot"], "v1", "v2", ours_only=("KAMAL_SUBCOMMAND",)
    )
    assert [n for n, _ in calls] == ["pre-connect", "pre-proxy-reboot", "post-proxy-reboot"]
    for _, env in calls:
        assert env["KAMAL_HOSTS"] == f"{s1},{s2}"
        assert env["KAMAL_COMMAND"] == "proxy"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # the rebooted proxy finds its services again
        try:
            if project.answers() == [(200, "v2"), (200, "v2")]:
                break
        except OSError:
            pass
        time.sleep(0.5)
    assert project.answers() == [(200, "v2"), (200, "v2")]


# --- 6. error paths ----------------------------------------------------------------------------


def write_alt_config(project: Project, name: str, **kwargs: object) -> str:
    s1, s2 = project.addresses
    args: dict[str, object] = {"web": [s1, s2], "workers": [s2], **kwargs}
    path = project.root / "config" / f"{name}.yml"
    path.write_text(config_text(project.lab, project.ssh_config, **args))  # type: ignore[arg-type]
    return str(path.relative_to(project.root))


def serving(project: Project) -> list[tuple[int, str]]:
    """What both servers answer now; deploys v1 first when nothing is deployed (so that the
    error tests also run alone)."""
    try:
        return project.answers()
    except OSError:
        setup = project.dockyard("setup", "-P", "--version", "v1")
        assert setup.returncode == 0, out(setup)
        return project.answers()


def assert_clean_failure(
    project: Project,
    lab_ssh: LabSsh,
    done: subprocess.CompletedProcess[str],
    *,
    host: str,
    words: tuple[str, ...],
    before: list[tuple[int, str]],
) -> None:
    """Non-zero exit, no traceback, a message naming the host and the layer, the lock
    released, and the previous version still serving."""
    assert done.returncode != 0, out(done)
    err = done.stderr
    assert "Traceback" not in err, err
    assert host in err, err
    for word in words:
        assert word.lower() in err.lower(), f"{word!r} not in:\n{err}"
    assert no_lock(lab_ssh, project.addresses[0])
    assert project.answers() == before


def test_error_host_unreachable(project: Project, lab_ssh: LabSsh) -> None:
    before = serving(project)
    s1, s2 = project.addresses
    ghost = re.sub(r"\.\d+$", ".250", s2)
    assert ghost not in (s1, s2)
    config = write_alt_config(project, "ghost", web=[s1, ghost])
    done = project.dockyard("deploy", "-c", config, "-P", "--version", "v2", timeout=180)
    print(f"\n{done.stderr[-1500:]}")
    assert_clean_failure(project, lab_ssh, done, host=ghost, words=("ssh",), before=before)


def test_error_ssh_auth_refused(project: Project, lab_ssh: LabSsh, tmp_path: Path) -> None:
    before = serving(project)
    key = tmp_path / "wrong_key"
    made = run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)])
    assert made.returncode == 0, made.stderr
    config = write_alt_config(project, "wrongkey", key=str(key))
    done = project.dockyard("deploy", "-c", config, "-P", "--version", "v2", timeout=180)
    print(f"\n{done.stderr[-1500:]}")
    assert_clean_failure(
        project, lab_ssh, done, host=project.addresses[0], words=("auth",), before=before
    )


def test_error_registry_login_refused(project: Project, lab_ssh: LabSsh) -> None:
    before = serving(project)
    # Dockyard pulls with the credentials a server already stored and logs in only when the
    # registry asks for them: forget them first, so the wrong password is used.
    for address in project.addresses:
        lab_ssh(address, "docker", "logout", project.lab.registry.address)
    config = write_alt_config(project, "badpass", password_secret="BAD_REGISTRY_PASSWORD")
    done = project.dockyard("deploy", "-c", config, "-P", "--version", "v2", timeout=180)
    print(f"\n{done.stderr[-1500:]}")
    assert_clean_failure(
        project,
        lab_ssh,
        done,
        host=project.addresses[0],
        words=("registry", "login"),
        before=before,
    )


def test_error_image_without_service_label(project: Project, lab_ssh: LabSsh) -> None:
    before = serving(project)
    reg = project.lab.registry.address
    context = project.root.parent / "nolabel"
    context.mkdir(exist_ok=True)
    (context / "Dockerfile").write_text("FROM dockyard-lab/hello:v1\nLABEL service=other\n")
    built = run(
        ["docker", "build", "-q", "-t", f"{reg}/hello:nolabel", str(context)],
        env={**project.env, "DOCKER_BUILDKIT": "0"},
    )
    assert built.returncode == 0, built.stderr
    pushed = run(["docker", "push", f"{reg}/hello:nolabel"], env=project.env)
    assert pushed.returncode == 0, pushed.stderr
    done = project.dockyard("deploy", "-P", "--version", "nolabel", timeout=180)
    print(f"\n{done.stderr[-1500:]}")
    assert_clean_failure(
        project, lab_ssh, done, host=project.addresses[0], words=("service",), before=before
    )
    for address in project.addresses:
        assert not [n for n in names(lab_ssh, address, all=True) if n.endswith("-nolabel")]


def test_error_port_80_taken(project: Project, lab_ssh: LabSsh) -> None:
    s1 = project.addresses[0]
    removed = project.dockyard("remove", "-y")
    assert removed.returncode == 0, out(removed)
    assert "kamal-proxy" not in names(lab_ssh, s1, all=True)
    reg = project.lab.registry.address
    lab_ssh(
        s1, "docker", "login", reg, "-u", project.lab.registry.username, "--password-stdin",
        input=project.lab.registry.password,
    )  # fmt: skip
    lab_ssh(s1, "docker", "run", "-d", "--name", "e2e-port80", "-p", "80:80", f"{reg}/hello:v2")
    try:
        done = project.dockyard("setup", "-P", "--version", "v1", timeout=300)
        print(f"\n{done.stderr[-1500:]}")
        assert done.returncode != 0, out(done)
        err = done.stderr
        assert "Traceback" not in err and s1 in err, err
        assert "port" in err.lower(), err
        assert no_lock(lab_ssh, s1)
        assert get(s1) == (200, "v2")  # the squatter still answers: nothing was torn down
    finally:
        lab_ssh(s1, "docker", "rm", "-f", "e2e-port80", check=False)
    again = project.dockyard("setup", "-P", "--version", "v1", timeout=300)
    assert again.returncode == 0, out(again)
    assert project.answers() == [(200, "v1"), (200, "v1")]


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-v"]))
