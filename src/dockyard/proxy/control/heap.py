"""Give the C heap's free memory back to the system after bursts.

Start-up (imports, parsing, restoring the state), each control call (a deploy parses its
flags, probes, rewrites the state file) and each burst of connections (every TLS connection
holds a 256 KiB read buffer in uvloop while it lasts) leave freed blocks in glibc's heap that
it keeps for later. The proxy is idle most of the time on small servers, so after those
bursts it asks glibc to return them (``malloc_trim``): about 2 MiB of RSS after start-up, and
about 20 MiB 2 s after a burst of 50 concurrent TLS clients ends (a listener without clients
for 2 s calls this), measured with ``bench/proxy.py``. Where glibc or ctypes is missing
(another libc), nothing happens.
"""

from __future__ import annotations

import functools
from collections.abc import Callable


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, looked up once; None without ctypes or glibc."""
    try:
        import ctypes

        trim: Callable[[int], int] = ctypes.CDLL("libc.so.6").malloc_trim
    except (ImportError, OSError, AttributeError):
        return None
    return trim


def release_free_memory() -> bool:
    """Return the heap's free pages to the system; False where that is not possible."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
