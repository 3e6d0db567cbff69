"""State file (kamal-proxy §10): paths, atomic rewrite on every change, restore on start."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import pytest

from dockyard.proxy.control.durations import SECOND
from dockyard.proxy.control.health import ProbeResult
from dockyard.proxy.control.options import (
    DeployRequest,
    HealthCheckConfig,
    ServiceConfig,
    TargetAddress,
)
from dockyard.proxy.control.router import ProxyRouter
from dockyard.proxy.control.state import SavedService, StateStore, config_dir, socket_path


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


def test_paths_follow_kamal_proxy(tmp_path: Path) -> None:
    assert socket_path({"XDG_RUNTIME_DIR": "/run/user/1000"}) == Path(
        "/run/user/1000/kamal-proxy.sock"
    )
    import tempfile

    assert socket_path({}) == Path(tempfile.gettempdir()) / "kamal-proxy.sock"
    assert config_dir({"HOME": "/home/kamal-proxy"}) == Path(
        "/home/kamal-proxy/.config/kamal-proxy"
    )
    assert config_dir({"HOME": "/h", "XDG_CONFIG_HOME": "/x"}) == Path("/x/kamal-proxy")


def full_config() -> ServiceConfig:
    return ServiceConfig(
        hosts=("a.test", "*.b.test"),
        path_prefixes=("/api",),
        strip_path_prefix=False,
        canonical_host="a.test",
        health_check=HealthCheckConfig("/hc", 81, 2 * SECOND, 3 * SECOND, "hc.test"),
        target_timeout=7 * SECOND,
        buffer_requests=True,
        max_request_body=10,
        forward_headers=False,
        log_request_headers=("X-A",),
        scope_cookie_paths=True,
    ).normalized()


def test_every_change_is_saved_and_restored(tmp_path: Path) -> None:
    path = tmp_path / "kamal-proxy.state"

    async def healthy(target: TargetAddress, config: HealthCheckConfig) -> ProbeResult:
        return ProbeResult(url=f"http://{target.name}{config.path}", status=200)

    async def first_life() -> None:
        router = ProxyRouter(StateStore(path), probe=healthy)  # no network: probes succeed
        await router.deploy(
            DeployRequest("api", ("one:3000", "two:3000"), ("ro:3000",), full_config(), force=True)
        )
        saved = json.loads(path.read_text())
        assert [s["name"] for s in saved] == ["api"]
        await router.deploy(DeployRequest("web", ("web:80",), force=True))
        await router.stop("web", 0, "Down for maintenance")
        await router.deploy(
            DeployRequest("gone", ("gone:80",), config=ServiceConfig(hosts=("g",)), force=True)
        )
        await router.remove("gone")
        await router.pause("api", 0, 12 * SECOND)
        await router.rollout_deploy("web", ("canary:80",), (), SECOND, 0)
        await router.rollout_set("web", 20, ("beta",))
        await router.close()

    asyncio.run(first_life())
    data = json.loads(path.read_text())
    assert [s["name"] for s in data] == ["api", "web"]
    api = data[0]
    assert api["active_targets"] == ["one:3000", "two:3000"]
    assert api["active_readers"] == ["ro:3000"]
    assert api["pause_controller"] == {"state": 1, "stop_message": "", "fail_after": 12 * SECOND}
    # kamal-proxy's own field names, durations as integer nanoseconds
    assert api["options"]["strip_prefix"] is False
    assert api["options"]["hosts"] == ["a.test", "*.b.test"]
    assert api["target_options"]["health_check_config"] == {
        "path": "/hc",
        "port": 81,
        "interval": 2 * SECOND,
        "timeout": 3 * SECOND,
        "host": "hc.test",
    }
    assert api["target_options"]["response_timeout"] == 7 * SECOND
    assert api["target_options"]["max_request_body_size"] == 10
    assert api["target_options"]["forward_headers"] is False

    async def second_life() -> None:
        router = ProxyRouter(StateStore(path))
        assert router.restore() == 2
        api = router.service("api")
        assert api.config == full_config()
        assert api.state == "paused" and api.pause.fail_after == 12 * SECOND
        web = router.service("web")
        assert (web.state, web.stop_message) == ("stopped", "Down for maintenance")
        assert web.rollout is not None and web.rollout.target_names == ["canary:80"]
        assert web.split is not None and (web.split.percentage, web.split.allowlist) == (
            20,
            ("beta",),
        )
        canary = web.pick_target(read=False, cookies="kamal-rollout=beta")
        assert canary is not None and canary.name == "canary:80"
        # Targets are trusted at once, without a health gate.
        assert web.pick_target(read=False, cookies=None) is not None
        m = router.match("x.b.test", "/api/v1")
        assert m is not None and m.service is api
        m = router.match("anything", "/")
        assert m is not None and m.service is web
        await router.close()

    asyncio.run(second_life())


def test_write_is_atomic_and_leaves_no_temp_files(tmp_path: Path) -> None:
    path = tmp_path / "cfg" / "kamal-proxy.state"
    store = StateStore(path)
    store.save([])
    assert json.loads(path.read_text()) == []
    assert os.listdir(path.parent) == ["kamal-proxy.state"]


def test_a_failed_write_keeps_the_previous_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "kamal-proxy.state"
    store = StateStore(path)
    store.save([])
    before = path.read_bytes()

    def broken_fsync(fd: int) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    other = SavedService("web", full_config(), ("web-1:80",), (), {})
    with pytest.raises(OSError, match="disk full"):
        store.save([other])  # different bytes: an in-place rewrite would show
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["kamal-proxy.state"]


def test_no_state_and_undecodable_state_start_empty(tmp_path: Path) -> None:
    path = tmp_path / "kamal-proxy.state"

    async def scenario() -> None:
        assert ProxyRouter(StateStore(path)).restore() == 0
        path.write_text("{not json")
        router = ProxyRouter(StateStore(path))
        assert router.restore() == 0
        assert router.services == {}

    asyncio.run(scenario())


def test_older_single_target_layout_is_read(tmp_path: Path) -> None:
    path = tmp_path / "kamal-proxy.state"
    path.write_text(json.dumps([{"name": "old", "active_target": "app:3000", "options": {}}]))

    async def scenario() -> None:
        router = ProxyRouter(StateStore(path))
        assert router.restore() == 1
        assert router.service("old").active.target_names == ["app:3000"]

    asyncio.run(scenario())


def test_a_kamal_proxy_state_file_is_read(tmp_path: Path) -> None:
    """The layout kamal-proxy v0.9.2 writes (Go nil slices as null), e.g. from a config volume
    that Kamal kept when the proxy image was switched."""
    path = tmp_path / "kamal-proxy.state"
    entry = {
        "name": "hello-web",
        "options": {
            "hosts": None,
            "path_prefixes": ["/"],
            "tls_enabled": False,
            "tls_certificate_path": "",
            "tls_private_key_path": "",
            "tls_redirect": True,
            "canonical_host": "",
            "acme_directory": "https://acme-v02.api.letsencrypt.org/directory",
            "acme_cache_path": "/home/kamal-proxy/.config/kamal-proxy/certs",
            "error_page_path": "",
            "strip_prefix": True,
            "writer_affinity_timeout": 1000000000,
            "read_targets_accept_websockets": False,
        },
        "target_options": {
            "health_check_config": {
                "path": "/up",
                "port": 0,
                "interval": 1000000000,
                "timeout": 5000000000,
                "host": "",
            },
            "response_timeout": 30000000000,
            "buffer_requests": True,
            "buffer_responses": True,
            "max_memory_buffer_size": 1048576,
            "max_request_body_size": 0,
            "max_response_body_size": 0,
            "log_request_headers": ["Cache-Control", "Last-Modified", "User-Agent"],
            "log_response_headers": None,
            "forward_headers": True,
            "scope_cookie_paths": False,
        },
        "active_targets": ["3f2a1b:80"],
        "active_readers": None,
        "rollout_targets": None,
        "rollout_readers": None,
        "pause_controller": {"state": 0, "stop_message": "", "fail_after": 0},
        "rollout_controller": None,
    }
    path.write_text(json.dumps([entry]))

    async def scenario() -> None:
        router = ProxyRouter(StateStore(path))
        assert router.restore() == 1
        service = router.service("hello-web")
        assert service.active.target_names == ["3f2a1b:80"]
        assert service.state == "running"
        cfg = service.config
        assert cfg.hosts == () and cfg.buffer_requests and cfg.buffer_responses
        assert cfg.log_request_headers == ("Cache-Control", "Last-Modified", "User-Agent")
        # Written back, the entry is the document kamal-proxy wrote (null lists become []).
        router._save()
        written = json.loads(path.read_text())[0]
        assert written["target_options"] == {
            **entry["target_options"],  # type: ignore[dict-item]
            "log_response_headers": [],
        }
        assert written["options"] == {**entry["options"], "hosts": []}  # type: ignore[dict-item]
        assert written["pause_controller"]["state"] == 0

    asyncio.run(scenario())


def test_access_options_survive_the_state_file_and_a_restart(tmp_path: Path) -> None:
    """Basic auth, allowlist and client-IP header: saved as extra `options` keys (kamal-proxy
    ignores them), restored into a working gate; services without them write no such keys."""
    import bcrypt

    from dockyard.proxy.dataplane.gates import ServiceGate

    password_hash = bcrypt.hashpw(b"pw", bcrypt.gensalt(4)).decode()
    config = ServiceConfig(
        hosts=("a.test",),
        basic_auth_user="admin",
        basic_auth_password_hash=password_hash,
        allow_ips=("10.0.0.0/8", " 2001:db8::/32 ", "10.0.0.0/8"),
        client_ip_header="X-Real-IP",
        forward_headers=True,
    ).normalized()
    assert config.allow_ips == ("10.0.0.0/8", "2001:db8::/32")
    assert DeployRequest.from_json(DeployRequest("s", ("t:1",), config=config).to_json()) == (
        DeployRequest("s", ("t:1",), config=config)
    )
    path = tmp_path / "kamal-proxy.state"

    async def first_life() -> None:
        router = ProxyRouter(StateStore(path))
        await router.deploy(DeployRequest("gated", ("one:3000",), config=config, force=True))
        await router.deploy(DeployRequest("open", ("two:3000",), force=True))
        await router.close()

    asyncio.run(first_life())
    data = {s["name"]: s for s in json.loads(path.read_text())}
    assert data["gated"]["options"]["allow_ips"] == ["10.0.0.0/8", "2001:db8::/32"]
    assert data["gated"]["options"]["basic_auth_password_hash"] == password_hash
    assert "allow_ips" not in data["open"]["options"]

    async def second_life() -> None:
        router = ProxyRouter(StateStore(path))
        assert router.restore() == 2
        gated = router.service("gated")
        assert gated.config == config
        gate = gated.options.gate
        assert isinstance(gate, ServiceGate)
        assert gate.has_auth and [str(n) for n in gate.networks] == [
            "10.0.0.0/8",
            "2001:db8::/32",
        ]
        assert router.service("open").options.gate is None
        await router.close()

    asyncio.run(second_life())


def test_a_hand_broken_access_option_in_the_state_fails_closed(tmp_path: Path) -> None:
    path = tmp_path / "kamal-proxy.state"
    entry = {
        "name": "web",
        "options": {"hosts": ["a.test"], "allow_ips": ["not-an-address"]},
        "target_options": {},
        "active_targets": ["web:80"],
    }
    path.write_text(json.dumps([entry]))

    async def go() -> None:
        router = ProxyRouter(StateStore(path))
        assert router.restore() == 1
        gate = router.service("web").options.gate
        assert gate is not None
        from dockyard.proxy.http.parser import RequestHead

        refusal = gate.check(RequestHead(), b"10.0.0.1")
        assert refusal is not None and refusal.status == 403
        await router.close()

    asyncio.run(go())
