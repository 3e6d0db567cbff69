"""The lab's JSON document and its registry material (lab/state.py, lab/certs.py)."""

from __future__ import annotations

import json
from pathlib import Path

import bcrypt
import pytest
from cryptography import x509

from lab.certs import htpasswd_line, make_ca, make_server_cert
from lab.cluster import CAPS_FALLBACK, Paths, _server_argv, check_memory, ssh_argv
from lab.errors import LabError
from lab.state import LabDoc, RegistryInfo, ServerInfo, SshInfo, load


def _doc() -> LabDoc:
    return LabDoc(
        registry=RegistryInfo("172.18.0.2:5000", "dockyard", "s3cret", "/lab/.state/ca/ca.crt"),
        servers=(ServerInfo("server-1", "172.18.0.3"), ServerInfo("server-2", "172.18.0.4")),
        ssh=SshInfo("root", "/lab/.state/id_ed25519", "/lab/.state/known_hosts"),
    )


def test_document_shape_is_the_documented_one() -> None:
    data = json.loads(_doc().to_json())
    assert data == {
        "registry": {
            "address": "172.18.0.2:5000",
            "username": "dockyard",
            "password": "s3cret",
            "ca_cert": "/lab/.state/ca/ca.crt",
        },
        "servers": [
            {"name": "server-1", "address": "172.18.0.3"},
            {"name": "server-2", "address": "172.18.0.4"},
        ],
        "ssh": {
            "user": "root",
            "key": "/lab/.state/id_ed25519",
            "known_hosts": "/lab/.state/known_hosts",
        },
    }


def test_document_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "lab.json"
    assert load(path) is None
    path.write_text(_doc().to_json())
    assert load(path) == _doc()


@pytest.mark.parametrize(
    "text",
    ["[]", "{}", '{"registry": {}, "servers": [], "ssh": {}}', "not json"],
)
def test_bad_documents_are_lab_errors(text: str) -> None:
    with pytest.raises(LabError, match="not a lab document"):
        LabDoc.from_json(text)


def test_server_certificate_has_the_ip_san_and_chains_to_the_ca() -> None:
    ca = make_ca()
    server = make_server_cert(ca, "172.18.0.2")
    cert = x509.load_pem_x509_certificate(server.cert)
    ca_cert = x509.load_pem_x509_certificate(ca.cert)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["172.18.0.2"]
    cert.verify_directly_issued_by(ca_cert)
    assert ca_cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_htpasswd_line_is_bcrypt_and_checks() -> None:
    line = htpasswd_line("dockyard", "pw")
    user, _, hashed = line.rstrip("\n").partition(":")
    assert user == "dockyard"
    assert hashed.startswith("$2")
    assert bcrypt.checkpw(b"pw", hashed.encode())
    assert not bcrypt.checkpw(b"other", hashed.encode())


def test_memory_sizes() -> None:
    check_memory("1g")
    check_memory("512m")
    check_memory(None)
    for bad in ("", "1 g", "-1g", "1gb", "lots"):
        with pytest.raises(LabError, match="--memory"):
            check_memory(bad)


def test_server_argv_caps_memory_and_swap_together(tmp_path: Path) -> None:
    paths = Paths(tmp_path)
    argv = _server_argv(2, "ssh-ed25519 AAAA lab", "10.0.0.2:5000", paths, "1g", CAPS_FALLBACK)
    assert argv[-1] == "dockyard-lab/server:latest"
    joined = " ".join(argv)
    assert "--memory 1g --memory-swap 1g" in joined
    assert "--name dockyard-lab-server-2" in joined
    mount = f"type=bind,source={paths.ca_cert},target=/etc/docker/certs.d/10.0.0.2:5000/ca.crt"
    assert f"{mount},readonly" in argv
    assert "--privileged" not in argv
    assert "--memory" not in _server_argv(1, "k", "r:1", paths, None, ("--privileged",))


def test_ssh_argv_checks_host_keys_against_the_lab_file(tmp_path: Path) -> None:
    paths = Paths(tmp_path)
    argv = ssh_argv(paths, "10.0.0.3", "docker", "info")
    assert argv[:3] == ["ssh", "-i", str(tmp_path / "id_ed25519")]
    assert f"UserKnownHostsFile={tmp_path / 'known_hosts'}" in argv
    assert "StrictHostKeyChecking=yes" in argv
    assert argv[-3:] == ["root@10.0.0.3", "docker", "info"]
