"""One ``df -P`` parser for both server probes: doctor's ``df -Pk`` section (KiB, needs the
available space) and server stats' ``df -P -B1`` (bytes, used and total per label)."""

from __future__ import annotations

from dockyard.commands import doctor
from dockyard.commands.df import DfRow, parse_df
from dockyard.flows.ops import stats

#: doctor's section: `df -Pk / "$root" | tail -n +2` on a host whose Docker root is on /.
DOCTOR_DF = [
    "/dev/vda         264212084 26838436  79552476      26% /",
    "/dev/vda         264212084 26838436  79552476      26% /",
]
#: doctor's section where Docker's root is a filesystem of its own.
DOCTOR_DF_TWO = [
    "overlay     41152736 10288184 28755944 27% /",
    "/dev/vdb    20480000 19000000  1480000 93% /var/lib/docker",
]
#: server stats' script: `echo docker_root=...; df -P -B1 / "$root"` (header included).
STATS_DF = (
    "docker_root=/srv/docker\n"
    "Filesystem         1-blocks        Used   Available Capacity Mounted on\n"
    "/dev/vda       270553174016 27482558464 81461735424      26% /\n"
    "/dev/vdc        53687091200 42949672960 10737418240      80% /srv/docker\n"
)


def test_rows_in_bytes_for_either_block_size() -> None:
    kib = parse_df(DOCTOR_DF_TWO, block_size=1024)
    assert kib == [
        DfRow("/", 41152736 * 1024, 10288184 * 1024, 28755944 * 1024),
        DfRow("/var/lib/docker", 20480000 * 1024, 19000000 * 1024, 1480000 * 1024),
    ]
    assert round(kib[1].fraction, 3) == 0.928
    assert parse_df(STATS_DF.splitlines(), block_size=1) == [
        DfRow("/", 270553174016, 27482558464, 81461735424),
        DfRow("/srv/docker", 53687091200, 42949672960, 10737418240),
    ]


def test_headers_short_and_sizeless_lines_are_skipped() -> None:
    lines = [
        "Filesystem     1024-blocks     Used Available Capacity Mounted on",
        "df: /var/lib/docker: No such file or directory",
        "proc                     -        -         -        - /proc",
        "",
        "tmpfs 1024 0 1024 0% /mnt/with space",
    ]
    assert parse_df(lines, block_size=1024) == [
        DfRow("/mnt/with space", 1024 * 1024, 0, 1024 * 1024)
    ]
    assert DfRow("/x", 0, 0, 0).fraction == 0.0


def test_doctor_reads_each_mount_once_with_its_free_space() -> None:
    (only,) = doctor.disks(DOCTOR_DF)  # / and Docker's root on the same filesystem
    assert only.mount == "/" and only.available == 79552476 * 1024
    assert [d.mount for d in doctor.disks(DOCTOR_DF_TWO)] == ["/", "/var/lib/docker"]
    full = doctor.disks(DOCTOR_DF_TWO)[1]
    assert full.available < doctor.DISK_MIN_FREE and full.fraction > doctor.DISK_MAX_USED


def test_stats_labels_the_rows_root_and_docker() -> None:
    root, disks = stats.parse_disks(STATS_DF)
    assert root == "/srv/docker"
    assert disks == (
        stats.Disk("/", "/", 27482558464, 270553174016),
        stats.Disk("docker", "/srv/docker", 42949672960, 53687091200),
    )
    assert round(disks[1].percent) == 80
    # Docker not answering: no root, so the one row is /
    root, disks = stats.parse_disks("docker_root=\n" + STATS_DF.split("\n", 2)[2])
    assert root is None and [d.label for d in disks] == ["/"]
