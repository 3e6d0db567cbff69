"""`ssl.SSLContext` building and per-host certificate selection (SNI).

:class:`TlsSelector` maps a ClientHello (server name + offered ALPN protocols) to the context
that must serve it:

1. ALPN offer ``acme-tls/1`` (a TLS-ALPN-01 validator) → the pending challenge certificate for
   that host, with ALPN ``acme-tls/1`` only; nothing else is ever served to a validator.
2. a custom certificate (``--tls-certificate-path``) configured for the host (exact name, then a
   one-label wildcard host);
3. an ACME host → the certificate the :class:`~dockyard.proxy.tls.manager.CertManager` holds;
4. anything else → ``None``: refuse the handshake (kamal-proxy fails it for an unknown SNI).

No SNI means the configured ``default_host`` (kamal-proxy: the first host of the first
TLS-enabled service).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import ssl
import sys
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Final

from dockyard.errors import ProxyError
from dockyard.proxy.tls.certs import CertifiedKey
from dockyard.proxy.tls.challenges import ACME_TLS_ALPN_PROTOCOL, host_without_port
from dockyard.proxy.tls.clienthello import ClientHello

if TYPE_CHECKING:
    from dockyard.proxy.tls.manager import CertManager

__all__ = [
    "DEFAULT_ALPN",
    "WILDCARD_ERROR",
    "TlsSelector",
    "check_acme_hosts",
    "load_certified",
    "make_server_context",
]

log = logging.getLogger("dockyard.proxy.tls")

#: kamal-proxy's HTTPS listener offers HTTP/2 and HTTP/1.1 (plus acme-tls/1 for validators).
DEFAULT_ALPN: Final = ("h2", "http/1.1")
WILDCARD_ERROR: Final = "automatic TLS does not support wildcards"


def make_server_context(
    certified: CertifiedKey | None = None, *, alpn: Sequence[str] = DEFAULT_ALPN
) -> ssl.SSLContext:
    """A server context with modern defaults: TLS 1.2 minimum, OpenSSL's default cipher list
    (forward-secret AEAD), no compression, no renegotiation, the given ALPN protocols.

    One TLS 1.3 session ticket per handshake, as Go's servers (kamal-proxy, Caddy) send, instead
    of OpenSSL's two: each ticket is an encryption the server pays on every new connection.

    TLS 1.3 cipher suites in Go's order (:data:`TLS13_CIPHERSUITES`, AES-128-GCM first) rather
    than OpenSSL's (AES-256-GCM with SHA-384 first), and ChaCha20 first for clients that list it
    first (those without AES instructions), as Go does: measured in-process, the server's side
    of a resumed handshake costs 12% less with AES-128-GCM/SHA-256."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    ctx.options |= ssl.OP_CIPHER_SERVER_PREFERENCE | OP_PRIORITIZE_CHACHA
    ctx.num_tickets = 1
    set_tls13_ciphersuites(ctx, TLS13_CIPHERSUITES)
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    if certified is not None:
        load_certified(ctx, certified)
    return ctx


#: TLS 1.3 cipher suites, most preferred first: Go's order on CPUs with AES instructions
#: (the three suites OpenSSL enables by default, reordered).
TLS13_CIPHERSUITES: Final = (
    "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"
)
#: OpenSSL's SSL_OP_PRIORITIZE_CHACHA (not exported by the ssl module): with server preference,
#: ChaCha20-Poly1305 goes first for a client that lists it first.
OP_PRIORITIZE_CHACHA: Final = 1 << 21


@functools.cache
def _ciphersuites_setter() -> Callable[[int, bytes], int] | None:
    """OpenSSL's ``SSL_CTX_set_ciphersuites`` from the libssl the ``ssl`` module uses, or None."""
    if sys.implementation.name != "cpython":
        return None
    try:
        import _ssl
        import ctypes

        func = ctypes.CDLL(_ssl.__file__).SSL_CTX_set_ciphersuites
    except (ImportError, OSError, AttributeError):
        return None
    func.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    func.restype = ctypes.c_int
    return func


