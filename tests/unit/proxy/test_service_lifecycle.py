"""Targets, health gate, drain, pause/stop/resume: the deploy semantics of kamal-proxy §3 and §5.

Health probes go to real HTTP servers on 127.0.0.1 (port 0); requests are simulated through the
contract the data plane uses (`begin_request` / `hijacked` / `done`).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from dockyard.proxy.control.balancer import FIRST_RETRY, LoadBalancer, TargetsUnhealthyError
from dockyard.proxy.control.durations import MILLISECOND, SECOND
from dockyard.proxy.control.health import HealthCheckFailed, http_probe
from dockyard.proxy.control.options import (
    DeployRequest,
    HealthCheckConfig,
    ServiceConfig,
    TargetAddress,
)
from dockyard.proxy.control.router import ProxyRouter
from dockyard.proxy.control.service import (
    PAUSE_TRANSITIONS,
    PauseController,
    RolloutSplit,
    fnv1a_32,
)
from dockyard.proxy.control.target import (
    TRANSITIONS,
    ProxyTarget,
    TargetEvent,
    TargetState,
    next_state,
)

FAST = HealthCheckConfig(interval=20 * MILLISECOND, timeout=200 * MILLISECOND)


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


@dataclass
class Backend:
    """A tiny HTTP server: `status` for the health path, records each request's head."""

    status: int = 200
    delay: float = 0.0
    redirect_to: str | None = None
    requests: list[str] = field(default_factory=list)
    port: int = 0

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
            self.requests.append(head)
            path = head.split(" ", 2)[1]
            if self.delay:
                await asyncio.sleep(self.delay)
            if self.redirect_to and path != self.redirect_to:
                status, extra = 302, f"Location: {self.redirect_to}\r\n"
            else:
                status, extra = self.status, ""
            head = f"HTTP/1.1 {status} X\r\n{extra}Content-Length: 2\r\nConnection: close\r\n\r\n"
            writer.write(head.encode() + b"ok")
            await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


@contextlib.asynccontextmanager
async def backend(**kwargs: object) -> AsyncIterator[Backend]:
    b = Backend(**kwargs)  # type: ignore[arg-type]
    server = await asyncio.start_server(b.handle, "127.0.0.1", 0)
    b.port = server.sockets[0].getsockname()[1]
    try:
        yield b
    finally:
        server.close()
        await server.wait_closed()


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def run(factory: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(factory())  # type: ignore[arg-type]


def cfg(**kwargs: object) -> ServiceConfig:
    return ServiceConfig(health_check=FAST, **kwargs).normalized()  # type: ignore[arg-type]


# -- state tables -------------------------------------------------------------------------------


def test_target_state_table() -> None:
    assert next_state(TargetState.ADDING, TargetEvent.PROBE_OK) is TargetState.HEALTHY
    # A failed probe does not move an adding target anywhere.
    assert next_state(TargetState.ADDING, TargetEvent.PROBE_FAILED) is TargetState.ADDING
    assert next_state(TargetState.HEALTHY, TargetEvent.PROBE_FAILED) is TargetState.UNHEALTHY
    assert next_state(TargetState.UNHEALTHY, TargetEvent.PROBE_OK) is TargetState.HEALTHY
    assert next_state(TargetState.DRAINING, TargetEvent.PROBE_OK) is TargetState.DRAINING
    # every state but DRAINING itself moves to DRAINING on a drain
    drains = {state: to for (state, ev), to in TRANSITIONS.items() if ev is TargetEvent.DRAIN}
    assert set(drains) == set(TargetState) - {TargetState.DRAINING}
    assert set(drains.values()) == {TargetState.DRAINING}


def test_pause_state_table_is_complete() -> None:
    states = ("running", "paused", "stopped")
    commands = ("pause", "stop", "resume")
    assert {(s, c) for s in states for c in commands} == set(PAUSE_TRANSITIONS)


# -- health probes ------------------------------------------------------------------------------


def test_probe_sends_user_agent_and_target_host() -> None:
    async def scenario() -> None:
        async with backend() as b:
            result = await http_probe(TargetAddress.parse(b.target), FAST)
            assert result.status == 200
            head = b.requests[0]
            assert head.startswith("GET /up HTTP/1.1\r\n")
            assert f"Host: {b.target}\r\n" in head
            assert "User-Agent: kamal-proxy\r\n" in head

    run(scenario)


def test_probe_custom_host_path_and_port() -> None:
    async def scenario() -> None:
        async with backend() as b:
            config = HealthCheckConfig(path="health", port=b.port, host="app.internal")
            await http_probe(TargetAddress.parse("127.0.0.1:1"), config)
            assert b.requests[0].startswith("GET /health HTTP/1.1")
            assert "Host: app.internal\r\n" in b.requests[0]

    run(scenario)


def test_probe_follows_redirects() -> None:
    async def scenario() -> None:
        async with backend(redirect_to="/ready") as b:
            await http_probe(TargetAddress.parse(b.target), FAST)
            assert [r.split(" ")[1] for r in b.requests] == ["/up", "/ready"]

    run(scenario)


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"status": 500}, "unexpected status (500)"),
        ({"status": 404}, "unexpected status (404)"),
        ({"delay": 1.0}, "no answer within 200ms"),
    ],
)
def test_probe_failures(kwargs: dict[str, object], reason: str) -> None:
    async def scenario() -> None:
        async with backend(**kwargs) as b:
            with pytest.raises(HealthCheckFailed) as exc:
                await http_probe(TargetAddress.parse(b.target), FAST)
            assert exc.value.reason == reason
            assert exc.value.url == f"http://{b.target}/up"

    run(scenario)


