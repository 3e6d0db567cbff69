"""Command line of dockyard-proxy, identical to kamal-proxy v0.9.2's.

`run` starts the server; every other subcommand is a short-lived client that talks to it over the
control socket. Flags follow Go's pflag conventions: `--flag=value` and `--flag value`, Go
durations (`30s`, `1m30s`, `500ms`), slice flags repeated and/or comma-separated, bool flags as
`--flag` or `--flag=false`. Errors print `Error: <message>` and exit 1, as kamal-proxy does.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn

#: Bool flags of every subcommand (pflag accepts `--x`, `--x=true`, `--x=false`, never `--x false`).
BOOL_FLAGS = frozenset(
    {
        "debug",
        "http3",
        "strip-path-prefix",
        "tls",
        "tls-staging",
        "tls-redirect",
        "force",
        "buffer-requests",
        "buffer-responses",
        "forward-headers",
        "scope-cookie-paths",
        "read-target-websockets",
    }
)
_TRUE = {"1", "t", "T", "true", "TRUE", "True"}
_FALSE = {"0", "f", "F", "false", "FALSE", "False"}
_NEGATED = "--no-"  # internal spelling of `--x=false`; never shown in help

RUN_ENV: dict[str, tuple[str, str]] = {
    "http_port": ("KAMAL_PROXY_HTTP_PORT", "HTTP_PORT"),
    "https_port": ("KAMAL_PROXY_HTTPS_PORT", "HTTPS_PORT"),
    "metrics_port": ("KAMAL_PROXY_METRICS_PORT", "METRICS_PORT"),
    "debug": ("KAMAL_PROXY_DEBUG", "DEBUG"),
}


class UsageError(Exception):
    """Bad command-line input; rendered as `Error: <message>`, exit 1."""


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["allow_abbrev"] = False  # pflag has no abbreviated flags
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


# -- value types --------------------------------------------------------------------------------


def _go_int(text: str) -> int:
    """strconv.ParseInt(s, 0, 64): decimal, or 0x / 0o / 0b prefixed."""
    try:
        return int(text, 0)
    except ValueError:
        pass
    try:
        return int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f'strconv.ParseInt: parsing "{text}": invalid syntax'
        ) from None


def _go_bool(text: str) -> bool:
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(text)


def _duration(text: str) -> int:
    from dockyard.proxy.control.durations import DurationError, parse_duration

    try:
        return parse_duration(text)
    except DurationError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


class _SliceAction(argparse.Action):
    """pflag StringSlice: each occurrence is CSV-split and appended."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        current = list(getattr(namespace, self.dest) or [])
        text = values if isinstance(values, str) else ""
        try:
            items = next(csv.reader([text])) if text else []
        except csv.Error as exc:
            raise argparse.ArgumentError(self, f'invalid argument "{text}": {exc}') from None
        current.extend(items)
        setattr(namespace, self.dest, current)


def _normalize_bool_flags(argv: Sequence[str]) -> list[str]:
    """`--x=true` → `--x`, `--x=false` → the internal `--no-x`; invalid values are errors."""
    result: list[str] = []
    for index, token in enumerate(argv):
        if token == "--":
            result.extend(argv[index:])
            break
        if token.startswith("--") and "=" in token:
            name, _, value = token[2:].partition("=")
            if name in BOOL_FLAGS:
                try:
                    result.append(f"--{name}" if _go_bool(value) else f"{_NEGATED}{name}")
                except ValueError:
                    raise UsageError(
                        f'invalid argument "{value}" for "--{name}" flag: '
                        f'strconv.ParseBool: parsing "{value}": invalid syntax'
                    ) from None
                continue
        if token.startswith(_NEGATED):
            raise UsageError(f"unknown flag: {token}")
        result.append(token)
    return result


def _add_bool(
    parser: argparse.ArgumentParser, name: str, default: bool | None, help_text: str
) -> None:
    dest = name.replace("-", "_")
    parser.add_argument(
        f"--{name}", dest=dest, action="store_true", default=default, help=help_text
    )
    parser.add_argument(
        f"{_NEGATED}{name}", dest=dest, action="store_false", help=argparse.SUPPRESS
    )


def _env_default(env: Mapping[str, str], names: tuple[str, str], kind: str, default: Any) -> Any:
    """kamal-proxy's env lookup: prefixed name first, then bare; unparseable values ignored."""
    for name in names:
        raw = env.get(name)
        if raw is None or raw == "":
            continue
        try:
            return _go_bool(raw) if kind == "bool" else int(raw, 10)
        except ValueError:
            return default
    return default


