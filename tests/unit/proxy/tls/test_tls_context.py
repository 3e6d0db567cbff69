"""SSLContext defaults and per-host selection, checked with real handshakes in memory."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from pathlib import Path

import pytest
from cryptography import x509
from tls_support import MiniCA, memory_handshake

from dockyard.errors import ProxyError
from dockyard.proxy.tls.challenges import tls_alpn01_certificate
from dockyard.proxy.tls.clienthello import ClientHello
from dockyard.proxy.tls.context import (
    TLS13_CIPHERSUITES,
    TlsSelector,
    make_server_context,
    set_tls13_ciphersuites,
)
from dockyard.proxy.tls.manager import CertManager

DIRECTORY = "https://acme.invalid/directory"  # never contacted: certificates come from the cache


def peer_names(obj: ssl.SSLObject) -> list[str]:
    der = obj.getpeercert(binary_form=True)
    assert der is not None
    cert = x509.load_der_x509_certificate(der)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return san.get_values_for_type(x509.DNSName)


def test_server_context_defaults(ca: MiniCA) -> None:
    ctx = make_server_context(ca.certified("a.test"))
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
    assert ctx.options & ssl.OP_NO_COMPRESSION
    client, server = memory_handshake(ca.client_context(), ctx, "a.test")
    assert server.selected_alpn_protocol() == "h2"
    assert client.version() == "TLSv1.3"
    old = ca.client_context(("http/1.1",))
    client, server = memory_handshake(old, ctx, "a.test")
    assert client.selected_alpn_protocol() == "http/1.1"


def _client(ca: MiniCA, suites: str | None = None) -> ssl.SSLContext:
    ctx = ca.client_context()
    if suites is not None:
        assert set_tls13_ciphersuites(ctx, suites)
    return ctx


def test_tls13_suites_in_go_s_order_whatever_the_client_prefers(ca: MiniCA) -> None:
    ctx = make_server_context(ca.certified("a.test"))
    tls13 = [c["name"] for c in ctx.get_ciphers() if c["protocol"] == "TLSv1.3"]
    assert tls13 == TLS13_CIPHERSUITES.split(":")
    # The stdlib client (OpenSSL's default order) lists AES-256-GCM first: the server's
    # preference wins.
    default_client = ca.client_context()
    first = next(c["name"] for c in default_client.get_ciphers() if c["protocol"] == "TLSv1.3")
    assert first == "TLS_AES_256_GCM_SHA384"
    client, server = memory_handshake(default_client, ctx, "a.test")
    assert server.cipher()[0] == client.cipher()[0] == "TLS_AES_128_GCM_SHA256"
    # A client without AES instructions lists ChaCha20 first, and gets it (as from Go).
    chacha_first = "TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_GCM_SHA256"
    client, server = memory_handshake(_client(ca, chacha_first), ctx, "a.test")
    assert server.cipher()[0] == "TLS_CHACHA20_POLY1305_SHA256"
    # A client that offers only AES-256 still gets a handshake.
    client, server = memory_handshake(_client(ca, "TLS_AES_256_GCM_SHA384"), ctx, "a.test")
    assert server.cipher()[0] == "TLS_AES_256_GCM_SHA384"


def test_set_tls13_ciphersuites_refuses_a_bad_list_and_changes_nothing() -> None:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    before = [c["name"] for c in ctx.get_ciphers()]
    assert not set_tls13_ciphersuites(ctx, "TLS_NO_SUCH_SUITE")
    assert [c["name"] for c in ctx.get_ciphers()] == before
    assert set_tls13_ciphersuites(ctx, "TLS_CHACHA20_POLY1305_SHA256")
    assert [c["name"] for c in ctx.get_ciphers() if c["protocol"] == "TLSv1.3"] == [
        "TLS_CHACHA20_POLY1305_SHA256"
    ]


def _tickets_after_handshake(
    client_ctx: ssl.SSLContext, server_ctx: ssl.SSLContext, session: ssl.SSLSession | None
) -> tuple[int, ssl.SSLObject]:
    """Run one TLS 1.3 handshake in memory; count the records the server writes once its side
    is done (its NewSessionTicket messages, one record each) and feed them to the client."""
    c_in, c_out, s_in, s_out = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
    client = client_ctx.wrap_bio(c_in, c_out, server_hostname="a.test", session=session)
    server = server_ctx.wrap_bio(s_in, s_out, server_side=True)
    for _ in range(10):
        with contextlib.suppress(ssl.SSLWantReadError):
            client.do_handshake()
        s_in.write(c_out.read())
        try:
            server.do_handshake()
        except ssl.SSLWantReadError:
            c_in.write(s_out.read())
            continue
        after = s_out.read()
        records, offset = 0, 0
        while offset < len(after):
            records += 1
            offset += 5 + int.from_bytes(after[offset + 3 : offset + 5], "big")
        c_in.write(after)
        with contextlib.suppress(ssl.SSLWantReadError):
            client.read(1)  # takes in the tickets
        return records, client
    raise AssertionError("handshake did not finish")


def test_one_session_ticket_per_handshake_and_resumption_works(ca: MiniCA) -> None:
    # OpenSSL sends two TLS 1.3 tickets per handshake; Go (kamal-proxy, Caddy) sends one, and a
    # ticket costs the server an encryption per connection (about 3% of a handshake-per-request
    # load in bench/proxy.py).
    ctx = make_server_context(ca.certified("a.test"))
    client_ctx = ca.client_context()
    tickets, first = _tickets_after_handshake(client_ctx, ctx, None)
    assert tickets == 1
    assert first.version() == "TLSv1.3" and not first.session_reused
    session = first.session
    assert session is not None and session.has_ticket
    _, second = _tickets_after_handshake(client_ctx, ctx, session)
    assert second.session_reused


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion:DeprecationWarning")
def test_tls_1_1_clients_are_refused(ca: MiniCA) -> None:
    # OpenSSL's security level alone refuses TLS 1.1 on both sides: lower it everywhere, so
    # that only the server context's version floor can refuse.
    weak = "DEFAULT:@SECLEVEL=0"
    client_ctx = ca.client_context()
    client_ctx.set_ciphers(weak)
    client_ctx.minimum_version = ssl.TLSVersion.TLSv1
    client_ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    permissive = make_server_context(ca.certified("a.test"))
    permissive.set_ciphers(weak)
    permissive.minimum_version = ssl.TLSVersion.TLSv1
    client, _ = memory_handshake(client_ctx, permissive, "a.test")
    assert client.version() == "TLSv1.1"  # this client does speak TLS 1.1
    ctx = make_server_context(ca.certified("a.test"))
    ctx.set_ciphers(weak)
    with pytest.raises(ssl.SSLError, match=r"VERSION|PROTOCOL"):
        memory_handshake(client_ctx, ctx, "a.test")


def served(selector: TlsSelector, name: str | None, alpn: tuple[str, ...] = ()) -> ssl.SSLContext:
    """The context the acceptor would hand uvloop for this ClientHello (it must exist)."""
    ctx = selector.context_for(name, alpn)
    assert ctx is not None, name
    return ctx


def test_the_custom_certificate_is_picked_per_host(ca: MiniCA) -> None:
    selector = TlsSelector()
    one, two = ca.certified("one.test"), ca.certified("*.two.test")
    selector.configure(certificates={"one.test": one, "*.two.test": two})
    client, _ = memory_handshake(ca.client_context(), served(selector, "one.test"), "one.test")
    assert peer_names(client) == ["one.test"]
    wildcard = served(selector, "api.two.test")
    client, server = memory_handshake(ca.client_context(), wildcard, "api.two.test")
    assert peer_names(client) == ["*.two.test"]
    assert server.selected_alpn_protocol() == "h2"
    assert selector.context_for("three.test") is None
    assert selector.context_for("a.b.two.test") is None  # a wildcard covers one label only


def test_choose_decides_custom_certificates_at_once_as_context_for_does(ca: MiniCA) -> None:
    selector = TlsSelector()
    one, two = ca.certified("one.test"), ca.certified("*.two.test")
    selector.configure(certificates={"one.test": one, "*.two.test": two}, default_host="one.test")
    hellos = [
        ClientHello("one.test", ("h2", "http/1.1")),
        ClientHello("api.two.test", ()),
        ClientHello("three.test", ("h2",)),
        ClientHello(None, ("http/1.1",)),
        ClientHello("one.test", ("acme-tls/1",)),  # a validator: no challenge here, refused
    ]
    for hello in hellos:
        assert selector.choose(hello) == (True, selector.context_for(hello.sni, hello.alpn))
    assert selector.choose(hellos[0])[1] is served(selector, "one.test")
    assert selector.choose(hellos[2]) == (True, None)
    assert selector.choose(hellos[4]) == (True, None)


def test_no_sni_uses_the_default_host(ca: MiniCA, caplog: pytest.LogCaptureFixture) -> None:
    selector = TlsSelector()
    selector.configure(certificates={"one.test": ca.certified("one.test")}, default_host="one.test")
    client_ctx = ca.client_context()
    client_ctx.check_hostname = False
    client, _ = memory_handshake(client_ctx, served(selector, None), None)
    assert peer_names(client) == ["one.test"]
    assert "without SNI" in caplog.text
    selector.configure(certificates={"one.test": ca.certified("one.test")})
    assert selector.context_for(None) is None


def test_reconfigure_replaces_everything(ca: MiniCA) -> None:
    selector = TlsSelector()
    selector.configure(certificates={"one.test": ca.certified("one.test")})
    selector.configure(certificates={"two.test": ca.certified("two.test")})
    assert selector.context_for("one.test") is None
    assert selector.context_for("two.test") is not None


def test_a_refused_configuration_leaves_the_old_one_in_place(ca: MiniCA) -> None:
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    from dockyard.proxy.tls.certs import certified_key_from_pem, private_key_pem

    weak_key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    good = ca.issue("weak.test")
    weak_cert = (
        x509.CertificateBuilder()
        .subject_name(good.cert.subject)
        .issuer_name(good.cert.issuer)
        .public_key(weak_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(good.cert.not_valid_before_utc)
        .not_valid_after(good.cert.not_valid_after_utc)
        .sign(ca.key, hashes.SHA256())
    )
    weak = certified_key_from_pem(
        weak_cert.public_bytes(serialization.Encoding.PEM), private_key_pem(weak_key)
    )
    selector = TlsSelector()
    selector.configure(certificates={"one.test": ca.certified("one.test")})
    with pytest.raises(ProxyError, match=r"TLS certificate for weak\.test cannot be used"):
        selector.configure(certificates={"weak.test": weak})
    assert selector.context_for("one.test") is not None
    assert selector.context_for("weak.test") is None


def test_wildcard_hosts_are_refused_for_automatic_tls(tmp_path: Path) -> None:
    selector = TlsSelector(CertManager(DIRECTORY, tmp_path))
    with pytest.raises(ProxyError) as err:
        selector.configure(acme_hosts=["a.test", "*.example.com"])
    assert err.value.message == "automatic TLS does not support wildcards"
    with pytest.raises(ProxyError, match="needs an ACME certificate manager"):
        TlsSelector().configure(acme_hosts=["a.test"])


def test_selector_becomes_the_acme_host_policy(tmp_path: Path) -> None:
    manager = CertManager(DIRECTORY, tmp_path)
    selector = TlsSelector(manager)
    selector.configure(acme_hosts=["a.test"])
    assert manager.host_policy is not None
    assert manager.host_policy("a.test") and not manager.host_policy("b.test")


def test_acme_certificate_from_the_cache_serves_after_prepare(tmp_path: Path, ca: MiniCA) -> None:
    manager = CertManager(DIRECTORY, tmp_path)
    manager.store.save("acme.test", ca.certified("acme.test"))
    selector = TlsSelector(manager)
    selector.configure(acme_hosts=["acme.test"])
    assert selector.context_for("acme.test") is None  # not loaded yet: nothing to serve
    ctx = asyncio.run(selector.prepare(ClientHello("acme.test", ("h2",))))
    assert ctx is not None
    client, _ = memory_handshake(ca.client_context(), ctx, "acme.test")
    assert peer_names(client) == ["acme.test"]
    # Now also without waiting (context_for), and the context is reused.
    assert selector.context_for("acme.test") is ctx
    assert asyncio.run(selector.prepare(ClientHello("other.test", ("h2",)))) is None


def test_validator_gets_the_challenge_certificate_only(tmp_path: Path, ca: MiniCA) -> None:
    manager = CertManager(DIRECTORY, tmp_path)
    selector = TlsSelector(manager)
    selector.configure(acme_hosts=["acme.test"])
    validator = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    validator.check_hostname = False
    validator.verify_mode = ssl.CERT_NONE
    validator.set_alpn_protocols(["acme-tls/1"])
    hello = ClientHello("acme.test", ("acme-tls/1",))
    assert asyncio.run(selector.prepare(hello)) is None  # no challenge pending: refuse
    manager.board.put_tls_alpn01("acme.test", tls_alpn01_certificate("acme.test", "tok.thumb"))
    ctx = asyncio.run(selector.prepare(hello))
    assert ctx is not None
    client, server = memory_handshake(validator, ctx, "acme.test")
    assert server.selected_alpn_protocol() == "acme-tls/1"
    der = client.getpeercert(binary_form=True)
    assert der is not None
    cert = x509.load_der_x509_certificate(der)
    assert cert.extensions.get_extension_for_oid(x509.ObjectIdentifier("1.3.6.1.5.5.7.1.31"))
    # A browser asking for the same host while validation runs does not get it from prepare
    # (it would wait for the real certificate instead): context_for offers nothing yet.
    assert selector.context_for("acme.test", ("h2", "http/1.1")) is None
    # Asked with the validator's ALPN offer, context_for gives it at once.
    ctx = served(selector, "acme.test", ("acme-tls/1",))
    client, server = memory_handshake(validator, ctx, "acme.test")
    assert server.selected_alpn_protocol() == "acme-tls/1"
