"""Memory check before a boot: does the new version fit next to what already runs on a host?

A normal (``parallel``) boot starts the new container while the old one still runs, so for a
moment a host needs the memory of both. On a small server that moment is when the kernel
OOM-kills the app. Before anything changes, each host is asked (inside the survey's one round
trip) for:

* its own cgroup limit and usage (cgroup v2 ``/sys/fs/cgroup/memory.max``, ``memory.current``,
  ``memory.stat``; v1 ``/sys/fs/cgroup/memory/memory.limit_in_bytes``, ``memory.usage_in_bytes``,
  ``memory.stat``), as seen over SSH, since ``free`` inside a memory-limited container or VM
  slice shows the machine's memory, not the slice's;
* ``MemAvailable`` from ``/proc/meminfo``;
* the memory of the app's running containers, as ``docker stats --no-stream`` counts it, read
  from their cgroup files (:data:`CONTAINER_MEMORY_SCRIPT`; ``docker stats`` itself only for a
  container whose files are not where the script looks).

Pure functions turn that output into a :class:`HostMemory` and a :class:`MemoryPlan` per host;
:func:`check` raises :class:`MemoryCheckError` with the numbers and the options when a host
does not fit.

What a new container will need, per role, in this order: ``boot.memory_needed`` from the
config; the role's ``--memory`` option (``options: {memory: 600m}``); the measured usage of the
role's running container on that host. With none of them (a first deploy), nothing is checked.

What the host has free: the smaller of (cgroup limit - cgroup working set) and MemAvailable,
where the working set is the usage minus the inactive file cache (as ``docker stats`` and the
kubelet count it: that cache is reclaimed before anything is OOM-killed).

With the ``swap`` strategy the old container is stopped first, so its usage (and that of the
roles stopped with ``boot.stop_roles``) is freed before the new one starts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from dockyard.commands.argv import Argv, argv
from dockyard.config.sizes import MIB, parse_size
from dockyard.errors import DockyardError

if TYPE_CHECKING:
    from dockyard.flows.boot import HostSurvey
    from dockyard.flows.context import DeployContext

__all__ = [
    "CGROUP_FILES",
    "DEFAULT_MARGIN",
    "HostMemory",
    "MemoryCheckError",
    "MemoryPlan",
    "RoleNeed",
    "check",
    "check_surveys",
    "format_bytes",
    "memory_queries",
    "parse_docker_size",
    "parse_host_memory",
    "parse_stats",
    "plan_host",
    "plan_hosts",
    "role_memory_limit",
]

#: Kept free on top of what the new container needs (the kernel, sshd, dockerd's growth).
DEFAULT_MARGIN = 64 * MIB
#: cgroup v1 reports "no limit" as a huge page-aligned number; anything above this is no limit.
UNLIMITED = 1 << 60

CGROUP_V2 = "/sys/fs/cgroup"
CGROUP_V1 = "/sys/fs/cgroup/memory"
CGROUP_FILES = (
    "/proc/meminfo",
    f"{CGROUP_V2}/memory.max",
    f"{CGROUP_V2}/memory.current",
    f"{CGROUP_V2}/memory.stat",
    f"{CGROUP_V1}/memory.limit_in_bytes",
    f"{CGROUP_V1}/memory.usage_in_bytes",
    f"{CGROUP_V1}/memory.stat",
)
STATS_FORMAT = "{{.Name}}\t{{.MemUsage}}"

#: Every container's memory as ``docker stats --no-stream`` reports it (usage minus the
#: inactive file cache), read from the container cgroups' files ($1 is the cgroup root;
#: systemd and cgroupfs layouts, v2 and v1), one ``<full ID>\t<bytes>`` line each. No docker
#: call and no other program: ``docker stats`` waits for two samples (1-3 s of every deploy),
#: and even a ``docker ps`` costs the server more CPU than this loop. The survey's listing
#: names the IDs (:func:`container_memory`); a running container of the app that is not found
#: here is asked of ``docker stats`` (:func:`stats_command`).
CONTAINER_MEMORY_SCRIPT = """\
for d in "$1"/system.slice/docker-*.scope "$1"/docker/* \\
    "$1"/memory/system.slice/docker-*.scope "$1"/memory/docker/*; do
  [ -d "$d" ] || continue
  id=${d##*/} && id=${id#docker-} && id=${id%.scope}
  case $id in *[!0-9a-f]*|"") continue ;; esac
  if [ -r "$d/memory.current" ]; then
    key=inactive_file && read -r used < "$d/memory.current"
  elif [ -r "$d/memory.usage_in_bytes" ]; then
    key=total_inactive_file && read -r used < "$d/memory.usage_in_bytes"
  else
    continue
  fi
  cache=0
  [ -r "$d/memory.stat" ] && while read -r name value; do
    [ "$name" = "$key" ] && cache=$value && break
  done < "$d/memory.stat"
  [ "$cache" -le "$used" ] 2>/dev/null || cache=0
  printf '%s\\t%s\\n' "$id" "$((used - cache))"
