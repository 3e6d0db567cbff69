"""Running argv on many hosts over SSH (asyncssh) and locally.

``Transport`` is the seam: ``SshTransport`` (from an ``SshPool``), ``LocalTransport`` and
``FakeTransport`` implement it; ``HostPool`` is what a flow holds (``SshPool`` / ``FakePool``).
``run_batch`` sends independent commands in one round trip; ``run_on_hosts`` / ``pool.on``
fan out across hosts with a limit and per-host outcomes. Typical use in a flow::

    async with SshPool(SshOptions(user="deploy", keys=("~/.ssh/id_ed25519",))) as pool:
        raise_for_failures(await pool.connect_all(hosts))
        outcomes = await pool.on(hosts, lambda ssh: ssh.run(argv, on_output=reporter))
        raise_for_failures(outcomes)
        for outcome in outcomes:
            assert outcome.value is not None
            outcome.value.check(outcome.host, argv)

Errors leave this package as ``ConnectError`` (ssh layer), ``RemoteCommandError`` /
``CommandTimeoutError`` (remote layer) or ``HostsFailedError``; never as asyncssh exceptions.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dockyard.remote.argv import (
        ArgvLike,
        MaskedCommand,
        ShellCommand,
        command_line,
        display_command,
        raw_args,
        shell_join,
    )
    from dockyard.remote.batch import run_batch
    from dockyard.remote.fake import FakeCall, FakePool, FakeTransport, FakeUpload
    from dockyard.remote.fanout import (
        HostOutcome,
        HostsFailedError,
        raise_for_failures,
        run_on_hosts,
    )
    from dockyard.remote.local import LocalTransport
    from dockyard.remote.options import JumpHost, SshOptions, parse_jump
    from dockyard.remote.result import (
        CommandTimeoutError,
        OutputCallback,
        OutputLine,
        Result,
        Stdin,
    )
    from dockyard.remote.ssh import SshPool, SshTransport
    from dockyard.remote.transport import HostPool, Transport

# Names are loaded on first use: importing any dockyard.remote submodule runs this file, and
# the SSH backend (asyncssh, cryptography: ~0.25 s) or the fake must not come along with it.
_WHERE = {
    "argv": (
        "ArgvLike MaskedCommand ShellCommand command_line display_command raw_args shell_join"
    ),
    "batch": "run_batch",
    "fake": "FakeCall FakePool FakeTransport FakeUpload",
    "fanout": "HostOutcome HostsFailedError raise_for_failures run_on_hosts",
    "local": "LocalTransport",
    "options": "JumpHost SshOptions parse_jump",
    "result": "CommandTimeoutError OutputCallback OutputLine Result Stdin",
    "ssh": "SshPool SshTransport",
    "transport": "HostPool Transport",
}
_MODULE_OF = {name: module for module, names in _WHERE.items() for name in names.split()}


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


__all__ = [
    "ArgvLike",
    "CommandTimeoutError",
    "FakeCall",
    "FakePool",
    "FakeTransport",
    "FakeUpload",
    "HostOutcome",
    "HostPool",
    "HostsFailedError",
    "JumpHost",
    "LocalTransport",
    "MaskedCommand",
    "OutputCallback",
    "OutputLine",
    "Result",
    "ShellCommand",
    "SshOptions",
    "SshPool",
    "SshTransport",
    "Stdin",
    "Transport",
    "command_line",
    "display_command",
    "parse_jump",
    "raise_for_failures",
    "raw_args",
    "run_batch",
    "run_on_hosts",
    "shell_join",
]
