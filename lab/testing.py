"""Helpers for tests that use the lab (no pytest import here: plain assertions)."""

from __future__ import annotations

import shlex
import subprocess
from dataclasses import dataclass

from lab.state import LabDoc


def _tail(text: str, lines: int = 30) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


@dataclass(frozen=True)
class LabSsh:
    """Runs argv on a lab server over SSH with the lab's key, checking its host key against
    the lab's known_hosts: `ssh -i KEY -o UserKnownHostsFile=KH ... root@IP argv`."""

    doc: LabDoc

    def argv(self, address: str, *command: str) -> list[str]:
        return [
            "ssh",
            "-i",
            self.doc.ssh.key,
            "-o",
            f"UserKnownHostsFile={self.doc.ssh.known_hosts}",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "ConnectTimeout=10",
            f"{self.doc.ssh.user}@{address}",
            "--",
            shlex.join(command),  # the remote shell splits it back into exactly `command`
        ]

    def __call__(
        self,
        address: str,
        *command: str,
        input: str | None = None,
        check: bool = True,
        timeout: float = 120,
    ) -> subprocess.CompletedProcess[str]:
        """Run `command` on `address`; with `check`, a non-zero exit fails an assertion."""
        proc = subprocess.run(
            self.argv(address, *command),
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"on {address}: {' '.join(command)} exited {proc.returncode}:\n"
                f"{_tail(proc.stderr or proc.stdout)}"
            )
        return proc
