"""Pure functions from configuration to argv (no I/O). Kamal compatibility is pinned here.

Every builder returns an :class:`~dockyard.commands.argv.Argv` (one program and its literal
arguments), a list/tuple of them to run in order, or a :class:`~dockyard.commands.argv.Pipeline`
where a real pipe is needed (``docker logs ... | grep``, ``curl ... | sh``). Nothing here is
shell syntax: where Kamal uses ``&&``, ``||``, ``;``, ``|``, ``xargs`` or ``while read``, the
flow runs the argvs one by one and gives the output to the paired pure ``parse_*`` function.

Modules:

* ``argv``: the values (``Argv``, ``Pipeline``, ``Secret``, ``HomePath``) and small helpers;
* ``paths``: Kamal's layout under ``.kamal`` on the servers;
* ``app``, ``accessory``, ``proxy``, ``builder``: containers, images and kamal-proxy calls;
* ``registry``, ``lock``, ``audit``, ``prune``, ``server``, ``hooks``, ``ssh``, ``envfile``.

Two things a caller must know:

* an argv may hold :class:`~dockyard.commands.argv.HomePath` parts (bind mounts below the SSH
  login directory, Kamal's ``$PWD/...``). ``Argv.shell()`` expands them remotely; ``raw()``
  needs ``with_home(<remote home>)`` first;
* an argv may hold :class:`~dockyard.commands.argv.ShellExpanded` parts: values with
  ``${VAR}`` that Kamal lets the remote shell expand (and ``builder.ssh`` with ``$VAR``). Only
  ``shell()`` renders them; ``raw()`` raises, so such a command runs through a shell;
* an argv may carry ``stdin`` (lock details, audit lines), which the transport must feed;
* ``argv == ("docker", ...)`` and ``argv[i]`` use the plain rendering (secrets revealed):
  that is for tests; log ``display()``.

Golden tests in ``tests/unit/commands`` pin each builder against Kamal 2.11: hand-written ones
from Kamal's own test configs, and ``kamal_2_11.json`` recorded from the real Kamal binary.
"""

from __future__ import annotations

from dockyard.commands.argv import (
    Argv,
    HomePath,
    Pipeline,
    Secret,
    ShellExpanded,
    argv,
    docker,
)

__all__ = ["Argv", "HomePath", "Pipeline", "Secret", "ShellExpanded", "argv", "docker"]
