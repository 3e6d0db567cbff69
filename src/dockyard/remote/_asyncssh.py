"""Import asyncssh without its slowest step.

At import, ``asyncssh.crypto.pq`` looks for liboqs (the optional post-quantum library) with
``ctypes.util.find_library``, which on Linux runs ``ldconfig -p`` and, failing that, a C
compiler and the linker: 0.1 to 0.2 s of every Dockyard command that connects. When no
``liboqs`` file exists in the linker's directories (the usual case) the answer is known to be
"not found" at once; when one does exist, the real lookup runs unchanged.
"""

from __future__ import annotations

import ctypes.util
import glob
import os
import sys
from collections.abc import Iterator
from types import ModuleType

__all__ = ["import_asyncssh", "liboqs_may_exist"]

_OQS_NAMES = ("oqs", "liboqs")
_STANDARD_DIRS = (
    "/lib",
    "/lib64",
    "/usr/lib",
    "/usr/lib64",
    "/usr/local/lib",
    "/usr/local/lib64",
    "/lib/*-linux-gnu*",
    "/usr/lib/*-linux-gnu*",
    "/opt/homebrew/lib",
)


def _ld_so_conf_dirs(path: str = "/etc/ld.so.conf", depth: int = 0) -> Iterator[str]:
    try:
        with open(path) as handle:
            lines = handle.read().splitlines()
    except OSError:
        return
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("include ") and depth < 3:
            for included in sorted(glob.glob(line[8:].strip())):
                yield from _ld_so_conf_dirs(included, depth + 1)
        else:
            yield line


def liboqs_may_exist(environ: dict[str, str] | None = None) -> bool:
    """Whether a ``liboqs`` shared library may be found (any ``liboqs*`` file in the
    standard library directories, ``/etc/ld.so.conf`` ones, or ``$LD_LIBRARY_PATH``)."""
    env = os.environ if environ is None else environ
    dirs = [*_STANDARD_DIRS, *_ld_so_conf_dirs()]
    dirs += [d for d in env.get("LD_LIBRARY_PATH", "").split(":") if d]
    dirs += [d for d in env.get("DYLD_LIBRARY_PATH", "").split(":") if d]
    return any(glob.glob(os.path.join(d, "liboqs*")) for d in dirs)


def import_asyncssh() -> ModuleType:
    """``import asyncssh``, skipping the liboqs search when it cannot succeed."""
    loaded = sys.modules.get("asyncssh")
    if loaded is not None:
        return loaded
    if liboqs_may_exist():
        import asyncssh

        return asyncssh
    real = ctypes.util.find_library

    def find_library(name: str) -> str | None:
        return None if name in _OQS_NAMES else real(name)

    ctypes.util.find_library = find_library
    try:
        import asyncssh
    finally:
        ctypes.util.find_library = real
    return asyncssh
