"""Pruning stopped containers and unused images of a service (on all hosts).

Kamal pipes ``docker ps`` into ``tail`` and a ``while read`` loop, and ``docker image ls`` into
``grep -v -w "<in-use list>"``. We list with one program, choose in Python
(:func:`containers_to_remove`, :func:`images_to_remove`) and remove with one program per item.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from dockyard.commands.argv import Argv, docker

STOPPED_STATUSES = ("created", "exited", "dead")
IMAGE_LIST_FORMAT = "{{.ID}} {{.Repository}}:{{.Tag}}"


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
