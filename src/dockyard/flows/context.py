"""What every flow receives: the resolved config, the selected hosts and roles, the transports,
a reporter for output, the clock, and helpers for the lock, hooks and the audit log.

    async with open_context(config, selection=Selection.parse("web-*", None, False)) as ctx:
        async with ctx.lock("Automatic deploy lock"):
            await ctx.on(ctx.app_hosts, lambda host: ctx.run(host, some_argv))

Nothing here prints: lines and step messages go to ``ctx.reporter`` (the CLI renders them).
Errors are ``DockyardError``s that name the layer and the host.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import os
import shlex
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Literal, TypeVar

from dockyard.commands import hooks as hook_commands
from dockyard.commands import lock as lock_commands
from dockyard.commands.argv import Argv
from dockyard.commands.audit import audit_line
from dockyard.commands.paths import RUN_DIRECTORY, audit_log_file
from dockyard.errors import ConfigError, DockyardError, LockHeldError
from dockyard.flows.errors import HookError, error_for
from dockyard.remote.argv import ArgvLike, display_command
from dockyard.remote.batch import run_batch, run_one
from dockyard.remote.engine import DOCKER_SOCKET, api_enabled
from dockyard.remote.fanout import HostOutcome, raise_for_failures
from dockyard.remote.local import LocalTransport
from dockyard.remote.options import SshOptions
from dockyard.remote.result import OutputLine, Result
from dockyard.remote.transport import HostPool, Transport

if TYPE_CHECKING:
    from dockyard.config.models import Accessory, Config, Role

__all__ = [
    "DeployContext",
    "Event",
    "Reporter",
    "Selection",
    "open_context",
    "ssh_options",
]

T = TypeVar("T")

EventKind = Literal["step", "info", "warn", "output", "command"]


@dataclass(frozen=True, slots=True)
class Event:
    """Something for the user: a step ("Acquiring the deploy lock..."), information, a warning,
    a line of command output (with its host) or, at verbose level, a command being run."""

    kind: EventKind
    text: str
    host: str | None = None


Reporter = Callable[[Event], None]


def _ignore(_event: Event) -> None:
    return None


def _split(value: str | Sequence[str] | None) -> tuple[str, ...]:
    if value is None:
        return ()
    items = value.split(",") if isinstance(value, str) else list(value)
    return tuple(item.strip() for item in items if item.strip())


def _matches(patterns: Sequence[str], value: str) -> bool:
    return any(fnmatch.fnmatchcase(value, pattern) for pattern in patterns)


@dataclass(frozen=True, slots=True)
class Selection:
    """The ``-h/--hosts``, ``-r/--roles`` and ``-p/--primary`` filters; ``*`` wildcards allowed."""

    hosts: tuple[str, ...] = ()
    roles: tuple[str, ...] = ()
    primary: bool = False

    @classmethod
    def parse(
        cls,
        hosts: str | Sequence[str] | None = None,
        roles: str | Sequence[str] | None = None,
        primary: bool = False,
    ) -> Selection:
        return cls(_split(hosts), _split(roles), primary)

    @property
    def empty(self) -> bool:
        return not (self.hosts or self.roles or self.primary)


def _known_hosts_from_ssh_config(paths: Sequence[str]) -> tuple[str, ...]:
    """``UserKnownHostsFile`` entries of OpenSSH config files (so a project's ``ssh.config``
    that Kamal honours also tells Dockyard which known_hosts to trust)."""
    found: list[str] = []
    for path in paths:
        try:
            text = Path(os.path.expanduser(path)).read_text()
        except OSError:
            continue
        for line in text.splitlines():
            words = shlex.split(line, comments=True) if line.strip() else []
            if len(words) >= 2 and words[0].lower() == "userknownhostsfile":
                found.extend(w for w in words[1:] if w.lower() != "none")
            elif len(words) == 1 and "=" in words[0]:
                key, _, value = words[0].partition("=")
                if key.lower() == "userknownhostsfile":
                    found.append(value)
    return tuple(dict.fromkeys(found))


def ssh_options(config: Config, environ: Mapping[str, str] | None = None) -> SshOptions:
    """The remote layer's SSH settings from the config's ``ssh`` and ``sshkit`` sections.

    Known-hosts files: ``$DOCKYARD_SSH_KNOWN_HOSTS`` (colon-separated) when set, else the
    ``UserKnownHostsFile`` of the configured ssh config files, else the user's defaults.
    """
    env = os.environ if environ is None else environ
    ssh = config.ssh
    config_files: bool | str | tuple[str, ...] = False if ssh.config is None else ssh.config
    if isinstance(config_files, str):
        paths: tuple[str, ...] = (config_files,)
    elif isinstance(config_files, tuple):
        paths = config_files
    else:
        paths = ("~/.ssh/config",) if config_files else ()
    known = tuple(p for p in env.get("DOCKYARD_SSH_KNOWN_HOSTS", "").split(":") if p)
    if not known:
        known = _known_hosts_from_ssh_config(paths)
    key_data = tuple(
        config.secret(name).reveal() if "PRIVATE KEY" not in name else name
        for name in (ssh.key_data or ())
    )
    return SshOptions(
        user=ssh.user,
        port=ssh.port,
        proxy=ssh.proxy,
        proxy_command=ssh.proxy_command,
        keys=tuple(ssh.keys or ()),
        key_data=key_data,
        keys_only=bool(ssh.keys_only),
        config=config_files,
        log_level=ssh.log_level,
        known_hosts=known,
        keepalive_interval=float(ssh.keepalive_interval) if ssh.keepalive else 0.0,
        max_concurrent_starts=config.sshkit.max_concurrent_starts,
        pool_idle_timeout=float(config.sshkit.pool_idle_timeout),
        dns_retries=config.sshkit.dns_retries,
        docker_socket=DOCKER_SOCKET if api_enabled(env) else None,
    )


def audit_command(service: str, destination: str | None, line: str) -> Argv:
    """Append one audit line (``mkdir -p .kamal`` first), as one command without stdin so it
    can join a batch: the line is an argument, written by ``printf``, never parsed by a shell."""
    script = 'mkdir -p "$1" && printf "%s\\n" "$3" >> "$2"'
    return Argv(
        ("sh", "-c", script, "sh", RUN_DIRECTORY, audit_log_file(service, destination), line)
    )


@dataclass
class DeployContext:
    """Everything a flow needs; see the module docstring. One per CLI invocation.

    ``holding_lock`` starts true when ``KAMAL_LOCK=true`` is in the environment (a hook calling
    Dockyard again), so the lock is re-entrant across processes as in Kamal.
    """

    config: Config
    pool: HostPool
    reporter: Reporter = _ignore
    selection: Selection = field(default_factory=Selection)
    local: Transport = field(default_factory=LocalTransport)
    skip_hooks: bool = False
    holding_lock: bool = False
    command: str | None = None
    subcommand: str | None = None
    verbosity: int = 0
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    performer_name: str | None = None
    locked_by_name: str | None = None
    #: Ask the registry (over HTTPS, from here) for a tag's digest to skip needless pulls;
    #: on for the CLI's SSH pool, off for test pools (see ``flows.digest``).
    ask_registry: bool = False
    _connected: set[str] = field(default_factory=set)
    _pre_connect_ran: bool = False

    # -- output ----------------------------------------------------------------------------

    def step(self, text: str) -> None:
        self.reporter(Event("step", text))

    def info(self, text: str, host: str | None = None) -> None:
        self.reporter(Event("info", text, host))

    def warn(self, text: str, host: str | None = None) -> None:
        self.reporter(Event("warn", text, host))

    def output(self, line: OutputLine) -> None:
        self.reporter(Event("output", line.text, line.host))

    # -- version ---------------------------------------------------------------------------

    @property
    def version(self) -> str:
        """The version being deployed (``--version``, ``$VERSION`` or the git HEAD)."""
        return self.config.version

    def with_version(self, version: str) -> None:
        """Switch the context to another version (rollback)."""
        self.config = self.config.with_version(version)

    # -- selection -------------------------------------------------------------------------

    @property
    def roles(self) -> list[Role]:
        """The roles selected by ``-r`` (and having a selected host when ``-h``/``-p``)."""
        roles = list(self.config.roles)
        if self.selection.roles:
            roles = [r for r in roles if _matches(self.selection.roles, r.name)]
            if not roles:
                raise ConfigError(
                    f"No --roles match for {','.join(self.selection.roles)} "
                    f"(roles: {', '.join(self.config.role_names) or 'none'})"
                )
        host_filter = self._host_patterns()
        if host_filter is not None:
            roles = [r for r in roles if any(_matches(host_filter, h) for h in r.hosts)]
        return roles

    def _host_patterns(self) -> tuple[str, ...] | None:
        if self.selection.primary:
            primary = self.config.primary_host
            return (primary,) if primary else ()
        return self.selection.hosts or None

    def _filter_hosts(self, hosts: Sequence[str]) -> list[str]:
        patterns = self._host_patterns()
        if patterns is None:
            return list(dict.fromkeys(hosts))
        return [h for h in dict.fromkeys(hosts) if _matches(patterns, h)]

    def role_hosts(self, role: Role) -> list[str]:
        return self._filter_hosts(role.hosts)

    @property
    def app_hosts(self) -> list[str]:
        hosts = self._filter_hosts([h for r in self.roles for h in r.hosts])
        if not hosts and not self.selection.empty:
            raise ConfigError(f"No servers match {self._describe_selection()}")
        return hosts

    @property
    def proxy_hosts(self) -> list[str]:
        hosts = [h for r in self.roles if r.running_proxy for h in r.hosts]
        if not self.selection.roles:
            hosts += [h for a in self.config.accessories if a.running_proxy for h in a.hosts]
        return self._filter_hosts(hosts)

    @property
    def accessories(self) -> list[Accessory]:
        return list(self.config.accessories)

    def accessory_hosts(self, accessory: Accessory) -> list[str]:
        return self._filter_hosts(accessory.hosts)

    @property
    def hosts(self) -> list[str]:
        """Every selected host (app hosts, and accessory hosts unless ``-r`` is given)."""
        hosts = [h for r in self.roles for h in r.hosts]
        if not self.selection.roles:
            hosts += [h for a in self.config.accessories for h in a.hosts]
        selected = self._filter_hosts(hosts)
        if not selected and not self.selection.empty:
            raise ConfigError(f"No servers match {self._describe_selection()}")
        return selected

    def roles_on(self, host: str) -> list[Role]:
        """Selected roles on ``host``, the primary role first (Kamal's boot order)."""
        roles = [r for r in self.roles if host in r.host_tags]
        primary = self.config.primary_role_name
        return sorted(roles, key=lambda r: r.name != primary)

    @property
    def primary_host(self) -> str:
        """Where the lock lives: the first selected host, else the primary role's first host."""
        if self.selection.hosts or self.selection.primary:
            hosts = self.hosts
            if hosts:
                return hosts[0]
        if self.selection.roles:
            for role in self.roles:
                if role.primary_host:
                    return role.primary_host
        host = self.config.primary_host or next(iter(self.config.all_hosts), None)
        if host is None:
            raise ConfigError("No servers configured")
        return host

    def _describe_selection(self) -> str:
        parts = []
        if self.selection.hosts:
            parts.append(f"--hosts {','.join(self.selection.hosts)}")
        if self.selection.roles:
            parts.append(f"--roles {','.join(self.selection.roles)}")
        if self.selection.primary:
            parts.append("--primary")
        return " and ".join(parts) or "the configuration"

    # -- running commands ------------------------------------------------------------------

    def transport(self, host: str) -> Transport:
        return self.pool.transport(host)

    def _sink(self, stream: bool) -> Callable[[OutputLine], None] | None:
        return self.output if stream else None

    def _command(self, host: str, argv: ArgvLike) -> None:
        if self.verbosity > 0:
            self.reporter(Event("command", display_command(argv), host))

    async def run(
        self,
        host: str,
        argv: ArgvLike,
        *,
        check: bool = True,
        layer: str = "docker",
        hint: str | None = None,
        what: str | None = None,
        timeout: float | None = None,
        stream: bool = False,
    ) -> Result:
        """Run one command on ``host``. With ``check``, a failure raises the layer's error,
        naming the host, what was being done and the tail of the output."""
        self._command(host, argv)
        result = await run_one(
            self.transport(host),
            argv,
            timeout=timeout,
            on_output=self._sink(stream or self.verbosity > 0),
        )
        if check and not result.ok:
            raise self.failure(host, argv, result, layer=layer, hint=hint, what=what)
        return result

    async def batch(
        self,
        host: str,
        commands: Sequence[ArgvLike],
        *,
        stop_on_error: bool = True,
        check: bool = True,
        layer: str = "docker",
        hint: str | None = None,
        timeout: float | None = None,
        parallel: bool = False,
        stages: Sequence[int] | None = None,
    ) -> list[Result]:
        """Run independent commands on ``host`` in one round trip (one Result each). With
        ``check`` the first failure raises (later commands did not run). ``parallel`` runs
        them side by side on the host, ``stages`` in groups (see ``remote.batch``)."""
        for argv in commands:
            self._command(host, argv)
        results = await run_batch(
            self.transport(host),
            commands,
            stop_on_error=stop_on_error,
            timeout=timeout,
            on_output=self._sink(self.verbosity > 0),
            parallel=parallel,
            stages=stages,
        )
        if check:
            for argv, result in zip(commands, results, strict=True):
                if not result.ok:
                    raise self.failure(host, argv, result, layer=layer, hint=hint)
        return results

    def failure(
        self,
        host: str,
        argv: ArgvLike,
        result: Result,
        *,
        layer: str = "docker",
        hint: str | None = None,
        what: str | None = None,
    ) -> DockyardError:
        """The error for a failed command: layer, host, command, output tail and a hint."""
        title = what or display_command(argv)
        tail = (result.stderr.strip() or result.stdout.strip()).splitlines()[-10:]
        message = f"{layer} on {host}: {title} failed ({result.describe_status()})"
        if tail:
            message += "\n" + "\n".join(f"  | {line}" for line in tail)
        return error_for(layer)(message, hint=hint or _default_hint(layer, tail))

    async def on(
        self,
        hosts: Sequence[str],
        fn: Callable[[str], Awaitable[T]],
        *,
        fail_fast: bool = False,
    ) -> dict[str, T]:
        """Run ``fn(host)`` on every host in parallel; raise one error naming every failed
        host, else return the values by host."""
        outcomes: list[HostOutcome[T]] = await self.pool.on(
            hosts, lambda transport: fn(transport.host), fail_fast=fail_fast
        )
        raise_for_failures(outcomes)
        return {o.host: o.value for o in outcomes if o.ok}  # type: ignore[misc]

    async def connect(self, hosts: Sequence[str]) -> None:
        """Open SSH connections to ``hosts`` up front (after the pre-connect hook)."""
        todo = [h for h in hosts if h not in self._connected]
        if not todo:
            return
        await self.pre_connect()
        raise_for_failures(await self.pool.connect_all(todo))
        self._connected.update(todo)

    def lock_targets(self, hosts: Sequence[str] | None = None) -> list[str]:
        """Where the lock's ``mkdir -p .kamal`` runs: ``hosts`` (default: every selected
        host) and the primary host."""
        targets = list(hosts) if hosts is not None else self.hosts
        if self.primary_host not in targets:
            targets.append(self.primary_host)
        return targets

    async def warm_up(self, hosts: Sequence[str]) -> None:
        """Connect to ``hosts`` while the local ``git config`` queries for the performer (audit
        lines, hooks) and the lock's author run, instead of one after the other."""
        await asyncio.gather(self.connect(hosts), self.performer(), self.locked_by())

    async def pre_connect(self) -> None:
        """The ``pre-connect`` hook, once per run, before the first connection (or build)."""
        if not self._pre_connect_ran:
            self._pre_connect_ran = True
            await self.run_hook("pre-connect")

    # -- who is deploying --------------------------------------------------------------------

    async def _local_text(self, argv: Argv) -> str:
        try:
            result = await self.local.run(argv, timeout=10)
        except DockyardError:
            return ""
        return result.stdout if result.ok else ""

    async def performer(self) -> str:
        """``git config user.email``, else ``whoami`` (Kamal's performer)."""
        if self.performer_name is None:
            email = await self._local_text(hook_commands.git_user_email())
            who = "" if email.strip() else await self._local_text(hook_commands.whoami())
            self.performer_name = hook_commands.performer(email, who) or "unknown"
        return self.performer_name

    async def locked_by(self) -> str:
        if self.locked_by_name is None:
            name = (await self._local_text(hook_commands.git_user_name())).strip()
            self.locked_by_name = name or "Unknown"
        return self.locked_by_name

    # -- audit -------------------------------------------------------------------------------

    async def audit_line(self, message: str, *, role: str | None = None) -> str:
        return audit_line(
            message,
            recorded_at=self.clock(),
            performer=await self.performer(),
            destination=self.config.destination,
            details={"role": role} if role else None,
        )

    async def audit_argv(self, message: str, *, role: str | None = None) -> Argv:
        """The command that appends ``message`` to the audit log (for a batch)."""
        line = await self.audit_line(message, role=role)
        return audit_command(self.config.service, self.config.destination, line)

    async def audit(self, host: str, message: str, *, role: str | None = None) -> None:
        await self.run(host, await self.audit_argv(message, role=role), what="audit log")

    # -- the deploy lock ---------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def lock(
        self,
        message: str = lock_commands.AUTOMATIC_MESSAGE,
        *,
        hosts: Sequence[str] | None = None,
        then: Mapping[str, Sequence[Argv]] | None = None,
    ) -> AsyncIterator[dict[str, list[Result]]]:
        """Hold the deploy lock on the primary host for the block; released in ``finally``.
        Re-entrant: inside a held lock (or with ``KAMAL_LOCK=true``) it takes no lock.

        ``then``: per host, independent commands (queries) sent in the same round trip as
        the lock, run side by side once the lock is taken on that host's batch; the block
        gets their results by host (see :meth:`acquire_lock`)."""
        if self.holding_lock:
            queries = dict(then or {})
            if queries:
                await self.connect(list(queries))
            results = await self.on(
                list(queries),
                lambda host: self.batch(host, queries[host], parallel=True, check=False),
            )
            yield results
            return
        results = await self.acquire_lock(message, hosts=hosts, then=then)
        try:
            yield results
        finally:
            await self.release_lock()

    async def acquire_lock(
        self,
        message: str,
        *,
        hosts: Sequence[str] | None = None,
        then: Mapping[str, Sequence[Argv]] | None = None,
    ) -> dict[str, list[Result]]:
        """Take the lock in one round trip per host: ``mkdir -p .kamal`` on every targeted
        host, then on the primary host the atomic ``mkdir`` of the lock directory and its
        details; each host's ``then`` commands follow in the same batch (on the primary only
        once the lock is held). Returns the ``then`` results by host. On contention nothing
        after the lock's ``mkdir`` ran on the primary host; ``then`` commands must therefore
        be ones that may run on the other hosts anyway (queries)."""
        queries = dict(then or {})
        targets = self.lock_targets(hosts)
        primary = self.primary_host
        for host in queries:
            if host not in targets:
                targets.append(host)
        self.step("Acquiring the deploy lock...")
        await self.warm_up(targets)
        ensure = lock_commands.ensure_locks_directory()
        service, destination = self.config.service, self.config.destination
        details = lock_commands.lock_details(
            message,
            self._version_or_unknown(),
            locked_by=await self.locked_by(),
            at=self.clock(),
        )
        make_dir, write = lock_commands.acquire(service, destination, details)

        async def one(host: str) -> list[Result]:
            commands: list[Argv] = [ensure]
            stages = [0]
            if host == primary:
                commands += [make_dir, write]
                stages += [1, 2]
            extra = list(queries.get(host, ()))
            commands += extra
            stages += [3] * len(extra)
            return await self.batch(host, commands, stop_on_error=True, check=False, stages=stages)

        everything = await self.on(targets, one)
        for host, results in everything.items():
            if not results[0].ok:
                raise self.failure(host, ensure, results[0], layer="lock", what="mkdir .kamal")
        made, written = everything[primary][1:3]
        if not made.ok:
            if lock_commands.is_contention(made.stderr):
                status = await self.lock_status()
                raise LockHeldError(
                    f"Deploy lock already in place on {primary}!\n"
                    + "\n".join(f"  {line}" for line in (status or "(no details)").splitlines()),
                    hint="wait for the other deploy to finish; if it died, check with "
                    "`dockyard lock status` and release it with `dockyard lock release`",
                )
            raise self.failure(primary, make_dir, made, layer="lock", what="creating the lock")
        if not written.ok:
            raise self.failure(primary, write, written, what="writing the lock details")
        self.holding_lock = True
        return {
            host: results[3 if host == primary else 1 :]
            for host, results in everything.items()
            if host in queries
        }

    def _version_or_unknown(self) -> str:
        try:
            return self.config.version
        except ConfigError:
            return "unknown"

    async def release_lock(self, before: Sequence[Argv] = ()) -> list[Result]:
        """Release the lock on the primary host. ``before``: commands for the primary host
        that go first in the same round trip (still under the lock; run whatever their
        outcome); their results are returned. Without the lock they run alone."""
        if not self.holding_lock:
            if not before:
                return []
            return await self.batch(self.primary_host, before, stop_on_error=False, check=False)
        primary = self.primary_host
        self.step("Releasing the deploy lock...")
        commands = lock_commands.release(self.config.service, self.config.destination)
        # the removals before it must not stop the release (nor a failed one stop them)
        results = await self.batch(
            primary, [*before, *commands], stop_on_error=not before, check=False
        )
        self.lock_released(results[len(before) :])
        return results[: len(before)]

    def lock_released(self, results: Sequence[Result]) -> None:
        """Note that the release commands (``lock_commands.release``) ran on the primary host,
        in whichever batch carried them; a failed one is a warning."""
        self.holding_lock = False
        failed = [r for r in results if not r.ok]
        if failed:
            self.warn(
                f"could not release the deploy lock on {self.primary_host}: "
                f"{failed[0].stderr.strip()} (run `dockyard lock release`)",
                self.primary_host,
            )

    async def lock_status(self) -> str | None:
        """The lock's decoded details, or None when there is no lock."""
        primary = self.primary_host
        stat, cat = lock_commands.status(self.config.service, self.config.destination)
        results = await self.batch(primary, [stat, cat], check=False)
        if not results[0].ok:
            return None
        return lock_commands.parse_details(results[1].stdout)

    # -- hooks -------------------------------------------------------------------------------

    def hook_path(self, hook: str) -> Path:
        base = Path(self.config.hooks_path)
        if not base.is_absolute():
            base = self.config.root / base
        return base / hook

    def has_hook(self, hook: str) -> bool:
        """Whether :meth:`run_hook` would run ``hook`` (the file exists, hooks not skipped)."""
        return not self.skip_hooks and self.hook_path(hook).is_file()

    async def run_hook(
        self,
        hook: str,
        *,
        hosts: Sequence[str] | None = None,
        runtime: int | None = None,
        extra_env: Mapping[str, str] | None = None,
    ) -> bool:
        """Run a local hook if it exists (and ``-H`` was not given); a non-zero exit raises
        :class:`HookError`. Returns whether it ran."""
        path = self.hook_path(hook)
        if self.skip_hooks or not path.is_file():
            return False
        secrets: dict[str, str] = {}
        if hook in hook_commands.SECRET_HOOKS:
            secrets = self._all_secrets()
        try:
            version: str | None = self.config.version
        except ConfigError:
            version = None
        env = hook_commands.hook_env(
            service=self.config.service,
            version=version,
            destination=self.config.destination,
            recorded_at=self.clock(),
            performer=await self.performer(),
            hosts=self.hosts if hosts is None else hosts,
            roles=[r.name for r in self.roles] if self.selection.roles else None,
            lock=self.holding_lock,
            command=self.command,
            subcommand=self.subcommand,
            runtime=runtime,
            secrets=secrets,
        )
        env.update(extra_env or {})
        self.step(f"Running the {hook} hook...")
        quiet = self.verbosity < 0 or (
            self.verbosity == 0 and self.config.hooks_output_for(hook) == "quiet"
        )
        argv = Argv(("sh", "-c", 'cd "$1" && exec "$2"', "sh", str(self.config.root), str(path)))
        result = await self.local.run(argv, env=env, on_output=None if quiet else self.output)
        if not result.ok:
            tail = (result.stderr.strip() or result.stdout.strip()).splitlines()[-10:]
            message = f"Hook `{hook}` failed ({result.describe_status()})"
            if tail:
                message += ":\n" + "\n".join(f"  | {line}" for line in tail)
            raise HookError(message, hint=f"fix {path} or skip hooks with -H")
        return True

    def _all_secrets(self) -> dict[str, str]:
        store = self.config.secrets
        try:
            return dict(store._load())  # every resolved secret, as Kamal exports them
        except DockyardError:
            return {}


