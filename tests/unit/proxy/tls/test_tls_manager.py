"""CertManager behaviour that needs no CA: policy, cache, shared issuance, renewal, backoff.

The ACME exchange itself is exercised against a real CA in
tests/integration/test_acme_pebble.py; here the blocking `_obtain` step is replaced by a
stand-in that returns certificates from a test CA, to observe the asyncio side.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from tls_support import MiniCA

from dockyard.errors import ProxyError
from dockyard.proxy.tls.certs import CertifiedKey, certified_key_from_pem
from dockyard.proxy.tls.manager import CertManager, ChallengeAttempt, Issuance

DIRECTORY = "https://acme.invalid/directory"


class FakeObtain:
    """Stands in for the blocking ACME exchange; records calls, takes `delay` seconds."""

    def __init__(
        self,
        ca: MiniCA,
        delay: float = 0.0,
        fail: str | None = None,
        hold: Callable[[], None] | None = None,
    ) -> None:
        self.ca = ca
        self.delay = delay
        self.fail = fail
        self.hold = hold  # called inside the exchange (e.g. to wait for the event loop)
        self.calls: list[str] = []
        self.threads: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, name: str) -> Issuance:
        with self._lock:
            self.calls.append(name)
        self.threads.add(threading.current_thread().name)
        time.sleep(self.delay)
        if self.hold is not None:
            self.hold()
        if self.fail is not None:
            raise ProxyError(self.fail)
        return Issuance(name, (ChallengeAttempt("tls-alpn-01", True),), self.ca.certified(name))


def make_manager(tmp_path: Path, fake: FakeObtain, **kwargs: object) -> CertManager:
    manager = CertManager(DIRECTORY, tmp_path, **kwargs)  # type: ignore[arg-type]
    manager._obtain = fake  # type: ignore[method-assign]
    return manager


def aged(ca: MiniCA, host: str, *, age_days: float, days: float = 90) -> CertifiedKey:
    issued = ca.issue(
        host, days=days, not_before=dt.datetime.now(dt.UTC) - dt.timedelta(days=age_days)
    )
    return certified_key_from_pem(issued.cert_pem, issued.key_pem)


def test_wildcards_are_refused_with_kamal_proxys_message(tmp_path: Path, ca: MiniCA) -> None:
    fake = FakeObtain(ca)
    manager = make_manager(tmp_path, fake)
    with pytest.raises(ProxyError) as err:
        asyncio.run(manager.ensure("*.example.com"))
    assert err.value.message == "automatic TLS does not support wildcards"
    assert fake.calls == []


def test_only_hosts_the_policy_allows(tmp_path: Path, ca: MiniCA) -> None:
    fake = FakeObtain(ca)
    manager = make_manager(tmp_path, fake, host_policy=lambda host: host == "ok.test")
    with pytest.raises(ProxyError, match=r"not enabled for host evil\.test"):
        asyncio.run(manager.ensure("evil.test"))
    assert fake.calls == []
    assert asyncio.run(manager.ensure("OK.test:443")).names == ("ok.test",)
    assert fake.calls == ["ok.test"]


def test_bad_host_names_never_reach_the_ca(tmp_path: Path, ca: MiniCA) -> None:
    fake = FakeObtain(ca)
    manager = make_manager(tmp_path, fake)
    for bad in ("../x", "a b.test", ""):
        with pytest.raises(ProxyError):
            asyncio.run(manager.ensure(bad))
    assert fake.calls == []


def test_concurrent_requests_share_one_issuance_off_the_loop(tmp_path: Path, ca: MiniCA) -> None:
    # The exchange waits until the event loop has answered it: had it run on the loop, the
    # loop could not answer and `answered` would stay unset.
    started, answered = threading.Event(), threading.Event()

    def hold() -> None:
        started.set()
        assert answered.wait(30), "the event loop stood still during the issuance"

    fake = FakeObtain(ca, hold=hold)
    manager = make_manager(tmp_path, fake)

    async def scenario() -> list[CertifiedKey]:
        async def answer() -> None:  # runs on the loop while the exchange is under way
            while not started.is_set():
                await asyncio.sleep(0.01)
            answered.set()

        answering = asyncio.create_task(answer())
        results = await asyncio.gather(*(manager.ensure("shared.test") for _ in range(8)))
        await answering
        return results

    results = asyncio.run(scenario())
    assert fake.calls == ["shared.test"]
    assert all(r is results[0] for r in results)
    assert threading.main_thread().name not in fake.threads
    assert manager.cached("shared.test") is results[0]
    assert manager.issuances["shared.test"].attempts == (ChallengeAttempt("tls-alpn-01", True),)


def test_a_cancelled_waiter_does_not_cancel_the_issuance(tmp_path: Path, ca: MiniCA) -> None:
    fake = FakeObtain(ca, delay=0.2)
    manager = make_manager(tmp_path, fake)

    async def scenario() -> CertifiedKey:
        impatient = asyncio.create_task(manager.ensure("c.test"))
        patient = asyncio.create_task(manager.ensure("c.test"))
        await asyncio.sleep(0.05)
        impatient.cancel()
        return await patient

    assert asyncio.run(scenario()).names == ("c.test",)
    assert fake.calls == ["c.test"]


def test_cache_on_disk_is_used_before_issuing(tmp_path: Path, ca: MiniCA) -> None:
    fake = FakeObtain(ca)
    first = make_manager(tmp_path, fake)
    issued = asyncio.run(first.ensure("disk.test"))
    second = make_manager(tmp_path, fake)  # a restarted proxy
    assert second.cached("disk.test") is None
    again = asyncio.run(second.ensure("disk.test"))
    assert again.chain_pem == issued.chain_pem
    assert fake.calls == ["disk.test"]


def test_expired_certificate_is_replaced_before_use(tmp_path: Path, ca: MiniCA) -> None:
    fake = FakeObtain(ca)
    manager = make_manager(tmp_path, fake)
    old = aged(ca, "old.test", age_days=100, days=90)
    manager.store.save("old.test", old)
    new = asyncio.run(manager.ensure("old.test"))
    assert new.not_after > old.not_after
    assert fake.calls == ["old.test"]


def test_due_certificate_is_served_and_renewed_in_the_background(
    tmp_path: Path, ca: MiniCA
) -> None:
    fake = FakeObtain(ca, delay=0.1)
    manager = make_manager(tmp_path, fake)
    due = aged(ca, "due.test", age_days=70, days=90)  # 20 days left < 30
    manager.store.save("due.test", due)

    async def scenario() -> tuple[CertifiedKey, CertifiedKey | None]:
        served = await manager.ensure("due.test")
        assert fake.calls == []  # returned at once, renewal still running
        for _ in range(100):
            if manager.cached("due.test") is not served:
                break
            await asyncio.sleep(0.02)
        await manager.aclose()
        return served, manager.cached("due.test")

    served, renewed = asyncio.run(scenario())
    assert served.chain_pem == due.chain_pem
    assert fake.calls == ["due.test"]
    assert renewed is not None and renewed.not_after > due.not_after
    reloaded = manager.store.load("due.test")
    assert reloaded is not None
    assert reloaded.not_after == renewed.not_after  # the cache file was replaced too


def test_renew_due_renews_only_what_is_due(tmp_path: Path, ca: MiniCA) -> None:
    fake = FakeObtain(ca)
    manager = make_manager(tmp_path, fake, renew_before=dt.timedelta(days=15))
    manager.store.save("fresh.test", aged(ca, "fresh.test", age_days=1))
    manager.store.save("due.test", aged(ca, "due.test", age_days=80))

    async def scenario() -> list[str]:
        await manager.ensure("fresh.test")
        await manager.ensure("due.test")  # 10 days left < 15: renewal starts in background
        await manager.aclose()
        fake.calls.clear()
        manager._certs["due.test"] = aged(ca, "due.test", age_days=80)
        return await manager.renew_due()

    assert asyncio.run(scenario()) == ["due.test"]
    assert fake.calls == ["due.test"]


def test_failures_are_remembered_for_the_backoff(tmp_path: Path, ca: MiniCA) -> None:
    fake = FakeObtain(ca, fail="could not obtain a certificate for f.test: http-01: refused")
    manager = make_manager(tmp_path, fake, failure_backoff=60)

    async def scenario() -> None:
        for _ in range(3):
            with pytest.raises(ProxyError, match="http-01: refused"):
                await manager.ensure("f.test")

    asyncio.run(scenario())
    assert fake.calls == ["f.test"]
    # without a backoff the same manager asks the CA again at once, each time
    retry = make_manager(tmp_path, fake, failure_backoff=0)

    async def twice() -> None:
        for _ in range(2):
            with pytest.raises(ProxyError, match="http-01: refused"):
                await retry.ensure("f.test")

    asyncio.run(twice())
    assert fake.calls == ["f.test", "f.test", "f.test"]


def test_unreachable_directory_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as s:  # a loopback port with nothing listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"https://127.0.0.1:{port}/dir"
    manager = CertManager(url, tmp_path, network_timeout=5)
    with pytest.raises(ProxyError) as err:
        asyncio.run(manager.ensure("x.test"))
    assert err.value.message == (
        f"could not obtain a certificate for x.test: ACME directory {url}: Connection refused"
    )


def test_ca_bundle_defaults_to_ssl_cert_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", "/some/ca.pem")
    assert CertManager(DIRECTORY, tmp_path).ca_bundle == "/some/ca.pem"
    assert CertManager(DIRECTORY, tmp_path, ca_bundle="/x.pem").ca_bundle == "/x.pem"
    monkeypatch.delenv("SSL_CERT_FILE")
    assert CertManager(DIRECTORY, tmp_path).ca_bundle is None


def test_challenge_types_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="dns-01"):
        CertManager(DIRECTORY, tmp_path, challenge_types=("dns-01",))
    with pytest.raises(ValueError):
        CertManager(DIRECTORY, tmp_path, challenge_types=())


def test_run_renewals_renews_periodically(tmp_path: Path, ca: MiniCA) -> None:
    fake = FakeObtain(ca)
    manager = make_manager(tmp_path, fake)

    async def scenario() -> None:
        manager._certs["due.test"] = aged(ca, "due.test", age_days=80)
        task = asyncio.create_task(manager.run_renewals(interval=0.05))
        for _ in range(100):
            await asyncio.sleep(0.02)
            if fake.calls:
                break
        # a later pass renews what has fallen due since
        manager._certs["late.test"] = aged(ca, "late.test", age_days=80)
        for _ in range(100):
            await asyncio.sleep(0.02)
            if len(fake.calls) > 1:
                break
        await asyncio.sleep(0.15)  # a few more passes: nothing is due any more
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
    assert fake.calls == ["due.test", "late.test"]  # each renewed once, then no longer due


def test_backoff_doubles_with_each_failure_in_a_row(
    tmp_path: Path, ca: MiniCA, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = FakeObtain(ca, fail="could not obtain a certificate for f.test: nope")
    manager = make_manager(tmp_path, fake, failure_backoff=10)
    now = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])

    def attempt() -> None:
        with pytest.raises(ProxyError):
            asyncio.run(manager.ensure("f.test"))

    attempt()  # failure 1: wait 10 s
    now[0] += 9.9
    attempt()
    assert len(fake.calls) == 1
    now[0] += 0.2
    attempt()  # failure 2: wait 20 s
    assert len(fake.calls) == 2
    now[0] += 19.9
    attempt()
    assert len(fake.calls) == 2
    now[0] += 0.2
    attempt()  # failure 3: wait 40 s
    assert len(fake.calls) == 3
    fake.fail = None
    now[0] += 40.1
    assert asyncio.run(manager.ensure("f.test")).names == ("f.test",)
    assert len(fake.calls) == 4


def test_importing_the_package_does_not_load_the_acme_stack() -> None:
    """acme pulls in requests and friends: only an actual issuance may import it."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "import dockyard.proxy.tls, dockyard.proxy.tls.manager, dockyard.proxy.tls.context\n"
        "import dockyard.proxy.tls.accept, dockyard.proxy.tls.store\n"
        "print(sorted(m for m in ('acme', 'josepy', 'requests') if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]"
