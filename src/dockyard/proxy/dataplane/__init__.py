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

`AccessLogWriter(fd)` is a ready-made `access_log` that batches lines into one write per event
loop iteration (use `AccessLogWriter(1)` for stdout).
"""

from __future__ import annotations

from dockyard.proxy.dataplane.accesslog import AccessLogWriter
from dockyard.proxy.dataplane.server import ProxyServer, serve_http

__all__ = ["AccessLogWriter", "ProxyServer", "serve_http"]
