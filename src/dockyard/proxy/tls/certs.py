"""Certificates and keys as values: parse, check, generate, serialise.

A :class:`CertifiedKey` is a leaf certificate with its chain and private key, already checked
(PEM parses, the key matches the leaf). Everything that serves TLS works from these values;
nothing here touches an `ssl.SSLContext` or the network.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from dockyard.errors import ProxyError

__all__ = [
    "CertificateError",
    "CertifiedKey",
    "certified_key_from_pem",
    "generate_ec_key",
    "host_matches",
    "load_certificate_files",
    "private_key_pem",
]

_SERVING_KEYS = (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey, ed25519.Ed25519PrivateKey,
                 ed448.Ed448PrivateKey)  # fmt: skip


class CertificateError(ProxyError):
    """A certificate or key that cannot be used (the message names the file when there is one)."""


@dataclass(frozen=True, slots=True)
class CertifiedKey:
    """A checked leaf certificate + chain + private key, all PEM.

    ``chain_pem`` holds the leaf first, then any intermediates. ``names`` are the leaf's DNS
    subjectAltNames in lower case (wildcards kept as ``*.example.com``).
    """

    chain_pem: bytes
    key_pem: bytes
    names: tuple[str, ...]
    not_before: dt.datetime
    not_after: dt.datetime

    @property
    def lifetime(self) -> dt.timedelta:
        return self.not_after - self.not_before

    def covers(self, host: str) -> bool:
        """Whether the leaf is valid for ``host`` (exact name or one-label wildcard)."""
        return any(host_matches(name, host) for name in self.names)

    def renew_at(self, renew_before: dt.timedelta | None = None) -> dt.datetime:
        """When to renew: ``renew_before`` ahead of expiry, by default the smaller of 30 days
        and a third of the lifetime (so short-lived certificates still renew in time)."""
        if renew_before is None:
            renew_before = min(dt.timedelta(days=30), self.lifetime / 3)
        return self.not_after - renew_before

    def expired(self, now: dt.datetime) -> bool:
        return now >= self.not_after


def host_matches(pattern: str, host: str) -> bool:
    """RFC 6125 style: exact match, or ``*.`` matching exactly one left-most label."""
    pattern = pattern.lower().rstrip(".")
    host = host.lower().rstrip(".")
    if pattern == host:
        return True
    if pattern.startswith("*."):
        label, _, rest = host.partition(".")
        return bool(label) and rest == pattern[2:]
    return False


def generate_ec_key() -> ec.EllipticCurvePrivateKey:
    """A fresh ECDSA P-256 key (what we use for the ACME account and ACME certificates)."""
    return ec.generate_private_key(ec.SECP256R1())


def private_key_pem(key: PrivateKeyTypes) -> bytes:
    """PEM without a passphrase: SEC1 ``EC PRIVATE KEY`` for EC keys (the layout Go's autocert
    cache uses), PKCS#8 for the rest."""
    fmt = (
        serialization.PrivateFormat.TraditionalOpenSSL
        if isinstance(key, ec.EllipticCurvePrivateKey)
        else serialization.PrivateFormat.PKCS8
    )
    return key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption())


def _spki(key: object) -> bytes:
    public_bytes = key.public_bytes  # type: ignore[attr-defined]  # any public key type
    data: bytes = public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return data


def _dns_names(cert: x509.Certificate) -> tuple[str, ...]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        san = None
    names: list[str] = []
    if san is not None:
        names += [name.lower().rstrip(".") for name in san.get_values_for_type(x509.DNSName)]
        names += [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]
    if not names:  # legacy certificates: fall back to the subject CN
        for attr in cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME):
            value = attr.value if isinstance(attr.value, str) else attr.value.decode()
            names.append(value.lower().rstrip("."))
    return tuple(names)


