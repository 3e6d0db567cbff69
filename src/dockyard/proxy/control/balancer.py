"""A load balancer: one deployment's writer and reader targets, their health checks, round-robin
selection, the health gate and the drain.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from dockyard.errors import ProxyError
from dockyard.proxy.control.durations import format_duration, seconds
from dockyard.proxy.control.health import HealthCheckFailed, Probe, http_probe
from dockyard.proxy.control.log import event
from dockyard.proxy.control.options import HealthCheckConfig, TargetAddress
from dockyard.proxy.control.target import ProxyTarget, TargetEvent, TargetState

logger = logging.getLogger("dockyard.proxy.control")

WRITER_COOKIE = "kamal-writer"
#: A target not yet healthy is probed again after FIRST_RETRY seconds, every FIRST_RETRY for
#: its first EARLY_WINDOW seconds (an app booting is usually a few hundred ms from listening,
#: and a doubling wait would find it up to twice as late), then with the wait doubling up to
#: --health-check-interval (which then applies, as it always does once the target has been
#: healthy). The first probe is immediate. A refused probe costs a connect; 40 a second is
#: nothing to a small server.
FIRST_RETRY = 0.025
EARLY_WINDOW = 2.0


class TargetsUnhealthyError(ProxyError):
    pass


def cookie_value(cookies: str | None, name: str) -> str | None:
    if not cookies:
        return None
    for part in cookies.split(";"):
        key, sep, value = part.strip().partition("=")
        if sep and key == name:
            return value.strip().strip('"')
    return None


class LoadBalancer:
    """The targets of one deployment (the active slot of a service)."""

    def __init__(
        self,
        writers: tuple[TargetAddress, ...],
        readers: tuple[TargetAddress, ...],
        health_check: HealthCheckConfig,
        *,
        service: str = "",
        probe: Probe | None = None,
    ) -> None:
        self.writers = tuple(ProxyTarget(a) for a in writers)
        self.readers = tuple(ProxyTarget(a) for a in readers)
        self.health_check = health_check
        self.service = service
        self._probe: Probe = probe or http_probe
        self._next_writer = 0
        self._next_reader = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._changed = asyncio.Event()
        #: After the health gate, a single writer without readers is not checked any more.
        self.ongoing_checks = len(self.writers) + len(self.readers) > 1

    @property
    def targets(self) -> tuple[ProxyTarget, ...]:
        return self.writers + self.readers

    @property
    def target_names(self) -> list[str]:
        return [t.name for t in self.writers]

    @property
    def reader_names(self) -> list[str]:
        return [t.name for t in self.readers]

    # -- health --------------------------------------------------------------------------------

    def start_health_checks(self) -> None:
        for target in self.targets:
            task = asyncio.get_running_loop().create_task(
                self._check_loop(target), name=f"health {self.service} {target.name}"
            )
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def stop_health_checks(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _check_loop(self, target: ProxyTarget) -> None:
        interval = seconds(self.health_check.interval)
        early = 0  # failed probes after the early window (see FIRST_RETRY)
        first = time.monotonic()
        while True:
            started = time.monotonic()
            try:
                await self._probe(target.address, self.health_check)
            except HealthCheckFailed as exc:
                event(
                    logger,
                    "Healthcheck failed",
                    level=logging.INFO,
                    service=self.service,
                    target=target.name,
                    url=exc.url,
                    error=exc.reason,
                )
                self._update(target, TargetEvent.PROBE_FAILED)
            except OSError as exc:
                event(
                    logger,
                    "Healthcheck failed",
                    service=self.service,
                    target=target.name,
                    error=str(exc),
                )
                self._update(target, TargetEvent.PROBE_FAILED)
            else:
                self._update(target, TargetEvent.PROBE_OK)
                if target.healthy and not self.ongoing_checks:
                    return
            wait = interval
            if target.state is TargetState.ADDING:
                # a new target is usually a moment away from listening: look again soon,
                # backing off to the interval, rather than a whole interval later
                if started - first < EARLY_WINDOW:
                    wait = min(interval, FIRST_RETRY)
                else:
                    wait = min(interval, FIRST_RETRY * 2**early)
                    early += 1
            await asyncio.sleep(max(0.0, wait - (time.monotonic() - started)))

    def _update(self, target: ProxyTarget, ev: TargetEvent) -> None:
        if target.state is TargetState.DRAINING:
            return
        was, now = target.apply(ev)
        if was is not now:
            event(
                logger,
                "Target health updated",
                service=self.service,
                target=target.name,
                state=now.value,
                was=was.value,
            )
            self._changed.set()

    def all_healthy(self) -> bool:
        return all(t.healthy for t in self.targets)

    async def wait_until_healthy(self, timeout_ns: int) -> None:
        """The health gate: every target healthy within `timeout_ns`, else an error."""
        try:
            async with asyncio.timeout(seconds(timeout_ns)):
                while not self.all_healthy():
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            raise TargetsUnhealthyError(
                "target failed to become healthy within configured timeout "
                f"({format_duration(timeout_ns)})"
            ) from None

    def trust_all(self) -> None:
        """Mark every target healthy without probing (`--force`, restored state)."""
        for target in self.targets:
            target.apply(TargetEvent.TRUST)

    # -- selection -----------------------------------------------------------------------------

    def pick(
        self, *, read: bool, cookies: str | None, affinity_timeout_ns: int
    ) -> ProxyTarget | None:
        if read and self.readers and not self._writer_affinity(cookies, affinity_timeout_ns):
            target = self._round_robin(self.readers, reader=True)
            if target is not None:
                return target
        return self._round_robin(self.writers, reader=False)

    def _writer_affinity(self, cookies: str | None, affinity_timeout_ns: int) -> bool:
        if affinity_timeout_ns <= 0:
            return False
        value = cookie_value(cookies, WRITER_COOKIE)
        if value is None:
            return False
        try:
            expires_ms = int(value)
        except ValueError:
            return False
        return expires_ms > time.time() * 1000

    def _round_robin(self, pool: tuple[ProxyTarget, ...], *, reader: bool) -> ProxyTarget | None:
        count = len(pool)
        if count == 1:  # the common case: one target per role
            target = pool[0]
            return target if target.state is TargetState.HEALTHY else None
        start = self._next_reader if reader else self._next_writer
        for offset in range(count):
            index = (start + offset) % count
            target = pool[index]
            if target.healthy:
                if reader:
                    self._next_reader = index + 1
                else:
                    self._next_writer = index + 1
                return target
        return None

    # -- drain ---------------------------------------------------------------------------------

    async def drain(self, timeout_ns: int, *, refuse_new: bool = True) -> None:
        """Drain every target concurrently. A retired deployment (`refuse_new`) also stops its
        health checks; pause and stop drain the live one and keep its checks."""
        if refuse_new:
            await self.stop_health_checks()
        async with asyncio.TaskGroup() as group:
            for target in self.targets:
                group.create_task(
                    target.drain(timeout_ns, service=self.service, refuse_new=refuse_new)
                )
