from __future__ import annotations

from dockyard.flows.digest import DOCKER_HUB, digest_in, split_reference

DIGEST = "sha256:" + "0f" * 32


def test_docker_hub_names_get_library_and_the_api_host() -> None:
    assert split_reference(None, "nginx") == (DOCKER_HUB, "library/nginx")
    assert split_reference("docker.io", "me/app") == (DOCKER_HUB, "me/app")
    assert split_reference("ghcr.io", "me/app") == ("ghcr.io", "me/app")


def test_digest_in_repo_digests() -> None:
    assert digest_in(f'["reg:5000/app@{DIGEST}"]', DIGEST)
    assert digest_in(f'["other/name@{DIGEST}", "x@sha256:{"1" * 64}"]', DIGEST)
    assert not digest_in(f'["reg:5000/app@sha256:{"1" * 64}"]', DIGEST)
    assert not digest_in("[]", DIGEST)
    assert not digest_in("null", DIGEST)
    assert not digest_in("", DIGEST)
    assert not digest_in("not json", DIGEST)
