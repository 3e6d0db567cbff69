"""``server stats``: parsers of the canned batch output, warnings, JSON, table rows, and the
flow over a FakePool (one batch per host per refresh)."""

from __future__ import annotations

import json

from dockyard.flows.context import Selection
from dockyard.flows.ops import stats
from dockyard.remote import FakePool, FakeTransport, Result

from .conftest import MakeConfig, make_ctx, run

GIB = 1024**3
STAT_1 = "cpu  100 0 100 700 100 0 0 0 0 0\ncpu0 50 0 50 350 50 0 0 0 0 0\n"
STAT_2 = "cpu  250 0 150 800 100 0 0 0 0 0\ncpu0 1 2 3 4 5 6 7 8 9 10\n"
MEMINFO = "MemTotal:        4000000 kB\nMemFree:          500000 kB\nMemAvailable:    1000000 kB\n"
DOCKER_STATS = (
    "app-web-v2\t12.50%\t300MiB / 1GiB\t29.30%\nkamal-proxy\t0.10%\t20.5MiB / 1GiB\t2.00%\n"
)
DF = (
    "docker_root=/var/lib/docker\n"
    "Filesystem     1-blocks        Used   Available Capacity Mounted on\n"
    "overlay     10000000000  9000000000  1000000000      90% /\n"
    "/dev/vdb    20000000000  5000000000 15000000000      25% /var/lib/docker\n"
)


def _grep(files: dict[str, str]) -> str:
    return "".join(f"{path}:{line}\n" for path, text in files.items() for line in text.splitlines())


def test_cpu_percent_from_two_proc_stat_reads() -> None:
    # busy: (250+150) - (100+100) = 200; total: 1300 - 1000 = 300 (iowait counts as idle)
    assert stats.cpu_percent(STAT_1, STAT_2) == 66.7
    assert stats.cpu_percent(STAT_1, STAT_1) is None  # no time passed
    assert stats.cpu_percent("garbage", STAT_2) is None


def test_memory_uses_the_cgroup_limit_when_one_is_set() -> None:
    text = _grep(
        {
            "/proc/meminfo": MEMINFO,
            "/sys/fs/cgroup/memory.max": f"{GIB}",
            "/sys/fs/cgroup/memory.current": f"{900 * 1024**2}",
            "/sys/fs/cgroup/memory.stat": "anon 1\ninactive_file 104857600\nactive_file 5\n",
        }
    )
    memory = stats.parse_memory(text)
    assert memory == stats.Memory(800 * 1024**2, GIB, "cgroup v2")
    assert round(memory.percent) == 78


