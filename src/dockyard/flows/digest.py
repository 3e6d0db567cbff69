"""The registry's digest for an image tag, asked from the deployer (one HTTPS ``HEAD`` on the
Docker Registry HTTP API v2), so that a deploy need not re-pull an image a server already has.

    digest = await tag_digest("registry.example.com", "app", "v2", "user", "secret")

A server's ``docker image inspect`` lists the digests its copy was pulled with
(``RepoDigests``); when the registry's current digest for the tag is among them, ``docker pull``
would transfer nothing, and is skipped. Every failure (no route, TLS, auth scheme, an
unexpected answer) gives ``None``, and the deploy pulls as Kamal does: this is only a shortcut.

Trust: the system's CAs plus Docker's per-registry CA files (``/etc/docker/certs.d/<server>/``
and ``~/.docker/certs.d/<server>/``, ``*.crt``), as the Docker engine itself trusts them.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import ssl
    from http.client import HTTPResponse

__all__ = ["digest_in", "split_reference", "tag_digest"]

DOCKER_HUB = "registry-1.docker.io"
TIMEOUT = 3.0

_ACCEPT = ", ".join(
    (
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    )
)
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}\Z")
_CHALLENGE_PARAM = re.compile(r'(\w+)="([^"]*)"')


def split_reference(server: str | None, image: str) -> tuple[str, str]:
    """The API host and repository path for ``image`` on ``server`` (Docker Hub when None;
    its one-part names live under ``library/``)."""
    if server is None or server in ("docker.io", "index.docker.io"):
        return DOCKER_HUB, image if "/" in image else f"library/{image}"
    return server, image


def digest_in(repo_digests_json: str, digest: str) -> bool:
    """Whether ``docker image inspect --format '{{json .RepoDigests}}'`` output lists
    ``digest`` (under any repository name: a digest names the content)."""
    try:
        entries = json.loads(repo_digests_json or "null") or []
    except ValueError:
        return False
    return any(isinstance(e, str) and e.rpartition("@")[2] == digest for e in entries)


def _ssl_context(server: str) -> ssl.SSLContext:
    import ssl

    context = ssl.create_default_context()
    for base in (Path("/etc/docker/certs.d"), Path.home() / ".docker" / "certs.d"):
        folder = base / server
        try:
            files = sorted(folder.glob("*.crt"))
        except OSError:
            continue
        for path in files:
            try:
                context.load_verify_locations(cafile=str(path))
            except (OSError, ssl.SSLError):
                continue
    return context


def _request(
    url: str, context: ssl.SSLContext, authorization: str | None, method: str = "HEAD"
) -> HTTPResponse:
    import urllib.request

    headers = {"Accept": _ACCEPT, "User-Agent": "dockyard"}
    if authorization:
        headers["Authorization"] = authorization
    request = urllib.request.Request(url, method=method, headers=headers)
    response: HTTPResponse = urllib.request.urlopen(request, timeout=TIMEOUT, context=context)
    return response


def _bearer_token(
    challenge: str, repository: str, basic: str | None, context: ssl.SSLContext
) -> str | None:
    import urllib.parse

    params = dict(_CHALLENGE_PARAM.findall(challenge))
    realm = params.get("realm")
    if not realm or not realm.startswith("https://"):
        return None
    query = {"scope": f"repository:{repository}:pull"}
    if "service" in params:
        query["service"] = params["service"]
    url = f"{realm}?{urllib.parse.urlencode(query)}"
    with _request(url, context, basic, method="GET") as response:
        data = json.loads(response.read(1 << 20) or b"{}")
    token = data.get("token") or data.get("access_token")
    return f"Bearer {token}" if isinstance(token, str) and token else None


def _tag_digest_sync(
    server: str | None, image: str, tag: str, username: str | None, password: str | None
) -> str | None:
    import urllib.error

    host, repository = split_reference(server, image)
    url = f"https://{host}/v2/{repository}/manifests/{tag}"
    context = _ssl_context(host)
    basic = None
    if username and password:
        basic = "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()
    authorization = basic
    for _ in range(2):
        try:
            with _request(url, context, authorization) as response:
                digest = response.headers.get("Docker-Content-Digest", "")
                return digest if _DIGEST.match(digest) else None
        except urllib.error.HTTPError as exc:
            challenge = exc.headers.get("WWW-Authenticate", "") if exc.headers else ""
            if exc.code != 401 or not challenge.lower().startswith("bearer "):
                return None
            authorization = _bearer_token(challenge[7:], repository, basic, context)
            if authorization is None:
                return None
    return None


async def tag_digest(
    server: str | None, image: str, tag: str, username: str | None, password: str | None
) -> str | None:
    """The registry's current digest for ``image:tag``, or None when it cannot be asked."""
    if os.environ.get("DOCKYARD_ALWAYS_PULL"):
        return None
    try:
        return await asyncio.to_thread(_tag_digest_sync, server, image, tag, username, password)
    except Exception:  # any failure means "pull as usual"
        return None
