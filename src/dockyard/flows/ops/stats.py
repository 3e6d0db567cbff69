"""``server stats``: per host CPU, memory (cgroup-aware), disk and per container usage.

One batch (one SSH round trip) per host per refresh reads everything: ``/proc/stat`` twice
around ``docker stats --no-stream`` (the CPU sample window), ``/proc/loadavg``, ``nproc``,
the memory files (the host's own cgroup limit when one is set, else ``/proc/meminfo``) and
``df`` of ``/`` and of Docker's root directory. Parsing and the warnings are pure functions of
that output, so they are unit-tested with canned text.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any

from dockyard.commands.argv import Argv, argv, docker
from dockyard.commands.df import parse_df
from dockyard.config.sizes import human
from dockyard.errors import DockyardError
from dockyard.flows import memory as host_memory

if TYPE_CHECKING:
    from dockyard.flows.context import DeployContext
    from dockyard.remote.result import Result

#: Warn when memory or a disk is fuller than this (percent).
MEMORY_WARN_PERCENT = 85.0
DISK_WARN_PERCENT = 85.0
#: Warn when the 1-minute load average per CPU is above this.
LOAD_WARN_PER_CPU = 2.0

MEMORY_FILES = host_memory.CGROUP_FILES
CONTAINER_FORMAT = "{{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}\t{{.MemPerc}}"
#: Prints ``docker_root=<dir>`` then ``df`` of ``/`` and of that directory (when Docker answers).
DISK_SCRIPT = (
    'root=$(docker info --format "{{.DockerRootDir}}" 2>/dev/null) || root=; '
    'echo "docker_root=$root"; df -P -B1 / ${root:+"$root"}'
)


# --- the batch -------------------------------------------------------------------------------


def sample_commands(sample_seconds: float = 0.5) -> list[Argv]:
    """The commands of one refresh, in order (see :func:`parse_host`)."""
    return [
        argv("cat", "/proc/stat"),
        docker("stats", "--no-stream", "--format", CONTAINER_FORMAT),
        argv("sleep", f"{sample_seconds:g}"),
        argv("cat", "/proc/stat"),
        argv("cat", "/proc/loadavg"),
        argv("nproc"),
        argv("grep", "-s", "-H", "", *MEMORY_FILES),
        argv("sh", "-c", DISK_SCRIPT),
    ]


# --- values ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Disk:
    label: str  # "/" or "docker"
    path: str
    used: int
    total: int

    @property
    def percent(self) -> float:
        return 100.0 * self.used / self.total if self.total else 0.0


@dataclass(frozen=True, slots=True)
class ContainerStats:
    name: str
    cpu_percent: float | None
    mem_used: int | None
    mem_limit: int | None
    mem_percent: float | None


@dataclass(frozen=True, slots=True)
class Memory:
    used: int
    limit: int
    source: str  # "cgroup v2", "cgroup v1" or "meminfo"

    @property
    def percent(self) -> float:
        return 100.0 * self.used / self.limit if self.limit else 0.0


@dataclass(frozen=True, slots=True)
class HostStats:
    host: str
    cpus: int | None = None
    load: tuple[float, float, float] | None = None
    cpu_percent: float | None = None
    memory: Memory | None = None
    docker_root: str | None = None
    disks: tuple[Disk, ...] = ()
    containers: tuple[ContainerStats, ...] = ()
    warnings: tuple[str, ...] = ()
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["load"] = list(self.load) if self.load else None
        if self.memory is not None:
            data["memory"]["percent"] = round(self.memory.percent, 1)
        for disk, out in zip(self.disks, data["disks"], strict=True):
            out["percent"] = round(disk.percent, 1)
        data["warnings"] = list(self.warnings)
        return data


# --- parsers ---------------------------------------------------------------------------------


def cpu_times(stdout: str) -> tuple[int, int] | None:
    """``(busy, total)`` jiffies from the aggregate ``cpu`` line of ``/proc/stat``."""
    for line in stdout.splitlines():
        fields = line.split()
        if fields and fields[0] == "cpu":
            values = [int(v) for v in fields[1:] if v.isdigit()]
            if len(values) < 4:
                return None
            idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
            total = sum(values[:8])  # guest time is already counted in user/nice
            return total - idle, total
    return None


def cpu_percent(before: str, after: str) -> float | None:
    """Busy share of all CPUs between two ``/proc/stat`` reads (``None`` if too short)."""
    first, second = cpu_times(before), cpu_times(after)
    if first is None or second is None:
        return None
    busy, total = second[0] - first[0], second[1] - first[1]
    if total <= 0:
        return None
    return round(100.0 * max(0, busy) / total, 1)


def parse_loadavg(stdout: str) -> tuple[float, float, float] | None:
    fields = stdout.split()
    try:
        return float(fields[0]), float(fields[1]), float(fields[2])
    except (IndexError, ValueError):
        return None


def parse_memory(stdout: str) -> Memory | None:
    """The host's memory in use and its limit: its cgroup's limit and usage (v2, or v1's
    files) when a limit is set, else ``/proc/meminfo``. Page cache the kernel can drop
    (``inactive_file``) does not count as used, as in ``docker stats``. The files are read as
    the deploy's memory check reads them (:func:`dockyard.flows.memory.parse_host_memory`)."""
    host = host_memory.parse_host_memory(stdout)
    total = host.mem_total
    limit, used = host.cgroup_limit, host.cgroup_used
    # A limit above the machine's memory is no limit.
    if limit is not None and used is not None and (total is None or limit <= total):
        return Memory(used, limit, f"cgroup v{host.cgroup_version}")
    if total is None:
        return None
    available = host.mem_available
    if available is None:
        available = host.mem_free or 0
    return Memory(total - available, total, "meminfo")


