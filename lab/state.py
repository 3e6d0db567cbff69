"""The lab's JSON document: what `python -m lab up` prints and keeps in lab/.state/lab.json."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from lab.errors import LabError


@dataclass(frozen=True, slots=True)
class RegistryInfo:
    address: str  # "IP:PORT", the name images are tagged with
    username: str
    password: str
    ca_cert: str  # path of the CA that signed the registry's certificate


@dataclass(frozen=True, slots=True)
class ServerInfo:
    name: str
    address: str  # IP on the lab's internal network, reachable from the host


@dataclass(frozen=True, slots=True)
class SshInfo:
    user: str
    key: str  # private key path
    known_hosts: str  # known_hosts path with every server's current host key


@dataclass(frozen=True, slots=True)
class LabDoc:
    registry: RegistryInfo
    servers: tuple[ServerInfo, ...]
    ssh: SshInfo

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["servers"] = [asdict(s) for s in self.servers]
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, data: object) -> LabDoc:
        try:
            if not isinstance(data, dict):
                raise TypeError("the document is not an object")
            reg, servers, ssh = data["registry"], data["servers"], data["ssh"]
            if not isinstance(servers, list):
                raise TypeError("servers is not a list")
            return cls(
                registry=RegistryInfo(**{k: str(reg[k]) for k in _fields(RegistryInfo)}),
                servers=tuple(
                    ServerInfo(**{k: str(s[k]) for k in _fields(ServerInfo)}) for s in servers
                ),
                ssh=SshInfo(**{k: str(ssh[k]) for k in _fields(SshInfo)}),
            )
        except (KeyError, TypeError) as exc:
            raise LabError(f"not a lab document: {exc}") from exc

    @classmethod
    def from_json(cls, text: str) -> LabDoc:
        try:
            return cls.from_dict(json.loads(text))
        except json.JSONDecodeError as exc:
            raise LabError(f"not a lab document: {exc}") from exc


def _fields(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in fields(cls))


def load(path: Path) -> LabDoc | None:
    """The saved document, or None when the lab is not up."""
    try:
        return LabDoc.from_json(path.read_text())
    except FileNotFoundError:
        return None
