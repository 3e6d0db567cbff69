"""Routing (kamal-proxy §4) and host/path claim conflicts."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from dockyard.proxy.control.options import DeployRequest, ServiceConfig
from dockyard.proxy.control.router import HostConflictError, ProxyRouter
from dockyard.proxy.control.routing import RoutingTable, prefix_matches, wildcard_for


@pytest.fixture(autouse=True)
def _loopback_only_probes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Health probes of made-up target names never leave the machine (no DNS lookups)."""
    from dockyard.proxy.control import balancer
    from dockyard.proxy.control.health import HealthCheckFailed, probe_url

    real = balancer.http_probe

    async def guarded(target: Any, config: Any) -> Any:
        if target.host != "127.0.0.1":
            raise HealthCheckFailed(probe_url(target, config), "not loopback (test guard)")
        return await real(target, config)

    monkeypatch.setattr(balancer, "http_probe", guarded)


@pytest.mark.parametrize(
    ("prefix", "path", "matches"),
    [
        ("/", "/", True),
        ("/", "/anything/at/all", True),
        ("/app", "/app", True),
        ("/app", "/app/", True),
        ("/app", "/app/x", True),
        ("/app", "/appointment", False),
        ("/app", "/", False),
        ("/app", "/ap", False),
        ("/api/internal", "/api/internal/something", True),
        ("/api/internal", "/api", False),
        ("/App", "/app", False),  # case-sensitive
    ],
)
def test_prefix_matches_on_segment_boundaries(prefix: str, path: str, matches: bool) -> None:
    assert prefix_matches(prefix, path) is matches


def test_wildcard_is_one_label() -> None:
    assert wildcard_for("a.b.example.com") == "*.b.example.com"
    assert wildcard_for("localhost") is None


TABLE = RoutingTable(
    [
        ("example.com", "/", "root"),
        ("example.com", "/api", "api"),
        ("example.com", "/api/internal", "internal"),
        ("only-api.test", "/api", "only-api"),
        ("*.example.com", "/", "wild"),
        ("*.b.example.com", "/", "wild-b"),
        ("", "/", "catch-all"),
        ("", "/admin", "catch-all-admin"),
    ]
)


@pytest.mark.parametrize(
    ("host", "path", "service", "prefix"),
    [
        ("example.com", "/", "root", "/"),
        ("example.com", "/api", "api", "/api"),
        ("example.com", "/api/x", "api", "/api"),
        ("example.com", "/api/internal/x", "internal", "/api/internal"),
        ("example.com", "/apix", "root", "/"),
        ("www.example.com", "/", "wild", "/"),
        ("a.b.example.com", "/", "wild-b", "/"),  # one label: *.b.example.com
        ("a.c.example.com", "/", "catch-all", "/"),  # not *.example.com
        ("other.test", "/x", "catch-all", "/"),
        ("other.test", "/admin/users", "catch-all-admin", "/admin"),
        ("EXAMPLE.COM", "/", "catch-all", "/"),  # case-sensitive host match
        ("only-api.test", "/api/v1", "only-api", "/api"),
        ("only-api.test", "/", None, None),  # the host entry is final: no catch-all fallback
    ],
)
def test_lookup(host: str, path: str, service: str | None, prefix: str | None) -> None:
    binding = TABLE.lookup(host, path)
    if service is None:
        assert binding is None
    else:
        assert binding is not None
        assert (binding.service, binding.prefix) == (service, prefix)


def test_empty_table_matches_nothing() -> None:
    assert RoutingTable[str]().lookup("example.com", "/") is None


def test_without_catch_all_an_unknown_host_is_404() -> None:
    table = RoutingTable([("a.test", "/", "a")])
    assert table.lookup("b.test", "/") is None


# -- claims, through the router ---------------------------------------------------------------


def run(coro: object) -> None:
    asyncio.run(coro)  # type: ignore[arg-type]


@pytest.fixture
def router() -> Iterator[ProxyRouter]:
    yield ProxyRouter(None)


async def forced(router: ProxyRouter, name: str, **config: object) -> None:
    cfg = ServiceConfig(**config).normalized()  # type: ignore[arg-type]
    await router.deploy(DeployRequest(name, ("t-" + name + ":80",), config=cfg, force=True))


def test_same_host_same_prefix_conflicts(router: ProxyRouter) -> None:
    async def scenario() -> None:
        await forced(router, "a", hosts=("x.test",))
        with pytest.raises(HostConflictError, match="host settings conflict with another service"):
            await forced(router, "b", hosts=("y.test", "x.test"))
        match = router.match("x.test", "/")
        assert match is not None and match.service.name == "a"
        assert router.match("y.test", "/") is None  # the failed deploy changed nothing
        assert set(router.services) == {"a"}

    run(scenario())