def parse_disks(stdout: str) -> tuple[str | None, tuple[Disk, ...]]:
    """Docker's root directory and the ``df -P -B1`` rows for ``/`` and for it."""
    root: str | None = None
    df_lines: list[str] = []
    for line in stdout.splitlines():
        if line.startswith("docker_root="):
            root = line.removeprefix("docker_root=").strip() or None
        else:
            df_lines.append(line)
    rows = parse_df(df_lines, block_size=1)
    disks: list[Disk] = []
    if rows:
        disks.append(Disk("/", "/", rows[0].used, rows[0].total))
    if root is not None and len(rows) > 1:
        disks.append(Disk("docker", root, rows[1].used, rows[1].total))
    return root, tuple(disks)


_UNITS = {
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "tb": 1000**4,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
}
_SIZE = re.compile(r"^\s*([0-9.]+)\s*([A-Za-z]*)\s*$")


def parse_size(text: str) -> int | None:
    """Docker's human sizes (``12.5MiB``, ``1.944GiB``, ``512kB``, ``0B``) in bytes."""
    match = _SIZE.match(text)
    if match is None:
        return None
    unit = _UNITS.get((match.group(2) or "b").lower())
    if unit is None:
        return None
    try:
        return round(float(match.group(1)) * unit)
    except ValueError:
        return None


def _percent(text: str) -> float | None:
    try:
        return float(text.strip().rstrip("%"))
    except ValueError:
        return None


def parse_containers(stdout: str) -> tuple[ContainerStats, ...]:
    """``docker stats --no-stream --format`` rows (:data:`CONTAINER_FORMAT`)."""
    out: list[ContainerStats] = []
    for line in stdout.splitlines():
        fields = line.split("\t")
        if len(fields) != 4:
            continue
        name, cpu, usage, mem_percent = fields
        used_text, _, limit_text = usage.partition("/")
        out.append(
            ContainerStats(
                name=name.strip(),
                cpu_percent=_percent(cpu),
                mem_used=parse_size(used_text),
                mem_limit=parse_size(limit_text),
                mem_percent=_percent(mem_percent),
            )
        )
    return tuple(sorted(out, key=lambda c: c.name))


def warnings_for(stats: HostStats) -> tuple[str, ...]:
    out: list[str] = []
    if stats.memory is not None and stats.memory.percent > MEMORY_WARN_PERCENT:
        out.append(
            f"memory {stats.memory.percent:.0f}% used ({human(stats.memory.used)} of "
            f"{human(stats.memory.limit)}, {stats.memory.source})"
        )
    for disk in stats.disks:
        if disk.percent > DISK_WARN_PERCENT:
            where = "/" if disk.label == "/" else f"Docker root {disk.path}"
            out.append(
                f"disk {where} {disk.percent:.0f}% full ({human(disk.used)} of "
                f"{human(disk.total)}): try `dockyard prune all`"
            )
    if stats.load is not None and stats.cpus and stats.load[0] / stats.cpus > LOAD_WARN_PER_CPU:
        out.append(f"load {stats.load[0]:.2f} on {stats.cpus} CPU(s)")
    return tuple(out)


