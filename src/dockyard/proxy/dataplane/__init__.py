"""The proxy's data plane: client connections, upstream pools, buffering, error pages, access log.

The one entry point the control plane calls is :func:`serve_http`::

    server = await serve_http(
        router,                      # dockyard.proxy.contract.Router
        host="0.0.0.0", port=80,     # or sock=<a bound listening socket>
        ssl=None,                    # ssl.SSLContext for an HTTPS listener (SNI: caller)
        log_port=80,                 # the "port" written in access-log lines (kamal-proxy: the
                                     # configured --http-port / --https-port)
        access_log=writer,           # Callable[[str], None]: receives one JSON line ("...\\n")
                                     # per request, exactly as kamal-proxy logs it; None = off
    )
    server.port                      # the bound port (useful with port=0)
    await server.shutdown(10.0)      # stop accepting, let in-flight requests finish, close

Given `sock=` (a listening socket) and no `ssl`, the listener accepts in batches
(`dockyard.proxy.listener.BatchListener`; libuv's `create_server` takes one connection per loop
turn); `dockyard-proxy run` serves its HTTP port that way.

For a listener whose connections are made elsewhere (the TLS acceptor, which hands each
connection's decrypted stream to a protocol once its handshake is done), use
`factory = connection_factory(router, tls=True, log_port=443, access_log=writer)`: a
`Callable[[], asyncio.Protocol]`, with `await factory.shutdown(10.0)`.

`AccessLogWriter(fd)` is a ready-made `access_log` that batches lines into one write per event
loop iteration (use `AccessLogWriter(1)` for stdout). Operational lines ("Error while proxying",
"Request cancelled due to draining", "Rejecting request due to expired pause") go to the
`dockyard.proxy` logger.

Layout: `server.py` (client Protocol, per-request `Exchange`, `serve_http`), `upstream.py`
(target connections and their keep-alive pools), `buffer.py` (memory-then-temp-file spill buffer),
`errorpages.py` (built-in and `NNN.html` pages), `accesslog.py`. HTTP framing and the header
rules live in the sans-I/O package `dockyard.proxy.http`.

What the data plane reads from `ServiceOptions.extra` (set by the control plane):
`has_readers`, `writer_affinity_timeout` (seconds) and `read_targets_accept_websockets`.

Deliberate differences from kamal-proxy: no `Accept-Encoding: gzip` is added upstream (Go's
transport adds it and then transparently decompresses; the client-visible result is the same
identity body); request targets must be origin-form (`/path`), absolute-form and `*` get 400;
a client half-close (EOF) cancels the request in flight, as Go's server does.
"""

from __future__ import annotations

from dockyard.proxy.dataplane.accesslog import AccessLogWriter
from dockyard.proxy.dataplane.server import (
    ConnectionFactory,
    ProxyServer,
    connection_factory,
    serve_http,
)

__all__ = [
    "AccessLogWriter",
    "ConnectionFactory",
    "ProxyServer",
    "connection_factory",
    "serve_http",
]
