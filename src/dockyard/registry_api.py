"""A small client for the registry HTTP API v2 (the Distribution spec): list tags, read a
manifest and its digest, read an image's creation time, delete a manifest by digest.

Blocking (``urllib``); flows call it in a thread. Basic auth is sent when credentials are given;
a ``401`` with a ``Bearer`` challenge is answered with a token fetched from the challenge's realm
(with the same credentials), as registries with token auth require. TLS is verified with the
system CA store, or ``SSL_CERT_FILE`` when set (or an explicit ``ca_file``).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from dockyard.errors import DockyardError

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
#: Every manifest type we understand; without these a registry may answer with (and give the
#: digest of) an old schema-1 manifest, whose digest cannot be deleted.
MANIFEST_ACCEPT = ", ".join((OCI_INDEX, OCI_MANIFEST, DOCKER_MANIFEST_LIST, DOCKER_MANIFEST))
INDEX_TYPES = (OCI_INDEX, DOCKER_MANIFEST_LIST)

DELETES_DISABLED_HINT = (
    "the registry must run with deletes enabled (distribution: storage.delete.enabled: true, "
    "or REGISTRY_STORAGE_DELETE_ENABLED=true); hosted registries (Docker Hub, GHCR, ECR) "
    "delete through their own APIs or retention policies"
)


class RegistryApiError(DockyardError):
    layer = "registry"

    def __init__(self, message: str, *, status: int | None = None, hint: str | None = None):
        super().__init__(message, hint=hint)
        self.status = status


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    headers: Mapping[str, str]
    body: bytes


#: ``(method, url, headers) -> Response``; raises OSError for network failures. Tests pass a fake.
Send = Callable[[str, str, Mapping[str, str]], Response]


def ssl_context(ca_file: str | None = None) -> ssl.SSLContext:
    """Verify with ``ca_file``, else ``$SSL_CERT_FILE``, else the system store."""
    cafile = ca_file or os.environ.get("SSL_CERT_FILE") or None
    return ssl.create_default_context(cafile=cafile)


def urllib_send(context: ssl.SSLContext, timeout: float) -> Send:
    def send(method: str, url: str, headers: Mapping[str, str]) -> Response:
        request = urllib.request.Request(url, method=method, headers=dict(headers))
        try:
            with urllib.request.urlopen(request, timeout=timeout, context=context) as reply:
                return Response(reply.status, _headers(reply.headers), reply.read())
        except urllib.error.HTTPError as exc:
            return Response(exc.code, _headers(exc.headers), exc.read())

    return send


def _headers(message: Any) -> dict[str, str]:
    return {k.lower(): v for k, v in message.items()} if message is not None else {}


_CHALLENGE_PARAM = re.compile(r'(\w+)="([^"]*)"')
_NEXT_LINK = re.compile(r'<([^>]+)>\s*;\s*rel="?next"?')


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """``Bearer realm="...",service="...",scope="..."`` -> ``("bearer", {realm, service, ...})``."""
    scheme, _, rest = header.strip().partition(" ")
    return scheme.lower(), dict(_CHALLENGE_PARAM.findall(rest))


def next_link(header: str | None) -> str | None:
    """The ``rel="next"`` target of a ``Link`` header (tag list pagination)."""
    if not header:
        return None
    match = _NEXT_LINK.search(header)
    return match.group(1) if match else None


@dataclass(frozen=True, slots=True)
class Manifest:
    digest: str
    media_type: str
    body: dict[str, Any]


class RegistryClient:
    """One registry (``host[:port]``); ``repository`` arguments are names without the host."""

    def __init__(
        self,
        server: str,
        username: str | None = None,
        password: str | None = None,
        *,
        scheme: str | None = None,
        send: Send | None = None,
        ca_file: str | None = None,
        timeout: float = 20.0,
    ) -> None:
        self.server = server
        host = server.split(":", 1)[0]
        self.scheme = scheme or ("http" if host in ("localhost", "127.0.0.1", "::1") else "https")
        self._username = username
        self._password = password
        self._send = send or urllib_send(ssl_context(ca_file), timeout)
        self._token: str | None = None

    # -- HTTP ----------------------------------------------------------------------------------

    def _url(self, path: str) -> str:
        return f"{self.scheme}://{self.server}{path}"

    def _auth_header(self) -> dict[str, str]:
        if self._token is not None:
            return {"Authorization": f"Bearer {self._token}"}
        if self._username is not None and self._password is not None:
            pair = f"{self._username}:{self._password}".encode()
            return {"Authorization": "Basic " + base64.b64encode(pair).decode()}
        return {}

    def request(
        self, method: str, path_or_url: str, headers: Mapping[str, str] | None = None
    ) -> Response:
        url = path_or_url if "://" in path_or_url else self._url(path_or_url)
        response = self._call(method, url, {**(headers or {}), **self._auth_header()})
        if response.status == 401 and self._token is None:
            scheme, params = parse_challenge(response.headers.get("www-authenticate", ""))
            if scheme == "bearer" and "realm" in params:
                self._token = self._fetch_token(params)
                response = self._call(method, url, {**(headers or {}), **self._auth_header()})
        if response.status == 401:
            raise RegistryApiError(
                f"registry {self.server}: {method} {_path(url)} was refused (401 unauthorized)",
                status=401,
                hint="check registry.username and registry.password (the secret) in the config",
            )
        return response

    def _call(self, method: str, url: str, headers: Mapping[str, str]) -> Response:
        try:
            return self._send(method, url, headers)
        except ssl.SSLError as exc:
            raise RegistryApiError(
                f"registry {self.server}: TLS verification failed ({exc})",
                hint="trust the registry's CA in the system store or point SSL_CERT_FILE at it",
            ) from exc
        except OSError as exc:
            raise RegistryApiError(f"registry {self.server}: cannot connect ({exc})") from exc

    def _fetch_token(self, params: Mapping[str, str]) -> str:
        query = {k: v for k, v in params.items() if k in ("service", "scope")}
        url = params["realm"] + ("?" + urllib.parse.urlencode(query) if query else "")
        headers: dict[str, str] = {}
        if self._username is not None and self._password is not None:
            pair = f"{self._username}:{self._password}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
        response = self._call("GET", url, headers)
        try:
            data = json.loads(response.body)
            token = data.get("token") or data.get("access_token")
        except (ValueError, AttributeError):
            token = None
        if response.status != 200 or not isinstance(token, str):
            raise RegistryApiError(
                f"registry {self.server}: no token from {params['realm']} (HTTP {response.status})",
                status=response.status,
            )
        return token

    def _expect(self, response: Response, what: str, *ok: int) -> None:
        if response.status in ok:
            return
        detail = _error_detail(response.body)
        raise RegistryApiError(
            f"registry {self.server}: {what} failed (HTTP {response.status}{detail})",
            status=response.status,
        )

    # -- API -----------------------------------------------------------------------------------

    def tags(self, repository: str) -> list[str]:
        """Every tag of ``repository`` (following ``Link`` pagination); [] if it has none."""
        tags: list[str] = []
        url: str | None = f"/v2/{repository}/tags/list?n=1000"
        while url is not None:
            response = self.request("GET", url)
            if response.status == 404 and not tags:
                return []
            self._expect(response, f"listing the tags of {repository}", 200)
            tags += json.loads(response.body).get("tags") or []
            link = next_link(response.headers.get("link"))
            url = urllib.parse.urljoin(self._url("/"), link) if link else None
        return tags

    def manifest(self, repository: str, reference: str) -> Manifest:
        """The manifest of a tag or digest, with its digest (``Docker-Content-Digest``, else the
        sha256 of the body as served)."""
        response = self.request(
            "GET", f"/v2/{repository}/manifests/{reference}", {"Accept": MANIFEST_ACCEPT}
        )
        self._expect(response, f"reading the manifest of {repository}:{reference}", 200)
        digest = response.headers.get("docker-content-digest") or (
            "sha256:" + hashlib.sha256(response.body).hexdigest()
        )
        body = json.loads(response.body)
        media_type = body.get("mediaType") or response.headers.get("content-type", "")
        return Manifest(digest, media_type.split(";")[0].strip(), body)

    def created(self, repository: str, manifest: Manifest) -> datetime | None:
        """The image's ``created`` time from its config blob (the first platform of an index)."""
        if manifest.media_type in INDEX_TYPES or "manifests" in manifest.body:
            children = manifest.body.get("manifests") or []
            if not children:
                return None
            manifest = self.manifest(repository, children[0]["digest"])
        config = manifest.body.get("config") or {}
        digest = config.get("digest")
        if not digest:
            return None
        response = self.request("GET", f"/v2/{repository}/blobs/{digest}")
        self._expect(response, f"reading the image config of {repository}", 200)
        try:
            text = json.loads(response.body).get("created")
        except (ValueError, AttributeError):
            return None
        return parse_time(text) if isinstance(text, str) else None

    def delete(self, repository: str, digest: str) -> None:
        """``DELETE /v2/<repo>/manifests/<digest>``: every tag pointing to it goes too."""
        response = self.request("DELETE", f"/v2/{repository}/manifests/{digest}")
        if response.status in (405, 400) and b"UNSUPPORTED" in response.body.upper():
            raise RegistryApiError(
                f"registry {self.server}: deleting is disabled (HTTP {response.status})",
                status=response.status,
                hint=DELETES_DISABLED_HINT,
            )
        if response.status == 405:
            raise RegistryApiError(
                f"registry {self.server}: deleting is not allowed (HTTP 405)",
                status=405,
                hint=DELETES_DISABLED_HINT,
            )
        self._expect(response, f"deleting {repository}@{digest}", 202, 200)


def parse_time(text: str) -> datetime | None:
    """RFC 3339 with nanoseconds (``2026-11-28T09:30:05.123456789Z``) as an aware datetime."""
    match = re.match(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)?$", text.strip())
    if match is None:
        return None
    fraction = (match.group(2) or ".0")[:7]
    zone = match.group(3) or "Z"
    zone = "+00:00" if zone == "Z" else zone
    try:
        return datetime.fromisoformat(f"{match.group(1)}{fraction}{zone}")
    except ValueError:
        return None


def _path(url: str) -> str:
    return urllib.parse.urlsplit(url).path


def _error_detail(body: bytes) -> str:
    try:
        errors = json.loads(body).get("errors") or []
        first = errors[0]
        return f": {first.get('code', '')} {first.get('message', '')}".rstrip()
    except (ValueError, AttributeError, IndexError, KeyError, TypeError):
        return ""
