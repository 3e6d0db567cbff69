"""dockyard-proxy's command line: kamal-proxy v0.9.2's flags, defaults, Go syntax and errors."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from dockyard.proxy.cli import _normalize_bool_flags as normalize
from dockyard.proxy.cli import build_parser, deploy_request, main
from dockyard.proxy.control.durations import (
    MILLISECOND,
    MINUTE,
    SECOND,
    DurationError,
    format_duration,
    parse_duration,
)
from dockyard.proxy.control.options import HealthCheckConfig


def parse(*argv: str, env: dict[str, str] | None = None) -> argparse.Namespace:
    return build_parser(env=env or {}).parse_args(normalize(list(argv)))


def deploy(*argv: str) -> object:
    return deploy_request(parse("deploy", *argv), env={"HOME": "/home/kamal-proxy"})


# -- Go durations -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "ns"),
    [
        ("30s", 30 * SECOND),
        ("1m30s", 90 * SECOND),
        ("500ms", 500 * MILLISECOND),
        ("1.5h", 90 * MINUTE),
        ("0", 0),
        ("-2s", -2 * SECOND),
        ("1h2m3.5s", 3723 * SECOND + 500 * MILLISECOND),
        ("100us", 100_000),
        ("100µs", 100_000),
        ("7ns", 7),
        (".5s", 500 * MILLISECOND),
    ],
)
def test_parse_duration_accepts_go_syntax(text: str, ns: int) -> None:
    assert parse_duration(text) == ns


@pytest.mark.parametrize("text", ["", "30", "s", "1x", "1.s.", "abc", "--1s", "1m 30s"])
def test_parse_duration_rejects_what_go_rejects(text: str) -> None:
    with pytest.raises(DurationError, match="time: "):
        parse_duration(text)


@pytest.mark.parametrize(
    ("ns", "text"),
    [
        (3 * SECOND, "3s"),
        (90 * SECOND, "1m30s"),
        (500 * MILLISECOND, "500ms"),
        (60 * MINUTE, "1h0m0s"),
        (0, "0s"),
        (1500 * MILLISECOND, "1.5s"),
        (2_500, "2.5µs"),
    ],
)
def test_format_duration_matches_go(ns: int, text: str) -> None:
    assert format_duration(ns) == text


# -- run ----------------------------------------------------------------------------------------


def test_run_defaults() -> None:
    args = parse("run")
    assert (args.http_port, args.https_port, args.metrics_port) == (80, 443, 0)
    assert args.debug is False and args.http3 is False


def test_run_flags_both_spellings() -> None:
    args = parse(
        "run", "--http-port=8080", "--https-port", "8443", "--metrics-port=9090", "--debug"
    )
    assert (args.http_port, args.https_port, args.metrics_port, args.debug) == (
        8080,
        8443,
        9090,
        True,
    )


def test_run_env_prefixed_name_wins_then_bare_name_then_flag_overrides() -> None:
    env = {"KAMAL_PROXY_HTTP_PORT": "81", "HTTP_PORT": "82", "HTTPS_PORT": "444", "DEBUG": "true"}
    args = parse("run", env=env)
    assert (args.http_port, args.https_port, args.debug) == (81, 444, True)
    assert parse("run", "--http-port", "90", env=env).http_port == 90
    assert parse("run", "--debug=false", env=env).debug is False


def test_run_env_values_that_do_not_parse_are_ignored() -> None:
    args = parse("run", env={"KAMAL_PROXY_HTTP_PORT": "eighty", "METRICS_PORT": "x"})
    assert (args.http_port, args.metrics_port) == (80, 0)


# -- deploy -------------------------------------------------------------------------------------


def test_deploy_defaults_match_kamal_proxy() -> None:
    request = deploy("web", "--target", "app:3000")
    assert request.service == "web"  # type: ignore[attr-defined]
    assert request.targets == ("app:3000",)  # type: ignore[attr-defined]
    assert request.readers == ()  # type: ignore[attr-defined]
    assert request.deploy_timeout == 30 * SECOND  # type: ignore[attr-defined]
    assert request.drain_timeout == 30 * SECOND  # type: ignore[attr-defined]
    assert request.force is False  # type: ignore[attr-defined]
    cfg = request.config  # type: ignore[attr-defined]
    assert cfg.hosts == ()
    assert cfg.path_prefixes == ("/",)
    assert cfg.strip_path_prefix is True
    assert cfg.tls_enabled is False and cfg.tls_redirect is True
    assert cfg.health_check == HealthCheckConfig("/up", 0, SECOND, 5 * SECOND, "")
    assert cfg.target_timeout == 30 * SECOND
    assert (cfg.buffer_requests, cfg.buffer_responses, cfg.buffer_memory) == (False, False, 1 << 20)
    assert (cfg.max_request_body, cfg.max_response_body) == (0, 0)
    assert cfg.forward_headers is True
    assert cfg.writer_affinity_timeout == SECOND
    assert cfg.read_targets_accept_websockets is False
    assert cfg.scope_cookie_paths is False
    assert cfg.canonical_host == "" and cfg.error_page_path == ""


def test_deploy_every_flag_in_kamal_form() -> None:
    request = deploy(
        "web-app",
        "--target=one:3000",
        "--target=two:3000,three:3000",
        "--read-target=r1:3000",
        "--host=a.example.com,b.example.com",
        "--host=c.example.com",
        "--path-prefix=/api/",
        "--path-prefix=admin",
        "--strip-path-prefix=false",
        "--tls-redirect=false",
        "--canonical-host=a.example.com",
        "--deploy-timeout=1m30s",
        "--drain-timeout=500ms",
        "--health-check-path=/health",
        "--health-check-interval=2s",
        "--health-check-timeout=250ms",
        "--health-check-port=4000",
        "--health-check-host=internal.test",
        "--target-timeout=10s",
        "--buffer-requests",
        "--buffer-responses=true",
        "--buffer-memory=2048",
        "--max-request-body=0x100",
        "--max-response-body=4096",
        "--error-pages=/pages",
        "--forward-headers=false",
        "--log-request-header=Cache-Control",
        "--log-request-header=X-Request-Start,Referer",
        "--log-response-header=X-Runtime",
        "--scope-cookie-paths",
        "--writer-affinity-timeout=3s",
        "--read-target-websockets=T",
        "--force=1",
    )
    r = request
    assert r.targets == ("one:3000", "two:3000", "three:3000")  # type: ignore[attr-defined]
    assert r.readers == ("r1:3000",)  # type: ignore[attr-defined]
    assert r.deploy_timeout == 90 * SECOND  # type: ignore[attr-defined]
    assert r.drain_timeout == 500 * MILLISECOND  # type: ignore[attr-defined]
    assert r.force is True  # type: ignore[attr-defined]
    cfg = r.config  # type: ignore[attr-defined]
    assert cfg.hosts == ("a.example.com", "b.example.com", "c.example.com")
    assert cfg.path_prefixes == ("/api", "/admin")
    assert cfg.strip_path_prefix is False
    assert cfg.tls_redirect is False
    assert cfg.canonical_host == "a.example.com"
    assert cfg.health_check == HealthCheckConfig(
        "/health", 4000, 2 * SECOND, 250 * MILLISECOND, "internal.test"
    )
    assert cfg.target_timeout == 10 * SECOND
    assert (cfg.buffer_requests, cfg.buffer_responses, cfg.buffer_memory) == (True, True, 2048)
    assert (cfg.max_request_body, cfg.max_response_body) == (256, 4096)
    assert cfg.error_page_path == "/pages"
    assert cfg.forward_headers is False
    assert cfg.log_request_headers == ("Cache-Control", "X-Request-Start", "Referer")
    assert cfg.log_response_headers == ("X-Runtime",)
    assert cfg.scope_cookie_paths is True
    assert cfg.writer_affinity_timeout == 3 * SECOND
    assert cfg.read_targets_accept_websockets is True
    options = cfg.to_contract()
    assert options.target_timeout == 10.0
    assert options.error_pages == Path("/pages")
    assert options.health_check_path == "/health"


def test_deploy_space_separated_values_and_flags_before_the_service() -> None:
    request = deploy("--target", "app:3000", "--deploy-timeout", "5s", "--force", "svc")
    assert request.service == "svc"  # type: ignore[attr-defined]
    assert request.deploy_timeout == 5 * SECOND  # type: ignore[attr-defined]
    assert request.force is True  # type: ignore[attr-defined]


def test_bool_flag_does_not_swallow_the_next_word() -> None:
    # pflag: `--force svc` is the flag plus the service name.
    request = deploy("--force", "svc", "--target=app:80")
    assert request.service == "svc"  # type: ignore[attr-defined]
    assert request.force is True  # type: ignore[attr-defined]


def test_path_prefix_normalisation() -> None:
    cfg = deploy("s", "--target=a:1", "--path-prefix=//app//,/", "--path-prefix=app").config  # type: ignore[attr-defined]
    assert cfg.path_prefixes == ("/app", "/")


def test_slice_flag_honours_csv_quoting() -> None:
    cfg = deploy("s", "--target=a:1", '--log-request-header="A,B",C').config  # type: ignore[attr-defined]
    assert cfg.log_request_headers == ("A,B", "C")


def test_tls_forward_headers_default_depends_on_tls() -> None:
    # kamal-proxy: forwarding the client's X-Forwarded-* is on without TLS, off with it
    assert deploy("s", "--target=a:1").config.forward_headers is True  # type: ignore[attr-defined]
    tls = ("s", "--target=a:1", "--host=x.test", "--tls")
    assert deploy(*tls).config.forward_headers is False  # type: ignore[attr-defined]
    explicit = deploy(*tls, "--forward-headers").config  # type: ignore[attr-defined]
    assert explicit.forward_headers is True


# -- errors: `Error: <message>`, exit 1 -----------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["deploy", "web"], 'required flag(s) "target" not set'),
        (["deploy", "--target=a:1"], "accepts 1 arg(s), received 0"),
        (["deploy", "a", "b", "--target=a:1"], "accepts 1 arg(s), received 2"),
        (["deploy", "web", "--target=a:1", "--deploy-timeout=30"], "time: missing unit"),
        (["deploy", "web", "--target=a:1", "--force=maybe"], 'invalid argument "maybe"'),
        (
            ["deploy", "web", "--target=a:1", "--max-request-body=10"],
            "max-request-body can only be set when request buffering is enabled",
        ),
        (
            ["deploy", "web", "--target=a:1", "--max-response-body=10"],
            "max-response-body can only be set when response buffering is enabled",
        ),
        (
            ["deploy", "web", "--target=a:1", "--tls-certificate-path=/c.pem"],
            "missing [tls-private-key-path]",
        ),
        (["deploy", "web", "--target=a:1", "--tls"], "host must be set when using TLS"),
        (
            ["deploy", "web", "--target=a:1", "--tls", "--host=x.test", "--path-prefix=/api"],
            "TLS settings must be specified on the root path service",
        ),
        (
            ["deploy", "web", "--target=a:1", "--tls", "--host=x.test", "--tls-acme-directory=x"],
            "tls-acme-directory must be an https:// URL",
        ),
        (
            ["deploy", "web", "--target=a:1", "--host=a.test", "--canonical-host=b.test"],
            "canonical host must be one of the hosts",
        ),
        (["deploy", "web", "--target=a:1", "--no-force"], "unknown flag: --no-force"),
        (["deploy", "web", "--target=a:1", "--bogus"], "unrecognized arguments: --bogus"),
        (["deploy", "web", "--targ=a:1"], "unrecognized arguments"),
        (["remove"], "accepts 1 arg(s), received 0"),
        (["pause", "web", "--max-pause=forever"], 'invalid duration "forever"'),
        (["rollout", "set", "web"], "at least one of the flags in the group [percent list]"),
        (["rollout", "deploy", "web"], 'required flag(s) "target" not set'),
        (["rollout", "stop"], "accepts 1 arg(s), received 0"),
        (["rollout"], "rollout needs a subcommand"),
        (["nonsense"], "invalid choice"),
    ],
)
def test_client_errors_print_error_and_exit_1(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("Error: ")
    assert message in err
    assert "Traceback" not in err


def test_no_server_running_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    assert main(["list"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("Error: unable to reach the proxy server at ")
    assert str(tmp_path / "kamal-proxy.sock") in err


def test_rollout_flags() -> None:
    args = parse(
        "rollout",
        "deploy",
        "web",
        "--target=a:1,b:1",
        "--read-target",
        "r:1",
        "--deploy-timeout=10s",
        "--drain-timeout",
        "1m",
    )
    assert (args.target, args.read_target) == (["a:1", "b:1"], ["r:1"])
    assert (args.deploy_timeout, args.drain_timeout) == (10 * SECOND, MINUTE)
    args = parse("rollout", "set", "web", "--percent=25", "--list=alice,bob", "--list", "carol")
    assert (args.percent, args.list) == (25, ["alice", "bob", "carol"])


def test_aliases_parse() -> None:
    assert parse("rm", "web").command == "rm"
    assert parse("ls").command == "ls"
    stop = parse("stop", "web", "--drain-timeout=2s", "--message", "Back soon")
    assert (stop.drain_timeout, stop.message) == (2 * SECOND, "Back soon")
    pause = parse("pause", "web", "--drain-timeout", "1s", "--max-pause=2s")
    assert (pause.drain_timeout, pause.max_pause) == (SECOND, 2 * SECOND)


# -- access flags (ours, not kamal-proxy's) -------------------------------------------------------

BCRYPT = "$2b$04$" + "a" * 53


def test_access_flags_reach_the_deploy_request() -> None:
    request = deploy(
        "web",
        "--target=a:1",
        "--basic-auth-user=admin",
        f"--basic-auth-password-hash={BCRYPT}",
        "--allow-ip=10.0.0.0/8,192.0.2.7",
        "--allow-ip",
        "2001:db8::/32",
        "--client-ip-header",
        "CF-Connecting-IP",
    )
    config = request.config  # type: ignore[attr-defined]
    assert config.basic_auth_user == "admin"
    assert config.basic_auth_password_hash == BCRYPT
    assert config.allow_ips == ("10.0.0.0/8", "192.0.2.7", "2001:db8::/32")
    assert config.client_ip_header == "CF-Connecting-IP"
    plain = deploy("web", "--target=a:1").config  # type: ignore[attr-defined]
    assert not plain.has_gate and plain.to_contract("web").gate is None


@pytest.mark.parametrize(
    ("argv", "missing"),
    [
        (["--basic-auth-user=admin"], "basic-auth-password-hash"),
        ([f"--basic-auth-password-hash={BCRYPT}"], "basic-auth-user"),
    ],
)
def test_basic_auth_flags_go_together(
    argv: list[str], missing: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["deploy", "web", "--target=a:1", *argv]) == 1
    err = capsys.readouterr().err
    assert err.startswith("Error: if any flags in the group [basic-auth-user basic-auth-password")
    assert f"missing [{missing}]" in err