def parse_host(host: str, results: Sequence[Result]) -> HostStats:
    """A :class:`HostStats` from the results of :func:`sample_commands` (one per command)."""
    stat1, containers, _sleep, stat2, loadavg, nproc, memory, disks = results
    nproc_text = nproc.stdout.strip()
    root, disk_rows = parse_disks(disks.stdout)
    stats = HostStats(
        host=host,
        cpus=int(nproc_text) if nproc.ok and nproc_text.isdigit() else None,
        load=parse_loadavg(loadavg.stdout) if loadavg.ok else None,
        cpu_percent=cpu_percent(stat1.stdout, stat2.stdout) if stat1.ok and stat2.ok else None,
        memory=parse_memory(memory.stdout),
        docker_root=root,
        disks=disk_rows,
        containers=parse_containers(containers.stdout) if containers.ok else (),
    )
    warnings = list(warnings_for(stats))
    if not containers.ok:
        tail = (containers.stderr.strip() or "no output").splitlines()[-1]
        warnings.append(f"docker stats failed: {tail}")
    return replace(stats, warnings=tuple(warnings))


# --- the flow --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One refresh: the stats of every host (a host that could not be read has ``error``)."""

    hosts: tuple[HostStats, ...] = field(default_factory=tuple)

    def to_json(self) -> dict[str, Any]:
        return {"hosts": [h.to_json() for h in self.hosts]}

    @property
    def warnings(self) -> list[tuple[str, str]]:
        """Every host's warnings, and the error of each host that could not be read."""
        out = [(h.host, w) for h in self.hosts for w in h.warnings]
        return out + [(h.host, h.error) for h in self.hosts if h.error is not None]


async def collect(ctx: DeployContext, *, sample_seconds: float = 0.5) -> Snapshot:
    """One refresh of every selected host (one round trip each, in parallel)."""
    commands = sample_commands(sample_seconds)

    async def on_host(host: str) -> HostStats:
        try:
            results = await ctx.batch(host, commands, stop_on_error=False, check=False)
        except DockyardError as exc:  # one unreachable host must not hide the others
            return HostStats(host=host, error=str(exc) or type(exc).__name__)
        return parse_host(host, results)

    hosts = ctx.hosts
    values = await asyncio.gather(*(on_host(h) for h in hosts))
    return Snapshot(tuple(values))


async def watch(
    ctx: DeployContext,
    show: Callable[[Snapshot], Awaitable[None] | None],
    *,
    interval: float = 5.0,
    count: int | None = None,
    sample_seconds: float = 0.5,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> int:
    """Collect and ``show`` every ``interval`` seconds, ``count`` times (forever when None,
    until the caller is cancelled: Ctrl-C). The SSH connections stay open between refreshes.
    Returns the number of refreshes shown."""
    shown = 0
    while count is None or shown < count:
        snapshot = await collect(ctx, sample_seconds=sample_seconds)
        maybe = show(snapshot)
        if maybe is not None:
            await maybe
        shown += 1
        if count is None or shown < count:
            await sleep(interval)
    return shown


COLUMNS = ("server / container", "CPU", "load", "memory used / limit", "disk /", "Docker root")


def _disk(stats: HostStats, label: str) -> str:
    for d in stats.disks:
        if d.label == label:
            return f"{human(d.used)} / {human(d.total)} ({d.percent:.0f}%)"
    return "-"


def rows(snapshot: Snapshot) -> list[tuple[str, ...]]:
    """Table rows as text, one cell per :data:`COLUMNS`: one row per host, then one per
    container of that host (names indented), shared by the CLI's table and its tests."""
    out: list[tuple[str, ...]] = []
    for stats in snapshot.hosts:
        if stats.error is not None:
            out.append((stats.host, "-", "-", "unreachable (see below)", "-", "-"))
            continue
        cpu = f"{stats.cpu_percent:.0f}%" if stats.cpu_percent is not None else "-"
        if stats.cpus:
            cpu += f" of {stats.cpus}"
        load = f"{stats.load[0]:.2f}" if stats.load else "-"  # 1 minute
        memory = "-"
        if stats.memory is not None:
            memory = (
                f"{human(stats.memory.used)} / {human(stats.memory.limit)} "
                f"({stats.memory.percent:.0f}%)"
            )
            if stats.memory.source != "meminfo":
                memory += f" {stats.memory.source}"
        out.append((stats.host, cpu, load, memory, _disk(stats, "/"), _disk(stats, "docker")))
        for c in stats.containers:
            cpu_c = f"{c.cpu_percent:.1f}%" if c.cpu_percent is not None else "-"
            mem_c = human(c.mem_used)
            if c.mem_percent is not None:
                mem_c += f" ({c.mem_percent:.1f}%)"
            out.append((f"  {c.name}", cpu_c, "", mem_c, "", ""))
    return out