def test_probe_connection_refused() -> None:
    async def scenario() -> None:
        with pytest.raises(HealthCheckFailed, match="dial tcp"):
            await http_probe(TargetAddress.parse(f"127.0.0.1:{free_port()}"), FAST)

    run(scenario)


# -- health gate --------------------------------------------------------------------------------


def test_gate_passes_when_every_target_is_healthy_and_first_probe_is_immediate() -> None:
    async def scenario() -> None:
        async with backend() as a, backend() as b:
            slow = HealthCheckConfig(interval=10 * SECOND, timeout=SECOND)
            lb = LoadBalancer(
                (TargetAddress.parse(a.target), TargetAddress.parse(b.target)), (), slow
            )
            lb.start_health_checks()
            # within a 3 s gate: a first probe one 10 s interval later would time the gate out
            await lb.wait_until_healthy(3 * SECOND)
            assert lb.all_healthy()
            await lb.stop_health_checks()

    run(scenario)


def test_a_new_target_not_yet_listening_is_probed_again_soon() -> None:
    # the first probe fails (nothing listens yet); with a 10 s interval the target still
    # becomes healthy within a second of the backend starting, not an interval later
    async def scenario() -> None:
        port = free_port()
        slow = HealthCheckConfig(interval=10 * SECOND, timeout=SECOND)
        lb = LoadBalancer((TargetAddress.parse(f"127.0.0.1:{port}"),), (), slow)
        lb.start_health_checks()
        await asyncio.sleep(0.2)
        assert not lb.all_healthy()
        server = await asyncio.start_server(Backend().handle, "127.0.0.1", port)
        try:
            await lb.wait_until_healthy(3 * SECOND)  # not after the 10 s interval
            assert lb.all_healthy()
        finally:
            server.close()
            await server.wait_closed()
            await lb.stop_health_checks()

    run(scenario)


class _InstantSelector:
    """A selector for `VirtualTimeLoop`: a select() that would wait for a timer moves the
    loop's clock on by that wait instead."""

    def __init__(self, inner: Any, loop: VirtualTimeLoop) -> None:
        self._inner = inner
        self._loop = loop

    def select(self, timeout: float | None = None) -> Any:
        if timeout is None:
            return self._inner.select(None)
        ready = self._inner.select(0)
        if not ready and timeout > 0:
            self._loop.now += timeout
        return ready

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An event loop whose clock only moves when it would otherwise wait for a timer: the
    waits a scheduler asks for are then exact, however loaded the machine is."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0
        self._selector = _InstantSelector(self._selector, self)  # type: ignore[has-type]

    def time(self) -> float:
        return self.now