done
"""


class MemoryCheckError(DockyardError):
    """A host lacks the memory to run the new version next to the old one."""

    layer = "memory"


def memory_queries() -> list[Argv]:
    """Two commands for the survey batch: the memory files (``grep -H`` prints each line as
    ``path:line``; ``-s`` keeps quiet about the files this kernel lacks) and every
    container's memory usage (:data:`CONTAINER_MEMORY_SCRIPT`)."""
    return [
        argv("grep", "-s", "-H", "", *CGROUP_FILES),
        argv("sh", "-c", CONTAINER_MEMORY_SCRIPT, "sh", CGROUP_V2),
    ]


def stats_command(names: Sequence[str]) -> Argv:
    """``docker stats --no-stream`` of the named containers (in :data:`STATS_FORMAT`): for
    the ones whose cgroup files the script did not find."""
    return argv("docker", "stats", "--no-stream", "--format", STATS_FORMAT, *names)


def container_memory(
    usage_output: str, running: Iterable[tuple[str, str]]
) -> tuple[dict[str, int], list[str]]:
    """Match :data:`CONTAINER_MEMORY_SCRIPT`'s lines (full ID, bytes) with the running
    containers ``(short or full ID, name)``: their memory by name, and the names not found."""
    usage: dict[str, int] = {}
    for line in usage_output.splitlines():
        cid, _, value = line.partition("\t")
        if cid.strip() and value.strip().lstrip("-").isdigit():
            usage[cid.strip()] = max(int(value.strip()), 0)
    found: dict[str, int] = {}
    missing: list[str] = []
    for short, name in running:
        match = [v for full, v in usage.items() if short and full.startswith(short)]
        if len(match) == 1:
            found[name] = match[0]
        else:
            missing.append(name)
    return found, missing


# --------------------------------------------------------------------------- parsing


def parse_docker_size(text: str | int) -> int | None:
    """A memory size as Docker writes it (``512m``, ``1.5GiB``) -> bytes, or None."""
    return parse_size(text)


def format_bytes(value: int) -> str:
    """``536870912`` -> ``512 MiB`` (GiB with one decimal from 1 GiB up)."""
    if value >= 1024 * MIB:
        return f"{value / (1024 * MIB):.1f} GiB"
    return f"{value / MIB:.0f} MiB"


@dataclass(frozen=True, slots=True)
class HostMemory:
    """What one host reported. ``None`` means not known (file missing, no limit)."""

    #: The server's own cgroup limit, and its usage minus inactive file cache.
    cgroup_limit: int | None = None
    cgroup_used: int | None = None
    cgroup_version: int | None = None
    mem_available: int | None = None
    mem_total: int | None = None
    #: MemFree, for kernels too old to report MemAvailable.
    mem_free: int | None = None
    #: ``docker stats``: container name -> memory in use.
    containers: Mapping[str, int] = field(default_factory=dict)

    @property
    def cgroup_free(self) -> int | None:
        if self.cgroup_limit is None or self.cgroup_used is None:
            return None
        return max(self.cgroup_limit - self.cgroup_used, 0)

    @property
    def available(self) -> int | None:
        """The smaller headroom of the cgroup and of /proc/meminfo."""
        values = [v for v in (self.cgroup_free, self.mem_available) if v is not None]
        return min(values) if values else None

    def describe(self) -> str:
        parts = []
        if self.cgroup_limit is not None:
            used = "?" if self.cgroup_used is None else format_bytes(self.cgroup_used)
            parts.append(
                f"cgroup v{self.cgroup_version}: {used} used of {format_bytes(self.cgroup_limit)}"
            )
        if self.mem_available is not None:
            parts.append(f"MemAvailable {format_bytes(self.mem_available)}")
        return "; ".join(parts) or "no memory figures"


