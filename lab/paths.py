"""Where the lab keeps things, and the names of what it creates."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
LAB_DIR = REPO_ROOT / "lab"
STATE_DIR = LAB_DIR / ".state"
LOG_DIR = STATE_DIR / "logs"
WHEELS_DIR = REPO_ROOT / "build" / "wheels"

HASH_LABEL = "dockyard.lab.hash"
LAB_LABEL = "dockyard.lab"  # on every container, network and volume `up` creates

PY_BASE = "dockyard-lab/python:base"
SERVER_ROOTFS = "dockyard-lab/server-rootfs:latest"
SERVER_IMAGE = "dockyard-lab/server:latest"
REGISTRY_IMAGE = "dockyard-lab/registry:latest"
HELLO_REPO = "dockyard-lab/hello"
HELLO_VARIANTS = ("v1", "v2", "broken", "hungry")
PROXY_IMAGE = "dockyard-proxy:lab"

NETWORK = "dockyard-lab"
REGISTRY_CONTAINER = "dockyard-lab-registry"
REGISTRY_PORT = 5000
SERVER_PREFIX = "dockyard-lab-server-"
