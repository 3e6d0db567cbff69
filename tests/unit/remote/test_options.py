from __future__ import annotations

from pathlib import Path

import pytest

from dockyard.errors import ConfigError, ConnectError
from dockyard.remote import options as options_module
from dockyard.remote.options import (
    JumpHost,
    SshOptions,
    check_files,
    connect_kwargs,
    interactive_ssh_argv,
    parse_jump,
    resolve_known_hosts,
)


def test_defaults_match_kamal() -> None:
    opts = SshOptions()
    assert (opts.user, opts.port, opts.log_level) == ("root", 22, "fatal")
    assert opts.keepalive_interval == 30
    assert (opts.max_concurrent_starts, opts.pool_idle_timeout, opts.dns_retries) == (30, 900, 3)
    assert opts.max_channels == 10
    assert opts.config is False
    assert opts.target("1.2.3.4") == "root@1.2.3.4:22"


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("bastion", JumpHost("root", "bastion", 22)),
        ("app@bastion", JumpHost("app", "bastion", 22)),
        ("app@10.0.0.1:2222", JumpHost("app", "10.0.0.1", 2222)),
        ("10.0.0.1:2200", JumpHost("root", "10.0.0.1", 2200)),
        ("[::1]:2222", JumpHost("root", "::1", 2222)),
        ("u@[fe80::1]", JumpHost("u", "fe80::1", 22)),
        ("fe80::1", JumpHost("root", "fe80::1", 22)),
    ],
)
def test_parse_jump(spec: str, expected: JumpHost) -> None:
    assert parse_jump(spec) == expected


@pytest.mark.parametrize("spec", ["", "@host", "host:port", "host:0", "host:70000", "[::1", "a b"])
def test_parse_jump_rejects(spec: str) -> None:
    with pytest.raises(ConfigError, match=r"ssh\.proxy"):
        parse_jump(spec)


def test_jump_target_brackets_ipv6() -> None:
    assert JumpHost("root", "::1", 22).target() == "root@[::1]:22"


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"port": 0}, r"ssh\.port"),
        ({"port": 65536}, r"ssh\.port"),
        ({"user": ""}, r"ssh\.user"),
        ({"user": "a b"}, r"ssh\.user"),
        ({"log_level": "loud"}, r"ssh\.log_level"),
        ({"connect_timeout": 0}, r"ssh\.connect_timeout"),
        ({"max_channels": 0}, r"sshkit\.max_channels"),
        ({"proxy": "a", "proxy_command": "nc %h %p"}, "either proxy or proxy_command"),
        ({"proxy": "x:y"}, r"ssh\.proxy"),
    ],
)
def test_invalid_options_name_the_key(kwargs: dict[str, object], pattern: str) -> None:
    with pytest.raises(ConfigError, match=pattern):
        SshOptions(**kwargs)  # type: ignore[arg-type]


def test_connect_kwargs_basic() -> None:
    kw = connect_kwargs(SshOptions(user="deploy", port=2222), "web1", known_hosts=["/kh"])
    assert kw["host"] == "web1"
    assert kw["port"] == 2222
    assert kw["username"] == "deploy"
    assert kw["known_hosts"] == ["/kh"]
    assert kw["connect_timeout"] == 30
    assert kw["keepalive_interval"] == 30
    assert kw["config"] == []  # OpenSSH config only when opted in
    assert "client_keys" not in kw  # asyncssh defaults: ~/.ssh/id_* and the agent
    assert "agent_path" not in kw


def test_connect_kwargs_never_disable_host_key_checking() -> None:
    kw = connect_kwargs(SshOptions(), "web1", known_hosts=[])
    assert kw["known_hosts"] is not None
    assert kw["known_hosts"] == b""  # trust nothing rather than everything


def test_connect_kwargs_keys_only_drops_agent() -> None:
    kw = connect_kwargs(SshOptions(keys=("~/k1", "/k2"), keys_only=True), "h", known_hosts=["/kh"])
    assert kw["client_keys"] == [str(Path("~/k1").expanduser()), "/k2"]
    assert kw["agent_path"] is None


def test_connect_kwargs_imported_keys_come_first() -> None:
    marker = object()
    kw = connect_kwargs(SshOptions(keys=("/k",)), "h", known_hosts=["/kh"], client_keys=[marker])
    assert kw["client_keys"] == [marker, "/k"]


def test_connect_kwargs_config_opt_in() -> None:
    assert connect_kwargs(SshOptions(config=True), "h", known_hosts=["/kh"])["config"] == [
        str(Path("~/.ssh/config").expanduser())
    ]
    kw = connect_kwargs(SshOptions(config=("/a", "/b")), "h", known_hosts=["/kh"])
    assert kw["config"] == ["/a", "/b"]