def test_a_booting_target_is_probed_every_retry_step_not_with_a_doubling_wait() -> None:
    # a doubling wait (25, 50, 100, 200, 400 ms) would find an app that listens after 0.5 s
    # at 0.775 s; probing every FIRST_RETRY (25 ms) for the first 2 s finds it at 0.5 s. Loop
    # time is virtual (see VirtualTimeLoop): the schedule is checked exactly, not against a
    # wall clock.
    async def scenario() -> list[float]:
        loop = asyncio.get_running_loop()
        times: list[float] = []

        async def probe(address: TargetAddress, check: HealthCheckConfig) -> None:
            times.append(loop.time())
            if times[-1] < 0.5:
                raise HealthCheckFailed("http://x/up", "connection refused")

        slow = HealthCheckConfig(interval=10 * SECOND, timeout=SECOND)
        lb = LoadBalancer((TargetAddress.parse("127.0.0.1:9"),), (), slow, probe=probe)
        lb.start_health_checks()
        await lb.wait_until_healthy(3 * SECOND)
        await lb.stop_health_checks()
        return times

    with asyncio.Runner(loop_factory=VirtualTimeLoop) as runner:
        times = runner.run(scenario())
    gaps = [b - a for a, b in itertools.pairwise(times)]
    # each wait is the step less the probe's own (real, tiny) time; doubling: 0.025, 0.05, ...
    assert all(FIRST_RETRY - 0.005 <= g <= FIRST_RETRY + 1e-9 for g in gaps), gaps
    assert 0.5 <= times[-1] < 0.5 + FIRST_RETRY  # found within one step of listening


def test_gate_times_out_with_kamal_proxy_message() -> None:
    async def scenario() -> None:
        async with backend() as good, backend(status=503) as bad:
            lb = LoadBalancer(
                (TargetAddress.parse(good.target), TargetAddress.parse(bad.target)), (), FAST
            )
            lb.start_health_checks()
            with pytest.raises(TargetsUnhealthyError) as exc:
                await lb.wait_until_healthy(300 * MILLISECOND)
            assert exc.value.message == (
                "target failed to become healthy within configured timeout (300ms)"
            )
            assert len(bad.requests) >= 3  # probed once per interval
            await lb.stop_health_checks()

    run(scenario)


def test_gate_waits_for_a_target_that_becomes_healthy_later() -> None:
    async def scenario() -> None:
        async with backend(status=500) as b:
            lb = LoadBalancer((TargetAddress.parse(b.target),), (), FAST)
            lb.start_health_checks()
            asyncio.get_running_loop().call_later(0.15, setattr, b, "status", 204)
            await lb.wait_until_healthy(2 * SECOND)
            assert lb.writers[0].healthy
            await asyncio.sleep(0.1)
            probes = len(b.requests)
            await asyncio.sleep(0.1)
            assert len(b.requests) == probes  # single target: checks stop once healthy
            await lb.stop_health_checks()

    run(scenario)


def test_multi_target_checks_continue_and_unhealthy_leaves_round_robin() -> None:
    async def scenario() -> None:
        async with backend() as a, backend() as b:
            lb = LoadBalancer(
                (TargetAddress.parse(a.target), TargetAddress.parse(b.target)), (), FAST
            )
            lb.start_health_checks()
            await lb.wait_until_healthy(2 * SECOND)
            picks = {
                lb.pick(read=False, cookies=None, affinity_timeout_ns=0).name for _ in range(4)
            }  # type: ignore[union-attr]
            assert picks == {a.target, b.target}
            b.status = 500
            await asyncio.sleep(0.15)
            assert lb.writers[1].state is TargetState.UNHEALTHY
            picks = {
                lb.pick(read=False, cookies=None, affinity_timeout_ns=0).name for _ in range(4)
            }  # type: ignore[union-attr]
            assert picks == {a.target}
            a.status = 500
            await asyncio.sleep(0.15)
            assert lb.pick(read=False, cookies=None, affinity_timeout_ns=0) is None
            b.status = 200
            await asyncio.sleep(0.15)
            assert lb.pick(read=False, cookies=None, affinity_timeout_ns=0).name == b.target  # type: ignore[union-attr]
            await lb.stop_health_checks()

    run(scenario)


def test_a_lone_unhealthy_target_is_never_picked() -> None:
    """One target per role (the common case, with its own fast path): an unhealthy writer gives
    None (the data plane answers 503), an unhealthy reader sends reads to the writer."""
    lb = LoadBalancer((TargetAddress.parse("ww:1"),), (TargetAddress.parse("rr:1"),), FAST)
    assert lb.pick(read=False, cookies=None, affinity_timeout_ns=0) is None  # still ADDING
    lb.trust_all()
    writer, reader = lb.writers[0], lb.readers[0]
    reader.apply(TargetEvent.PROBE_FAILED)
    assert reader.state is TargetState.UNHEALTHY
    assert lb.pick(read=True, cookies=None, affinity_timeout_ns=0) is writer
    writer.apply(TargetEvent.PROBE_FAILED)
    assert lb.pick(read=False, cookies=None, affinity_timeout_ns=0) is None
    assert lb.pick(read=True, cookies=None, affinity_timeout_ns=0) is None
    writer.apply(TargetEvent.PROBE_OK)
    assert lb.pick(read=False, cookies=None, affinity_timeout_ns=0) is writer


