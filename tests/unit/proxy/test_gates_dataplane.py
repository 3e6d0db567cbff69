"""Access gates through the real data plane on loopback: a real `ProxyRouter` deployed with the
access options (as the deploy RPC does), `serve_http`, a real origin, raw HTTP clients."""

from __future__ import annotations

import base64
import json
from typing import Any

import bcrypt
import pytest
from dataplane_support import get, origin_server, request, run, start_proxy

from dockyard.errors import ProxyError
from dockyard.proxy.control.health import ProbeResult
from dockyard.proxy.control.options import (
    DeployRequest,
    HealthCheckConfig,
    ServiceConfig,
    TargetAddress,
)
from dockyard.proxy.control.router import ProxyRouter
from dockyard.proxy.control.rpc import dispatch

HASH = bcrypt.hashpw(b"open sesame", bcrypt.gensalt(4)).decode()


async def healthy(target: TargetAddress, config: HealthCheckConfig) -> ProbeResult:
    return ProbeResult(url=f"http://{target.name}{config.path}", status=200)


def auth(user: str, password: str) -> str:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return f"Authorization: Basic {token}\r\n"


def headers_seen(body: bytes) -> dict[str, str]:
    info: dict[str, Any] = json.loads(body)
    return {k.lower(): v for k, v in info["headers"]}


def test_basic_auth_end_to_end() -> None:
    with origin_server() as origin:

        async def go() -> None:
            router = ProxyRouter(probe=healthy)
            config = ServiceConfig(
                hosts=("app.test",), basic_auth_user="admin", basic_auth_password_hash=HASH
            )
            await dispatch(
                router,
                "deploy",
                DeployRequest("web", (f"127.0.0.1:{origin.port}",), config=config).to_json(),
            )
            server, lines = await start_proxy(router)
            missing = await request(server.port, get())
            wrong = await request(server.port, get(extra=auth("admin", "nope")))
            health = await request(server.port, get("/up"))  # not exempt for clients
            ok = await request(server.port, get(extra=auth("admin", "open sesame") + "X-A: 1\r\n"))
            await server.shutdown(1)
            await router.close()
            for refused in (missing, wrong, health):
                assert refused.status == 401
                assert refused.header("WWW-Authenticate") == 'Basic realm="web", charset="UTF-8"'
                assert b"401 Unauthorized" in refused.body
            assert ok.status == 200
            seen = headers_seen(ok.body)
            assert seen["x-a"] == "1" and "authorization" not in seen
            # The origin saw only the accepted request; the log has every one, no secret.
            assert [r[1] for r in origin.requests] == ["/echo"]
            assert [json.loads(x)["status"] for x in lines] == [401, 401, 401, 200]
            assert "open sesame" not in "".join(lines) and "Basic" not in "".join(lines)

        run(go())


def test_allowlist_and_trusted_client_ip_header_end_to_end() -> None:
    """The allowlist sees the address from CF-Connecting-IP (first valid one, garbage ignored,
    the TCP peer as fallback), and that address is what X-Forwarded-For carries."""
    with origin_server() as origin:

        async def go() -> None:
            router = ProxyRouter(probe=healthy)
            config = ServiceConfig(
                allow_ips=("203.0.113.0/24", "127.0.0.1"),
                client_ip_header="CF-Connecting-IP",
                forward_headers=True,
            )
            await router.deploy(DeployRequest("web", (f"127.0.0.1:{origin.port}",), config=config))
            server, lines = await start_proxy(router)
            allowed = await request(
                server.port,
                get(extra="CF-Connecting-IP: junk, 203.0.113.9\r\nX-Forwarded-For: 6.6.6.6\r\n"),
            )
            refused = await request(server.port, get(extra="CF-Connecting-IP: 198.51.100.1\r\n"))
            fallback = await request(server.port, get(extra="CF-Connecting-IP: nonsense\r\n"))
            no_header = await request(server.port, get())
            await server.shutdown(1)
            await router.close()
            assert allowed.status == 200
            # forward_headers keeps the client's XFF and appends the trusted address.
            assert headers_seen(allowed.body)["x-forwarded-for"] == "6.6.6.6, 203.0.113.9"
            assert refused.status == 403 and b"403 Forbidden" in refused.body
            assert fallback.status == 200
            assert headers_seen(fallback.body)["x-forwarded-for"] == "127.0.0.1"
            assert no_header.status == 200
            assert len(origin.requests) == 3
            # The access log's remote_addr is the trusted address, not the client's XFF.
            remote = [json.loads(line)["remote_addr"] for line in lines]
            assert remote == ["203.0.113.9", "198.51.100.1", "127.0.0.1", "127.0.0.1"]

        run(go())