def _default_hint(layer: str, tail: Sequence[str]) -> str | None:
    text = "\n".join(tail).lower()
    if "no space left" in text:
        return "the server's disk is full: free space (e.g. `docker system prune`) and retry"
    if "address already in use" in text or "port is already allocated" in text:
        return "another process holds the port on the server: stop it or change the port"
    if "permission denied" in text and "docker" in text:
        return "the SSH user may not use Docker: add it to the docker group"
    if "command not found" in text and "docker" in text:
        return "Docker is not installed on the server: run `dockyard server bootstrap`"
    if "unauthorized" in text or "authentication required" in text:
        return "check the registry username and password (registry section and secrets)"
    return {
        "registry": "check the registry address, credentials and that the image was pushed",
        "lock": "check that the server's disk is writable",
    }.get(layer)


@contextlib.asynccontextmanager
async def open_context(
    config: Config,
    *,
    selection: Selection | None = None,
    reporter: Reporter | None = None,
    pool: HostPool | None = None,
    local: Transport | None = None,
    skip_hooks: bool = False,
    command: str | None = None,
    subcommand: str | None = None,
    verbosity: int = 0,
    environ: Mapping[str, str] | None = None,
) -> AsyncIterator[DeployContext]:
    """A context whose SSH pool (one connection per host for the run) is closed on exit."""
    env = os.environ if environ is None else environ
    ask_registry = pool is None
    if pool is None:
        from dockyard.remote.mux import make_pool

        pool = make_pool(ssh_options(config, env), env)
    ctx = DeployContext(
        config=config,
        pool=pool,
        reporter=reporter or _ignore,
        selection=selection or Selection(),
        local=local or LocalTransport(),
        skip_hooks=skip_hooks,
        holding_lock=env.get("KAMAL_LOCK") == "true",
        command=command,
        subcommand=subcommand,
        verbosity=verbosity,
        ask_registry=ask_registry,
    )
    try:
        yield ctx
    finally:
        await pool.close()