def test_readers_serve_reads_unless_writer_affinity_cookie() -> None:
    lb = LoadBalancer((TargetAddress.parse("ww:1"),), (TargetAddress.parse("rr:1"),), FAST)
    lb.trust_all()
    assert lb.pick(read=True, cookies=None, affinity_timeout_ns=SECOND).name == "rr:1"  # type: ignore[union-attr]
    assert lb.pick(read=False, cookies=None, affinity_timeout_ns=SECOND).name == "ww:1"  # type: ignore[union-attr]
    future = int(time.time() * 1000) + 60_000
    cookie = f"a=b; kamal-writer={future}"
    assert lb.pick(read=True, cookies=cookie, affinity_timeout_ns=SECOND).name == "ww:1"  # type: ignore[union-attr]
    assert lb.pick(read=True, cookies=cookie, affinity_timeout_ns=0).name == "rr:1"  # type: ignore[union-attr]
    expired = "kamal-writer=1000"
    assert lb.pick(read=True, cookies=expired, affinity_timeout_ns=SECOND).name == "rr:1"  # type: ignore[union-attr]


# -- drain --------------------------------------------------------------------------------------


class Request:
    def __init__(self, target: ProxyTarget) -> None:
        self.cancelled = False
        handle = target.begin_request(self.cancel)
        assert handle is not None
        self.handle = handle

    def cancel(self) -> None:
        self.cancelled = True


def test_drain_waits_for_inflight_then_restores_state() -> None:
    async def scenario() -> None:
        target = ProxyTarget(TargetAddress.parse("app:1"))
        target.apply(TargetEvent.TRUST)
        req = Request(target)
        task = asyncio.create_task(target.drain(5 * SECOND))
        await asyncio.sleep(0.05)
        assert target.state is TargetState.DRAINING
        assert target.begin_request(lambda: None) is None  # data plane answers 503
        assert not task.done()  # waits for the in-flight request
        req.handle.done()
        await asyncio.wait_for(task, 1)  # ends with it, long before the 5 s drain timeout
        assert not req.cancelled
        assert target.state is TargetState.HEALTHY

    run(scenario)


def test_drain_cancels_hijacked_at_once_and_others_after_timeout() -> None:
    async def scenario() -> None:
        target = ProxyTarget(TargetAddress.parse("app:1"))
        target.apply(TargetEvent.TRUST)
        socket = Request(target)
        socket.handle.hijacked()
        slow = Request(target)
        task = asyncio.create_task(target.drain(200 * MILLISECOND))
        await asyncio.sleep(0.05)
        assert socket.cancelled and not slow.cancelled
        await task
        assert slow.cancelled
        assert target.inflight_count == 0

    run(scenario)


def test_connection_upgraded_during_drain_is_cancelled_immediately() -> None:
    async def scenario() -> None:
        target = ProxyTarget(TargetAddress.parse("app:1"))
        req = Request(target)
        task = asyncio.create_task(target.drain(5 * SECOND))
        await asyncio.sleep(0.01)
        req.handle.hijacked()
        assert req.cancelled
        req.handle.done()
        await asyncio.wait_for(task, 1)

    run(scenario)


def test_empty_drain_returns_at_once() -> None:
    async def scenario() -> None:
        target = ProxyTarget(TargetAddress.parse("app:1"))
        await asyncio.wait_for(target.drain(30 * SECOND), 0.5)

    run(scenario)


# -- deploy through the router ------------------------------------------------------------------


def test_deploy_switches_atomically_and_drains_old_target() -> None:
    async def scenario() -> None:
        router = ProxyRouter(None)
        async with backend() as old, backend() as new:
            await router.deploy(DeployRequest("web", (old.target,), config=cfg()))
            m = router.match("x.test", "/")
            assert m is not None
            old_target = m.service.pick_target(read=False, cookies=None)
            assert old_target is not None and old_target.name == old.target
            inflight = Request(old_target)  # type: ignore[arg-type]
            deploy = asyncio.create_task(
                router.deploy(
                    DeployRequest("web", (new.target,), config=cfg(), drain_timeout=5 * SECOND)
                )
            )
            for _ in range(1000):  # the switch happens before the drain finishes
                picked = m.service.pick_target(read=False, cookies=None)
                if picked is not None and picked.name == new.target:
                    break
                await asyncio.sleep(0.005)
            assert picked is not None and picked.name == new.target
            assert old_target.begin_request(lambda: None) is None  # draining: 503
            await asyncio.sleep(0.1)
            assert not deploy.done()  # blocked until drained
            inflight.handle.done()
            await asyncio.wait_for(deploy, 1)
            assert not inflight.cancelled

    run(scenario)


