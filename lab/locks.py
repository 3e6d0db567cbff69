"""File locks: several people (and test sessions) share one Docker engine and one lab."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import time
from collections.abc import Iterator
from pathlib import Path

from lab.errors import LabError

log = logging.getLogger("lab")


@contextlib.contextmanager
def exclusive(path: Path, *, wait: float, what: str) -> Iterator[None]:
    """Hold an exclusive flock on `path`, waiting up to `wait` seconds for it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        deadline = time.monotonic() + wait
        told = False
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise LabError(f"{what} is still busy after {wait:.0f} s ({path})") from None
                if not told:
                    log.info("waiting for %s (%s)", what, path)
                    told = True
                time.sleep(0.5)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
