"""What `dockyard config` prints: the same document as `kamal config`, and the full resolved view.

`kamal config` prints `Configuration#to_h`: derived values (roles, hosts, images), some raw
sections as written (builder, sshkit, accessories) and a few argument lists (volumes, logging).
We print the same values with plain string keys instead of Ruby's `:symbol` keys. Secret values
never appear: an ssh `key_data` entry that names a secret is shown as `[REDACTED]`.
"""

from __future__ import annotations

from typing import Any

from ._ruby import escape_shell_value, present
from .models import Config
from .secret import REDACTED


def _argumentize(flag: str, attributes: dict[str, Any]) -> list[str]:
    """Kamal's `argumentize` for a hash: `flag k="v"`, `flag k=false`, or a bare `flag k`."""
    args: list[str] = []
    for key, value in attributes.items():
        if present(value):
            args += [flag, f"{key}={escape_shell_value(value)}"]
        elif value is False:
            args += [flag, f"{key}=false"]
        else:
            args += [flag, str(key)]
    return args


def logging_args(config: Config) -> list[str]:
    """Kamal's root `logging_args` (shown by `kamal config`), from the values as written."""
    raw: dict[str, Any] = config.raw.get("logging") or {}
    driver, options = raw.get("driver"), raw.get("options") or {}
    if not present(driver) and not present(options):
        return _argumentize("--log-opt", {"max-size": "10m"})
    args: list[str] = []
    if driver is True:
        args.append("--log-driver")
    elif driver is not None:
        args += ["--log-driver", escape_shell_value(driver)]
    return args + _argumentize("--log-opt", options)


def ssh_options(config: Config) -> dict[str, Any]:
    """Kamal's `ssh.to_h`, with raw values as written, and proxies as plain mappings."""
    raw: dict[str, Any] = config.raw.get("ssh") or {}
    options: dict[str, Any] = {
        "user": raw.get("user", "root"),
        "port": raw.get("port", 22),
    }
    if raw.get("proxy") is not None:
        options["proxy"] = {"jump_proxies": config.ssh.proxy}
    elif raw.get("proxy_command") is not None:
        options["proxy"] = {
            "command_line_template": raw["proxy_command"],
            "command_line": None,
            "timeout": 60,
        }
    options["keepalive"] = True
    options["keepalive_interval"] = 30
    for key in ("keys_only", "keys"):
        if raw.get(key) is not None:
            options[key] = raw[key]
    if raw.get("key_data") is not None:
        options["key_data"] = [
            REDACTED if str(name) in config.secrets else name for name in raw["key_data"]
        ]
    if raw.get("config") is not None:
        options["config"] = raw["config"]
    options["log_level"] = raw.get("log_level", "fatal")
    return options


def kamal_summary(config: Config) -> dict[str, Any]:
    """The document `kamal config` prints, as plain data."""
    raw = config.raw
    summary: dict[str, Any] = {
        "roles": config.role_names,
        "hosts": config.all_hosts,
        "primary_host": config.primary_host,
        "version": config.version,
        "repository": config.repository,
        "absolute_image": config.absolute_image,
        "service_with_version": config.service_with_version,
        "volume_args": [item for volume in config.volumes for item in ("--volume", volume)],
        "ssh_options": ssh_options(config),
        "sshkit": raw.get("sshkit") or {},
        "builder": raw.get("builder") or {},
        "accessories": raw.get("accessories"),
        "logging": logging_args(config),
    }
    return {key: value for key, value in summary.items() if value is not None}


def full_view(config: Config) -> dict[str, Any]:
    """Everything resolved: models as data, per-host role env, derived names. No secret values."""
    data = config.model_dump(mode="json", exclude={"raw", "declared_version", "version_error"})
    data["version"] = config.declared_version
    data["repository"] = config.repository
    data["primary_host"] = config.primary_host
    data["all_hosts"] = config.all_hosts
    for role_data, role in zip(data["roles"], config.roles, strict=True):
        role_data["hosts"] = role.hosts
        role_data["labels"] = role.labels
        role_data["container_prefix"] = role.container_prefix
        role_data["running_proxy"] = role.running_proxy
    for acc_data, acc in zip(data["accessories"], config.accessories, strict=True):
        acc_data["labels"] = acc.labels
    return data


def to_yaml(data: Any) -> str:
    import yaml

    return str(
        yaml.safe_dump(
            data, sort_keys=False, default_flow_style=False, explicit_start=True, allow_unicode=True
        )
    )
