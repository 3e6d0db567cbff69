"""The ACME certificate cache on the proxy's state volume.

Layout (the same as kamal-proxy's, which is Go autocert's ``DirCache``, so a volume written by
kamal-proxy is read as is and no certificate is issued twice on a switch-over)::

    <cache root>/                         --tls-acme-cache-path, default <data dir>/certs
      <sha256 hex of the directory URL>/  staging and production never mix
        acme_account+key                  the account key: PEM "EC PRIVATE KEY" (P-256)
        <host>                            PEM "EC PRIVATE KEY", then the certificate chain

Every write goes to a temporary file in the same directory, is fsynced, and is renamed over the
old file, so a crash leaves either the old or the new content. Directories are 0700 and files
0600: they hold private keys.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import tempfile
from pathlib import Path
from typing import Final

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from dockyard.proxy.tls.certs import (
    CertificateError,
    CertifiedKey,
    certified_key_from_pem,
    generate_ec_key,
    private_key_pem,
)

__all__ = ["ACCOUNT_KEY_NAME", "CertStore", "cache_dir_for", "check_host_name"]

log = logging.getLogger("dockyard.proxy.tls")

ACCOUNT_KEY_NAME: Final = "acme_account+key"
_LABEL: Final = r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
_HOST_RE: Final = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})*$")


def cache_dir_for(cache_root: str | Path, directory_url: str) -> Path:
    """``<cache_root>/<sha256 hex of directory_url>`` (kamal-proxy's key for the ACME cache)."""
    digest = hashlib.sha256(directory_url.encode()).hexdigest()
    return Path(cache_root) / digest


def check_host_name(host: str) -> str:
    """Normalise a host name for ACME and for use as a file name, or raise ``ValueError``.

    Lower case, no trailing dot, LDH labels (underscore tolerated), no wildcard, no path
    separators: a name that passes can never escape the cache directory.
    """
    name = host.strip().rstrip(".").lower()
    if not _HOST_RE.match(name):
        raise ValueError(f"not a valid host name for a certificate: {host!r}")
    return name


def _atomic_write(path: Path, data: bytes, mode: int = 0o600) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), mode)
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class CertStore:
    """Blocking file access to one ACME directory's cache (call it from a worker thread)."""

    def __init__(self, cache_root: str | Path, directory_url: str) -> None:
        self.directory_url = directory_url
        self.path = cache_dir_for(cache_root, directory_url)

    def _ensure_dir(self) -> None:
        self.path.mkdir(mode=0o700, parents=True, exist_ok=True)

    # -- account key ------------------------------------------------------------------------

    def account_key(self) -> ec.EllipticCurvePrivateKey:
        """The persisted account key, created (P-256) and saved on first use."""
        path = self.path / ACCOUNT_KEY_NAME
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            key = generate_ec_key()
            self._ensure_dir()
            _atomic_write(path, private_key_pem(key))
            log.info("created ACME account key %s", path)
            return key
        try:
            loaded = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError) as exc:
            raise CertificateError(
                f"ACME account key {path}: not a PEM private key without passphrase; move it "
                "away to register a new account"
            ) from exc
        if not isinstance(loaded, ec.EllipticCurvePrivateKey):
            raise CertificateError(f"ACME account key {path}: not an ECDSA key")
        return loaded

    # -- certificates -----------------------------------------------------------------------

    def load(self, host: str) -> CertifiedKey | None:
        """The cached certificate for ``host``, or ``None`` (absent, unreadable or corrupt:
        a corrupt entry is logged and treated as absent, so it gets re-issued)."""
        path = self.path / check_host_name(host)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.warning("ignoring unreadable certificate cache entry %s: %s", path, exc)
            return None
        try:
            certified = certified_key_from_pem(
                data, data, cert_source=str(path), key_source=str(path)
            )
        except CertificateError as exc:
            log.warning("ignoring corrupt certificate cache entry: %s", exc.message)
            return None
        if not certified.covers(host):
            log.warning("ignoring certificate cache entry %s: not valid for %s", path, host)
            return None
        return certified

    def save(self, host: str, certified: CertifiedKey) -> Path:
        """Write ``certified`` for ``host`` atomically (key first, then the chain)."""
        path = self.path / check_host_name(host)
        self._ensure_dir()
        _atomic_write(path, certified.key_pem + certified.chain_pem)
        return path

    def delete(self, host: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.path / check_host_name(host)).unlink()

    def hosts(self) -> list[str]:
        """Host names with a cache entry (the account key and temporary files excluded)."""
        try:
            entries = sorted(os.listdir(self.path))
        except FileNotFoundError:
            return []
        return [
            name
            for name in entries
            if name != ACCOUNT_KEY_NAME
            and not name.startswith(".")
            and "+" not in name
            and _HOST_RE.match(name)
        ]
