"""The SSH helper (dockyard.remote.mux) on the lab's real servers: consecutive commands share
one warm helper process, yet every command logs in afresh (a group added between two commands
is seen by the second); it exits when idle, is replaced when killed, is not used with
DOCKYARD_SSH_PERSIST=0, and its errors read as a direct connection's."""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
import time
from pathlib import Path

import pytest

from lab.state import LabDoc
from lab.testing import LabSsh
from tests.integration.support import Project, deploy_yml, make_app, out, write_ssh_config

pytestmark = pytest.mark.integration


def helper_project(
    lab: LabDoc, root: Path, *, user: str | None = None, persist: str = "60"
) -> Project:
    app = make_app(root / "app", lab)
    ssh_config = write_ssh_config(root, lab)
    (app / "config" / "deploy.yml").write_text(
        deploy_yml(lab, proxy=False, ssh_user=user, ssh_config=ssh_config)
    )
    runtime = root / "run"
    runtime.mkdir(mode=0o700, exist_ok=True)
    env = {"XDG_RUNTIME_DIR": str(runtime), "DOCKYARD_SSH_PERSIST": persist}
    return Project(app, env, lab)


def sockets(project: Project) -> list[Path]:
    return sorted((Path(project.env["XDG_RUNTIME_DIR"]) / "dockyard").glob("ssh-*.sock"))


def helper_info(path: Path) -> dict[str, object]:
    """Ask a helper for its pid and session count (the protocol's `info` request)."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(5)
        sock.connect(str(path))
        header = json.dumps({"op": "info"}).encode()
        sock.sendall(struct.pack(">cI", b"Q", len(header)) + header)
        data = b""
        while len(data) < 5 or len(data) < 5 + struct.unpack(">cI", data[:5])[1]:
            chunk = sock.recv(65536)
            assert chunk, "the helper closed the connection"
            data += chunk
    kind, size = struct.unpack(">cI", data[:5])
    assert kind == b"R"
    value = json.loads(data[5 : 5 + size])
    assert isinstance(value, dict)
    return value


def exec_on_first(project: Project, command: str) -> tuple[str, str]:
    """`dockyard server exec` on the first server, with Python's import log: (stdout, stderr)."""
    first = project.lab.servers[0].address
    done = project.dockyard("server", "exec", "--hosts", first, command)
    assert done.returncode == 0, out(done)
    return done.stdout, done.stderr


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_commands_share_one_helper_but_each_logs_in_afresh(lab: LabDoc, tmp_path: Path) -> None:
    project = helper_project(lab, tmp_path)
    first, _ = exec_on_first(project, 'echo "conn=$SSH_CONNECTION"')
    (path,) = sockets(project)
    pid = int(str(helper_info(path)["pid"]))
    # the command's session ends with it (the helper sees its socket close a moment later)
    deadline = time.monotonic() + 5
    while helper_info(path)["sessions"] != 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert helper_info(path)["sessions"] == 0
    # The second command: no asyncssh in the CLI process (the helper did the SSH work) ...
    project.env["PYTHONPROFILEIMPORTTIME"] = "1"
    second, imports = exec_on_first(project, 'echo "conn=$SSH_CONNECTION"')
    del project.env["PYTHONPROFILEIMPORTTIME"]
    imported = {line.rsplit("|", 1)[1].strip() for line in imports.splitlines() if "|" in line}
    assert "dockyard.remote.mux" in imported, imports[-2000:]
    assert "asyncssh" not in imported and "dockyard.remote.ssh" not in imported
    # ... the same helper, but a new SSH connection (another client port)
    assert sockets(project) == [path] and int(str(helper_info(path)["pid"])) == pid
    conn = [line.split("conn=", 1)[1] for line in (first + second).splitlines() if "conn=" in line]
    assert len(conn) == 2 and conn[0] != conn[1], conn


def test_a_group_added_between_two_commands_is_seen_by_the_second(
    lab: LabDoc, tmp_path: Path, lab_ssh: LabSsh
) -> None:
    server = lab.servers[0].address
    lab_ssh(
        server, "sh", "-c",
        "id helpr >/dev/null 2>&1 && userdel -r helpr >/dev/null 2>&1; useradd -m -s /bin/sh helpr"
        " && mkdir -p ~helpr/.ssh && cp /root/.ssh/authorized_keys ~helpr/.ssh/"
        " && chown -R helpr ~helpr/.ssh && chmod 700 ~helpr/.ssh",
    )  # fmt: skip
    project = helper_project(lab, tmp_path, user="helpr")
    before, _ = exec_on_first(project, "id -Gn")
    assert "docker" not in before, before
    lab_ssh(server, "usermod", "-aG", "docker", "helpr")
    after, _ = exec_on_first(project, "id -Gn; docker ps -q >/dev/null && echo docker-ok")
    assert "docker" in after.replace("docker-ok", "") and "docker-ok" in after, after
    assert len(sockets(project)) == 1  # both commands went through the helper


def test_an_idle_helper_exits_and_a_killed_one_is_replaced(lab: LabDoc, tmp_path: Path) -> None:
    project = helper_project(lab, tmp_path, persist="2")
    exec_on_first(project, "true")
    (path,) = sockets(project)
    pid = int(str(helper_info(path)["pid"]))
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert path.exists()  # killed: its socket is left behind
    stdout, _ = exec_on_first(project, "echo after-kill")
    assert "after-kill" in stdout
    new_pid = int(str(helper_info(path)["pid"]))
    assert new_pid != pid
    deadline = time.monotonic() + 15
    while path.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not path.exists(), "the helper did not remove its socket after 2 s idle"
    deadline = time.monotonic() + 5
    while pid_alive(new_pid) and not _zombie(new_pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not pid_alive(new_pid) or _zombie(new_pid), "the idle helper did not exit"
    assert not path.with_suffix(".lock").exists()


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z")
    except (OSError, IndexError):
        return True


def test_persist_zero_means_no_helper(lab: LabDoc, tmp_path: Path) -> None:
    project = helper_project(lab, tmp_path, persist="0")
    stdout, _ = exec_on_first(project, "echo direct")
    assert "direct" in stdout
    assert sockets(project) == []


def test_errors_through_the_helper_read_as_a_direct_connections(
    lab: LabDoc, tmp_path: Path
) -> None:
    results = {}
    for persist in ("60", "0"):
        project = helper_project(lab, tmp_path / persist, persist=persist)
        empty = tmp_path / persist / "empty_known_hosts"
        empty.write_text("")
        ssh_config = tmp_path / persist / "ssh_config_no_keys"
        ssh_config.write_text(f"Host *\n  UserKnownHostsFile {empty}\n")
        (project.root / "config" / "deploy.yml").write_text(
            deploy_yml(lab, proxy=False, ssh_config=ssh_config)
        )
        done = project.dockyard("server", "exec", "true")
        assert done.returncode != 0
        assert "Traceback" not in done.stderr
        text = (done.stdout + done.stderr).replace(str(tmp_path / persist), "PROJECT")
        results[persist] = (done.returncode, text)
        if persist == "60":
            assert len(sockets(project)) == 1  # the error came through the helper
    assert results["60"] == results["0"], results
    assert "host key of root@" in results["0"][1] and "is unknown" in results["0"][1]
