"""`dockyard doctor`: the probe script run on each server (one round trip) and the pure
functions that read its answers.

The script prints sections, each introduced by a line ``@@name``:
``docker`` (server version, or the error of ``docker version``), ``root`` (Docker's root dir),
``df`` (``df -Pk`` of / and of the root dir), ``memory`` (``grep -H`` of the memory files
the caller names: /proc/meminfo and the server's own cgroup files), ``listen`` (``/proc/net/tcp``
and ``tcp6``), ``published`` (``docker ps``: name and ports), ``proxy`` (state and image of
the kamal-proxy container), ``services`` (``kamal-proxy list``) and per app role
``app <role>`` (the role's running container: name, PID, address on the ``kamal`` network),
``applisten <role>`` (its listening sockets), ``health <role>`` and ``hostcheck <role>``
(the status line and Location of a request to the app from the server itself).
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field

from dockyard.commands.df import DfRow, parse_df

#: Below this many free bytes on / or Docker's root, a pull or a log burst may fill the disk.
DISK_MIN_FREE = 2 * 1024**3
DISK_MAX_USED = 0.90
MEMORY_MIN_AVAILABLE = 150 * 1024**2


@dataclass(frozen=True, slots=True)
class AppProbe:
    """What to ask about one role on a host."""

    role: str
    filters: tuple[str, ...]  # docker ps --filter values (label=service=..., label=role=...)
    port: int
    health_path: str
    host_header: str | None = None


def probe_script(
    apps: tuple[AppProbe, ...] = (), *, proxy: bool = True, memory_files: Sequence[str] = ()
) -> str:
    q = shlex.quote
    lines = [
        "exec 2>&1",
        "echo @@docker",
        "docker version --format 'server {{.Server.Version}}' || echo 'exit '$?",
        "echo @@root",
        "root=$(docker info --format '{{.DockerRootDir}}' 2>/dev/null)",
        'echo "$root"',
        "echo @@df",
        'df -Pk / ${root:+"$root"} 2>/dev/null | tail -n +2',
        "echo @@memory",
        f"grep -s -H '' {' '.join(q(f) for f in memory_files)} </dev/null",
        "echo @@listen",
        "cat /proc/net/tcp /proc/net/tcp6 2>/dev/null | awk '$4 == \"0A\" {print $2}'",
        "echo @@published",
        "docker ps --format '{{.Names}}\t{{.Ports}}' 2>/dev/null",
    ]
    if proxy:
        lines += [
            "echo @@proxy",
            "docker ps -a --filter name=^kamal-proxy$ --format '{{.State}} {{.Image}}' 2>/dev/null",
            "echo @@services",
            "docker exec kamal-proxy kamal-proxy list 2>&1 | head -50",
        ]
    for app in apps:
        role = q(app.role)
        filters = " ".join(f"--filter {q(f)}" for f in app.filters)
        host = q(app.host_header or "localhost")
        request = (
            f"GET {app.health_path} HTTP/1.1\\r\\nHost: {app.host_header or 'localhost'}\\r\\n"
            "Connection: close\\r\\nUser-Agent: dockyard-doctor\\r\\n\\r\\n"
        )
        root_request = (
            f"GET / HTTP/1.1\\r\\nHost: {app.host_header or 'localhost'}\\r\\n"
            "Connection: close\\r\\nUser-Agent: dockyard-doctor\\r\\n\\r\\n"
        )
        lines += [
            f"echo @@app {role}",
            f"c=$(docker ps --latest --filter status=running {filters} --format '{{{{.Names}}}}')",
            'ip=""; pid=""',
            'if [ -n "$c" ]; then',
            "  pid=$(docker inspect -f '{{.State.Pid}}' \"$c\")",
            '  ip=$(docker inspect -f \'{{with index .NetworkSettings.Networks "kamal"}}'
            '{{.IPAddress}}{{end}}\' "$c")',
            '  echo "$c $pid $ip"',
            "fi",
            f"echo @@applisten {role}",
            '[ -n "$pid" ] && cat /proc/"$pid"/net/tcp /proc/"$pid"/net/tcp6 2>/dev/null '
            "| awk '$4 == \"0A\" {print $2}'",
            f"echo @@health {role}",
            f'[ -n "$ip" ] && timeout 5 bash -c \'exec 3<>/dev/tcp/$0/$1 && printf "$2" >&3 '
            f'&& head -c 4096 <&3 | tr -d "\\r" | grep -iE "^(HTTP/|location:)"\' '
            f'"$ip" {app.port} {q(request)} || echo "no answer ($?)"',
            f"echo @@hostcheck {role}",
            f'[ -n "$ip" ] && [ {host} != localhost ] && timeout 5 bash -c '
            f'\'exec 3<>/dev/tcp/$0/$1 && printf "$2" >&3 && head -c 4096 <&3 | tr -d "\\r" '
            f'| grep -iE "^HTTP/"\' "$ip" {app.port} {q(root_request)}',
        ]
    lines.append("true")
    return "\n".join(lines) + "\n"


def sections(stdout: str) -> dict[str, list[str]]:
    """The probe's output by section name (``app web``...)."""
    out: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in stdout.splitlines():
        if line.startswith("@@"):
            current = out.setdefault(line[2:].strip(), [])
        elif current is not None and line.strip():
            current.append(line.rstrip())
    return out


