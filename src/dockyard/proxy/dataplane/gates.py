"""Per-service access gates: HTTP basic auth, an IP allowlist and a trusted client-IP header.

Not in kamal-proxy v0.9.2; its users ask for all three (basic auth: kamal #1604, kamal-proxy PR
#216; allowlists; `CF-Connecting-IP` / `X-Real-IP` behind Cloudflare or a load balancer).

`ServiceGate` implements `contract.AccessGate`. The data plane calls it for every request of a
service that has one, so the work per request is small: a scan of the raw header lines for one
name, a dict lookup per client address, and a digest lookup for credentials already verified.

Basic auth checks the password against a bcrypt hash (`$2a$`/`$2b$`/`$2y$`, as `htpasswd -B`
or `mkpasswd -m bcrypt` write them). bcrypt is slow on purpose (about 0.1-0.3 s at cost 10), and
`check` runs on the event loop, so verified credentials are remembered (by SHA-256, never in
clear), repeated wrong ones too, and new verifications are limited per second: beyond the budget
the client gets 429 with `Retry-After: 1` rather than the loop stalling for everybody.

After the check the `Authorization` line is removed from the request: the credentials were for
the proxy, so neither the target nor the access log (`--log-request-header`) sees them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Final

from dockyard.errors import ProxyError
from dockyard.proxy.contract import Refusal

if TYPE_CHECKING:
    from dockyard.proxy.http.parser import RequestHead

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

BCRYPT_PREFIXES: Final = ("$2a$", "$2b$", "$2y$")
#: Uncached bcrypt verifications allowed per second and per service.
VERIFY_BUDGET: Final = 8
#: How many verified (and how many refused) credentials each gate remembers.
CACHE_SIZE: Final = 256
#: How many client addresses' allowlist verdicts each gate remembers.
ADDRESS_CACHE_SIZE: Final = 4096

_AUTHORIZATION: Final = b"authorization:"
_BASIC: Final = b"basic "


class GateConfigError(ProxyError):
    """A bad --basic-auth-*, --allow-ip or --client-ip-header value."""


def parse_network(text: str) -> Network:
    """An `--allow-ip` value: an IPv4/IPv6 address or CIDR (host bits may be set)."""
    value = text.strip()
    try:
        return ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise GateConfigError(
            f"invalid --allow-ip value {text!r}",
            hint="use an IPv4 or IPv6 address or CIDR, e.g. 203.0.113.0/24 or 2001:db8::/32",
        ) from None


def check_password_hash(value: str) -> None:
    """Refuse anything but a well-formed bcrypt hash."""
    if not value.startswith(BCRYPT_PREFIXES) or len(value) != 60:
        raise GateConfigError(
            "--basic-auth-password-hash must be a bcrypt hash ($2b$..., 60 characters)",
            hint="make one with `htpasswd -nbB user PASSWORD | cut -d: -f2` or "
            "`python -c 'import bcrypt; print(bcrypt.hashpw(b\"PASSWORD\", bcrypt.gensalt()))'`",
        )
    parts = value.split("$")
    if len(parts) != 4 or not parts[2].isdigit() or not 4 <= int(parts[2]) <= 31:
        raise GateConfigError("--basic-auth-password-hash has an invalid bcrypt cost")


_HEADER_NAME_CHARS: Final = frozenset(
    "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
)


def check_header_name(name: str) -> None:
    if not name or not set(name) <= _HEADER_NAME_CHARS:
        raise GateConfigError(f"invalid --client-ip-header {name!r}: not an HTTP header name")


def _address(text: bytes) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """A client address as a header or the socket gives it; None for anything else."""
    value = text.strip()
    if value.startswith(b"[") and value.endswith(b"]"):
        value = value[1:-1]
    if not value or len(value) > 64:
        return None
    try:
        address = ipaddress.ip_address(value.decode("ascii"))
    except (ValueError, UnicodeDecodeError):
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


class ServiceGate:
    """Implements `contract.AccessGate` for one deploy's options."""

    __slots__ = (
        "_accepted",
        "_allowed",
        "_hash",
        "_header",
        "_header_is_xff",
        "_networks",
        "_parsed",
        "_refused",
        "_spent",
        "_unauthorized",
        "_user",
        "_window",
        "service",
    )

    def __init__(
        self,
        service: str,
        *,
        user: str = "",
        password_hash: str = "",
        allow: Iterable[str] = (),
        client_ip_header: str = "",
    ) -> None:
        if bool(user) != bool(password_hash):
            raise GateConfigError(
                "--basic-auth-user and --basic-auth-password-hash must be given together"
            )
        if ":" in user:
            raise GateConfigError("--basic-auth-user must not contain ':'")
        if password_hash:
            check_password_hash(password_hash)
        if client_ip_header:
            check_header_name(client_ip_header)
        self.service = service
        self._user = user.encode("utf-8")
        self._hash = password_hash.encode("ascii")
        self._networks = tuple(parse_network(text) for text in allow)
        lower = client_ip_header.lower()
        self._header_is_xff = lower == "x-forwarded-for"
        self._header = lower.encode("ascii") + b":" if lower else b""
        realm = service.replace("\\", "\\\\").replace('"', '\\"')
        self._unauthorized = Refusal(
            401,
            f'WWW-Authenticate: Basic realm="{realm}", charset="UTF-8"\r\n'.encode(),
            "Authentication required",
        )
        self._allowed: dict[bytes, bool] = {}
        #: Raw header value -> the first valid address in it (b"" for none).
        self._parsed: dict[bytes, bytes] = {}
        self._accepted: dict[bytes, None] = {}
        self._refused: dict[bytes, None] = {}
        self._window = 0
        self._spent = 0

    @property
    def has_auth(self) -> bool:
        return bool(self._hash)

    @property
    def networks(self) -> tuple[Network, ...]:
        return self._networks

    # -- contract.AccessGate ---------------------------------------------------------------------

    def client_ip(self, head: RequestHead, peer_ip: bytes) -> bytes:
        header = self._header
        if not header:
            return peer_ip
        if self._header_is_xff:
            values = head.xff or ()
        else:
            size = len(header)
            values = [line[size:] for line in head.lines if line[:size].lower() == header]
        parsed = self._parsed
        for value in values:
            found = parsed.get(value, b"?")
            if found == b"?":
                found = b""
                for part in value.split(b","):
                    address = _address(part)
                    if address is not None:
                        found = str(address).encode("ascii")
                        break
                if len(parsed) >= ADDRESS_CACHE_SIZE:
                    parsed.clear()
                parsed[value] = found
            if found:
                return found
        return peer_ip

    def check(self, head: RequestHead, client_ip: bytes) -> Refusal | None:
        if self._networks and not self._address_allowed(client_ip):
            return Refusal(403, b"", "Your address is not allowed to access this site")
        if self._hash:
            return self._authenticate(head)
        return None

    # -- allowlist -------------------------------------------------------------------------------

    def _address_allowed(self, client_ip: bytes) -> bool:
        verdict = self._allowed.get(client_ip)
        if verdict is None:
            address = _address(client_ip)
            verdict = address is not None and any(
                address.version == net.version and address in net for net in self._networks
            )
            if len(self._allowed) >= ADDRESS_CACHE_SIZE:
                self._allowed.clear()
            self._allowed[client_ip] = verdict
        return verdict

    # -- basic auth ------------------------------------------------------------------------------

    def _authenticate(self, head: RequestHead) -> Refusal | None:
        lines = head.lines
        found = [i for i, line in enumerate(lines) if line[:14].lower() == _AUTHORIZATION]
        if not found:
            return self._unauthorized
        value = lines[found[0]][14:].strip()
        for index in reversed(found):
            del lines[index]  # never forwarded, never logged
        if len(found) != 1:
            return self._unauthorized
        if value[:6].lower() != _BASIC:
            return self._unauthorized
        token = value[6:].strip()
        if not token:
            return self._unauthorized
        digest = hashlib.sha256(token).digest()
        if digest in self._accepted:
            return None
        if digest in self._refused:
            return self._unauthorized
        try:
            decoded = base64.b64decode(token, validate=True)
        except (binascii.Error, ValueError):
            return self._unauthorized
        user, sep, password = decoded.partition(b":")
        if not sep:
            return self._unauthorized
        if not self._spend():
            return Refusal(429, b"Retry-After: 1\r\n", "Too many login attempts, try again")
        ok = hmac.compare_digest(user, self._user) & self._password_ok(password)
        cache = self._accepted if ok else self._refused
        if len(cache) >= CACHE_SIZE:
            cache.clear()
        cache[digest] = None
        return None if ok else self._unauthorized

    def _password_ok(self, password: bytes) -> bool:
        import bcrypt

        try:
            return bool(bcrypt.checkpw(password, self._hash))
        except ValueError:  # longer than 72 bytes, or a hash bcrypt cannot read
            return False

    def _spend(self) -> bool:
        """One uncached bcrypt verification, if this second's budget allows it."""
        now = int(time.monotonic())
        if now != self._window:
            self._window = now
            self._spent = 0
        if self._spent >= VERIFY_BUDGET:
            return False
        self._spent += 1
        return True


def build_gate(
    service: str,
    *,
    user: str = "",
    password_hash: str = "",
    allow: Iterable[str] = (),
    client_ip_header: str = "",
) -> ServiceGate | None:
    """The gate for a deploy's options, or None when none of them is set (the fast path)."""
    allow = tuple(allow)
    if not (user or password_hash or allow or client_ip_header):
        return None
    return ServiceGate(
        service,
        user=user,
        password_hash=password_hash,
        allow=allow,
        client_ip_header=client_ip_header,
    )
