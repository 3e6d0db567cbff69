"""Dockyard-only proxy keys (`basic_auth`, `allow_ips`, `client_ip_header`): validated with file,
key path and line, turned into dockyard-proxy's deploy flags after Kamal's own flags, and parsed
back by dockyard-proxy's CLI into the gate options. Kamal configs give Kamal's argv unchanged."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dockyard.commands import app
from dockyard.config import ConfigValidationError

from .conftest import LoadConfig

HASH = "$2b$05$" + "abcdefghijklmnopqrstuv" + "wxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0"


def base(**proxy: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "service": "app",
        "image": "dhh/app",
        "registry": {"username": "dhh", "password": "secret"},
        "servers": {"web": ["1.1.1.1"]},
        "builder": {"arch": "amd64"},
    }
    if proxy:
        raw["proxy"] = proxy
    return raw


def test_access_keys_become_dockyard_proxy_flags_after_kamals(load: LoadConfig) -> None:
    assert len(HASH) == 60
    config = load(
        base(
            host="app.example",
            basic_auth={"user": "ops", "password_hash": HASH},
            allow_ips=["203.0.113.0/24", "2001:db8::/32"],
            client_ip_header="CF-Connecting-IP",
        )
    )
    web = config.role("web")
    assert web is not None
    argv = list(app.deploy(config, web, "c1").plain())
    kamal_config = load(base(host="app.example"))
    kamal_web = kamal_config.role("web")
    assert kamal_web is not None
    plain = list(app.deploy(kamal_config, kamal_web, "c1").plain())
    assert not any("allow-ip" in x or "basic-auth" in x for x in plain)
    assert argv[: len(plain)] == plain  # Kamal's flags first, in Kamal's order
    assert argv[len(plain) :] == [
        "--basic-auth-user=ops",
        f"--basic-auth-password-hash={HASH}",
        "--allow-ip=203.0.113.0/24",
        "--allow-ip=2001:db8::/32",
        "--client-ip-header=CF-Connecting-IP",
    ]
    # dockyard-proxy's own CLI reads them back into the gate options.
    from dockyard.proxy.cli import _normalize_bool_flags, build_parser, deploy_request

    args = build_parser(env={}).parse_args(_normalize_bool_flags(argv[argv.index("deploy") :]))
    request = deploy_request(args, env={"HOME": "/home/kamal-proxy"})
    assert request.config.basic_auth_user == "ops"
    assert request.config.basic_auth_password_hash == HASH
    assert request.config.allow_ips == ("203.0.113.0/24", "2001:db8::/32")
    assert request.config.client_ip_header == "CF-Connecting-IP"


def test_a_role_can_set_its_own_allowlist(load: LoadConfig) -> None:
    raw = base(host="app.example")
    raw["servers"] = {
        "web": ["1.1.1.1"],
        "admin": {
            "hosts": ["1.1.1.2"],
            "proxy": {"host": "admin.example", "allow_ips": ["10.0.0.0/8"]},
        },
    }
    config = load(raw)
    admin, web = config.role("admin"), config.role("web")
    assert admin is not None and web is not None
    assert "--allow-ip=10.0.0.0/8" in app.deploy(config, admin, "c1").plain()
    assert not any("allow-ip" in x for x in app.deploy(config, web, "c1").plain())


# The last column is the text of the line the error must name: the offending key or list item
# itself where there is one, else the key of the block that lacks something.
@pytest.mark.parametrize(
    ("proxy", "key_path", "problem", "named"),
    [
        (
            {"basic_auth": {"user": "ops"}},
            "proxy/basic_auth",
            "password_hash is required",
            "  basic_auth:",
        ),
        (
            {"basic_auth": {"password_hash": HASH}},
            "proxy/basic_auth",
            "user is required",
            "  basic_auth:",
        ),
        (
            {"basic_auth": {"user": "a:b", "password_hash": HASH}},
            "proxy/basic_auth",
            "user must not contain ':'",
            "    user: a:b",
        ),
        (
            {"basic_auth": {"user": "ops", "password_hash": "hunter2"}},
            "proxy/basic_auth",
            "password_hash must be a bcrypt hash",
            "    password_hash: hunter2",
        ),
        (
            {"basic_auth": {"user": "ops", "pass": "x"}},
            "proxy/basic_auth",
            "unknown key: pass",
            "    pass: x",
        ),
        (
            {"allow_ips": ["10.0.0.0/8", "10.0.0.0/33"]},
            "proxy/allow_ips/1",
            "is not an IP address",
            "  - 10.0.0.0/33",
        ),
        (
            {"allow_ips": "10.0.0.0/8"},
            "proxy/allow_ips",
            "should be an array",
            "  allow_ips: 10.0.0.0/8",
        ),
        (
            {"client_ip_header": "CF Connecting IP"},
            "proxy/client_ip_header",
            "not an HTTP header",
            "  client_ip_header: CF Connecting IP",
        ),
    ],
)
def test_bad_access_keys_name_the_key_and_line(
    load: LoadConfig,
    tmp_path: Path,
    proxy: dict[str, Any],
    key_path: str,
    problem: str,
    named: str,
) -> None:
    with pytest.raises(ConfigValidationError) as exc:
        load(base(**proxy))
    assert exc.value.kamal_key == key_path
    assert problem in exc.value.problem
    assert exc.value.file is not None and exc.value.file.name == "deploy.yml"
    lines = (tmp_path / "config" / "deploy.yml").read_text().splitlines()
    assert lines.count(named) == 1  # the expected line is unambiguous in the written file
    line = lines.index(named) + 1
    assert exc.value.line == line
    assert exc.value.message == f"config/deploy.yml:{line}: {key_path}: {exc.value.problem}"


def test_the_hash_survives_the_remote_shell(load: LoadConfig) -> None:
    """`$2b$...` reaches the server's shell quoted: `$` is not expanded there."""
    import subprocess

    from dockyard.remote.argv import command_line

    config = load(base(basic_auth={"user": "ops", "password_hash": HASH}))
    web = config.role("web")
    assert web is not None
    command = app.deploy(config, web, "c1")
    # the line the remote layer hands to the server's shell, as that shell splits it
    words = subprocess.run(
        ["sh", "-c", f"printf '%s\\n' {command_line(command)}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert words == list(command.plain())
    assert f"--basic-auth-password-hash={HASH}" in words