def set_tls13_ciphersuites(ctx: ssl.SSLContext, suites: str) -> bool:
    """Set the TLS 1.3 cipher suites of `ctx` (OpenSSL syntax, most preferred first).

    The ``ssl`` module has no API for them (``set_ciphers`` is TLS 1.2 and older), so this
    calls OpenSSL's ``SSL_CTX_set_ciphersuites`` through ctypes on the context's ``SSL_CTX``,
    which CPython keeps as the first field after the object header. The result is checked
    with ``get_ciphers()``. False (and `ctx` unchanged) where that is not possible: another
    Python implementation, an ``_ssl`` that does not export the function, a rejected list.
    """
    setter = _ciphersuites_setter()
    if setter is None:
        return False
    import ctypes

    address = ctypes.c_void_p.from_address(id(ctx) + object.__basicsize__).value
    if not address or setter(address, suites.encode()) != 1:
        return False
    wanted = suites.split(":")
    got = [c["name"] for c in ctx.get_ciphers() if c["protocol"] == "TLSv1.3"]
    return got == wanted


def load_certified(ctx: ssl.SSLContext, certified: CertifiedKey) -> None:
    """Load a certificate chain and key held in memory into ``ctx``.

    The stdlib can only load from files, so the PEM goes through a private (0700) temporary
    directory that is removed at once.
    """
    with tempfile.TemporaryDirectory(prefix="dockyard-tls-") as tmp:
        cert_file = Path(tmp) / "chain.pem"
        key_file = Path(tmp) / "key.pem"
        for path, data in ((cert_file, certified.chain_pem), (key_file, certified.key_pem)):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
        ctx.load_cert_chain(cert_file, key_file)


def check_acme_hosts(hosts: Iterable[str]) -> list[str]:
    """Normalise the hosts of a service with automatic TLS; refuse wildcards with
    kamal-proxy's message (there is no DNS-01 challenge)."""
    out = [host_without_port(host) for host in hosts]
    if any("*" in host for host in out):
        raise ProxyError(WILDCARD_ERROR)
    return out


class _ContextCache:
    """One SSLContext per CertifiedKey value, rebuilt when the certificate changes."""

    __slots__ = ("_alpn", "_entries")

    def __init__(self, alpn: Sequence[str]) -> None:
        self._alpn = tuple(alpn)
        self._entries: dict[str, tuple[CertifiedKey, ssl.SSLContext]] = {}

    def lookup(self, host: str, certified: CertifiedKey) -> ssl.SSLContext | None:
        entry = self._entries.get(host)
        return entry[1] if entry is not None and entry[0] is certified else None

    def get(self, host: str, certified: CertifiedKey) -> ssl.SSLContext:
        ctx = self.lookup(host, certified)
        if ctx is not None:
            return ctx
        ctx = make_server_context(certified, alpn=self._alpn)
        self._entries[host] = (certified, ctx)
        return ctx

    def discard(self, host: str) -> None:
        self._entries.pop(host, None)


