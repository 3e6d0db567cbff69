"""Golden tests: prune (Kamal ``test/commands/prune_test.rb`` and §2.10 of kamal.md)."""

from __future__ import annotations

import pytest

from dockyard.commands import prune


def test_dangling_images() -> None:
    assert prune.dangling_images("app") == (
        "docker", "image", "prune", "--force", "--filter", "label=service=app",
    )  # fmt: skip


def test_app_containers_lists_stopped_ids_instead_of_tail_and_while_read() -> None:
    assert prune.list_stopped_containers("app") == (
        "docker", "ps", "-q", "-a", "--filter", "label=service=app",
        "--filter", "status=created", "--filter", "status=exited", "--filter", "status=dead",
    )  # fmt: skip


def test_containers_to_remove_keeps_the_newest_like_tail_plus_retain_plus_one() -> None:
    stdout = "c7\nc6\nc5\nc4\nc3\nc2\nc1\n"
    assert prune.containers_to_remove(stdout, 5) == ["c2", "c1"]
    assert prune.containers_to_remove(stdout, 3) == ["c4", "c3", "c2", "c1"]
    assert prune.containers_to_remove("c1\n", 5) == []
    with pytest.raises(ValueError):
        prune.containers_to_remove(stdout, 0)
    assert prune.remove_container("c1") == ("docker", "rm", "c1")


def test_tagged_images_lists_then_filters_in_python_instead_of_grep_pipe() -> None:
    assert prune.list_images("app") == (
        "docker", "image", "ls", "--filter", "label=service=app",
        "--format", "{{.ID}} {{.Repository}}:{{.Tag}}",
    )  # fmt: skip
    assert prune.list_used_images("app") == (
        "docker", "container", "ls", "-a", "--format", "{{.Image}}",
        "--filter", "label=service=app",
    )  # fmt: skip


def test_images_to_remove_spares_used_latest_and_none_like_grep_v_w() -> None:
    images = "\n".join(
        [
            "i1 dhh/app:latest",
            "i2 dhh/app:123",
            "i3 dhh/app:122",
            "i4 dhh/app:121",
            "i5 dhh/app:<none>",
            "i6 dhh/app:120",
        ]
    )
    used = ["dhh/app:123", "i6", ""]
    removable = prune.images_to_remove(
        images, used, latest_image="dhh/app:latest", repository="dhh/app"
    )
    assert removable == ["dhh/app:122", "dhh/app:121"]
    assert prune.remove_image("dhh/app:122") == ("docker", "rmi", "dhh/app:122")


def test_images_to_remove_matches_whole_words_only() -> None:
    # grep -w: "dhh/app:12" must not protect "dhh/app:123" (3 is a word character) ...
    removable = prune.images_to_remove(
        "i1 dhh/app:123\ni2 dhh/app:12.1\n",
        ["dhh/app:12"],
        latest_image="dhh/app:latest",
        repository="dhh/app",
    )
    # ... but it does protect "dhh/app:12.1", as Kamal's grep does ("." is not a word character).
    assert removable == ["dhh/app:123"]


def test_one_container_listing_answers_both_halves_of_the_prune() -> None:
    assert prune.list_service_containers("app") == (
        "docker", "ps", "-a", "--filter", "label=service=app",
        "--format", "{{.ID}}\t{{.State}}\t{{.Image}}",
    )  # fmt: skip


def test_plan_prune_keeps_the_newest_stopped_and_the_images_of_what_stays() -> None:
    containers = "\n".join(
        [
            "c7\trunning\tdhh/app:7",
            "c6\texited\tdhh/app:6",
            "c5\trestarting\tdhh/app:5",
            "c4\tcreated\tdhh/app:4",
            "c3\tdead\tdhh/app:3",
            "c2\texited\ti2",  # its tag moved on: docker shows the image ID
            "c1\texited\tdhh/app:1",
        ]
    )
    images = "\n".join(
        ["i7 dhh/app:7", "i6 dhh/app:6", "i5 dhh/app:5", "i4 dhh/app:4", "i3 dhh/app:3",
         "i2 dhh/app:2", "i1 dhh/app:1", "i0 dhh/app:0", "il dhh/app:latest"]
    )  # fmt: skip
    plan = prune.plan_prune(
        containers, images, retain=2, latest_image="dhh/app:latest", repository="dhh/app"
    )
    # stopped, newest first: c6 c4 c3 c2 c1; two stay; running and restarting ones always stay
    assert plan.containers == ["c3", "c2", "c1"]
    assert not plan.dangling
    # the images of removed containers go, with the ones no container used; latest stays
    assert plan.images == ["dhh/app:3", "dhh/app:2", "dhh/app:1", "dhh/app:0"]
    assert prune.prune_commands(plan, "app") == [
        ("docker", "rm", "c3"), ("docker", "rm", "c2"), ("docker", "rm", "c1"),
        ("docker", "rmi", "dhh/app:3"), ("docker", "rmi", "dhh/app:2"),
        ("docker", "rmi", "dhh/app:1"), ("docker", "rmi", "dhh/app:0"),
    ]  # fmt: skip


def test_plan_prune_runs_image_prune_only_when_an_untagged_image_is_listed() -> None:
    containers = "c1\trunning\tdhh/app:1\n"
    plan = prune.plan_prune(
        containers,
        "i1 dhh/app:1\ni9 <none>:<none>\n",
        retain=5,
        latest_image="dhh/app:latest",
        repository="dhh/app",
    )
    assert plan == prune.PrunePlan([], True, [])
    assert not plan.empty
    assert prune.prune_commands(plan, "app") == [prune.dangling_images("app")]
    quiet = prune.plan_prune(
        containers, "i1 dhh/app:1\n", retain=5, latest_image="dhh/app:latest", repository="dhh/app"
    )
    assert quiet.empty and prune.prune_commands(quiet, "app") == []