def _files(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        for path in CGROUP_FILES:
            if line.startswith(path + ":"):
                out.setdefault(path, []).append(line[len(path) + 1 :])
                break
    return out


def _number(lines: Sequence[str] | None) -> int | None:
    if not lines:
        return None
    text = lines[0].strip()
    return int(text) if text.isdigit() else None


def _stat(lines: Sequence[str] | None, *keys: str) -> int | None:
    for key in keys:
        for line in lines or ():
            name, _, value = line.partition(" ")
            if name == key and value.strip().isdigit():
                return int(value.strip())
    return None


def _meminfo(lines: Sequence[str] | None, key: str) -> int | None:
    for line in lines or ():
        name, _, rest = line.partition(":")
        if name.strip() == key:
            words = rest.split()
            if words and words[0].isdigit():
                factor = 1024 if len(words) > 1 and words[1].lower() == "kb" else 1
                return int(words[0]) * factor
    return None


def parse_stats(text: str) -> dict[str, int]:
    """``docker stats --format '{{.Name}}\\t{{.MemUsage}}'`` -> name -> bytes in use."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        name, sep, usage = line.partition("\t")
        if not sep:
            continue
        used = parse_docker_size(usage.split("/")[0].strip())
        if name.strip() and used is not None:
            out[name.strip()] = used
    return out


def parse_host_memory(files_output: str) -> HostMemory:
    """The output of :func:`memory_queries` -> :class:`HostMemory` (pure); its containers'
    figures come from elsewhere (the cgroup script, or :func:`parse_stats`)."""
    files = _files(files_output)
    limit = used = version = None
    v2_max = files.get(f"{CGROUP_V2}/memory.max")
    if v2_max:
        version = 2
        raw = v2_max[0].strip()
        limit = None if raw == "max" else _number(v2_max)
        current = _number(files.get(f"{CGROUP_V2}/memory.current"))
        if current is not None:
            inactive = _stat(files.get(f"{CGROUP_V2}/memory.stat"), "inactive_file") or 0
            used = max(current - inactive, 0)
    else:
        v1_limit = _number(files.get(f"{CGROUP_V1}/memory.limit_in_bytes"))
        if v1_limit is not None:
            version = 1
            limit = v1_limit
            usage = _number(files.get(f"{CGROUP_V1}/memory.usage_in_bytes"))
            if usage is not None:
                stat = files.get(f"{CGROUP_V1}/memory.stat")
                inactive = _stat(stat, "total_inactive_file", "inactive_file") or 0
                used = max(usage - inactive, 0)
    if limit is not None and limit >= UNLIMITED:
        limit = None
    if limit is None:
        used = None if version is None else used
    meminfo = files.get("/proc/meminfo")
    return HostMemory(
        cgroup_limit=limit,
        cgroup_used=used if limit is not None else None,
        cgroup_version=version if limit is not None else None,
        mem_available=_meminfo(meminfo, "MemAvailable"),
        mem_total=_meminfo(meminfo, "MemTotal"),
        mem_free=_meminfo(meminfo, "MemFree"),
    )


# --------------------------------------------------------------------------- deciding


@dataclass(frozen=True, slots=True)
class RoleNeed:
    """One role on one host: what its new container will need, and where that came from."""

    role: str
    needed: int | None
    source: str
    #: Memory of the role's running containers (freed by a swap).
    running: int = 0


@dataclass(frozen=True, slots=True)
class MemoryPlan:
    host: str
    memory: HostMemory
    needs: tuple[RoleNeed, ...]
    margin: int
    swap: bool = False
    #: The roles on the host boot at the same time (``boot.parallel_roles``).
    concurrent: bool = False
    #: Swap: memory of the other roles' containers stopped during the swap (``stop_roles``).
    freed_others: int = 0

    def _worst(self) -> tuple[int, int]:
        """(needed, freed) at the tightest moment of the boot.

        The roles on a host boot one after the other: in a ``parallel`` boot each new
        container starts next to its old one, so the largest new container counts (all of
        them when the roles boot at the same time); in a swap, the role whose new container
        needs the most beyond what its old one frees."""
        needs = [(n.needed or 0, n.running) for n in self.needs]
        if not needs:
            return 0, self.freed_others if self.swap else 0
        if not self.swap:
            total = sum(n for n, _ in needs) if self.concurrent else max(n for n, _ in needs)
            return total, 0
        needed, running = max(needs, key=lambda pair: (pair[0] - pair[1], pair[0]))
        return needed, running + self.freed_others

    @property
    def needed(self) -> int:
        return self._worst()[0]

    @property
    def freed(self) -> int:
        """Memory freed before that new container starts (swap: its old one, stopped roles)."""
        return self._worst()[1]

    @property
    def available(self) -> int | None:
        free = self.memory.available
        return None if free is None else free + self.freed

    @property
    def known(self) -> bool:
        return self.available is not None and any(n.needed for n in self.needs)

    @property
    def fits(self) -> bool:
        available = self.available
        if available is None or not self.known:
            return True
        return self.needed <= available - self.margin

    def describe(self) -> str:
        lines = [f"  {self.host}: {self.memory.describe()}"]
        for need in self.needs:
            what = "unknown" if need.needed is None else format_bytes(need.needed)
            lines.append(f"    {need.role}: the new container needs {what} ({need.source})")
        available = self.available
        if available is not None:
            freed = f", of which {format_bytes(self.freed)} freed by the swap" if self.freed else ""
            lines.append(
                f"    needed {format_bytes(self.needed)} + margin {format_bytes(self.margin)}"
                f" > available {format_bytes(available)}{freed}"
            )
        return "\n".join(lines)


def role_need(
    role: str,
    *,
    configured: int | None,
    limit: int | None,
    running: Mapping[str, int],
) -> RoleNeed:
    """The new container's need for one role: the config's ``boot.memory_needed``, else the
    role's ``--memory`` limit, else the measured usage of its running container(s) (the
    largest, since one of them is what the new version replaces)."""
    in_use = sum(running.values())
    if configured is not None:
        return RoleNeed(role, configured, "boot.memory_needed", in_use)
    if limit is not None:
        return RoleNeed(role, limit, "its --memory option", in_use)
    if running:
        names = ", ".join(sorted(running))
        return RoleNeed(role, max(running.values()), f"measured: {names}", in_use)
    return RoleNeed(role, None, "no running container to measure", in_use)


def plan_host(
    host: str,
    memory: HostMemory,
    roles: Iterable[tuple[str, str, int | None]],
    *,
    configured: int | None = None,
    margin: int = DEFAULT_MARGIN,
    swap: bool = False,
    stop_roles: Iterable[str] = (),
    other_prefixes: Mapping[str, str] | None = None,
    concurrent: bool = False,
) -> MemoryPlan:
    """Plan one host. ``roles`` are (role name, container prefix, --memory limit) of the roles
    booted there; running containers are found in ``memory.containers`` by ``<prefix>-``.
    With ``swap`` the running containers of those roles (and of ``stop_roles``, given by
    ``other_prefixes`` role -> prefix) count as freed."""
    needs = []
    for name, prefix, limit in roles:
        running = {n: v for n, v in memory.containers.items() if n.startswith(prefix + "-")}
        needs.append(role_need(name, configured=configured, limit=limit, running=running))
    freed_others = 0
    if swap:
        booted = {n.role for n in needs}
        for role in dict.fromkeys(stop_roles):
            other = (other_prefixes or {}).get(role)
            if other is None or role in booted:
                continue
            freed_others += sum(
                v for n, v in memory.containers.items() if n.startswith(other + "-")
            )
    return MemoryPlan(host, memory, tuple(needs), margin, swap, concurrent, freed_others)


def check(plans: Sequence[MemoryPlan], *, strategy: str) -> None:
    """Raise :class:`MemoryCheckError` naming every host that does not fit, with the numbers
    and what to do about it."""
    failing = [p for p in plans if not p.fits]
    if not failing:
        return
    hosts = ", ".join(p.host for p in failing)
    lines = [
        f"memory check: the new version does not fit next to the running one on {hosts}; "
        "nothing was changed"
        if strategy != "swap"
        else f"memory check: the new version does not fit on {hosts} even after stopping the "
        "old one; nothing was changed",
    ]
    lines += [p.describe() for p in failing]
    options = []
    if strategy != "swap":
        options.append(
            "deploy with `--strategy swap` (or `boot: {strategy: swap}`): the old container "
            "stops before the new one starts (requests are held in kamal-proxy meanwhile)"
        )
    options += [
        "give the server more memory",
        "set a memory limit on the role (`options: {memory: 400m}`) so that it fits",
        "stop other roles during the boot (`--stop-other-roles` or `boot: {stop_roles: [...]}`"
        " with `--strategy swap`)",
        "skip this check with `--skip-memory-check` (or `boot: {memory_check: false}`) if "
        "the measurement is wrong",
    ]
    raise MemoryCheckError(
        "\n".join(lines), hint="options:\n" + "\n".join(f"  - {o}" for o in options)
    )


# --------------------------------------------------------------------------- over the surveys


def role_memory_limit(options: Mapping[str, object]) -> int | None:
    """The role's ``--memory``/``-m`` option in bytes, if set."""
    for key in ("memory", "m"):
        value = options.get(key)
        if isinstance(value, list):
            value = value[-1] if value else None
        if isinstance(value, str):
            size = parse_size(value)
            if size is not None:
                return size
    return None


