"""Certificate values, custom certificate files, and the ACME cache on disk."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from tls_support import MiniCA

from dockyard.errors import ProxyError
from dockyard.proxy.tls.certs import (
    CertificateError,
    certified_key_from_pem,
    host_matches,
    load_certificate_files,
    private_key_pem,
)
from dockyard.proxy.tls.store import ACCOUNT_KEY_NAME, CertStore, cache_dir_for, check_host_name

# -- custom certificates -------------------------------------------------------------------------


def write_pair(tmp_path: Path, ca: MiniCA, *names: str, rsa_key: bool = False) -> tuple[Path, Path]:
    issued = ca.issue(*names, rsa_key=rsa_key)
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_bytes(issued.cert_pem + ca.pem)  # leaf + chain
    key.write_bytes(issued.key_pem)
    return cert, key


def test_custom_certificate_loads_with_its_chain_and_names(tmp_path: Path, ca: MiniCA) -> None:
    cert, key = write_pair(tmp_path, ca, "app.example.com", "www.example.com")
    loaded = load_certificate_files(cert, key)
    assert loaded.names == ("app.example.com", "www.example.com")
    assert loaded.chain_pem.count(b"BEGIN CERTIFICATE") == 2
    assert loaded.covers("www.example.com") and not loaded.covers("other.example.com")
    assert loaded.not_after - loaded.not_before == dt.timedelta(days=90)


def test_rsa_custom_certificate_is_accepted(tmp_path: Path, ca: MiniCA) -> None:
    cert, key = write_pair(tmp_path, ca, "rsa.example.com", rsa_key=True)
    assert load_certificate_files(cert, key).names == ("rsa.example.com",)


def test_missing_files_are_named(tmp_path: Path, ca: MiniCA) -> None:
    cert, key = write_pair(tmp_path, ca, "a.example.com")
    with pytest.raises(CertificateError) as err:
        load_certificate_files(tmp_path / "nope.pem", key)
    assert err.value.message == f"TLS certificate {tmp_path / 'nope.pem'}: file not found"
    with pytest.raises(CertificateError) as err:
        load_certificate_files(cert, tmp_path / "nokey.pem")
    assert err.value.message == f"TLS private key {tmp_path / 'nokey.pem'}: file not found"
    assert isinstance(err.value, ProxyError)


def test_directory_instead_of_file(tmp_path: Path, ca: MiniCA) -> None:
    _, key = write_pair(tmp_path, ca, "a.example.com")
    with pytest.raises(CertificateError, match="is a directory"):
        load_certificate_files(tmp_path, key)


def test_unreadable_key_is_named(
    tmp_path: Path, ca: MiniCA, monkeypatch: pytest.MonkeyPatch
) -> None:
    cert, key = write_pair(tmp_path, ca, "a.example.com")
    if os.geteuid() != 0:
        key.chmod(0)  # a real permission error
    else:  # root reads files whatever their mode: the read fails as it would for a user
        real = Path.read_bytes

        def read_bytes(path: Path) -> bytes:
            if path == key:
                raise PermissionError(13, "Permission denied", str(path))
            return real(path)

        monkeypatch.setattr(Path, "read_bytes", read_bytes)
    with pytest.raises(CertificateError, match=f"TLS private key {key}: permission denied"):
        load_certificate_files(cert, key)


def test_not_pem(tmp_path: Path, ca: MiniCA) -> None:
    cert, key = write_pair(tmp_path, ca, "a.example.com")
    junk = tmp_path / "junk.pem"
    junk.write_text("hello\n")
    with pytest.raises(CertificateError, match=f"TLS certificate {junk}: no PEM certificate"):
        load_certificate_files(junk, key)
    with pytest.raises(CertificateError, match=f"TLS private key {junk}: no PEM private key"):
        load_certificate_files(cert, junk)


def test_swapped_files_are_explained(tmp_path: Path, ca: MiniCA) -> None:
    cert, key = write_pair(tmp_path, ca, "a.example.com")
    with pytest.raises(CertificateError) as err:
        load_certificate_files(key, cert)
    assert str(key) in err.value.message


def test_encrypted_key(tmp_path: Path, ca: MiniCA) -> None:
    issued = ca.issue("a.example.com")
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    cert.write_bytes(issued.cert_pem)
    key.write_bytes(
        issued.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    with pytest.raises(CertificateError, match=f"TLS private key {key}: .*encrypted"):
        load_certificate_files(cert, key)


def test_key_that_does_not_match(tmp_path: Path, ca: MiniCA) -> None:
    cert, _ = write_pair(tmp_path, ca, "a.example.com")
    other = tmp_path / "other.pem"
    other.write_bytes(ca.issue("b.example.com").key_pem)
    with pytest.raises(CertificateError) as err:
        load_certificate_files(cert, other)
    assert err.value.message == (
        f"TLS private key {other}: the private key does not match the certificate in "
        f"TLS certificate {cert}"
    )


def test_key_openssl_refuses_is_caught_up_front(tmp_path: Path, ca: MiniCA) -> None:
    """RSA-1024 parses fine but OpenSSL's default security level refuses it."""
    from cryptography.hazmat.primitives.asymmetric import rsa

    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    issued = ca.issue("weak.example.com")
    cert_pem = (
        x509.CertificateBuilder()
        .subject_name(issued.cert.subject)
        .issuer_name(issued.cert.issuer)
        .public_key(weak.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(issued.cert.not_valid_before_utc)
        .not_valid_after(issued.cert.not_valid_after_utc)
        .sign(ca.key, hashes.SHA256())
        .public_bytes(serialization.Encoding.PEM)
    )
    cert, key = tmp_path / "weak.pem", tmp_path / "weak.key"
    cert.write_bytes(cert_pem)
    key.write_bytes(private_key_pem(weak))
    with pytest.raises(CertificateError) as err:
        load_certificate_files(cert, key)
    assert err.value.message.startswith(f"TLS certificate {cert}: OpenSSL refuses it with the key")
    assert "TOO_SMALL" in err.value.message


def test_host_matching_and_wildcards() -> None:
    assert host_matches("a.example.com", "A.Example.com.")
    assert host_matches("*.example.com", "x.example.com")
    assert not host_matches("*.example.com", "example.com")
    assert not host_matches("*.example.com", "a.b.example.com")
    assert not host_matches("*.example.com", ".example.com")


def test_renewal_point_is_30_days_or_a_third_of_the_lifetime(ca: MiniCA) -> None:
    long = ca.certified("a.test", days=90)
    assert long.not_after - long.renew_at() == dt.timedelta(days=30)
    short = ca.certified("a.test", days=6)
    assert short.not_after - short.renew_at() == dt.timedelta(days=2)
    assert long.not_after - long.renew_at(dt.timedelta(days=1)) == dt.timedelta(days=1)


# -- the ACME cache ------------------------------------------------------------------------------

DIRECTORY = "https://acme.example.test/directory"


def test_cache_dir_is_keyed_by_the_directory_url(tmp_path: Path) -> None:
    digest = hashlib.sha256(DIRECTORY.encode()).hexdigest()
    assert cache_dir_for(tmp_path, DIRECTORY) == tmp_path / digest
    assert CertStore(tmp_path, DIRECTORY).path != CertStore(tmp_path, DIRECTORY + "2").path


def test_account_key_is_created_once_and_persisted_privately(tmp_path: Path) -> None:
    store = CertStore(tmp_path / "certs", DIRECTORY)
    key = store.account_key()
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert isinstance(key.curve, ec.SECP256R1)
    path = store.path / ACCOUNT_KEY_NAME
    assert path.read_bytes().startswith(b"-----BEGIN EC PRIVATE KEY-----")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o700
    again = CertStore(tmp_path / "certs", DIRECTORY).account_key()
    assert again.private_numbers() == key.private_numbers()


def test_corrupt_account_key_is_an_error_naming_the_file(tmp_path: Path) -> None:
    store = CertStore(tmp_path, DIRECTORY)
    store.path.mkdir(parents=True)
    (store.path / ACCOUNT_KEY_NAME).write_text("garbage")
    with pytest.raises(CertificateError, match=re.escape(f"{ACCOUNT_KEY_NAME}: not a PEM")):
        store.account_key()


def test_certificate_round_trip_in_the_autocert_layout(tmp_path: Path, ca: MiniCA) -> None:
    store = CertStore(tmp_path, DIRECTORY)
    assert store.load("app.example.com") is None
    certified = ca.certified("app.example.com")
    path = store.save("App.Example.com", certified)
    assert path == store.path / "app.example.com"
    data = path.read_bytes()
    assert data.startswith(b"-----BEGIN EC PRIVATE KEY-----")
    assert data.index(b"PRIVATE KEY") < data.index(b"BEGIN CERTIFICATE")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    loaded = store.load("app.example.com")
    assert loaded == certified
    assert store.hosts() == ["app.example.com"]  # the account key is not a host
    assert [p.name for p in store.path.iterdir() if p.name.endswith(".tmp")] == []


def test_save_replaces_atomically(tmp_path: Path, ca: MiniCA) -> None:
    store = CertStore(tmp_path, DIRECTORY)
    first, second = ca.certified("a.test"), ca.certified("a.test")
    store.save("a.test", first)
    inode = (store.path / "a.test").stat().st_ino
    store.save("a.test", second)
    assert store.load("a.test") == second
    assert (store.path / "a.test").stat().st_ino != inode  # a new file renamed over the old
    assert sorted(p.name for p in store.path.iterdir()) == ["a.test"]


def test_corrupt_or_foreign_cache_entries_are_ignored(
    tmp_path: Path, ca: MiniCA, caplog: pytest.LogCaptureFixture
) -> None:
    store = CertStore(tmp_path, DIRECTORY)
    store.path.mkdir(parents=True)
    (store.path / "broken.test").write_text("not pem")
    assert store.load("broken.test") is None
    store.save("right.test", ca.certified("wrong.test"))
    assert store.load("right.test") is None
    assert "ignoring" in caplog.text


def test_reads_a_cache_entry_written_by_go_autocert_layout(tmp_path: Path, ca: MiniCA) -> None:
    """autocert writes SEC1 'EC PRIVATE KEY' then the leaf and the chain, in one file."""
    issued = ca.issue("go.test")
    sec1 = issued.key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    store = CertStore(tmp_path, DIRECTORY)
    store.path.mkdir(parents=True)
    (store.path / "go.test").write_bytes(sec1 + issued.cert_pem + ca.pem)
    loaded = store.load("go.test")
    assert loaded is not None
    assert loaded.names == ("go.test",)
    assert loaded.chain_pem == issued.cert_pem + ca.pem


@pytest.mark.parametrize("bad", ["../etc/passwd", "a/b", "", "*.example.com", "a..b", "-a.test"])
def test_host_names_that_could_escape_or_are_invalid_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        check_host_name(bad)


def test_host_names_are_normalised() -> None:
    assert check_host_name("App.Example.COM.") == "app.example.com"


def test_certified_key_from_combined_pem(ca: MiniCA) -> None:
    issued = ca.issue("c.test")
    combined = issued.key_pem + issued.cert_pem
    assert certified_key_from_pem(combined, combined).names == ("c.test",)


def test_permission_denied_is_named(
    tmp_path: Path, ca: MiniCA, monkeypatch: pytest.MonkeyPatch
) -> None:
    """(As root nothing is unreadable, so the OS error is simulated for this one.)"""
    cert, key = write_pair(tmp_path, ca, "a.example.com")
    real = Path.read_bytes

    def read_bytes(self: Path) -> bytes:
        if self == key:
            raise PermissionError(13, "Permission denied")
        return real(self)

    monkeypatch.setattr(Path, "read_bytes", read_bytes)
    with pytest.raises(CertificateError) as err:
        load_certificate_files(cert, key)
    assert err.value.message == f"TLS private key {key}: permission denied (cannot read it)"