def certified_key_from_pem(
    chain_pem: bytes,
    key_pem: bytes,
    *,
    cert_source: str = "certificate",
    key_source: str = "private key",
) -> CertifiedKey:
    """Parse and cross-check PEM data; raise :class:`CertificateError` naming the source.

    ``chain_pem`` may also contain the key (the autocert cache layout); only its CERTIFICATE
    blocks are kept in ``chain_pem`` of the result.
    """
    try:
        certs = x509.load_pem_x509_certificates(chain_pem)
    except ValueError as exc:
        raise CertificateError(
            f"{cert_source}: no PEM certificate could be read ({exc})".rstrip()
        ) from exc
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except TypeError as exc:  # encrypted, no password given
        raise CertificateError(
            f"{key_source}: the private key is encrypted; a key without a passphrase is needed"
        ) from exc
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise CertificateError(f"{key_source}: no PEM private key could be read") from exc
    if not isinstance(key, _SERVING_KEYS):
        raise CertificateError(f"{key_source}: unsupported private key type {type(key).__name__}")
    leaf = certs[0]
    if _spki(leaf.public_key()) != _spki(key.public_key()):
        raise CertificateError(
            f"{key_source}: the private key does not match the certificate in {cert_source}"
        )
    chain = b"".join(cert.public_bytes(serialization.Encoding.PEM) for cert in certs)
    return CertifiedKey(
        chain_pem=chain,
        key_pem=private_key_pem(key),
        names=_dns_names(leaf),
        not_before=leaf.not_valid_before_utc,
        not_after=leaf.not_valid_after_utc,
    )


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError as exc:
        raise CertificateError(f"{what} {path}: file not found") from exc
    except IsADirectoryError as exc:
        raise CertificateError(f"{what} {path}: is a directory, not a file") from exc
    except PermissionError as exc:
        raise CertificateError(f"{what} {path}: permission denied (cannot read it)") from exc
    except OSError as exc:
        raise CertificateError(f"{what} {path}: cannot be read ({exc.strerror})") from exc


def load_certificate_files(cert_path: str | Path, key_path: str | Path) -> CertifiedKey:
    """Load ``--tls-certificate-path`` / ``--tls-private-key-path`` once, up front.

    Every problem raises :class:`CertificateError` whose message names the file: missing,
    unreadable, not PEM, encrypted key, or a key that does not belong to the certificate. The
    caller (deploy) reports it and leaves the running service as it was. Expiry is not checked,
    as kamal-proxy does not check it either; ``not_after`` is there for a warning.
    """
    cert_file, key_file = Path(cert_path), Path(key_path)
    chain = _read(cert_file, "TLS certificate")
    key = _read(key_file, "TLS private key")
    certified = certified_key_from_pem(
        chain,
        key,
        cert_source=f"TLS certificate {cert_file}",
        key_source=f"TLS private key {key_file}",
    )
    # OpenSSL has its own rules (security level: e.g. RSA keys under 2048 bits, SHA-1
    # signatures): ask it now, so that such a pair fails the deploy and not every handshake.
    probe = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        probe.load_cert_chain(cert_file, key_file)
    except ssl.SSLError as exc:
        raise CertificateError(
            f"TLS certificate {cert_file}: OpenSSL refuses it with the key {key_file} "
            f"({exc.reason or exc})"
        ) from exc
    return certified


def self_signed(
    host: str,
    key: ec.EllipticCurvePrivateKey,
    *,
    days: float = 7.0,
    extensions: tuple[x509.ExtensionType, ...] = (),
    critical: bool = True,
) -> x509.Certificate:
    """A self-signed leaf for ``host`` (used for the TLS-ALPN-01 challenge certificate)."""
    now = dt.datetime.now(dt.UTC)
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, host)])
    try:
        general: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        general = x509.DNSName(host)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName([general]), critical=False)
    )
    for ext in extensions:
        builder = builder.add_extension(ext, critical=critical)
    return builder.sign(key, hashes.SHA256())
