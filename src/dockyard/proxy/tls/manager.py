"""Automatic TLS: obtain and renew certificates from an ACME CA, on demand.

:class:`CertManager` is the asyncio face; the ACME protocol itself (the ``acme`` library, which
does blocking HTTP with ``requests``) runs in worker threads through :func:`asyncio.to_thread`, so
the event loop never waits on the CA.

Issuance for a host (RFC 8555): new order → for the challenge type being tried, put the
response on the :class:`ChallengeBoard` (HTTP-01 token, or TLS-ALPN-01 certificate) → answer →
poll → finalize → store. When validation with one type fails, a *new order* tries the next
type (the failed authorization made the first order invalid). Default order: TLS-ALPN-01, then
HTTP-01, like Go autocert; kamal-proxy users behind a CDN or NAT typically need the second.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from dockyard.errors import ProxyError
from dockyard.proxy.tls.certs import (
    CertificateError,
    CertifiedKey,
    certified_key_from_pem,
    generate_ec_key,
    private_key_pem,
)
from dockyard.proxy.tls.challenges import ChallengeBoard, host_without_port, tls_alpn01_certificate
from dockyard.proxy.tls.context import WILDCARD_ERROR
from dockyard.proxy.tls.store import CertStore, check_host_name

__all__ = [
    "CHALLENGE_TYPES",
    "CertManager",
    "ChallengeAttempt",
    "Issuance",
]

log = logging.getLogger("dockyard.proxy.tls")

HTTP_01: Final = "http-01"
TLS_ALPN_01: Final = "tls-alpn-01"
CHALLENGE_TYPES: Final = (TLS_ALPN_01, HTTP_01)


@dataclass(frozen=True, slots=True)
class ChallengeAttempt:
    """One order tried with one challenge type."""

    type: str
    ok: bool
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Issuance:
    """The outcome of obtaining a certificate for one host."""

    host: str
    attempts: tuple[ChallengeAttempt, ...]
    certified: CertifiedKey


@dataclass(frozen=True, slots=True)
class _Failure:
    """A failed issuance: no new attempt before ``retry_at`` (monotonic); the delay doubles
    with each failure in a row (``failure_backoff`` up to one hour), which keeps a broken host
    well under the CA's rate limits (Let's Encrypt: 5 failed validations per host per hour)."""

    retry_at: float
    message: str
    count: int


class _ChallengeFailed(Exception):
    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


def _problem_text(exc: BaseException) -> str:
    """A one-line description of an ACME failure (the CA's problem detail when there is one)."""
    from acme import errors as acme_errors

    if isinstance(exc, acme_errors.ValidationError):
        parts = []
        for authzr in exc.failed_authzrs:
            for challb in authzr.body.challenges:
                if challb.error is not None:
                    parts.append(str(challb.error.detail or challb.error.typ))
        return "; ".join(parts) or "validation failed"
    text = " ".join(str(exc).split())
    # requests/urllib3 wrap the cause several layers deep: surface what a user can act on.
    verify = re.search(r"certificate verify failed: ([^(\"')]+)", text)
    if verify:
        return (
            f"the ACME server's TLS certificate is not trusted ({verify.group(1).strip()}); "
            "point SSL_CERT_FILE at the right CA bundle"
        )
    errno = re.search(r"\[Errno -?\d+\] ([^(\"')]+)", text)
    if errno:
        return errno.group(1).strip()
    if len(text) > 300:
        text = text[:297] + "..."
    return text or type(exc).__name__


class CertManager:
    """Obtains, caches and renews ACME certificates (see the module docstring).

    ``directory_url``: the ACME directory (Let's Encrypt, its staging, or any RFC 8555 CA).
    ``cache_dir``: the cache root (``--tls-acme-cache-path``, default ``<data dir>/certs``); the
    files go to ``<cache_dir>/<sha256 hex of directory_url>/``. ``ca_bundle``: the CA file that
    verifies the ACME server (default: ``$SSL_CERT_FILE`` when set, else the system/certifi
    store). ``email``: the account contact (optional). ``host_policy``: which hosts may get a
    certificate (:meth:`TlsSelector.acme_allows` once a selector is attached); with no policy
    every valid non-wildcard name is allowed.
    """

    def __init__(
        self,
        directory_url: str,
        cache_dir: str | Path,
        *,
        ca_bundle: str | Path | None = None,
        email: str | None = None,
        host_policy: Callable[[str], bool] | None = None,
        challenge_types: Sequence[str] = CHALLENGE_TYPES,
        renew_before: dt.timedelta | None = None,
        failure_backoff: float = 60.0,
        order_timeout: float = 90.0,
        network_timeout: float = 30.0,
        clock: Callable[[], dt.datetime] | None = None,
    ) -> None:
        unknown = [t for t in challenge_types if t not in CHALLENGE_TYPES]
        if unknown or not challenge_types:
            raise ValueError(f"challenge types must be among {CHALLENGE_TYPES}, got {unknown}")
        self.directory_url = directory_url
        self.store = CertStore(cache_dir, directory_url)
        if ca_bundle is None:
            ca_bundle = os.environ.get("SSL_CERT_FILE") or None
        self.ca_bundle = str(ca_bundle) if ca_bundle is not None else None
        self.email = email
        self.host_policy = host_policy
        self.challenge_types = tuple(challenge_types)
        self.renew_before = renew_before
        self.failure_backoff = failure_backoff
        self.order_timeout = order_timeout
        self.network_timeout = network_timeout
        self._clock = clock or (lambda: dt.datetime.now(dt.UTC))
        self.board = ChallengeBoard()
        self._certs: dict[str, CertifiedKey] = {}
        self._inflight: dict[str, asyncio.Task[CertifiedKey]] = {}
        self._failures: dict[str, _Failure] = {}
        self._background: set[asyncio.Task[Any]] = set()
        self._account_lock = threading.Lock()
        self._account_uri: str | None = None
        #: The last issuance per host (for logs, status and tests).
        self.issuances: dict[str, Issuance] = {}

    # -- the event-loop side ------------------------------------------------------------------

    def cached(self, host: str) -> CertifiedKey | None:
        """The certificate in memory for ``host`` if it has not expired (never blocks)."""
        certified = self._certs.get(host_without_port(host))
        if certified is None or certified.expired(self._clock()):
            return None
        return certified

    def http01_response(self, host: str, path: str) -> bytes | None:
        """Body for an HTTP-01 request (see :meth:`ChallengeBoard.http01_response`)."""
        return self.board.http01_response(host, path)

    def _check_host(self, host: str) -> str:
        name = host_without_port(host)
        if "*" in name:
            raise ProxyError(WILDCARD_ERROR)
        try:
            name = check_host_name(name)
        except ValueError as exc:
            raise ProxyError(str(exc)) from exc
        if self.host_policy is not None and not self.host_policy(name):
            raise ProxyError(
                f"automatic TLS is not enabled for host {name} (no service declares it)"
            )
        return name

    async def ensure(self, host: str) -> CertifiedKey:
        """A valid certificate for ``host``: from memory, from the cache directory, or newly
        issued (concurrent callers for the same host share one issuance).

        A certificate that is still valid but due for renewal is returned at once and renewed
        in the background. Raises :class:`ProxyError` when the host is not allowed, or when
        issuance failed (a failure is remembered for ``failure_backoff`` seconds, doubling with
        each failure in a row up to an hour, so handshakes do not hammer the CA).
        """
        name = self._check_host(host)
        now = self._clock()
        certified = self._certs.get(name)
        if certified is None:
            certified = await asyncio.to_thread(self.store.load, name)
            if certified is not None and not certified.expired(now):
                self._certs[name] = certified
        if certified is not None and not certified.expired(now):
            self.renew_if_due(name)
            return certified
        failed = self._failures.get(name)
        if failed is not None and time.monotonic() < failed.retry_at:
            raise ProxyError(failed.message)
        return await asyncio.shield(self._issue_shared(name))

    def _issue_shared(self, name: str) -> asyncio.Task[CertifiedKey]:
        task = self._inflight.get(name)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._issue(name))
            self._inflight[name] = task
            task.add_done_callback(lambda _t: self._inflight.pop(name, None))
        return task

    async def _issue(self, name: str) -> CertifiedKey:
        try:
            issuance = await asyncio.to_thread(self._obtain, name)
        except ProxyError as exc:
            previous = self._failures.get(name)
            count = previous.count + 1 if previous is not None else 1
            delay = min(self.failure_backoff * 2 ** (count - 1), max(self.failure_backoff, 3600))
            self._failures[name] = _Failure(time.monotonic() + delay, exc.message, count)
            log.error("%s (next attempt in %.0f s at the earliest)", exc.message, delay)
            raise
        try:
            await asyncio.to_thread(self.store.save, name, issuance.certified)
        except OSError as exc:  # still served from memory; issued again after a restart
            log.error(
                "could not write the certificate for %s to %s: %s", name, self.store.path, exc
            )
        self._failures.pop(name, None)
        self._certs[name] = issuance.certified
        self.issuances[name] = issuance
        used = next(a.type for a in issuance.attempts if a.ok)
        log.info(
            "obtained certificate for %s with %s, valid until %s",
            name,
            used,
            issuance.certified.not_after.isoformat(),
        )
        return issuance.certified

    def renew_if_due(self, host: str) -> None:
        """Start a background renewal when the in-memory certificate for ``host`` is due
        (cheap; the data plane calls it on handshakes that use a cached certificate)."""
        name = host_without_port(host)
        certified = self._certs.get(name)
        if certified is not None and self._clock() >= certified.renew_at(self.renew_before):
            failed = self._failures.get(name)
            if failed is None or time.monotonic() >= failed.retry_at:
                self._renew_in_background(name)

    def _renew_in_background(self, name: str) -> None:
        if name in self._inflight:
            return
        task = self._issue_shared(name)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        task.add_done_callback(_consume_exception)

    async def renew_due(self) -> list[str]:
        """Renew every cached certificate that is due; returns the hosts renewed.

        Meant to be called periodically (e.g. hourly) by the proxy's main task group.
        """
        now = self._clock()
        due = [
            name
            for name, certified in list(self._certs.items())
            if now >= certified.renew_at(self.renew_before)
            and (self.host_policy is None or self.host_policy(name))
        ]
        renewed: list[str] = []
        for name in due:
            try:
                await asyncio.shield(self._issue_shared(name))
            except ProxyError:
                continue
            renewed.append(name)
        return renewed

    async def run_renewals(self, interval: float = 3600.0) -> None:
        """Call :meth:`renew_due` every ``interval`` seconds, until cancelled (a task for the
        proxy's main task group)."""
        while True:
            await asyncio.sleep(interval)
            renewed = await self.renew_due()
            if renewed:
                log.info("renewed certificates: %s", ", ".join(renewed))

    async def aclose(self) -> None:
        """Wait for background renewals to end (a thread in the middle of an ACME call cannot
        be interrupted; its result is dropped)."""
        tasks = list(self._background) + list(self._inflight.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- the worker-thread side (blocking) --------------------------------------------------

    def _client(self) -> tuple[Any, Any]:
        """A fresh ACME client for this thread (requests sessions and nonces are not shared),
        logged in with the persisted account key (registered once per process)."""
        from acme import client as acme_client
        from acme import errors as acme_errors
        from acme import messages
        from josepy.jwa import ES256
        from josepy.jwk import JWKEC

        with self._account_lock:
            account_key = JWKEC(key=self.store.account_key())
        net = acme_client.ClientNetwork(
            account_key,
            alg=ES256,
            # requests accepts a CA file path where acme annotates a bool.
            verify_ssl=self.ca_bundle if self.ca_bundle is not None else True,  # type: ignore[arg-type]
            user_agent="dockyard-proxy",
            timeout=int(self.network_timeout),
        )
        directory = acme_client.ClientV2.get_directory(self.directory_url, net)
        client = acme_client.ClientV2(directory, net)
        with self._account_lock:
            if self._account_uri is None:
                registration = messages.NewRegistration.from_data(
                    email=self.email, terms_of_service_agreed=True
                )
                try:
                    regr = client.new_account(registration)
                    self._account_uri = regr.uri
                except acme_errors.ConflictError as exc:  # the key already has an account
                    self._account_uri = exc.location
            net.account = messages.RegistrationResource(
                uri=self._account_uri, body=messages.Registration()
            )
        return client, account_key

    def _obtain(self, name: str) -> Issuance:
        """Run the whole ACME issuance for ``name`` (blocking)."""
        from acme import crypto_util

        try:
            client, account_key = self._client()
        except ProxyError:
            raise
        except Exception as exc:
            raise ProxyError(
                f"could not obtain a certificate for {name}: ACME directory "
                f"{self.directory_url}: {_problem_text(exc)}"
            ) from exc
        key = generate_ec_key()
        key_pem = private_key_pem(key)
        csr_pem = crypto_util.make_csr(key_pem, [name])
        attempts: list[ChallengeAttempt] = []
        for typ in self.challenge_types:
            try:
                chain_pem = self._order(client, account_key, name, csr_pem, typ)
            except _ChallengeFailed as exc:
                attempts.append(ChallengeAttempt(typ, False, exc.detail))
                log.warning("ACME %s for %s failed: %s", typ, name, exc.detail)
                continue
            except Exception as exc:
                attempts.append(ChallengeAttempt(typ, False, _problem_text(exc)))
                log.warning("ACME order for %s (%s) failed: %s", name, typ, _problem_text(exc))
                continue
            attempts.append(ChallengeAttempt(typ, True))
            try:
                certified = certified_key_from_pem(
                    chain_pem.encode(), key_pem, cert_source=f"certificate issued for {name}"
                )
            except CertificateError as exc:
                raise ProxyError(exc.message) from exc
            return Issuance(name, tuple(attempts), certified)
        details = "; ".join(f"{a.type}: {a.detail}" for a in attempts)
        raise ProxyError(f"could not obtain a certificate for {name}: {details}")

    def _order(self, client: Any, account_key: Any, name: str, csr_pem: bytes, typ: str) -> str:
        """One order solved with one challenge type; returns the full chain PEM."""
        from acme import errors as acme_errors
        from acme import messages
        from josepy import b64

        deadline = dt.datetime.now() + dt.timedelta(seconds=self.order_timeout)
        order = client.new_order(csr_pem)
        thumbprint = b64.b64encode(account_key.thumbprint()).decode()
        for authzr in order.authorizations:
            if authzr.body.status == messages.STATUS_VALID:
                continue  # the CA reused a valid authorization: nothing to solve
            challb = next((c for c in authzr.body.challenges if _challenge_type(c) == typ), None)
            if challb is None:
                raise _ChallengeFailed("not offered by the CA")
            token = challb.chall.to_partial_json().get("token", "")
            if not token or not all(c.isalnum() or c in "-_" for c in token):
                raise _ChallengeFailed(f"bad token {token!r} from the CA")
            key_authorization = f"{token}.{thumbprint}"
            if typ == HTTP_01:
                self.board.put_http01(name, token, key_authorization)
            else:
                self.board.put_tls_alpn01(name, tls_alpn01_certificate(name, key_authorization))
            try:
                client.answer_challenge(challb, _ready_response(key_authorization))
                client.poll_authorizations(order, deadline)
            except acme_errors.ValidationError as exc:
                raise _ChallengeFailed(_problem_text(exc)) from exc
            finally:
                if typ == HTTP_01:
                    self.board.drop_http01(name, token)
                else:
                    self.board.drop_tls_alpn01(name)
        finalized = client.finalize_order(order, deadline)
        chain: str = finalized.fullchain_pem
        return chain


def _challenge_type(challb: Any) -> str:
    """The ``type`` of a challenge body, also for types acme does not model (tls-alpn-01)."""
    return str(challb.chall.to_partial_json().get("type", ""))


def _consume_exception(task: asyncio.Task[Any]) -> None:
    if not task.cancelled():
        task.exception()


_RESPONSE_CLASS: list[Any] = []


def _ready_response(key_authorization: str) -> Any:
    """The (empty) JSON body that tells the CA a challenge is ready (RFC 8555 §7.5.1).

    acme 5 no longer models TLS-ALPN-01 (its challenge arrives as ``UnrecognizedChallenge``);
    the body is ``{}`` for every type, which this key-authorization response serialises to.
    """
    if not _RESPONSE_CLASS:
        from acme import challenges

        class _Ready(challenges.KeyAuthorizationChallengeResponse):
            typ = "ready"

        _RESPONSE_CLASS.append(_Ready)
    return _RESPONSE_CLASS[0](key_authorization=key_authorization)
