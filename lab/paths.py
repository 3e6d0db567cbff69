"""Where the lab keeps things, and the names of what it creates."""

from __future__ import annotations

import os
import re
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
LAB_DIR = REPO_ROOT / "lab"
SHARED_STATE_DIR = LAB_DIR / ".state"  # image builds, their logs and locks: one per machine
LOG_DIR = SHARED_STATE_DIR / "logs"


def _lab_name() -> str:
    """DOCKYARD_LAB_NAME lets several labs run side by side on one engine (one per engineer or
    test session): each gets its own containers, network, volumes and state directory."""
    name = os.environ.get("DOCKYARD_LAB_NAME", "")
    if name and not re.fullmatch(r"[a-z0-9]{1,12}", name):
        raise SystemExit(f"DOCKYARD_LAB_NAME={name!r}: expected 1-12 lowercase letters or digits")
    return name


LAB_NAME = _lab_name()
_SUFFIX = f"-{LAB_NAME}" if LAB_NAME else ""
#: This lab's own files (lab.json, ssh key, CA, registry data, session lock).
STATE_DIR = SHARED_STATE_DIR / "named" / LAB_NAME if LAB_NAME else SHARED_STATE_DIR
WHEELS_DIR = REPO_ROOT / "build" / "wheels"
#: The proxy's hot modules compiled by mypyc (dockyard.proxy.native), copied into its image.
NATIVE_DIR = REPO_ROOT / "build" / "native"

HASH_LABEL = "dockyard.lab.hash"
LAB_LABEL = "dockyard.lab"  # on every container, network and volume `up` creates
#: The value of LAB_LABEL: which lab a container, network or volume belongs to.
LAB_VALUE = LAB_NAME or "1"
LAB_FILTER = f"label={LAB_LABEL}={LAB_VALUE}"

PY_BASE = "dockyard-lab/python:base"
SERVER_ROOTFS = "dockyard-lab/server-rootfs:latest"
SERVER_IMAGE = "dockyard-lab/server:latest"
REGISTRY_IMAGE = "dockyard-lab/registry:latest"
HELLO_REPO = "dockyard-lab/hello"
HELLO_VARIANTS = ("v1", "v2", "broken", "hungry")
PROXY_IMAGE = "dockyard-proxy:lab"

NETWORK = f"dockyard-lab{_SUFFIX}"
REGISTRY_CONTAINER = f"dockyard-lab{_SUFFIX}-registry"
REGISTRY_PORT = 5000
SERVER_PREFIX = f"dockyard-lab{_SUFFIX}-server-"
