"""The memory check: parsing what a host reports (cgroup v1/v2, meminfo, docker stats), the
decision per host, the refusal message, and a deploy refused before anything changes."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import pytest

from dockyard.commands.app import SURVEY_FORMAT
from dockyard.errors import ConfigError
from dockyard.flows import deploy as flows
from dockyard.flows import memory
from dockyard.flows.memory import (
    HostMemory,
    MemoryCheckError,
    check,
    format_bytes,
    parse_docker_size,
    parse_host_memory,
    parse_stats,
    plan_host,
    role_memory_limit,
)
from dockyard.flows.swap import BootStrategy
from dockyard.remote import FakePool, FakeTransport, Result
from tests.unit._flowkit import MakeConfig, make_ctx

MIB = 1024 * 1024
GIB = 1024 * MIB

V1_FILES = """/proc/meminfo:MemTotal:       24683656 kB
/proc/meminfo:MemFree:        20000000 kB
/proc/meminfo:MemAvailable:   23288564 kB
/sys/fs/cgroup/memory/memory.limit_in_bytes:1073741824
/sys/fs/cgroup/memory/memory.usage_in_bytes:734003200
/sys/fs/cgroup/memory/memory.stat:cache 104857600
/sys/fs/cgroup/memory/memory.stat:inactive_file 10485760
/sys/fs/cgroup/memory/memory.stat:total_inactive_file 52428800
"""
V2_FILES = """/proc/meminfo:MemTotal:        2014000 kB
/proc/meminfo:MemAvailable:    1000000 kB
/sys/fs/cgroup/memory.max:2147483648
/sys/fs/cgroup/memory.current:1073741824
/sys/fs/cgroup/memory.stat:anon 900000000
/sys/fs/cgroup/memory.stat:inactive_file 73741824
"""
STATS = (
    "hello-web-v1\t531.2MiB / 1GiB\nkamal-proxy\t31.5MiB / 1GiB\nhello-workers-v1\t180MiB / 1GiB\n"
)


def test_sizes_as_docker_writes_them() -> None:
    assert parse_docker_size("512m") == 512 * MIB
    assert parse_docker_size("1g") == GIB
    assert parse_docker_size("1.5GiB") == GIB + 512 * MIB
    assert parse_docker_size("300MB") == 300 * MIB
    assert parse_docker_size("12kB") == 12 * 1024
    assert parse_docker_size("0B") == 0
    assert parse_docker_size(4096) == 4096
    assert parse_docker_size("lots") is None
    assert parse_docker_size("5 parsecs") is None
    assert format_bytes(531 * MIB) == "531 MiB"
    assert format_bytes(GIB) == "1.0 GiB"


def test_cgroup_v1_usage_less_inactive_file_cache() -> None:
    mem = replace(parse_host_memory(V1_FILES), containers=parse_stats(STATS))
    assert mem.cgroup_version == 1
    assert mem.cgroup_limit == GIB
    assert mem.cgroup_used == 734003200 - 52428800  # total_inactive_file preferred
    assert mem.mem_available == 23288564 * 1024
    assert mem.mem_total == 24683656 * 1024
    # the server's cgroup is the smaller headroom, not the machine's MemAvailable
    assert mem.available == GIB - (734003200 - 52428800)
    assert mem.containers["hello-web-v1"] == int(531.2 * MIB)
    assert "cgroup v1" in mem.describe() and "of 1.0 GiB" in mem.describe()


def test_cgroup_v2_and_meminfo_the_smaller_headroom_wins() -> None:
    mem = parse_host_memory(V2_FILES)
    assert mem.cgroup_version == 2
    assert mem.cgroup_limit == 2 * GIB
    assert mem.cgroup_used == GIB - 73741824
    assert mem.cgroup_free == GIB + 73741824
    assert mem.mem_available == 1000000 * 1024  # smaller than the cgroup's headroom
    assert mem.available == 1000000 * 1024
    assert mem.containers == {}


def test_no_cgroup_limit_falls_back_to_meminfo() -> None:
    v2_root = "/proc/meminfo:MemAvailable:  800000 kB\n/sys/fs/cgroup/memory.max:max\n"
    mem = parse_host_memory(v2_root)
    assert mem.cgroup_limit is None and mem.cgroup_used is None
    assert mem.available == 800000 * 1024
    v1_unlimited = (
        "/proc/meminfo:MemAvailable:  900000 kB\n"
        "/sys/fs/cgroup/memory/memory.limit_in_bytes:9223372036854771712\n"
        "/sys/fs/cgroup/memory/memory.usage_in_bytes:1000\n"
    )
    mem = parse_host_memory(v1_unlimited)
    assert mem.cgroup_limit is None
    assert mem.available == 900000 * 1024
    assert parse_host_memory("").available is None


def test_docker_stats_lines() -> None:
    assert parse_stats("a\t1.5GiB / 2GiB\nb\t--\nno tab here\n") == {"a": GIB + 512 * MIB}


def test_role_memory_limit_from_options() -> None:
    assert role_memory_limit({"memory": "400m"}) == 400 * MIB
    assert role_memory_limit({"m": ["1g"]}) == GIB
    assert role_memory_limit({"cpus": "1"}) is None


def _host(free: int, containers: dict[str, int]) -> HostMemory:
    return HostMemory(
        cgroup_limit=GIB, cgroup_used=GIB - free, cgroup_version=1, containers=containers
    )


WEB = ("web", "hello-web", None)


def test_need_is_the_measured_usage_and_parallel_does_not_fit() -> None:
    mem = _host(371 * MIB, {"hello-web-h1": 531 * MIB, "kamal-proxy": 30 * MIB})
    plan = plan_host("10.0.0.1", mem, [WEB])
    assert plan.needed == 531 * MIB and plan.needs[0].source == "measured: hello-web-h1"
    assert plan.available == 371 * MIB
    assert not plan.fits
    with pytest.raises(MemoryCheckError) as info:
        check([plan], strategy="parallel")
    text = info.value.render()
    assert "does not fit next to the running one on 10.0.0.1; nothing was changed" in text
    assert "needed 531 MiB + margin 64 MiB > available 371 MiB" in text
    assert "cgroup v1: 653 MiB used of 1.0 GiB" in text
    for option in ("--strategy swap", "more memory", "options: {memory:", "--stop-other-roles",
                   "--skip-memory-check"):  # fmt: skip
        assert option in text
    assert info.value.layer == "memory"


def test_swap_frees_the_old_container_first() -> None:
    mem = _host(371 * MIB, {"hello-web-h1": 531 * MIB})
    plan = plan_host("10.0.0.1", mem, [WEB], swap=True)
    assert plan.freed == 531 * MIB and plan.available == 902 * MIB
    assert plan.fits
    check([plan], strategy="swap")


def test_swap_that_still_does_not_fit_suggests_no_swap_but_stopping_roles() -> None:
    mem = _host(10 * MIB, {"hello-web-h1": 100 * MIB, "hello-workers-h1": 600 * MIB})
    plan = plan_host("h", mem, [WEB], configured=600 * MIB, swap=True)
    assert plan.needs[0].source == "boot.memory_needed"
    assert not plan.fits
    with pytest.raises(MemoryCheckError) as info:
        check([plan], strategy="swap")
    assert "even after stopping the old one" in info.value.message
    assert "--strategy swap` (or" not in (info.value.hint or "")
    # stopping the workers frees enough
    stopping = plan_host(
        "h", mem, [WEB], configured=600 * MIB, swap=True, stop_roles=["workers"],
        other_prefixes={"workers": "hello-workers", "web": "hello-web"},
    )  # fmt: skip
    assert stopping.freed == 700 * MIB and stopping.fits


def test_configured_limit_and_unknown_need() -> None:
    mem = _host(300 * MIB, {})
    limited = plan_host("h", mem, [("web", "hello-web", 200 * MIB)])
    assert limited.needs[0].source == "its --memory option" and limited.fits
    first = plan_host("h", mem, [WEB])  # nothing runs yet: nothing to measure
    assert not first.known and first.fits
    big = plan_host("h", mem, [("web", "hello-web", 400 * MIB)])
    assert not big.fits


def test_roles_on_a_host_boot_in_turn_unless_parallel_roles() -> None:
    mem = _host(500 * MIB, {"hello-web-v1": 300 * MIB, "hello-workers-v1": 180 * MIB})
    roles = [WEB, ("workers", "hello-workers", None)]
    # one role after the other: each old container stops once its new one is healthy
    assert plan_host("h", mem, roles).needed == 300 * MIB
    assert plan_host("h", mem, roles, concurrent=True).needed == 480 * MIB
    swap = plan_host("h", mem, roles, swap=True, concurrent=True)
    assert swap.needed == 300 * MIB and swap.freed == 300 * MIB  # web's turn, the tightest
    # a swap counts each role's own old container, not all of them at once
    tight = _host(50 * MIB, {"hello-web-v1": 100 * MIB, "hello-workers-v1": 500 * MIB})
    plan = plan_host("h", tight, roles, configured=400 * MIB, swap=True)
    assert (plan.needed, plan.freed) == (400 * MIB, 100 * MIB)  # web: 400 new, 100 freed
    assert not plan.fits


# --- in the deploy flow ---------------------------------------------------------------------

ONE_HOST = """service: hello
image: hello
servers:
  web:
    - 10.0.0.1
