"""registry_api (against an in-memory registry speaking the v2 API) and ``registry prune``'s
plan and flow (servers from a FakePool)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from dockyard.config import load_config
from dockyard.flows.context import DeployContext, Event
from dockyard.flows.ops import registry_prune
from dockyard.flows.ops.registry_prune import TagInfo, plan
from dockyard.registry_api import (
    DOCKER_MANIFEST,
    OCI_INDEX,
    RegistryApiError,
    RegistryClient,
    Response,
    next_link,
    parse_challenge,
    parse_time,
)
from dockyard.remote import FakePool, FakeTransport, Result

T0 = datetime(2026, 11, 1, tzinfo=UTC)


@dataclass
class MemoryRegistry:
    """Just enough of the Distribution API: tags (paginated), manifests, blobs, delete."""

    repo: str = "hello"
    auth: str = "Basic " + base64.b64encode(b"bob:s3cret").decode()
    deletes: bool = True
    page: int = 2
    tags: dict[str, str] = field(default_factory=dict)  # tag -> digest
    manifests: dict[str, tuple[str, bytes]] = field(default_factory=dict)  # digest -> type, body
    blobs: dict[str, bytes] = field(default_factory=dict)
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)

    def push(self, tag: str, created: datetime, *, index: bool = False, same_as: str = "") -> str:
        if same_as:
            self.tags[tag] = self.tags[same_as]
            return self.tags[tag]
        config = json.dumps({"created": created.isoformat().replace("+00:00", "Z")}).encode()
        config_digest = "sha256:" + hashlib.sha256(config).hexdigest()
        self.blobs[config_digest] = config
        body = json.dumps({"schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
                           "config": {"digest": config_digest}, "tag": tag}).encode()  # fmt: skip
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        self.manifests[digest] = (DOCKER_MANIFEST, body)
        if index:
            body = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX,
                               "manifests": [{"digest": digest}]}).encode()  # fmt: skip
            digest = "sha256:" + hashlib.sha256(body).hexdigest()
            self.manifests[digest] = (OCI_INDEX, body)
        self.tags[tag] = digest
        return digest

    def __call__(self, method: str, url: str, headers: Mapping[str, str]) -> Response:
        self.requests.append((method, url, dict(headers)))
        if headers.get("Authorization") != self.auth:
            return Response(401, {"www-authenticate": 'Basic realm="lab"'}, b"")
        parts = urlsplit(url)
        path = parts.path.removeprefix(f"/v2/{self.repo}/")
        if path == "tags/list":
            names = sorted(self.tags)
            last = parse_qs(parts.query).get("last", [""])[0]
            rest = [n for n in names if n > last]
            chunk = rest[: self.page]
            head = {}
            if len(rest) > self.page:
                head["link"] = (
                    f'</v2/{self.repo}/tags/list?n={self.page}&last={chunk[-1]}>; rel="next"'
                )
            return Response(200, head, json.dumps({"name": self.repo, "tags": chunk}).encode())
        if path.startswith("manifests/"):
            ref = path.removeprefix("manifests/")
            digest = ref if ref.startswith("sha256:") else self.tags.get(ref, "")
            if method == "DELETE":
                if not self.deletes:
                    return Response(405, {}, b'{"errors":[{"code":"UNSUPPORTED"}]}')
                self.manifests.pop(digest)
                self.tags = {t: d for t, d in self.tags.items() if d != digest}
                return Response(202, {}, b"")
            if digest not in self.manifests:
                return Response(404, {}, b'{"errors":[{"code":"MANIFEST_UNKNOWN"}]}')
            media_type, body = self.manifests[digest]
            assert media_type in headers.get("Accept", "")
            return Response(
                200, {"docker-content-digest": digest, "content-type": media_type}, body
            )
        if path.startswith("blobs/"):
            return Response(200, {}, self.blobs[path.removeprefix("blobs/")])
        return Response(404, {}, b"")


def client(registry: MemoryRegistry, password: str = "s3cret") -> RegistryClient:
    return RegistryClient("registry.test:5000", "bob", password, send=registry)


def test_tags_follow_pagination_and_manifests_carry_digest_and_created() -> None:
    registry = MemoryRegistry()
    for n in range(5):
        registry.push(f"v{n}", T0 + timedelta(days=n))
    digest = registry.push("multi", T0 + timedelta(days=9), index=True)
    api = client(registry)
    assert sorted(api.tags("hello")) == ["multi", "v0", "v1", "v2", "v3", "v4"]
    manifest = api.manifest("hello", "multi")
    assert manifest.digest == digest and manifest.media_type == OCI_INDEX
    assert api.created("hello", manifest) == T0 + timedelta(days=9)  # through the index
    assert api.created("hello", api.manifest("hello", "v3")) == T0 + timedelta(days=3)
    assert registry.requests[0][1] == "https://registry.test:5000/v2/hello/tags/list?n=1000"


def test_wrong_password_and_disabled_deletes_are_explained() -> None:
    registry = MemoryRegistry()
    registry.push("v1", T0)
    with pytest.raises(RegistryApiError, match="401") as refused:
        client(registry, "nope").tags("hello")
    assert "registry.password" in (refused.value.hint or "")
    registry.deletes = False
    with pytest.raises(RegistryApiError, match="deleting is disabled") as disabled:
        client(registry).delete("hello", registry.tags["v1"])
    assert "REGISTRY_STORAGE_DELETE_ENABLED=true" in (disabled.value.hint or "")


def test_bearer_challenge_gets_a_token_from_the_realm() -> None:
    seen: list[tuple[str, str, dict[str, str]]] = []

    def send(method: str, url: str, headers: Mapping[str, str]) -> Response:
        seen.append((method, url, dict(headers)))
        if url.startswith("https://auth.test/token"):
            assert headers["Authorization"].startswith("Basic ")
            return Response(200, {}, b'{"token": "T0K"}')
        if headers.get("Authorization") != "Bearer T0K":
            challenge = (
                'Bearer realm="https://auth.test/token",service="reg",scope="repository:hello:pull"'
            )
            return Response(401, {"www-authenticate": challenge}, b"")
        return Response(200, {}, b'{"tags": ["a"]}')

    assert RegistryClient("reg.test", "u", "p", send=send).tags("hello") == ["a"]
    assert seen[1][1] == "https://auth.test/token?service=reg&scope=repository%3Ahello%3Apull"


def test_small_parsers() -> None:
    assert parse_challenge('Bearer realm="r",service="s"') == (
        "bearer",
        {"realm": "r", "service": "s"},
    )
    assert next_link('</v2/x/tags/list?last=b&n=2>; rel="next"') == "/v2/x/tags/list?last=b&n=2"
    assert next_link(None) is None
    assert parse_time("2026-11-28T09:30:05.123456789Z") == datetime(
        2026, 11, 28, 9, 30, 5, 123456, tzinfo=UTC
    )
    assert parse_time("2026-11-28T09:30:05+01:00") == datetime(2026, 11, 28, 8, 30, 5, tzinfo=UTC)
    assert parse_time("yesterday") is None
    assert RegistryClient("localhost:5000", send=MemoryRegistry()).scheme == "http"


def _info(tag: str, day: int | None, digest: str | None = None) -> TagInfo:
    return TagInfo(
        tag, digest or f"sha256:{tag}", None if day is None else T0 + timedelta(days=day)
    )


def test_plan_keeps_newest_latest_deployed_unknown_and_shared_digests() -> None:
    tags = [
        _info("v1", 1), _info("v2", 2), _info("v3", 3), _info("v4", 4), _info("v5", 5),
        _info("latest", 5, "sha256:v5"), _info("old-alias", 0, "sha256:v4"),
        _info("mystery", None), _info("v0", 0),
    ]  # fmt: skip
    decided = plan(tags, keep=2, protected={"latest": "latest", "v1": "deployed on 10.0.0.1"})
    assert decided.keep == {
        "latest": "latest",
        "v1": "deployed on 10.0.0.1",
        "mystery": "creation time unknown",
        "v5": "one of the 2 newest",
        "v4": "one of the 2 newest",
        "old-alias": "same image as v4",
    }
    assert decided.delete == {"sha256:v2": ["v2"], "sha256:v3": ["v3"], "sha256:v0": ["v0"]}
    # a digest whose every tag is old goes once, with all its tags
    assert plan([_info("a", 1), _info("b", 1, "sha256:a")], 0, {}).delete == {
        "sha256:a": ["a", "b"]
    }


CONFIG = """service: hello
image: hello
servers:
  web: [10.0.0.1, 10.0.0.2]
  workers:
    hosts: [10.0.0.3]
    cmd: sleep infinity
