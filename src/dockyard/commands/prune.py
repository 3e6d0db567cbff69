"""Pruning stopped containers and unused images of a service (on all hosts).

Kamal pipes ``docker ps`` into ``tail`` and a ``while read`` loop, and ``docker image ls`` into
``grep -v -w "<in-use list>"``. We list with one program, choose in Python
(:func:`containers_to_remove`, :func:`images_to_remove`) and remove with one program per item.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from dockyard.commands.argv import Argv, docker

STOPPED_STATUSES = ("created", "exited", "dead")
IMAGE_LIST_FORMAT = "{{.ID}} {{.Repository}}:{{.Tag}}"
CONTAINER_LIST_FORMAT = "{{.ID}}\t{{.State}}\t{{.Image}}"


def _service_filter(service: str) -> tuple[str, str]:
    return ("--filter", f"label=service={service}")


def dangling_images(service: str) -> Argv:
    return docker("image", "prune", "--force", *_service_filter(service))


def list_stopped_containers(service: str) -> Argv:
    """Newest first, IDs only: ``docker ps -q -a --filter label=service=S --filter status=...``."""
    statuses = [p for s in STOPPED_STATUSES for p in ("--filter", f"status={s}")]
    return docker("ps", "-q", "-a", *_service_filter(service), *statuses)


def containers_to_remove(stdout: str, retain: int) -> list[str]:
    """Kamal's ``tail -n +<retain+1>``: keep the first ``retain`` IDs, return the rest."""
    if retain < 1:
        raise ValueError("retain must be at least 1")
    ids = [line.strip() for line in stdout.splitlines() if line.strip()]
    return ids[retain:]


def remove_container(container_id: str) -> Argv:
    return docker("rm", container_id)


def list_images(service: str) -> Argv:
    return docker("image", "ls", *_service_filter(service), "--format", IMAGE_LIST_FORMAT)


def list_used_images(service: str) -> Argv:
    """The image of every container of the service, running or not."""
    return docker("container", "ls", "-a", "--format", "{{.Image}}", *_service_filter(service))


def _word_match(pattern: str, line: str) -> bool:
    # grep -w: the match must not touch a word character (letter, digit, underscore) either side.
    return re.search(rf"(?<![A-Za-z0-9_]){re.escape(pattern)}(?![A-Za-z0-9_])", line) is not None


def images_to_remove(
    images_stdout: str, used_images: Iterable[str], *, latest_image: str, repository: str
) -> list[str]:
    """The ``repo:tag`` of each listed image that no pattern matches as a word (``grep -v -w``).

    The patterns are the images used by containers, the latest tag and ``<repository>:<none>``.
    """
    patterns = [u.strip() for u in used_images if u.strip()]
    patterns += [latest_image, f"{repository}:<none>"]
    tags: list[str] = []
    for line in images_stdout.splitlines():
        fields = line.split()
        if len(fields) != 2:
            continue
        if not any(_word_match(p, line) for p in patterns):
            tags.append(fields[1])
    return tags


def remove_image(tag: str) -> Argv:
    return docker("rmi", tag)


def list_service_containers(service: str) -> Argv:
    """Every container of the service, newest first, as ID, state and image: what both
    :func:`list_stopped_containers` and :func:`list_used_images` tell, in one docker call."""
    return docker("ps", "-a", *_service_filter(service), "--format", CONTAINER_LIST_FORMAT)


@dataclass(frozen=True, slots=True)
class PrunePlan:
    """What a prune removes on a host, in Kamal's order: the stopped containers beyond the
    newest ``retain`` (``docker rm``), then the dangling images (``docker image prune``, only
    when the listing shows one), then the tagged images no remaining container uses
    (``docker rmi``)."""

    containers: list[str]
    dangling: bool
    images: list[str]

    @property
    def empty(self) -> bool:
        return not (self.containers or self.dangling or self.images)


def plan_prune(
    containers_stdout: str,
    images_stdout: str,
    *,
    retain: int,
    latest_image: str,
    repository: str,
) -> PrunePlan:
    """Decide a prune from :func:`list_service_containers` and :func:`list_images`, taken
    before anything is removed. The images in use are those of the containers that stay,
    which is what Kamal's listing after its ``docker rm`` loop sees."""
    rows = [line.split("\t") for line in containers_stdout.splitlines()]
    rows = [row for row in rows if len(row) == 3 and row[0].strip()]
    stopped = [row[0].strip() for row in rows if row[1].strip() in STOPPED_STATUSES]
    doomed = containers_to_remove("\n".join(stopped), retain)
    used = [row[2].strip() for row in rows if row[0].strip() not in doomed]
    listed = [line.split() for line in images_stdout.splitlines()]
    dangling = any(len(f) == 2 and f[1].endswith(":<none>") for f in listed)
    tags = images_to_remove(images_stdout, used, latest_image=latest_image, repository=repository)
    return PrunePlan(doomed, dangling, [t for t in tags if "<none>" not in t])


def prune_commands(plan: PrunePlan, service: str) -> list[Argv]:
    """The removals of ``plan``, for one batch (run without stopping at a failure)."""
    commands = [remove_container(c) for c in plan.containers]
    if plan.dangling:
        commands.append(dangling_images(service))
    return commands + [remove_image(tag) for tag in plan.images]