def test_connect_kwargs_proxy_command_tokens() -> None:
    opts = SshOptions(proxy_command="ssh -W %h:%p %r@bastion 100%%", user="app", port=2200)
    kw = connect_kwargs(opts, "web1", known_hosts=["/kh"])
    assert kw["proxy_command"] == "ssh -W web1:2200 app@bastion 100%"


def test_connect_kwargs_jump_overrides() -> None:
    kw = connect_kwargs(SshOptions(), "bastion", known_hosts=["/kh"], port=2222, user="jump")
    assert (kw["port"], kw["username"]) == (2222, "jump")


def test_resolve_known_hosts_explicit_and_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kh = tmp_path / "kh"
    assert resolve_known_hosts(SshOptions(known_hosts=(str(kh),))) == [str(kh)]
    # the defaults: ~/.ssh/known_hosts and the system file, each only when it exists
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    system = tmp_path / "ssh_known_hosts"
    monkeypatch.setattr(options_module, "DEFAULT_KNOWN_HOSTS", ("~/.ssh/known_hosts", str(system)))
    assert resolve_known_hosts(SshOptions()) == []
    system.write_text("")
    assert resolve_known_hosts(SshOptions()) == [str(system)]
    (home / ".ssh" / "known_hosts").write_text("")
    assert resolve_known_hosts(SshOptions()) == [str(home / ".ssh" / "known_hosts"), str(system)]


def test_check_files_names_the_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(ConnectError, match=r"ssh\.keys: file not found: .*nope"):
        check_files(SshOptions(keys=(str(missing),)))
    with pytest.raises(ConnectError, match=r"ssh\.known_hosts: file not found"):
        check_files(SshOptions(known_hosts=(str(missing),)))
    present = tmp_path / "key"
    present.write_text("x")
    check_files(SshOptions(keys=(str(present),), known_hosts=(str(present),)))


def test_options_are_frozen_and_hide_key_data() -> None:
    opts = SshOptions(key_data=("-----BEGIN OPENSSH PRIVATE KEY-----",))
    assert "BEGIN" not in repr(opts)
    with pytest.raises(AttributeError):
        opts.user = "x"  # type: ignore[misc]


def test_interactive_ssh_argv_defaults() -> None:
    argv = interactive_ssh_argv(SshOptions(), "1.2.3.4", "docker logs -f app")
    assert argv[:2] == ["ssh", "-t"]
    assert argv[argv.index("-F") + 1] == "/dev/null"  # OpenSSH config only when opted in
    assert argv[-3:] == ["22", "root@1.2.3.4", "docker logs -f app"]
    assert "-J" not in argv and "IdentitiesOnly=yes" not in argv


def test_interactive_ssh_argv_with_everything() -> None:
    opts = SshOptions(
        user="app",
        port=2222,
        proxy="jump@bastion:2200",
        keys=("/k1", "/k2"),
        keys_only=True,
        config=("/cfg",),
        known_hosts=("/kh1", "/kh2"),
    )
    argv = interactive_ssh_argv(opts, "web1", tty=False)
    assert "-t" not in argv
    assert argv[argv.index("-J") + 1] == "jump@bastion:2200"
    assert [argv[i + 1] for i, a in enumerate(argv) if a == "-i"] == ["/k1", "/k2"]
    assert [argv[i + 1] for i, a in enumerate(argv) if a == "-F"] == ["/cfg"]
    assert "IdentitiesOnly=yes" in argv
    assert "UserKnownHostsFile=/kh1 /kh2" in argv
    assert argv[-3:] == ["-p", "2222", "app@web1"]


def test_interactive_ssh_argv_proxy_command() -> None:
    argv = interactive_ssh_argv(SshOptions(proxy_command="nc -X 5 %h %p"), "h")
    assert "ProxyCommand=nc -X 5 %h %p" in argv


def test_config_may_be_a_single_path_and_keepalive_may_be_off(tmp_path: Path) -> None:
    cfg = tmp_path / "cfg"
    opts = SshOptions(config=str(cfg), keepalive_interval=0)
    assert connect_kwargs(opts, "h", known_hosts=["/kh"])["config"] == [str(cfg)]
    assert connect_kwargs(opts, "h", known_hosts=["/kh"])["keepalive_interval"] == 0
    with pytest.raises(ConnectError, match=r"ssh\.config: file not found"):
        check_files(opts)
    with pytest.raises(ConfigError, match=r"ssh\.keepalive_interval"):
        SshOptions(keepalive_interval=-1)