def test_failed_gate_leaves_old_target_serving_and_options_unchanged() -> None:
    async def scenario() -> None:
        router = ProxyRouter(None)
        async with backend() as old, backend(status=500) as bad:
            await router.deploy(DeployRequest("web", (old.target,), config=cfg(hosts=("a.test",))))
            with pytest.raises(TargetsUnhealthyError, match=r"timeout \(200ms\)"):
                await router.deploy(
                    DeployRequest(
                        "web",
                        (bad.target,),
                        config=cfg(hosts=("b.test",)),
                        deploy_timeout=200 * MILLISECOND,
                    )
                )
            m = router.match("a.test", "/")
            assert m is not None
            assert m.service.pick_target(read=False, cookies=None).name == old.target  # type: ignore[union-attr]
            assert router.match("b.test", "/") is None
            probes = len(bad.requests)
            await asyncio.sleep(0.1)
            assert len(bad.requests) == probes  # the failed balancer's checks were stopped

    run(scenario)


def test_force_skips_the_gate() -> None:
    async def scenario() -> None:
        router = ProxyRouter(None)
        port = free_port()  # nothing listens there
        await asyncio.wait_for(
            router.deploy(DeployRequest("web", (f"127.0.0.1:{port}",), config=cfg(), force=True)),
            1,
        )
        m = router.match("x", "/")
        assert m is not None and m.service.pick_target(read=False, cookies=None) is not None

    run(scenario)


def test_redeploy_replaces_options_and_keeps_pause_state() -> None:
    async def scenario() -> None:
        router = ProxyRouter(None)
        async with backend() as a, backend() as b:
            await router.deploy(
                DeployRequest("web", (a.target,), config=cfg(buffer_requests=True, hosts=("h",)))
            )
            await router.pause("web", 0, 30 * SECOND)
            await router.deploy(DeployRequest("web", (b.target,), config=cfg(hosts=("h",))))
            service = router.service("web")
            assert service.options.buffer_requests is False  # omitted flag: back to default
            assert service.state == "paused"

    run(scenario)


# -- pause / stop / resume ----------------------------------------------------------------------


def test_pause_holds_until_resume() -> None:
    async def scenario() -> None:
        pc = PauseController()
        pc.apply("pause", fail_after=5 * SECOND)
        waiter = asyncio.create_task(pc.wait())
        await asyncio.sleep(0.05)
        assert not waiter.done()
        pc.apply("resume")
        assert await waiter == "running"

    run(scenario)


def test_pause_times_out_and_stop_releases_waiters_as_stopped() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()  # virtual time: the hold is measured exactly
        pc = PauseController()
        pc.apply("pause", fail_after=100 * MILLISECOND)
        started = loop.time()
        assert await pc.wait() == "paused"  # data plane answers 504
        assert loop.time() - started == pytest.approx(0.1, abs=0.005)  # held for max-pause
        pc.apply("pause", fail_after=5 * SECOND)
        waiter = asyncio.create_task(pc.wait())
        await asyncio.sleep(0.02)
        pc.apply("stop", message="Back soon")
        assert await waiter == "stopped"
        assert pc.stop_message == "Back soon"
        assert await pc.wait() == "stopped"
        pc.apply("resume")
        assert await pc.wait() == "running"

    with asyncio.Runner(loop_factory=VirtualTimeLoop) as runner:
        runner.run(scenario())


def test_router_pause_drains_inflight_before_returning() -> None:
    async def scenario() -> None:
        router = ProxyRouter(None)
        await router.deploy(DeployRequest("web", ("app:1",), config=cfg(), force=True))
        service = router.service("web")
        target = service.pick_target(read=False, cookies=None)
        assert target is not None
        req = Request(target)  # type: ignore[arg-type]
        pausing = asyncio.create_task(router.pause("web", 2 * SECOND, 10 * SECOND))
        await asyncio.sleep(0.1)
        assert not pausing.done()  # still draining the in-flight request
        req.handle.done()
        await asyncio.wait_for(pausing, 1)
        assert service.state == "paused" and not req.cancelled
        waiter = asyncio.create_task(service.wait_until_running())
        await router.resume("web")
        assert await waiter == "running"
        assert service.pick_target(read=False, cookies=None) is not None  # not left draining
        await router.stop("web", 0, "Maintenance")
        assert (service.state, service.stop_message) == ("stopped", "Maintenance")

    run(scenario)


