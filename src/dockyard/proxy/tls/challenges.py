"""ACME challenge responses: HTTP-01 tokens and TLS-ALPN-01 certificates.

A :class:`ChallengeBoard` holds what is being validated right now. The ACME worker thread puts
entries on it just before telling the CA to validate and takes them off afterwards; the event
loop reads it (HTTP handler, TLS context selection). A lock makes that safe across threads, and
reads never block for long.
"""

from __future__ import annotations

import hashlib
import threading
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from dockyard.proxy.tls.certs import (
    CertifiedKey,
    certified_key_from_pem,
    generate_ec_key,
    private_key_pem,
    self_signed,
)

__all__ = [
    "ACME_TLS_ALPN_PROTOCOL",
    "HTTP01_PREFIX",
    "ID_PE_ACME_IDENTIFIER",
    "ChallengeBoard",
    "host_without_port",
    "tls_alpn01_certificate",
]

#: The ALPN protocol a TLS-ALPN-01 validator offers (RFC 8737 §6.2), and the only one.
ACME_TLS_ALPN_PROTOCOL: Final = "acme-tls/1"
#: id-pe-acmeIdentifier (RFC 8737 §6.1).
ID_PE_ACME_IDENTIFIER: Final = x509.ObjectIdentifier("1.3.6.1.5.5.7.1.31")
HTTP01_PREFIX: Final = "/.well-known/acme-challenge/"


def host_without_port(host: str) -> str:
    """``example.com:8080`` → ``example.com``; ``[::1]:443`` → ``::1``; lower case, no
    trailing dot."""
    host = host.strip()
    if host.startswith("["):
        end = host.find("]")
        host = host[1:end] if end > 0 else host[1:]
    elif host.count(":") == 1:
        host = host.partition(":")[0]
    return host.rstrip(".").lower()


def tls_alpn01_certificate(host: str, key_authorization: str) -> CertifiedKey:
    """The self-signed certificate a TLS-ALPN-01 validator expects (RFC 8737 §3).

    Its only subjectAltName is ``host`` and it carries the critical acmeIdentifier extension,
    whose value is the DER OCTET STRING of SHA-256(key authorization).
    """
    digest = hashlib.sha256(key_authorization.encode("ascii")).digest()
    der_octet_string = b"\x04" + bytes([len(digest)]) + digest
    key = generate_ec_key()
    cert = self_signed(
        host,
        key,
        days=7,
        extensions=(x509.UnrecognizedExtension(ID_PE_ACME_IDENTIFIER, der_octet_string),),
        critical=True,
    )
    return certified_key_from_pem(
        cert.public_bytes(serialization.Encoding.PEM),
        private_key_pem(key),
        cert_source="TLS-ALPN-01 certificate",
        key_source="TLS-ALPN-01 key",
    )


class ChallengeBoard:
    """Challenge responses currently offered, keyed by host (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._http: dict[tuple[str, str], bytes] = {}
        self._alpn: dict[str, CertifiedKey] = {}

    # -- written by the ACME worker ---------------------------------------------------------

    def put_http01(self, host: str, token: str, key_authorization: str) -> None:
        with self._lock:
            self._http[(host.lower(), token)] = key_authorization.encode("ascii")

    def drop_http01(self, host: str, token: str) -> None:
        with self._lock:
            self._http.pop((host.lower(), token), None)

    def put_tls_alpn01(self, host: str, certified: CertifiedKey) -> None:
        with self._lock:
            self._alpn[host.lower()] = certified

    def drop_tls_alpn01(self, host: str) -> None:
        with self._lock:
            self._alpn.pop(host.lower(), None)

    # -- read by the data plane -------------------------------------------------------------

    def http01_response(self, host: str, path: str) -> bytes | None:
        """The body to answer ``GET <path>`` with (status 200, ``text/plain``), or ``None`` when
        this is not a pending HTTP-01 token for that host.

        ``host`` is the request's Host header as sent: with or without a port (validators
        usually send the port, e.g. ``example.com:80``). ``path`` may carry a query string.
        """
        path = path.partition("?")[0]
        if not path.startswith(HTTP01_PREFIX):
            return None
        token = path[len(HTTP01_PREFIX) :]
        if not token or "/" in token:
            return None
        with self._lock:
            return self._http.get((host_without_port(host), token))

    def tls_alpn01(self, host: str) -> CertifiedKey | None:
        """The TLS-ALPN-01 certificate to present for ``host`` right now, if any."""
        with self._lock:
            return self._alpn.get(host.lower())

    def pending_hosts(self) -> set[str]:
        with self._lock:
            return {host for host, _ in self._http} | set(self._alpn)