def test_two_catch_all_root_services_conflict(router: ProxyRouter) -> None:
    async def scenario() -> None:
        await forced(router, "a")
        with pytest.raises(HostConflictError):
            await forced(router, "b")

    run(scenario())


def test_same_host_different_prefixes_is_fine_and_routes_longest_first(
    router: ProxyRouter,
) -> None:
    async def scenario() -> None:
        await forced(router, "app", hosts=("x.test",))
        await forced(router, "api", hosts=("x.test",), path_prefixes=("/api",))
        await forced(router, "deep", hosts=("x.test",), path_prefixes=("api/v2",))
        got = {p: router.match("x.test", p) for p in ("/", "/api/x", "/api/v2/y", "/apiary")}
        names = {p: (m.service.name, m.prefix) if m else None for p, m in got.items()}
        assert names == {
            "/": ("app", "/"),
            "/api/x": ("api", "/api"),
            "/api/v2/y": ("deep", "/api/v2"),
            "/apiary": ("app", "/"),
        }

    run(scenario())


def test_redeploy_same_name_may_change_hosts_and_frees_the_old_claim(router: ProxyRouter) -> None:
    async def scenario() -> None:
        await forced(router, "a", hosts=("old.test",))
        await forced(router, "a", hosts=("new.test",))
        assert router.match("old.test", "/") is None
        await forced(router, "b", hosts=("old.test",))
        m = router.match("old.test", "/")
        assert m is not None and m.service.name == "b"

    run(scenario())


def test_remove_frees_claims_and_unknown_service_is_an_error(router: ProxyRouter) -> None:
    async def scenario() -> None:
        await forced(router, "a")
        await router.remove("a")
        assert router.match("any.test", "/") is None
        await forced(router, "b")
        with pytest.raises(Exception, match="service not found"):
            await router.remove("a")

    run(scenario())


def test_list_rows_sorted_with_star_for_catch_all(router: ProxyRouter) -> None:
    async def scenario() -> None:
        await forced(router, "zeta", hosts=("z.test", "zz.test"), path_prefixes=("/a", "/b"))
        await forced(router, "alpha")
        rows = router.rows()
        assert [(r.service, r.host, r.path, r.target, r.state, r.tls) for r in rows] == [
            ("alpha", "*", "/", "t-alpha:80", "running", "no"),
            ("zeta", "z.test,zz.test", "/a,/b", "t-zeta:80", "running", "no"),
        ]

    run(scenario())


# -- the per-host memo ----------------------------------------------------------------------------


def test_lookups_repeat_the_same_answer_from_the_host_memo() -> None:
    for host, path, service, prefix in [
        ("example.com", "/api/x", "api", "/api"),
        ("example.com", "/", "root", "/"),
        ("example.com", "/api/internal/y", "internal", "/api/internal"),
        ("only-api.test", "/", None, None),
        ("only-api.test", "/api", "only-api", "/api"),
        ("www.example.com", "/q", "wild", "/"),
        ("other.test", "/admin", "catch-all-admin", "/admin"),
        ("other.test", "/", "catch-all", "/"),
    ] * 2:
        binding = TABLE.lookup(host, path)
        got = (binding.service, binding.prefix) if binding is not None else (None, None)
        assert got == (service, prefix), (host, path)


def test_host_memo_is_bounded() -> None:
    from dockyard.proxy.control import routing

    table = RoutingTable([("", "/", "catch-all")])
    for i in range(routing.HOST_MEMO_LIMIT * 2 + 3):
        binding = table.lookup(f"h{i}.test", "/")
        assert binding is not None and binding.service == "catch-all"
    assert len(table._memo) <= routing.HOST_MEMO_LIMIT


def test_router_match_follows_every_change_and_reuses_its_match(router: ProxyRouter) -> None:
    async def scenario() -> None:
        await forced(router, "web", hosts=("x.test",))
        first = router.match("x.test", "/api/v1")
        assert first is not None and first.service.name == "web" and first.prefix == "/"
        assert router.match("x.test", "/other") is first  # no allocation per request
        await forced(router, "api", hosts=("x.test",), path_prefixes=("/api",))
        moved = router.match("x.test", "/api/v1")
        assert moved is not None and moved.service.name == "api" and moved.prefix == "/api"
        still = router.match("x.test", "/other")
        assert still is not None and still.service.name == "web"
        await router.remove("api")
        back = router.match("x.test", "/api/v1")
        assert back is not None and back.service.name == "web"
        await router.remove("web")
        assert router.match("x.test", "/") is None

    run(scenario())