@pytest.mark.parametrize("name", ["", "_", "/", "a", "http://app:3000", "app:3000/path", "a b:1"])
def test_illegal_target_names(name: str) -> None:
    with pytest.raises(Exception, match="invalid host pattern"):
        TargetAddress.parse(name)


def test_target_without_port_defaults_to_80() -> None:
    assert TargetAddress.parse("web-1.internal") == TargetAddress(
        "web-1.internal", "web-1.internal", 80
    )
    assert TargetAddress.parse("app_web:3000").port == 3000


def test_options_tell_the_data_plane_whether_readers_exist() -> None:
    async def scenario() -> None:
        router = ProxyRouter(None)
        await router.deploy(DeployRequest("web", ("ww:1",), ("rr:1",), cfg(), force=True))
        service = router.service("web")
        assert service.options.extra["has_readers"] is True
        assert service.options.extra["writer_affinity_timeout"] == 1.0
        await router.deploy(DeployRequest("web", ("ww:1",), (), cfg(), force=True))
        assert service.options.extra["has_readers"] is False

    run(scenario)


# -- rollout ------------------------------------------------------------------------------------


def test_fnv1a_32_reference_values() -> None:
    assert fnv1a_32(b"") == 0x811C9DC5
    assert fnv1a_32(b"a") == 0xE40C292C
    assert fnv1a_32(b"foobar") == 0xBF9CF968


def test_rollout_split() -> None:
    values = [f"user-{i}" for i in range(2000)]
    assert not any(RolloutSplit(0).selects(v) for v in values)
    assert all(RolloutSplit(100).selects(v) for v in values)
    share = sum(RolloutSplit(25).selects(v) for v in values) / len(values)
    assert 0.2 < share < 0.3
    assert RolloutSplit(0, ("vip",)).selects("vip")
    # Deterministic: a value lands on the same side with any split of the same percentage, and
    # a value a 10% split takes, a 25% split takes too (one hash, one split point).
    picked = [v for v in values if RolloutSplit(10).selects(v)]
    assert picked == [v for v in values if RolloutSplit(10).selects(v)]
    assert 0.05 < len(picked) / len(values) < 0.15
    assert all(RolloutSplit(25).selects(v) for v in picked)


def test_rollout_slot_serves_selected_cookies_only() -> None:
    async def scenario() -> None:
        router = ProxyRouter(None)
        async with backend() as stable, backend() as canary:
            await router.deploy(DeployRequest("web", (stable.target,), config=cfg()))
            with pytest.raises(Exception, match="rollout target not set"):
                await router.rollout_set("web", 50, ())
            await router.rollout_deploy("web", (canary.target,), (), SECOND, SECOND)
            service = router.service("web")

            def picked(cookies: str | None) -> str:
                target = service.pick_target(read=False, cookies=cookies)
                assert target is not None
                return target.name

            # Deployed but no split yet: everyone stays on the active slot.
            assert picked("kamal-rollout=beta") == stable.target
            await router.rollout_set("web", 0, ("beta",))
            assert picked("a=1; kamal-rollout=beta") == canary.target
            assert picked("kamal-rollout=other") == stable.target
            assert picked(None) == stable.target
            await router.rollout_set("web", 100, ())
            assert picked("kamal-rollout=anyone") == canary.target
            assert picked(None) == stable.target  # no cookie: always the active slot
            await router.rollout_stop("web")
            assert picked("kamal-rollout=beta") == stable.target
            await router.rollout_set("web", 0, ("beta",))  # the rollout targets were kept
            assert picked("kamal-rollout=beta") == canary.target
            with pytest.raises(Exception, match="between 0 and 100"):
                await router.rollout_set("web", 101, ())
            await router.close()

    run(scenario)


def test_rollout_gate_failure_keeps_previous_rollout() -> None:
    async def scenario() -> None:
        router = ProxyRouter(None)
        async with backend() as stable, backend(status=500) as bad:
            await router.deploy(DeployRequest("web", (stable.target,), config=cfg()))
            with pytest.raises(TargetsUnhealthyError):
                await router.rollout_deploy("web", (bad.target,), (), 200 * MILLISECOND, 0)
            assert router.service("web").rollout is None
            with pytest.raises(Exception, match="service not found"):
                await router.rollout_deploy("nope", (stable.target,), (), SECOND, 0)

    run(scenario)