def test_memory_falls_back_to_meminfo_without_a_cgroup_limit() -> None:
    unlimited = _grep(
        {
            "/proc/meminfo": MEMINFO,
            "/sys/fs/cgroup/memory.max": "max",
            "/sys/fs/cgroup/memory.current": "123",
        }
    )
    assert stats.parse_memory(unlimited) == stats.Memory(3000000 * 1024, 4000000 * 1024, "meminfo")
    v1_unlimited = _grep(
        {
            "/proc/meminfo": MEMINFO,
            "/sys/fs/cgroup/memory/memory.limit_in_bytes": "9223372036854771712",
            "/sys/fs/cgroup/memory/memory.usage_in_bytes": "5",
        }
    )
    assert stats.parse_memory(v1_unlimited).source == "meminfo"  # type: ignore[union-attr]
    v1 = _grep(
        {
            "/proc/meminfo": MEMINFO,
            "/sys/fs/cgroup/memory/memory.limit_in_bytes": f"{GIB}",
            "/sys/fs/cgroup/memory/memory.usage_in_bytes": f"{GIB // 2}",
            "/sys/fs/cgroup/memory/memory.stat": "total_inactive_file 0\n",
        }
    )
    assert stats.parse_memory(v1) == stats.Memory(GIB // 2, GIB, "cgroup v1")
    assert stats.parse_memory("") is None


def test_disks_of_root_and_the_docker_root() -> None:
    root, disks = stats.parse_disks(DF)
    assert root == "/var/lib/docker"
    assert disks == (
        stats.Disk("/", "/", 9000000000, 10000000000),
        stats.Disk("docker", "/var/lib/docker", 5000000000, 20000000000),
    )
    # Docker not answering: only /
    root, disks = stats.parse_disks(
        "docker_root=\n" + DF.splitlines()[1] + "\n" + DF.splitlines()[2]
    )
    assert root is None and [d.label for d in disks] == ["/"]


def test_docker_sizes_and_container_rows() -> None:
    assert stats.parse_size("0B") == 0
    assert stats.parse_size("512kB") == 512000
    assert stats.parse_size("1.5GiB") == 3 * GIB // 2
    assert stats.parse_size("lots") is None
    assert stats.parse_containers(DOCKER_STATS) == (
        stats.ContainerStats("app-web-v2", 12.5, 300 * 1024**2, GIB, 29.3),
        stats.ContainerStats("kamal-proxy", 0.1, round(20.5 * 1024**2), GIB, 2.0),
    )


def _results(memory: str = MEMINFO, df: str = DF) -> list[Result]:
    return [
        Result(0, STAT_1, ""),
        Result(0, DOCKER_STATS, ""),
        Result(0, "", ""),
        Result(0, STAT_2, ""),
        Result(0, "3.50 1.00 0.50 2/300 999\n", ""),
        Result(0, "1\n", ""),
        Result(2, _grep({"/proc/meminfo": memory}), "grep: no such file"),
        Result(0, df, ""),
    ]


def test_parse_host_warns_at_the_thresholds() -> None:
    full = "MemTotal: 1000000 kB\nMemAvailable: 100000 kB\n"
    host = stats.parse_host("10.0.0.1", _results(full))
    assert host.cpus == 1 and host.load == (3.5, 1.0, 0.5) and host.cpu_percent == 66.7
    assert host.warnings == (
        "memory 90% used (879 MiB of 977 MiB, meminfo)",
        "disk / 90% full (8.4 GiB of 9.3 GiB): try `dockyard prune all`",
        "load 3.50 on 1 CPU(s)",
    )
    calm = stats.parse_host("10.0.0.1", _results(MEMINFO, DF.replace("9000000000", "1000000000")))
    assert [w for w in calm.warnings if not w.startswith("load")] == []


def test_json_is_one_document_with_numbers() -> None:
    snapshot = stats.Snapshot((stats.parse_host("10.0.0.1", _results()),))
    data = json.loads(json.dumps(snapshot.to_json()))
    host = data["hosts"][0]
    assert host["memory"] == {"used": 3072000000, "limit": 4096000000, "source": "meminfo",
                              "percent": 75.0}  # fmt: skip
    assert [d["percent"] for d in host["disks"]] == [90.0, 25.0]
    assert host["containers"][0]["name"] == "app-web-v2"
    assert host["error"] is None


def test_rows_show_hosts_then_their_containers() -> None:
    snapshot = stats.Snapshot(
        (stats.parse_host("10.0.0.1", _results()), stats.HostStats("10.0.0.9", error="refused"))
    )
    rows = stats.rows(snapshot)
    assert all(len(r) == len(stats.COLUMNS) for r in rows)
    assert rows == [
        ("10.0.0.1", "67% of 1", "3.50", "2.9 GiB / 3.8 GiB (75%)",
         "8.4 GiB / 9.3 GiB (90%)", "4.7 GiB / 18.6 GiB (25%)"),
        ("  app-web-v2", "12.5%", "", "300 MiB (29.3%)", "", ""),
        ("  kamal-proxy", "0.1%", "", "20 MiB (2.0%)", "", ""),
        ("10.0.0.9", "-", "-", "unreachable (see below)", "-", "-"),
    ]  # fmt: skip
    assert snapshot.warnings[-1] == ("10.0.0.9", "refused")


def test_collect_runs_one_batch_per_host_and_watch_refreshes(make_config: MakeConfig) -> None:
    def setup(fake: FakeTransport) -> None:
        fake.on(["cat", "/proc/stat"], Result(0, STAT_1, ""), Result(0, STAT_2, ""))
        fake.on(["docker", "stats"], Result(0, DOCKER_STATS, ""))
        fake.on(["cat", "/proc/loadavg"], Result(0, "0.10 0.20 0.30 1/100 5\n", ""))
        fake.on(["nproc"], Result(0, "2\n", ""))
        fake.on(["grep"], Result(0, _grep({"/proc/meminfo": MEMINFO}), ""))
        fake.on(["sh", "-c"], Result(0, DF, ""))

    pool = FakePool(setup=setup)
    ctx, _ = make_ctx(make_config(), pool, Selection.parse("10.0.0.1,10.0.0.3"))
    shown: list[stats.Snapshot] = []
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    count = run(stats.watch(ctx, shown.append, interval=3, count=2, sleep=sleep))
    assert count == 2 and slept == [3]
    assert [h.host for h in shown[0].hosts] == ["10.0.0.1", "10.0.0.3"]
    first = shown[0].hosts[0]
    assert first.cpus == 2 and first.memory is not None and len(first.containers) == 2
    commands = pool.transports["10.0.0.1"].commands
    # one batch (run command by command by the fake) per host per refresh
    assert commands == [list(c.plain()) for c in stats.sample_commands()] * 2
