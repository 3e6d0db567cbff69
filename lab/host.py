"""The host side: Debian packages the lab needs, and a running Docker engine."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import time
from pathlib import Path

from lab.errors import LabError
from lab.proc import run, tail

log = logging.getLogger("lab")

HOST_PACKAGES = (
    "docker.io",
    "docker-registry",
    "openssh-client",
    "mmdebstrap",
    "ca-certificates",
    # mypyc compiles the proxy's data plane for its image (dockyard.proxy.native)
    "gcc",
    "python3-dev",
)
DOCKER_PIDFILE = Path("/var/run/docker.pid")
CONTAINERD_PIDFILE = Path("/var/run/docker/containerd/containerd.pid")


def missing_packages(packages: tuple[str, ...] = HOST_PACKAGES) -> list[str]:
    """The Debian packages not installed (none when this is not a dpkg system)."""
    if shutil.which("dpkg-query") is None:
        return []
    missing = []
    for pkg in packages:
        proc = run(["dpkg-query", "-W", "-f=${Status}", pkg], check=False)
        if proc.returncode != 0 or "install ok installed" not in proc.stdout:
            missing.append(pkg)
    return missing


def ensure_packages(packages: tuple[str, ...] = HOST_PACKAGES) -> None:
    """apt-get install what is missing (as root); elsewhere say what to install."""
    missing = missing_packages(packages)
    if not missing:
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        if shutil.which("docker") is not None:
            log.warning("not installed: %s (continuing with what there is)", " ".join(missing))
            return
        raise LabError(f"the lab needs these Debian packages, install them: {' '.join(missing)}")
    log.info("installing Debian packages: %s", " ".join(missing))
    env = {"DEBIAN_FRONTEND": "noninteractive"}
    run(["apt-get", "update", "-qq"], env=env, timeout=900)
    run(
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing],
        env=env,
        timeout=1800,
    )


def engine_answers(timeout: float = 15) -> bool:
    try:
        return run(["docker", "info"], check=False, timeout=timeout).returncode == 0
    except LabError:
        return False


def _pid_is(pidfile: Path, name: str) -> bool:
    """True when the pid in `pidfile` is a running process called `name`."""
    try:
        pid = int(pidfile.read_text().strip())
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
    except (OSError, ValueError):
        return False
    return comm == name


def remove_stale_pidfile(pidfile: Path, name: str) -> bool:
    """Remove `pidfile` when no process `name` has its pid (an engine killed hard leaves it)."""
    if pidfile.exists() and not _pid_is(pidfile, name):
        log.info("removing stale %s", pidfile)
        pidfile.unlink(missing_ok=True)
        return True
    return False


def ensure_engine(state_dir: Path, wait: float = 60) -> None:
    """Start `dockerd` unless an engine answers, and wait until `docker info` does."""
    if shutil.which("docker") is not None and engine_answers():
        return
    if shutil.which("dockerd") is None:
        ensure_packages()
    if shutil.which("dockerd") is None:
        raise LabError("no dockerd on this machine (install Debian's docker.io)")
    if os.geteuid() != 0:
        raise LabError("no Docker engine answers and starting dockerd needs root")
    logfile = state_dir / "dockerd.log"
    if not _pid_is(DOCKER_PIDFILE, "dockerd"):
        remove_stale_pidfile(DOCKER_PIDFILE, "dockerd")
        remove_stale_pidfile(CONTAINERD_PIDFILE, "containerd")
        state_dir.mkdir(parents=True, exist_ok=True)
        log.info("starting dockerd (log: %s)", logfile)
        with logfile.open("ab") as out:
            subprocess.Popen(
                ["dockerd"],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # setsid: the engine outlives this process
                close_fds=True,
            )
    else:
        log.info("dockerd is running but does not answer yet; waiting")
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if engine_answers(timeout=5):
            log.info("docker engine is up")
            return
        time.sleep(1)
    text = logfile.read_text(errors="replace") if logfile.exists() else "(no log)"
    raise LabError(f"dockerd did not answer within {wait:.0f} s; end of {logfile}:\n{tail(text)}")
