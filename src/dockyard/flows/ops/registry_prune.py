"""``registry prune --keep N``: delete old tags of the app image from the registry (HTTP API v2).

Kept: the ``N`` newest tags (by the image's creation time), ``latest`` (and ``latest-<dest>``),
every tag a server still deploys or could roll back to (the image of any container of the
service, running or stopped, and the versions in those containers' names: the servers are
asked), tags whose creation time cannot be read, and any tag that points at the same manifest
as a kept one (deleting is by digest, which removes every tag of that manifest). The rest is
deleted by digest. Deleting only unlinks manifests: the registry frees the space when its
garbage collector runs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from dockyard.commands import app as app_commands
from dockyard.commands.argv import Argv, docker
from dockyard.errors import ConfigError
from dockyard.registry_api import RegistryApiError, RegistryClient

if TYPE_CHECKING:
    from dockyard.config import Config
    from dockyard.flows.context import DeployContext

GC_NOTE = (
    "Deleting unlinks the manifests only: the registry frees the disk space when it "
    "garbage-collects (distribution: `registry garbage-collect --delete-untagged "
    "/etc/docker/registry/config.yml`, best with the registry read-only or stopped)."
)


@dataclass(frozen=True, slots=True)
class TagInfo:
    tag: str
    digest: str
    created: datetime | None


@dataclass(frozen=True, slots=True)
class Plan:
    """Tags to keep (with why) and manifests to delete (digest -> its tags)."""

    keep: dict[str, str]
    delete: dict[str, list[str]]


@dataclass
class Outcome:
    repository: str
    plan: Plan
    deleted: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    dry_run: bool = False


def plan(tags: Sequence[TagInfo], keep: int, protected: Mapping[str, str]) -> Plan:
    """Pure: which tags stay and which manifests go (see the module docstring)."""
    if keep < 0:
        raise ConfigError(f"registry prune: --keep must be 0 or more, not {keep}")
    reasons: dict[str, str] = {}
    for info in tags:
        if info.tag in protected:
            reasons[info.tag] = protected[info.tag]
        elif info.created is None:
            reasons[info.tag] = "creation time unknown"
    # the newest ``keep`` images (distinct digests; the latest tags are aliases, not versions)
    dated = sorted(
        (i for i in tags if i.created is not None and protected.get(i.tag) != "latest"),
        key=lambda i: (i.created, i.tag),
        reverse=True,
    )
    newest: list[str] = []
    for info in dated:
        if info.digest not in newest:
            if len(newest) == keep:
                break
            newest.append(info.digest)
        reasons.setdefault(info.tag, f"one of the {keep} newest")
    kept_digests = {i.digest: i.tag for i in tags if i.tag in reasons}
    for info in tags:
        if info.tag not in reasons and info.digest in kept_digests:
            reasons[info.tag] = f"same image as {kept_digests[info.digest]}"
    delete: dict[str, list[str]] = {}
    for info in tags:
        if info.tag not in reasons:
            delete.setdefault(info.digest, []).append(info.tag)
    return Plan(reasons, delete)


def containers_query(service: str) -> Argv:
    """Image and name of every container of the service, running or stopped."""
    return docker(
        "container",
        "ls",
        "-a",
        "--filter",
        f"label=service={service}",
        "--format",
        "{{.Image}}\t{{.Names}}",
    )


def deployed_tags(config: Config, stdout: str) -> set[str]:
    """Tags of the app image that containers use (by image, or by the version in their name)."""
    repository = config.repository
    prefixes = [app_commands.container_prefix(config, role) + "-" for role in config.roles]
    tags: set[str] = set()
    for line in stdout.splitlines():
        image, _, name = line.partition("\t")
        image, name = image.strip(), name.strip()
        if image.startswith(repository + ":"):
            tags.add(image.removeprefix(repository + ":"))
        for prefix in prefixes:
            if name.startswith(prefix) and len(name) > len(prefix):
                tags.add(name.removeprefix(prefix))
    return tags


def _image_name(config: Config) -> tuple[str, str]:
    server = config.registry.server
    if not server:
        raise ConfigError(
            "registry prune needs registry.server in the config",
            hint="Docker Hub does not delete tags through the registry API; use its web UI "
            "or a retention policy",
        )
    return server, config.image


def client_for(config: Config) -> RegistryClient:
    server, _ = _image_name(config)
    username = config.resolve(config.registry.username)
    password = config.resolve(config.registry.password)
    return RegistryClient(
        server,
        None if username is None else _reveal(username),
        None if password is None else _reveal(password),
    )


def _reveal(value: object) -> str:
    reveal = getattr(value, "reveal", None)
    return str(reveal()) if callable(reveal) else str(value)


def read_tags(client: RegistryClient, repository: str, tags: Iterable[str]) -> list[TagInfo]:
    """Digest and creation time of each tag (blocking: run it in a thread)."""
    out: list[TagInfo] = []
    for tag in tags:
        manifest = client.manifest(repository, tag)
        out.append(TagInfo(tag, manifest.digest, client.created(repository, manifest)))
    return out


async def prune(
    ctx: DeployContext,
    *,
    keep: int,
    dry_run: bool = False,
    client: RegistryClient | None = None,
) -> Outcome:
    config = ctx.config
    _, repository = _image_name(config)
    if keep < 0:
        raise ConfigError(f"registry prune: --keep must be 0 or more, not {keep}")
    client = client or client_for(config)
    query = containers_query(config.service)

    async def on_host(host: str) -> set[str]:
        result = await ctx.run(host, query, what="listing the app's containers")
        return deployed_tags(config, result.stdout)

    # every app host, whatever -h/-r select: a tag deployed anywhere must survive
    hosts = list(dict.fromkeys(h for role in config.roles for h in role.hosts))
    ctx.step("Asking the servers which versions they run or keep for rollback...")
    by_host = await ctx.on(hosts, on_host)
    protected: dict[str, str] = {"latest": "latest", config.latest_tag: "latest"}
    for host, used in sorted(by_host.items()):
        for tag in sorted(used):
            protected.setdefault(tag, f"deployed on {host}")
    ctx.step(f"Reading the tags of {client.server}/{repository}...")
    names = await asyncio.to_thread(client.tags, repository)
    infos = await asyncio.to_thread(read_tags, client, repository, names)
    decided = plan(infos, keep, protected)
    outcome = Outcome(f"{client.server}/{repository}", decided, dry_run=dry_run)
    if dry_run:
        return outcome
    for digest, tags in decided.delete.items():
        try:
            await asyncio.to_thread(client.delete, repository, digest)
        except RegistryApiError as exc:
            if exc.hint is not None:  # deletes disabled, auth: the same for every manifest
                raise
            ctx.warn(f"could not delete {', '.join(tags)} ({digest}): {exc.message}")
            outcome.failed.extend((t, exc.message) for t in tags)
            continue
        outcome.deleted.extend(tags)
    return outcome
