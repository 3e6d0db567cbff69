"""The local ``ssh -t`` command for interactive sessions (exec ``-i``, log following).

Kamal builds one shell string; we build an argv for the local ``ssh`` client whose last item is
the remote command line (the remote shell parses it, as it would any ssh command).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dockyard.commands.argv import Argv, Pipeline

if TYPE_CHECKING:
    from dockyard.config.models import Ssh


def config_args(ssh: Ssh) -> tuple[str, ...]:
    """``-F`` per config file, ``-F /dev/null`` for ``config: false``, nothing for true/unset."""
    if ssh.config is False:
        return ("-F", "/dev/null")
    if isinstance(ssh.config, str):
        return ("-F", ssh.config)
    if isinstance(ssh.config, tuple):
        return tuple(p for path in ssh.config for p in ("-F", path))
    return ()


def proxy_args(ssh: Ssh) -> tuple[str, ...]:
    if ssh.proxy:
        return ("-J", ssh.proxy)
    if ssh.proxy_command:
        return ("-o", f"ProxyCommand={ssh.proxy_command}")
    return ()


def key_args(ssh: Ssh) -> tuple[str, ...]:
    keys = tuple(p for key in ssh.keys or () for p in ("-i", key))
    return (*keys, *(("-o", "IdentitiesOnly=yes") if ssh.keys_only else ()))


def run_over_ssh(ssh: Ssh, host: str, command: Argv | Pipeline) -> Argv:
    """``ssh [-F ..] [-J ..|-o ProxyCommand=..] [-i ..] -t user@host -p port '<command>'``."""
    return Argv(
        (
            "ssh",
            *config_args(ssh),
            *proxy_args(ssh),
            *key_args(ssh),
            "-t",
            f"{ssh.user}@{host}",
            "-p",
            str(ssh.port),
            command.shell(),
        )
    )