# -- parser -------------------------------------------------------------------------------------


def build_parser(prog: str = "dockyard-proxy", env: Mapping[str, str] | None = None) -> _Parser:
    env = os.environ if env is None else env
    parser = _Parser(
        prog=prog, description="A kamal-proxy compatible, zero-downtime reverse proxy."
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    run = commands.add_parser("run", help="Run the server")
    run.add_argument(
        "--http-port",
        type=_go_int,
        default=_env_default(env, RUN_ENV["http_port"], "int", 80),
        help="Port to serve HTTP traffic on (default 80)",
    )
    run.add_argument(
        "--https-port",
        type=_go_int,
        default=_env_default(env, RUN_ENV["https_port"], "int", 443),
        help="Port to serve HTTPS traffic on (default 443)",
    )
    run.add_argument(
        "--metrics-port",
        type=_go_int,
        default=_env_default(env, RUN_ENV["metrics_port"], "int", 0),
        help="Publish metrics on the specified port (default zero to disable)",
    )
    _add_bool(
        run, "debug", _env_default(env, RUN_ENV["debug"], "bool", False), "Include debugging logs"
    )
    _add_bool(run, "http3", False, "Enable HTTP/3 (not yet supported: accepted and ignored)")

    deploy = commands.add_parser("deploy", help="Deploy a target host")
    deploy.add_argument("args", nargs="*", metavar="service")
    _add_deploy_flags(deploy)

    for name, aliases, help_text in (
        ("remove", ["rm"], "Remove the service"),
        ("resume", [], "Resume a service"),
    ):
        sub = commands.add_parser(name, aliases=aliases, help=help_text)
        sub.add_argument("args", nargs="*", metavar="service")

    pause = commands.add_parser("pause", help="Pause a service")
    pause.add_argument("args", nargs="*", metavar="service")
    pause.add_argument(
        "--drain-timeout",
        type=_duration,
        default=None,
        help="How long to allow in-flight requests to complete (default 30s)",
    )
    pause.add_argument(
        "--max-pause",
        type=_duration,
        default=None,
        help="Maximum time to pause for, after which requests get 504 (default 30s)",
    )

    stop = commands.add_parser("stop", help="Stop a service")
    stop.add_argument("args", nargs="*", metavar="service")
    stop.add_argument(
        "--drain-timeout",
        type=_duration,
        default=None,
        help="How long to allow in-flight requests to complete (default 30s)",
    )
    stop.add_argument("--message", default="", help="Message to display to clients while stopped")

    commands.add_parser("list", aliases=["ls"], help="List the services currently running")

    rollout = commands.add_parser("rollout", help="Manage a rollout (canary) deployment")
    rollout_commands = rollout.add_subparsers(
        dest="rollout_command", metavar="COMMAND", parser_class=_Parser
    )
    r_deploy = rollout_commands.add_parser("deploy", help="Deploy a rollout target")
    r_deploy.add_argument("args", nargs="*", metavar="service")
    r_deploy.add_argument("--target", action=_SliceAction, default=[])
    r_deploy.add_argument("--read-target", action=_SliceAction, default=[])
    r_deploy.add_argument("--deploy-timeout", type=_duration, default=None)
    r_deploy.add_argument("--drain-timeout", type=_duration, default=None)
    r_set = rollout_commands.add_parser("set", help="Set the rollout split")
    r_set.add_argument("args", nargs="*", metavar="service")
    r_set.add_argument("--percent", type=_go_int, default=None)
    r_set.add_argument("--list", action=_SliceAction, default=[])
    r_stop = rollout_commands.add_parser("stop", help="Stop the rollout")
    r_stop.add_argument("args", nargs="*", metavar="service")
    return parser


def _add_deploy_flags(p: argparse.ArgumentParser) -> None:
    slice_flags = {
        "target": "Target host(s) to deploy",
        "read-target": "Read-only target host(s) to deploy",
        "host": "Host(s) to serve this target on (empty for wildcard)",
        "path-prefix": "Deploy the service below the specified path(s)",
        "log-request-header": "Additional request header to log (may be repeated)",
        "log-response-header": "Additional response header to log (may be repeated)",
        "allow-ip": "Only serve clients from this address or CIDR (may be repeated; "
        "not in kamal-proxy)",
    }
    for name, help_text in slice_flags.items():
        p.add_argument(f"--{name}", action=_SliceAction, default=[], help=help_text)
    _add_bool(p, "strip-path-prefix", None, "With --path-prefix, strip prefix (default true)")
    _add_bool(p, "tls", None, "Configure TLS for this target (requires a non-empty host)")
    _add_bool(p, "tls-staging", None, "Use Let's Encrypt staging environment")
    _add_bool(p, "tls-redirect", None, "Redirect HTTP traffic to HTTPS (default true)")
    _add_bool(p, "force", None, "Skip the health gate and switch immediately")
    _add_bool(p, "buffer-requests", None, "Buffer requests before forwarding to target")
    _add_bool(p, "buffer-responses", None, "Buffer responses before forwarding to client")
    _add_bool(
        p,
        "forward-headers",
        None,
        "Forward X-Forwarded headers to target (default false if TLS enabled; otherwise true)",
    )
    _add_bool(p, "scope-cookie-paths", None, "Scope cookie paths under the path prefix")
    _add_bool(p, "read-target-websockets", None, "Route WebSocket traffic to read targets")
    for name, help_text in (
        ("tls-certificate-path", "Custom TLS certificate path (PEM format)"),
        ("tls-private-key-path", "Custom TLS private key path (PEM format)"),
        ("tls-acme-cache-path", "Location to store ACME certificates"),
        ("tls-acme-directory", "ACME directory URL of the CA to use (default Let's Encrypt)"),
        ("canonical-host", "Redirect every other host to this one"),
        ("health-check-path", "Path to check for health (default /up)"),
        ("health-check-host", "Host header for health checks"),
        ("error-pages", "Path to custom error pages"),
        ("basic-auth-user", "Require HTTP basic auth with this user (not in kamal-proxy)"),
        (
            "basic-auth-password-hash",
            "bcrypt hash ($2b$/$2y$) of the basic auth password (not in kamal-proxy)",
        ),
        (
            "client-ip-header",
            "Trust this header (e.g. CF-Connecting-IP) for the client address (not in kamal-proxy)",
        ),
    ):
        p.add_argument(f"--{name}", default=None, help=help_text)
    for name, help_text in (
        ("deploy-timeout", "Maximum time to wait for the new target to become healthy (30s)"),
        ("drain-timeout", "Maximum time to allow existing connections to drain (30s)"),
        ("health-check-interval", "Interval between health checks (1s)"),
        ("health-check-timeout", "Time each health check must complete in (5s)"),
        ("target-timeout", "Maximum time to wait for the target to respond (30s)"),
        ("writer-affinity-timeout", "Time after a write before reads go to readers (1s)"),
    ):
        p.add_argument(f"--{name}", type=_duration, default=None, help=help_text)
    for name, help_text in (
        ("health-check-port", "Port to check for health (default: the target's port)"),
        ("buffer-memory", "Max size of memory buffer (default 1048576)"),
        ("max-request-body", "Max size of request body when buffering (0: unlimited)"),
        ("max-response-body", "Max size of response body when buffering (0: unlimited)"),
    ):
        p.add_argument(f"--{name}", type=_go_int, default=None, help=help_text)


# -- turning parsed flags into requests ----------------------------------------------------------


def _one_service(args: argparse.Namespace) -> str:
    names: list[str] = args.args
    if len(names) != 1:
        raise UsageError(f"accepts 1 arg(s), received {len(names)}")
    return names[0]


def _pick(value: Any, default: Any) -> Any:
    return default if value is None else value


def _absolute(path: str, cwd: str | None) -> str:
    """``os.path.abspath`` as seen from ``cwd`` (this process's directory by default)."""
    return os.path.normpath(os.path.join(cwd, path)) if cwd else os.path.abspath(path)


def deploy_request(
    args: argparse.Namespace, env: Mapping[str, str] | None = None, cwd: str | None = None
) -> Any:
    """Validate deploy flags as kamal-proxy's client does and build the `DeployRequest`
    (relative file paths are taken from ``cwd``, the client's directory)."""
    from dockyard.proxy.control import options as o
    from dockyard.proxy.control.state import data_dir

    service = _one_service(args)
    if not args.target:
        raise UsageError('required flag(s) "target" not set')
    cert, key = args.tls_certificate_path, args.tls_private_key_path
    if (cert is None) != (key is None):
        missing = "tls-private-key-path" if key is None else "tls-certificate-path"
        raise UsageError(
            "if any flags in the group [tls-certificate-path tls-private-key-path] are set "
            f"they must all be set; missing [{missing}]"
        )
    user, password_hash = args.basic_auth_user, args.basic_auth_password_hash
    if (user is None) != (password_hash is None):
        missing = "basic-auth-password-hash" if password_hash is None else "basic-auth-user"
        raise UsageError(
            "if any flags in the group [basic-auth-user basic-auth-password-hash] are set "
            f"they must all be set; missing [{missing}]"
        )
    if args.max_request_body is not None and args.buffer_requests is None:
        raise UsageError("max-request-body can only be set when request buffering is enabled")
    if args.max_response_body is not None and args.buffer_responses is None:
        raise UsageError("max-response-body can only be set when response buffering is enabled")
    hosts = o.normalize_hosts(args.host)
    prefixes = o.normalize_path_prefixes(args.path_prefix)
    tls = bool(args.tls)
    if tls:
        if not hosts:
            raise UsageError("host must be set when using TLS")
        if "/" not in prefixes:
            raise UsageError("TLS settings must be specified on the root path service")
    directory = args.tls_acme_directory or ""
    if directory:
        if not directory.startswith("https://") or len(directory) <= len("https://"):
            raise UsageError(f"tls-acme-directory must be an https:// URL, got {directory!r}")
        if args.tls_staging:
            raise UsageError("tls-acme-directory and tls-staging cannot be used together")
    canonical = args.canonical_host or ""
    if canonical and hosts and canonical not in hosts:
        raise UsageError("canonical host must be one of the hosts")
    acme_cache = args.tls_acme_cache_path
    if acme_cache is None:
        acme_cache = str(data_dir(env) / "certs") if tls else ""
    config = o.ServiceConfig(
        hosts=hosts,
        path_prefixes=prefixes,
        strip_path_prefix=_pick(args.strip_path_prefix, True),
        tls_enabled=tls,
        tls_staging=bool(args.tls_staging),
        # The server reads the files: relative paths are made absolute here, in the client.
        tls_certificate_path=_absolute(cert, cwd) if cert else "",
        tls_private_key_path=_absolute(key, cwd) if key else "",
        tls_acme_cache_path=acme_cache,
        tls_acme_directory=directory,
        tls_redirect=_pick(args.tls_redirect, True),
        canonical_host=canonical,
        error_page_path=args.error_pages or "",
        writer_affinity_timeout=_pick(
            args.writer_affinity_timeout, o.DEFAULT_WRITER_AFFINITY_TIMEOUT
        ),
        read_targets_accept_websockets=bool(args.read_target_websockets),
        health_check=o.HealthCheckConfig(
            path=_pick(args.health_check_path, o.DEFAULT_HEALTH_CHECK_PATH),
            port=_pick(args.health_check_port, 0),
            interval=_pick(args.health_check_interval, o.DEFAULT_HEALTH_CHECK_INTERVAL),
            timeout=_pick(args.health_check_timeout, o.DEFAULT_HEALTH_CHECK_TIMEOUT),
            host=args.health_check_host or "",
        ),
        target_timeout=_pick(args.target_timeout, o.DEFAULT_TARGET_TIMEOUT),
        buffer_requests=bool(args.buffer_requests),
        buffer_responses=bool(args.buffer_responses),
        buffer_memory=_pick(args.buffer_memory, o.DEFAULT_BUFFER_MEMORY),
        max_request_body=_pick(args.max_request_body, 0),
        max_response_body=_pick(args.max_response_body, 0),
        forward_headers=not tls if args.forward_headers is None else args.forward_headers,
        log_request_headers=tuple(args.log_request_header),
        log_response_headers=tuple(args.log_response_header),
        scope_cookie_paths=bool(args.scope_cookie_paths),
        basic_auth_user=user or "",
        basic_auth_password_hash=password_hash or "",
        allow_ips=tuple(args.allow_ip),
        client_ip_header=args.client_ip_header or "",
    )
    return o.DeployRequest(
        service=service,
        targets=tuple(args.target),
        readers=tuple(args.read_target),
        config=config,
        deploy_timeout=_pick(args.deploy_timeout, o.DEFAULT_DEPLOY_TIMEOUT),
        drain_timeout=_pick(args.drain_timeout, o.DEFAULT_DRAIN_TIMEOUT),
        force=bool(args.force),
    )


# -- entry point --------------------------------------------------------------------------------


def _run_server(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    import logging

    from dockyard.proxy.control.log import JsonFormatter
    from dockyard.proxy.control.server import BIND_ENV, RunSettings, run

    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if args.debug else logging.INFO)
    run(
        RunSettings(
            http_port=args.http_port,
            https_port=args.https_port,
            metrics_port=args.metrics_port,
            debug=args.debug,
            http3=args.http3,
            bind=env.get(BIND_ENV) or "0.0.0.0",
        )
    )
    return 0


def client_request(
    args: argparse.Namespace, env: Mapping[str, str], cwd: str | None = None
) -> tuple[str, dict[str, Any]]:
    """The control call (method, params) of a parsed client subcommand, its flags checked as
    kamal-proxy's client checks them (:class:`UsageError` otherwise)."""
    from dockyard.proxy.control import options as o

    command = args.command
    if command == "deploy":
        return "deploy", deploy_request(args, env, cwd).to_json()
    if command in ("remove", "rm"):
        return "remove", {"service": _one_service(args)}
    if command == "resume":
        return "resume", {"service": _one_service(args)}
    if command == "pause":
        return "pause", {
            "service": _one_service(args),
            "drain_timeout": _pick(args.drain_timeout, o.DEFAULT_DRAIN_TIMEOUT),
            "max_pause": _pick(args.max_pause, o.DEFAULT_PAUSE_TIMEOUT),
        }
    if command == "stop":
        return "stop", {
            "service": _one_service(args),
            "drain_timeout": _pick(args.drain_timeout, o.DEFAULT_DRAIN_TIMEOUT),
            "message": args.message,
        }
    if command in ("list", "ls"):
        return "list", {}
    if command == "rollout":
        sub = args.rollout_command
        if sub is None:
            raise UsageError("rollout needs a subcommand: deploy, set or stop")
        service = _one_service(args)
        if sub == "deploy":
            if not args.target:
                raise UsageError('required flag(s) "target" not set')
            return "rollout_deploy", {
                "service": service,
                "targets": args.target,
                "readers": args.read_target,
                "deploy_timeout": _pick(args.deploy_timeout, o.DEFAULT_DEPLOY_TIMEOUT),
                "drain_timeout": _pick(args.drain_timeout, o.DEFAULT_DRAIN_TIMEOUT),
            }
        if sub == "set":
            if args.percent is None and not args.list:
                raise UsageError(
                    "at least one of the flags in the group [percent list] is required"
                )
            return "rollout_set", {
                "service": service,
                "percent": _pick(args.percent, 0),
                "allowlist": args.list,
            }
        return "rollout_stop", {"service": service}
    raise UsageError(f"{command} is not a client subcommand")


_CLIENT_PARSER: _Parser | None = None


def parse_client(
    argv: Sequence[str], env: Mapping[str, str], cwd: str
) -> tuple[str, dict[str, Any]]:
    """A client subcommand's command line, as sent by :mod:`dockyard.proxy.quick` (the server's
    ``cli`` call), into its control call: the same parser and checks as :func:`main`."""
    global _CLIENT_PARSER
    if _CLIENT_PARSER is None:  # built once per server; `run`'s env defaults are not used here
        _CLIENT_PARSER = build_parser("kamal-proxy", {})
    args = _CLIENT_PARSER.parse_args(_normalize_bool_flags(list(argv)))
    if args.command in (None, "run"):
        raise UsageError("not a client subcommand")
    return client_request(args, env, cwd)


def _client(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from dockyard.proxy.control.client import call
    from dockyard.proxy.control.state import socket_path
    from dockyard.proxy.quick import format_table

    method, params = client_request(args, env)
    result = call(socket_path(env), method, params)
    if method == "list":
        print(format_table(result if isinstance(result, list) else [], sys.stdout.isatty()))
    return 0


def _prog() -> str:
    name = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else ""
    return "kamal-proxy" if name == "kamal-proxy" else "dockyard-proxy"


def main(argv: list[str] | None = None) -> int:
    from dockyard.errors import DockyardError

    env = os.environ
    raw = sys.argv[1:] if argv is None else argv
    parser = build_parser(_prog(), env)
    try:
        args = parser.parse_args(_normalize_bool_flags(raw))
        if args.command is None:
            parser.print_help()
            return 0
        if args.command == "run":
            return _run_server(args, env)
        return _client(args, env)
    except UsageError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    except DockyardError as exc:
        print(f"Error: {exc.render()}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