registry:
  server: reg.test:5000
  username: bob
  password:
    - KAMAL_REGISTRY_PASSWORD
builder:
  arch: amd64
proxy:
  run:
    registry: reg.test:5000
    repository: dockyard-proxy
    version: v0.9.2
"""


def small_server(fake: FakeTransport) -> None:
    def respond(args: list[str]) -> Result | None:
        if args[:2] == ["docker", "inspect"] and args[-1] == "kamal-proxy":
            return Result(0, "reg.test:5000/dockyard-proxy:v0.9.2\ttrue\tkamal \n", "")
        if args[:3] == ["docker", "inspect", "-f"]:
            return Result(0, "hello\n", "")
        if args[:2] == ["docker", "ps"] and SURVEY_FORMAT in args:
            return Result(0, "c1c1c1c1c1c1\trunning\tweb\thello-web-v1\n", "")
        if args[:2] == ["docker", "ps"] and "--format" in args:
            return Result(0, "hello-web-v1\n", "")
        if args[0] == "grep":
            return Result(2, V1_FILES, "")  # grep exits 2: some files do not exist
        if args[:3] == ["sh", "-c", memory.CONTAINER_MEMORY_SCRIPT]:
            # every container's cgroup memory by full ID: the app's, the proxy's
            return Result(0, f"{'c1' * 32}\t{int(531.2 * MIB)}\n{'d4' * 32}\t1000\n", "")
        if args[:2] == ["docker", "run"]:
            return Result(0, "abcdef1234567890\n", "")
        return None

    fake.responder = respond


def test_a_deploy_that_does_not_fit_changes_nothing(make_config: MakeConfig) -> None:
    config = make_config(ONE_HOST, version="v2")
    pool = FakePool(setup=small_server)
    ctx, events = make_ctx(config, pool)
    with pytest.raises(MemoryCheckError) as info:
        asyncio.run(flows.deploy(ctx, skip_push=True))
    assert "needed 531 MiB + margin 64 MiB > available 374 MiB" in info.value.message
    commands = pool.transports["10.0.0.1"].commands
    changes = [c for c in commands if c[:2] in (["docker", "run"], ["docker", "stop"],
               ["docker", "start"], ["docker", "rename"], ["docker", "pull"])
               or "kamal-proxy" in c[3:4]]  # fmt: skip
    assert changes == []  # not even the image was pulled
    assert commands[-2:] == [["rm", ".kamal/lock-hello/details"], ["rm", "-r", ".kamal/lock-hello"]]
    assert any("memory: new containers need 531 MiB" in e.text for e in events)


def test_skipping_the_check_asks_nothing_and_boots(make_config: MakeConfig) -> None:
    config = make_config(ONE_HOST, version="v2")
    pool = FakePool(setup=small_server)
    ctx, _ = make_ctx(config, pool)
    strategy = BootStrategy.resolve(config, skip_memory_check=True)
    asyncio.run(flows.deploy(ctx, skip_push=True, strategy=strategy))
    commands = pool.transports["10.0.0.1"].commands
    assert not [c for c in commands if c[0] == "grep" or memory.STATS_FORMAT in c]
    assert any(c[:2] == ["docker", "run"] for c in commands)


def test_config_keys_and_command_line(make_config: MakeConfig) -> None:
    config = make_config(
        ONE_HOST + "boot:\n  strategy: swap\n  memory_check: false\n  memory_needed: 600m\n"
        "  memory_margin: 100m\n  stop_roles: [web]\n"
    )
    boot = config.boot
    assert (boot.strategy, boot.memory_check) == ("swap", False)
    assert (boot.memory_needed, boot.memory_margin, boot.stop_roles) == (
        600 * MIB, 100 * MIB, ("web",),
    )  # fmt: skip
    assert BootStrategy.resolve(config).swap
    assert BootStrategy.resolve(config, strategy="parallel").name == "parallel"
    assert make_config(ONE_HOST).boot.strategy == "parallel"
    with pytest.raises(ConfigError, match="unknown boot strategy"):
        BootStrategy.resolve(config, strategy="rolling")
    with pytest.raises(ConfigError, match="needs the swap strategy"):
        BootStrategy.resolve(config, strategy="parallel", stop_other_roles=True)


@pytest.mark.parametrize(
    ("boot", "message"),
    [
        ("strategy: rolling", "unknown strategy: rolling"),
        ("memory_needed: lots", "is not a memory size"),
        ("stop_roles: [jobs]", "unknown roles jobs"),
        ("memory_check: maybe", "boolean"),
    ],
)
def test_bad_boot_keys_name_the_key(make_config: MakeConfig, boot: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        make_config(ONE_HOST + f"boot:\n  {boot}\n")
    assert message in str(info.value.render())
    assert "boot" in str(info.value.render())


def test_the_memory_queries_are_two_commands() -> None:
    queries = memory.memory_queries()
    assert [q.raw()[0] for q in queries] == ["grep", "sh"]


def _run_memory_script(tmp_path: Path) -> str:
    import subprocess

    script = memory.memory_queries()[1].raw()
    # nothing on PATH: the script needs no docker, no program at all (shell builtins only)
    out = subprocess.run(
        ["/bin/sh", *script[1:-1], str(tmp_path / "cgroup")],
        env={"PATH": "/nonexistent"},
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    assert not out.stderr
    return out.stdout


def test_container_memory_from_cgroup_files_as_docker_stats_counts_it(tmp_path: Path) -> None:
    v2 = tmp_path / "cgroup" / "system.slice" / ("docker-" + "a" * 64 + ".scope")
    v1 = tmp_path / "cgroup" / "memory" / "docker" / ("b" * 64)
    no_stat = tmp_path / "cgroup" / "docker" / ("c" * 64)
    for folder in (v2, v1, no_stat, tmp_path / "cgroup" / "docker" / "buildkit"):
        folder.mkdir(parents=True)
    (v2 / "memory.current").write_text("50000000\n")
    (v2 / "memory.stat").write_text("anon 1\ninactive_file 10000000\nactive_file 5\n")
    (v1 / "memory.usage_in_bytes").write_text("30000000\n")
    (v1 / "memory.stat").write_text("cache 9\ntotal_inactive_file 1000000\n")
    (no_stat / "memory.current").write_text("7000\n")
    (tmp_path / "cgroup" / "docker" / "cgroup.procs").write_text("1\n")
    lines = sorted(_run_memory_script(tmp_path).splitlines())
    assert lines == [f"{'a' * 64}\t40000000", f"{'b' * 64}\t29000000", f"{'c' * 64}\t7000"]
    found, missing = memory.container_memory(
        "\n".join(lines), [("aaaaaaaaaaaa", "hello-web-v1"), ("bbbbbbbbbbbb", "hello-web-v0"),
                           ("eeeeeeeeeeee", "hello-workers-v1")]
    )  # fmt: skip
    assert found == {"hello-web-v1": 40000000, "hello-web-v0": 29000000}
    assert missing == ["hello-workers-v1"]


def test_container_memory_with_no_container_running(tmp_path: Path) -> None:
    (tmp_path / "cgroup").mkdir()
    assert _run_memory_script(tmp_path) == ""


def test_a_container_without_cgroup_files_is_asked_of_docker_stats(
    make_config: MakeConfig,
) -> None:
    config = make_config(ONE_HOST, version="v2")

    def other_layout(fake: FakeTransport) -> None:
        small_server(fake)
        fake.on(["sh", "-c", memory.CONTAINER_MEMORY_SCRIPT], Result(0, "", ""))
        fake.on(["docker", "stats"], Result(0, STATS, ""))

    pool = FakePool(setup=other_layout)
    ctx, _ = make_ctx(config, pool)
    with pytest.raises(MemoryCheckError) as info:  # measured by docker stats: does not fit
        asyncio.run(flows.deploy(ctx, skip_push=True))
    assert "needed 531 MiB + margin 64 MiB > available 374 MiB" in info.value.message
    commands = pool.transports["10.0.0.1"].commands
    assert ["docker", "stats", "--no-stream", "--format", memory.STATS_FORMAT,
            "hello-web-v1"] in commands  # fmt: skip


def test_a_running_role_that_could_not_be_measured_is_a_warning(make_config: MakeConfig) -> None:
    config = make_config(ONE_HOST, version="v2")

    def no_stats(fake: FakeTransport) -> None:
        small_server(fake)
        script = ["sh", "-c", memory.CONTAINER_MEMORY_SCRIPT]
        fake.on(script, Result(1, "", "permission denied\n"))

    pool = FakePool(setup=no_stats)
    ctx, events = make_ctx(config, pool)
    asyncio.run(flows.deploy(ctx, skip_push=True))  # nothing to compare: it boots
    warnings = [e.text for e in events if e.kind == "warn"]
    assert any("could not measure web (v1 runs" in w for w in warnings), warnings
    assert any(c[:2] == ["docker", "run"] for c in pool.transports["10.0.0.1"].commands)
