from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from dockyard.remote._asyncssh import liboqs_may_exist


def test_liboqs_is_found_in_ld_library_path(tmp_path: Path) -> None:
    (tmp_path / "liboqs.so.5").write_bytes(b"")
    assert liboqs_may_exist({"LD_LIBRARY_PATH": f"/nonexistent:{tmp_path}"})


def test_import_skips_the_liboqs_search_when_no_file_exists() -> None:
    if liboqs_may_exist():  # pragma: no cover - a machine with liboqs installed
        pytest.skip("liboqs is installed here: the search cannot be skipped")
    # in a fresh interpreter: no find_library call for oqs, the real one restored afterwards,
    # and asyncssh still works (ML-KEM comes from cryptography, not liboqs)
    code = """
import ctypes.util
asked = []
real = ctypes.util.find_library
def spy(name):
    asked.append(name)
    return real(name)
ctypes.util.find_library = spy
from dockyard.remote._asyncssh import import_asyncssh
asyncssh = import_asyncssh()
import asyncssh.crypto.pq as pq
assert not [n for n in asked if "oqs" in n], asked
assert ctypes.util.find_library is spy
assert pq.sntrup_available is False
assert hasattr(asyncssh, "connect")
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "ok", out.stderr