# -- readers -----------------------------------------------------------------------------------


#: Docker's embedded DNS server listens here in every container on a user-defined network.
DOCKER_DNS = "127.0.0.11"


def _address(hex_ip: str) -> str:
    """``0100007F`` -> ``127.0.0.1``; 32 hex digits (tcp6) -> a compact IPv6 text."""
    import ipaddress

    raw = bytes.fromhex(hex_ip)
    if len(raw) == 4:
        return str(ipaddress.IPv4Address(raw[::-1]))
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
    address = ipaddress.IPv6Address(words)
    mapped = address.ipv4_mapped
    return str(mapped) if mapped is not None else str(address)


def listeners(lines: list[str]) -> dict[int, set[str]]:
    """Listening port -> addresses, from ``/proc/net/tcp{,6}`` local addresses
    (``0100007F:1F90`` -> {8080: {"127.0.0.1"}})."""
    out: dict[int, set[str]] = {}
    for entry in lines:
        hex_ip, _, port = entry.strip().rpartition(":")
        try:
            out.setdefault(int(port, 16), set()).add(_address(hex_ip))
        except ValueError:
            continue
    return out


def listening_ports(lines: list[str]) -> set[int]:
    return set(listeners(lines))


def _loopback(address: str) -> bool:
    return address.startswith("127.") or address == "::1"


def reachable_ports(lines: list[str]) -> tuple[set[int], set[int]]:
    """Ports a client outside the container can reach, and ports bound to loopback only
    (Docker's own DNS listener left out)."""
    public, loopback = set(), set()
    for port, addresses in listeners(lines).items():
        addresses = addresses - {DOCKER_DNS}
        if not addresses:
            continue
        if all(_loopback(a) for a in addresses):
            loopback.add(port)
        else:
            public.add(port)
    return public, loopback


#: A filesystem of the ``df`` section (mount, total, used, available in bytes; ``fraction``).
Disk = DfRow


def disks(lines: list[str]) -> list[Disk]:
    """The ``df -Pk`` rows of the ``df`` section, once per mount (/ and Docker's root are often
    the same filesystem)."""
    seen: dict[str, Disk] = {}
    for row in parse_df(lines, block_size=1024):
        seen.setdefault(row.mount, row)
    return list(seen.values())


def port_holders(published: list[str], listening: set[int], port: int) -> tuple[list[str], bool]:
    """Containers publishing ``port`` on the host, and whether something listens on it."""
    holders = []
    for line in published:
        name, _, ports = line.partition("\t")
        for mapping in ports.split(","):
            host_side = mapping.strip().split("->")[0]
            if "->" in mapping and host_side.rsplit(":", 1)[-1] == str(port):
                holders.append(name.strip())
                break
    return holders, port in listening


@dataclass(frozen=True, slots=True)
class HttpAnswer:
    status: int | None
    location: str = ""
    failure: str = ""


def http_answer(lines: list[str]) -> HttpAnswer:
    status = None
    location = ""
    failure = ""
    for line in lines:
        low = line.lower()
        if low.startswith("http/") and status is None:
            parts = line.split()
            if len(parts) >= 2 and parts[1].isdigit():
                status = int(parts[1])
        elif low.startswith("location:"):
            location = line.split(":", 1)[1].strip()
        elif line.startswith("no answer") or "refused" in low or "timed out" in low:
            failure = line.strip()
    return HttpAnswer(status, location, failure)


@dataclass(frozen=True, slots=True)
class AppState:
    container: str = ""
    ip: str = ""
    listening: set[int] = field(default_factory=set)
    #: Ports the app binds to 127.0.0.1/::1 only (unreachable from the proxy).
    loopback: set[int] = field(default_factory=set)
    health: HttpAnswer = field(default_factory=lambda: HttpAnswer(None))
    hostcheck: HttpAnswer | None = None


def app_state(found: dict[str, list[str]], role: str) -> AppState:
    head = (found.get(f"app {role}") or [""])[0].split()
    hostcheck = found.get(f"hostcheck {role}")
    public, loopback = reachable_ports(found.get(f"applisten {role}", []))
    return AppState(
        container=head[0] if head else "",
        ip=head[2] if len(head) > 2 else "",
        listening=public,
        loopback=loopback,
        health=http_answer(found.get(f"health {role}", [])),
        hostcheck=http_answer(hostcheck) if hostcheck else None,
    )