registry:
  server: registry.test:5000
  username: bob
  password: [KAMAL_REGISTRY_PASSWORD]
builder:
  arch: amd64
"""


def _ctx(tmp_path: Path, pool: FakePool) -> tuple[DeployContext, list[Event]]:
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "deploy.yml").write_text(CONFIG)
    (tmp_path / ".kamal").mkdir()
    (tmp_path / ".kamal" / "secrets").write_text("KAMAL_REGISTRY_PASSWORD=s3cret\n")
    config = load_config(None, None, root=tmp_path, env={}, version="v9")
    events: list[Event] = []
    ctx = DeployContext(config=config, pool=pool, reporter=events.append,
                        local=FakeTransport(host="local"))  # fmt: skip
    return ctx, events


def test_prune_keeps_what_the_servers_run_or_retain(tmp_path: Path) -> None:
    registry = MemoryRegistry()
    for n in range(1, 9):
        registry.push(f"v{n}", T0 + timedelta(days=n))
    registry.push("latest", T0, same_as="v8")

    def setup(fake: FakeTransport) -> None:
        if fake.host == "10.0.0.1":  # running v8, v2 retained (stopped) for rollback
            used = (
                "registry.test:5000/hello:v8\thello-web-v8\n"
                "registry.test:5000/hello:v2\thello-web-v2\n"
            )
        elif fake.host == "10.0.0.3":  # booted from latest: the version comes from the name
            used = "registry.test:5000/hello:latest\thello-workers-v3\n"
        else:
            used = ""
        fake.on(["docker", "container", "ls", "-a"], Result(0, used, ""))

    ctx, _ = _ctx(tmp_path, FakePool(setup=setup))
    api = RegistryClient("registry.test:5000", "bob", "s3cret", send=registry)
    dry = asyncio.run(registry_prune.prune(ctx, keep=2, dry_run=True, client=api))
    assert sorted(t for ts in dry.plan.delete.values() for t in ts) == ["v1", "v4", "v5", "v6"]
    assert len(registry.tags) == 9  # nothing deleted
    outcome = asyncio.run(registry_prune.prune(ctx, keep=2, client=api))
    assert sorted(outcome.deleted) == ["v1", "v4", "v5", "v6"]
    assert sorted(registry.tags) == ["latest", "v2", "v3", "v7", "v8"]
    assert outcome.plan.keep["v2"] == "deployed on 10.0.0.1"
    assert outcome.plan.keep["v3"] == "deployed on 10.0.0.3"
    # every app host was asked
    assert all(t.commands for t in ctx.pool.transports.values())  # type: ignore[attr-defined]


def test_prune_credentials_come_from_the_secrets(tmp_path: Path) -> None:
    ctx, _ = _ctx(tmp_path, FakePool())
    api = registry_prune.client_for(ctx.config)
    assert api.server == "registry.test:5000" and api.scheme == "https"
    assert api._auth_header() == {
        "Authorization": "Basic " + base64.b64encode(b"bob:s3cret").decode()
    }