def test_a_service_without_access_options_has_no_gate_and_ignores_the_header() -> None:
    with origin_server() as origin:

        async def go() -> None:
            router = ProxyRouter(probe=healthy)
            await router.deploy(
                DeployRequest(
                    "web",
                    (f"127.0.0.1:{origin.port}",),
                    config=ServiceConfig(forward_headers=True),
                )
            )
            assert router.service("web").options.gate is None
            server, _ = await start_proxy(router)
            resp = await request(server.port, get(extra="CF-Connecting-IP: 203.0.113.9\r\n"))
            await server.shutdown(1)
            await router.close()
            assert resp.status == 200
            assert headers_seen(resp.body)["x-forwarded-for"] == "127.0.0.1"

        run(go())


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (ServiceConfig(allow_ips=("10.0.0.0/40",)), "invalid --allow-ip value"),
        (ServiceConfig(basic_auth_user="a", basic_auth_password_hash="x"), "bcrypt hash"),
        (ServiceConfig(client_ip_header="Bad Name"), "invalid --client-ip-header"),
    ],
)
def test_the_deploy_rpc_refuses_bad_access_options_before_anything_changes(
    config: ServiceConfig, message: str
) -> None:
    probed: list[str] = []

    async def probe(target: TargetAddress, hc: HealthCheckConfig) -> ProbeResult:
        probed.append(target.name)
        return ProbeResult(url="", status=200)

    async def go() -> None:
        router = ProxyRouter(probe=probe)
        with pytest.raises(ProxyError, match=message):
            await dispatch(
                router, "deploy", DeployRequest("web", ("t:1",), config=config).to_json()
            )
        assert router.services == {} and probed == []
        await router.close()

    run(go())


def test_gates_apply_to_http2_streams_over_tls() -> None:
    """ALPN h2 through the real TLS listener: each stream passes the same gate (401 with the
    challenge, 200 with credentials that never reach the origin, 403 outside the allowlist)."""
    from dataplane_support import FakeRouter, FakeService, FakeTarget
    from h2_support import h2_client, https_proxy

    from dockyard.proxy.contract import ServiceOptions
    from dockyard.proxy.dataplane.gates import ServiceGate

    token = base64.b64encode(b"admin:open sesame").decode()
    with origin_server() as origin:
        router = FakeRouter()
        gate = ServiceGate(
            "app",
            user="admin",
            password_hash=HASH,
            allow=["203.0.113.0/24"],
            client_ip_header="X-Real-IP",
        )
        router.add(
            FakeService(
                "app",
                [FakeTarget("127.0.0.1", origin.port)],
                ServiceOptions(tls=True, forward_headers=True, gate=gate),
            ),
            host="app.test",
        )

        async def go() -> None:
            async with https_proxy(router) as proxy, h2_client(proxy.port) as client:
                assert client.alpn == "h2"
                inside = [("x-real-ip", "203.0.113.4")]
                missing = await client.request("/echo", headers=inside)
                ok = await client.request(
                    "/echo", headers=[*inside, ("authorization", f"Basic {token}")]
                )
                outside = await client.request(
                    "/echo",
                    headers=[("x-real-ip", "198.51.100.1"), ("authorization", f"Basic {token}")],
                )
            assert missing.status == 401
            assert missing.header("www-authenticate") == 'Basic realm="app", charset="UTF-8"'
            assert ok.status == 200
            seen = headers_seen(bytes(ok.body))
            assert "authorization" not in seen
            assert seen["x-forwarded-for"] == "203.0.113.4"
            assert outside.status == 403
            assert len(origin.requests) == 1

        run(go())


def test_list_shows_an_access_column_only_when_a_service_is_guarded() -> None:
    from dockyard.proxy.quick import format_table as _format_table

    async def go() -> tuple[list[dict[str, str]], list[dict[str, str]]]:
        router = ProxyRouter(probe=healthy)
        await router.deploy(DeployRequest("open", ("one:80",), force=True))
        plain = await dispatch(router, "list", {})
        config = ServiceConfig(
            hosts=("admin.test",),
            basic_auth_user="ops",
            basic_auth_password_hash=HASH,
            allow_ips=("10.0.0.0/8",),
        )
        await router.deploy(DeployRequest("admin", ("two:80",), config=config, force=True))
        guarded = await dispatch(router, "list", {})
        await router.close()
        return plain, guarded

    plain, guarded = run(go())
    table = _format_table(plain, colour=False).splitlines()
    assert table[0].split() == ["Service", "Host", "Path", "Target", "State", "TLS"]  # kamal's
    table = _format_table(guarded, colour=False).splitlines()
    assert table[0].split() == ["Service", "Host", "Path", "Target", "State", "TLS", "Access"]
    rows = {line.split()[0]: line.split() for line in table[1:]}
    assert rows["admin"][6:] == ["auth:ops", "ip:10.0.0.0/8"]
    assert len(rows["open"]) == 6
    assert HASH not in "\n".join(table)