class TlsSelector:
    """Per-host TLS contexts for the HTTPS listener (see the module docstring).

    The control plane calls :meth:`configure` with the full picture whenever services change;
    the data plane calls :meth:`prepare` (async, may issue a certificate) and then uses the
    returned context; :meth:`context_for` gives what is available now.
    """

    def __init__(
        self, manager: CertManager | None = None, *, alpn: Sequence[str] = DEFAULT_ALPN
    ) -> None:
        self.manager = manager
        self.alpn = tuple(alpn)
        self._acme_hosts: frozenset[str] = frozenset()
        self._custom: dict[str, ssl.SSLContext] = {}
        self._default_host: str | None = None
        self._acme_contexts = _ContextCache(self.alpn)
        self._challenge_contexts = _ContextCache((ACME_TLS_ALPN_PROTOCOL,))
        if manager is not None and manager.host_policy is None:
            manager.host_policy = self.acme_allows

    # -- configuration (control plane) ------------------------------------------------------

    def configure(
        self,
        *,
        acme_hosts: Iterable[str] = (),
        certificates: Mapping[str, CertifiedKey] | None = None,
        default_host: str | None = None,
    ) -> None:
        """Replace the whole configuration at once.

        ``acme_hosts``: hosts of services with automatic TLS (wildcards raise ProxyError
        ``automatic TLS does not support wildcards``). ``certificates``: host (or ``*.`` host)
        → custom certificate, as loaded with
        :func:`~dockyard.proxy.tls.certs.load_certificate_files`. Contexts are built here, so a
        certificate the stdlib refuses fails now, with the old configuration still in place.
        """
        acme = frozenset(check_acme_hosts(acme_hosts))
        if acme and self.manager is None:
            raise ProxyError("automatic TLS needs an ACME certificate manager")
        custom: dict[str, ssl.SSLContext] = {}
        by_value: dict[int, ssl.SSLContext] = {}
        for host, certified in (certificates or {}).items():
            ctx = by_value.get(id(certified))
            if ctx is None:
                try:
                    ctx = make_server_context(certified, alpn=self.alpn)
                except ssl.SSLError as exc:
                    raise ProxyError(f"TLS certificate for {host} cannot be used: {exc}") from exc
                by_value[id(certified)] = ctx
            custom[host_without_port(host)] = ctx
        self._acme_hosts = acme
        self._custom = custom
        self._default_host = host_without_port(default_host) if default_host else None

    def acme_allows(self, host: str) -> bool:
        """The ACME host policy: only hosts a TLS service with automatic TLS declared."""
        return host_without_port(host) in self._acme_hosts

    # -- selection (data plane) -------------------------------------------------------------

    def _host(self, sni: str | None) -> str | None:
        if sni:
            return host_without_port(sni)
        if self._default_host is not None:
            log.warning("TLS handshake without SNI, using default host %s", self._default_host)
        return self._default_host

    def _custom_for(self, host: str) -> ssl.SSLContext | None:
        ctx = self._custom.get(host)
        if ctx is None and "." in host:
            ctx = self._custom.get("*." + host.partition(".")[2])
        return ctx

    def context_for(self, sni: str | None, alpn: Sequence[str] = ()) -> ssl.SSLContext | None:
        """The context for a ClientHello, from what is available now (never issues)."""
        host = self._host(sni)
        if host is None:
            return None
        settled, ctx = self._settled(host, alpn)
        if settled:
            return ctx
        certified = self._acme().cached(host)
        return self._acme_contexts.get(host, certified) if certified is not None else None

    def _settled(self, host: str, alpn: Sequence[str]) -> tuple[bool, ssl.SSLContext | None]:
        """``(True, context)`` when `host`'s context does not come from the ACME manager: a
        validator's challenge, a custom certificate, or none (``None``: the host has no TLS);
        ``(False, None)`` for an ACME host's own certificate. In that order of precedence."""
        if ACME_TLS_ALPN_PROTOCOL in alpn:
            return True, self._challenge_context(host)
        custom = self._custom_for(host)
        if custom is not None or host not in self._acme_hosts:
            return True, custom
        return False, None

    def _acme(self) -> CertManager:
        manager = self.manager
        assert manager is not None  # configure() takes ACME hosts only with a manager
        return manager

    def _challenge_context(self, host: str) -> ssl.SSLContext | None:
        if self.manager is None:
            return None
        certified = self.manager.board.tls_alpn01(host)
        if certified is None:
            self._challenge_contexts.discard(host)
            return None
        return self._challenge_contexts.get(host, certified)

    def choose(self, hello: ClientHello) -> tuple[bool, ssl.SSLContext | None]:
        """The context for a ClientHello if it can be had now: ``(True, context)``, where
        ``None`` means refuse the connection; ``(False, None)`` when :meth:`prepare` must
        obtain it (an ACME host whose certificate is not issued or not loaded yet)."""
        host = self._host(hello.sni)
        if host is None:
            return True, None
        settled, ctx = self._settled(host, hello.alpn)
        if settled:
            return True, ctx
        manager = self._acme()
        certified = manager.cached(host)
        if certified is None:
            return False, None
        ctx = self._acme_contexts.lookup(host, certified)
        if ctx is None:
            return False, None
        manager.renew_if_due(host)
        return True, ctx

    async def prepare(self, hello: ClientHello) -> ssl.SSLContext | None:
        """The context for a ClientHello, obtaining an ACME certificate first when the
        host has none yet (the first TLS request for that host waits for the issuance).

        ``None`` means: refuse the connection (unknown host, or issuance failed; the failure
        is logged by the manager).
        """
        host = self._host(hello.sni)
        if host is None:
            return None
        settled, ctx = self._settled(host, hello.alpn)
        if settled:
            return ctx
        manager = self._acme()
        certified = manager.cached(host)
        if certified is not None:
            manager.renew_if_due(host)
        else:
            try:
                certified = await manager.ensure(host)
            except ProxyError as exc:
                log.warning("no certificate for %s: %s", host, exc.message)
                return None
        ctx = self._acme_contexts.lookup(host, certified)
        if ctx is None:
            # Building a context writes and loads files: keep it off the event loop.
            ctx = await asyncio.to_thread(self._acme_contexts.get, host, certified)
        return ctx
