"""HTTP-01 responses and the TLS-ALPN-01 challenge certificate."""

from __future__ import annotations

import hashlib

import pytest
from cryptography import x509

from dockyard.proxy.tls.challenges import (
    ID_PE_ACME_IDENTIFIER,
    ChallengeBoard,
    host_without_port,
    tls_alpn01_certificate,
)

TOKEN = "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA"
KEY_AUTH = TOKEN + ".9jg46WB3rR_AHD-EBXdN7cBkH1WOu0tA3M9fm21mqTI"


@pytest.fixture
def board() -> ChallengeBoard:
    board = ChallengeBoard()
    board.put_http01("app.example.com", TOKEN, KEY_AUTH)
    return board


@pytest.mark.parametrize(
    "host",
    ["app.example.com", "app.example.com:80", "APP.example.com:8080", "app.example.com."],
)
def test_http01_is_served_with_or_without_a_port(board: ChallengeBoard, host: str) -> None:
    path = f"/.well-known/acme-challenge/{TOKEN}"
    assert board.http01_response(host, path) == KEY_AUTH.encode()


def test_http01_query_string_is_ignored(board: ChallengeBoard) -> None:
    path = f"/.well-known/acme-challenge/{TOKEN}?x=1"
    assert board.http01_response("app.example.com", path) == KEY_AUTH.encode()


@pytest.mark.parametrize(
    ("host", "path"),
    [
        ("other.example.com", f"/.well-known/acme-challenge/{TOKEN}"),  # token of another host
        ("app.example.com", "/.well-known/acme-challenge/other-token"),
        ("app.example.com", "/.well-known/acme-challenge/"),
        ("app.example.com", f"/.well-known/acme-challenge/{TOKEN}/x"),
        ("app.example.com", f"/{TOKEN}"),
        ("app.example.com", "/"),
    ],
)
def test_http01_everything_else_is_not_ours(board: ChallengeBoard, host: str, path: str) -> None:
    assert board.http01_response(host, path) is None


def test_http01_token_is_gone_once_dropped(board: ChallengeBoard) -> None:
    board.drop_http01("app.example.com", TOKEN)
    path = f"/.well-known/acme-challenge/{TOKEN}"
    assert board.http01_response("app.example.com", path) is None
    assert board.pending_hosts() == set()


@pytest.mark.parametrize(
    ("raw", "host"),
    [("a.test:443", "a.test"), ("[::1]:8443", "::1"), ("[::1]", "::1"), ("::1", "::1"),
     ("A.Test.", "a.test")],
)  # fmt: skip
def test_host_without_port(raw: str, host: str) -> None:
    assert host_without_port(raw) == host


def test_tls_alpn01_certificate_follows_rfc8737() -> None:
    certified = tls_alpn01_certificate("app.example.com", KEY_AUTH)
    cert = x509.load_pem_x509_certificate(certified.chain_pem)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["app.example.com"]
    ext = cert.extensions.get_extension_for_oid(ID_PE_ACME_IDENTIFIER)
    assert ext.critical
    assert isinstance(ext.value, x509.UnrecognizedExtension)
    digest = hashlib.sha256(KEY_AUTH.encode()).digest()
    assert ext.value.value == b"\x04\x20" + digest  # DER OCTET STRING of SHA-256(key auth)
    assert certified.names == ("app.example.com",)


def test_tls_alpn01_board_entry(board: ChallengeBoard) -> None:
    certified = tls_alpn01_certificate("app.example.com", KEY_AUTH)
    board.put_tls_alpn01("App.example.com", certified)
    assert board.tls_alpn01("app.example.com") is certified
    assert board.tls_alpn01("other.example.com") is None
    board.drop_tls_alpn01("app.example.com")
    assert board.tls_alpn01("app.example.com") is None