def plan_hosts(
    ctx: DeployContext,
    surveys: Mapping[str, HostSurvey],
    *,
    swap: bool,
    stop_roles: Sequence[str] = (),
) -> list[MemoryPlan]:
    """A :class:`MemoryPlan` per surveyed host that reported its memory."""
    from dockyard.commands.app import container_prefix

    config = ctx.config
    margin = config.boot.memory_margin
    prefixes = {role.name: container_prefix(config, role) for role in config.roles}
    plans = []
    for host, survey in surveys.items():
        if survey.memory is None:
            continue
        roles = [
            (role.name, prefixes[role.name], role_memory_limit(role.options))
            for role in ctx.roles_on(host)
        ]
        plans.append(
            plan_host(
                host,
                survey.memory,
                roles,
                configured=config.boot.memory_needed,
                margin=DEFAULT_MARGIN if margin is None else margin,
                swap=swap,
                stop_roles=stop_roles,
                other_prefixes=prefixes,
                concurrent=config.boot.parallel_roles,
            )
        )
    return plans


def check_surveys(
    ctx: DeployContext,
    surveys: Mapping[str, HostSurvey],
    *,
    strategy: str,
    stop_roles: Sequence[str] = (),
) -> list[MemoryPlan]:
    """Plan every host, report the figures, raise :class:`MemoryCheckError` if one does not
    fit (before anything changed)."""
    plans = plan_hosts(ctx, surveys, swap=strategy == "swap", stop_roles=stop_roles)
    for plan in plans:
        for need in plan.needs:
            role = surveys[plan.host].roles.get(need.role)
            if need.needed is None and role is not None and role.running:
                ctx.warn(
                    f"memory: could not measure {need.role} ({', '.join(role.running)} runs, "
                    "but its memory usage could not be read): not checked",
                    plan.host,
                )
        if plan.known and plan.available is not None:
            ctx.info(
                f"memory: new containers need {format_bytes(plan.needed)} "
                f"(+{format_bytes(plan.margin)} margin), "
                f"{format_bytes(plan.available)} available",
                plan.host,
            )
    check(plans, strategy=strategy)
    return plans
