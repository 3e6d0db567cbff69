"""TLS for dockyard-proxy: automatic HTTPS (ACME), custom certificates, SNI, ALPN.

A self-contained package: it depends on nothing else in the proxy, and the proxy wires it in
(one exception: ``TlsAcceptor`` given the data plane's factory serves ALPN ``h2`` with
``dataplane.h2conn``, imported lazily).
Importing it is cheap; ``acme``/``requests`` are imported only when a certificate is issued.

Modules
-------
``clienthello``  pure ClientHello reader: ``parse_client_hello(bytes)`` →
                 ``ClientHello(sni, alpn)`` | ``NEED_MORE`` | ``None`` (not TLS).
``certs``        ``CertifiedKey`` values; ``load_certificate_files(cert, key)`` for
                 ``--tls-certificate-path``/``--tls-private-key-path`` (errors name the file).
``store``        the ACME cache on the state volume (kamal-proxy/autocert layout, atomic writes).
``challenges``   HTTP-01 tokens and TLS-ALPN-01 certificates being validated (``ChallengeBoard``).
``manager``      ``CertManager``: on-demand issuance, challenge fallback, renewal.
``context``      ``TlsSelector``: per-host ``ssl.SSLContext`` choice; ``make_server_context``.
``transport``    ``TlsConnection``: TLS over a plain TCP transport (ClientHello, context,
                 handshake, then the transport of the HTTP protocol).
``accept``       ``TlsAcceptor``: the HTTPS listener (batch accept, certificate choice).

Wiring (for the control-plane and data-plane engineers)
--------------------------------------------------------
At ``run``::

    from dockyard.proxy.control.options import ACME_DIRECTORY
    from dockyard.proxy.tls.manager import CertManager
    from dockyard.proxy.tls.context import TlsSelector
    from dockyard.proxy.tls.accept import TlsAcceptor

    manager = CertManager(acme_directory or ACME_DIRECTORY,
                          acme_cache_path or data_dir / "certs")      # SSL_CERT_FILE honoured
    selector = TlsSelector(manager)          # ALPN h2 + http/1.1 (DEFAULT_ALPN)
    # selector.acme_allows becomes manager.host_policy: only declared hosts get certificates.

Control plane, on deploy of a service with ``--tls``:

* with ``--tls-certificate-path``/``--tls-private-key-path``: call
  ``certs.load_certificate_files(cert, key)`` *before* changing anything; it raises
  ``CertificateError`` (a ``ProxyError``) naming the file, and the deploy fails with the old
  service untouched. The ``CertifiedKey`` goes to every host of the service.
* otherwise (automatic TLS): ``context.check_acme_hosts(hosts)`` raises
  ``ProxyError("automatic TLS does not support wildcards")`` for ``*.`` hosts. No certificate is
  requested at deploy: issuance happens on the first TLS handshake for the host.
* after every change (deploy, remove, restore from state) give the whole picture at once::

      selector.configure(acme_hosts=[...], certificates={host: certified, ...},
                         default_host=<first host of the first TLS service>)

Data plane, HTTPS listener (port 443): accept sockets yourself instead of
``loop.create_server(ssl=...)``, because the certificate may have to be obtained before the
handshake can start (an ``sni_callback`` cannot await)::

    acceptor = TlsAcceptor(selector, connection_factory(router, tls=True, ...))
    tg.create_task(acceptor.serve(listen_sock))   # read ClientHello, await ensure, handshake
    # ALPN "h2" -> dataplane.h2conn on the same plane, anything else -> the HTTP/1.1 protocol

Why not ``create_server(ssl=...)`` or ``start_tls``: the context is chosen from the
ClientHello, possibly after awaiting a certificate, which OpenSSL's callbacks cannot do; and
doing the TLS in ``transport`` costs less per connection (see its docstring). Plain HTTP sent to
the HTTPS port gets Go's ``400 Client sent an HTTP request to an HTTPS server.``; anything else
that is not a ClientHello, an unknown name, or a failed issuance closes the connection.

Data plane, HTTP listener (port 80) and the HTTPS handler both, before routing a request::

    body = manager.http01_response(host_header, path)   # Host with or without :port
    if body is not None: reply 200, Content-Type: text/plain, body   (before any TLS redirect)

The transport handed to the protocol after the handshake is a ``TlsConnection``, which is
*not* an ``asyncio.Transport`` subclass (nor is uvloop's): protocols must not
``isinstance``-check it. ``transport.get_extra_info("ssl_object").selected_alpn_protocol()``
tells ``h2`` from ``http/1.1``.

Renewal: ``tg.create_task(manager.run_renewals())`` (hourly ``renew_due()``); ``ensure`` and
``prepare`` also start a background renewal when they meet a certificate that is due. On
shutdown, ``await manager.aclose()``.
"""

from __future__ import annotations
