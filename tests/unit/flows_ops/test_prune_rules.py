"""Prune rules: the images of retained versions survive, and a failed ``docker rm``/``rmi``
is a warning that never stops the prune (nor the deploy that runs it)."""

from __future__ import annotations

import random

from dockyard.commands import prune as prune_commands
from dockyard.flows.context import Selection
from dockyard.flows.ops import prune
from dockyard.remote import FakePool, FakeTransport, Result

from .conftest import MakeConfig, make_ctx, run, without_lock_and_audit

REPO = "registry.test:5000/hello"
IN_USE = "Error response from daemon: conflict: unable to remove repository reference"


def _images(*tags: str) -> str:
    return "".join(f"i{tag} {REPO}:{tag}\n" for tag in tags)


def _removals(commands: list[list[str]]) -> list[list[str]]:
    return [
        c
        for c in without_lock_and_audit(commands)
        if c[:2] in (["docker", "rm"], ["docker", "rmi"])
    ]


def test_removal_outcome_pairs_items_with_results() -> None:
    outcome = prune.removal_outcome(
        ["a", "b", "c"],
        [
            Result(0, "", ""),
            Result(1, "", "in use\nmore"),
        ],
    )
    assert outcome.removed == ["a"]
    assert outcome.failed == [("b", "in use"), ("c", "not run")]


def _host_with_two_stuck_images(fake: FakeTransport) -> None:
    fake.on(["docker", "image", "ls"], Result(0, _images("v4", "v3", "v2", "v1", "latest"), ""))
    # the one listing of the service's containers (ID, state, image; newest first)
    fake.on(
        ["docker", "ps", "-a"],
        Result(
            0,
            f"c4\trunning\t{REPO}:v4\nc3\texited\t{REPO}:v3\n"
            f"c2\texited\t{REPO}:v3\nc1\texited\tiv4\n",
            "",
        ),
    )
    fake.on(["docker", "rmi", f"{REPO}:v2"], Result(1, "", IN_USE))
    fake.on(["docker", "rm", "c2"], Result(1, "", "Error: container c2 is being removed"))


def test_prune_warns_about_a_failed_rm_or_rmi_and_goes_on(make_config: MakeConfig) -> None:
    pool = FakePool(setup=_host_with_two_stuck_images)
    ctx, events = make_ctx(make_config(), pool, Selection.parse("10.0.0.2"))
    removed = run(prune.all_(ctx, retain=1))
    # c2 and v2 failed: not reported as removed, but everything after them was still tried
    assert removed == {"10.0.0.2": ["c1", f"{REPO}:v1"]}
    assert _removals(pool.transports["10.0.0.2"].commands) == [
        ["docker", "rm", "c2"],
        ["docker", "rm", "c1"],
        ["docker", "rmi", f"{REPO}:v2"],
        ["docker", "rmi", f"{REPO}:v1"],
    ]
    warnings = [(e.text, e.host) for e in events if e.kind == "warn"]
    assert warnings == [
        ("could not remove container c2 (kept, prune goes on): "
         "Error: container c2 is being removed", "10.0.0.2"),
        (f"could not remove image {REPO}:v2 (kept, prune goes on): {IN_USE}", "10.0.0.2"),
    ]  # fmt: skip


def test_prune_never_fails_because_rmi_failed(make_config: MakeConfig) -> None:
    pool = FakePool(setup=_host_with_two_stuck_images)
    ctx, events = make_ctx(make_config(), pool, Selection.parse("10.0.0.2"))
    run(prune.all_(ctx))  # retain_containers: 5 -> no container removed
    calls = _removals(pool.transports["10.0.0.2"].commands)
    # the used versions (v4, v3) and latest are never removed; v2 fails, v1 is still removed
    assert calls == [["docker", "rmi", f"{REPO}:v2"], ["docker", "rmi", f"{REPO}:v1"]]
    assert [e.text for e in events if e.kind == "warn"] == [
        f"could not remove image {REPO}:v2 (kept, prune goes on): {IN_USE}"
    ]


def test_prune_keeps_the_images_of_the_retained_containers(make_config: MakeConfig) -> None:
    config = make_config()
    retain = config.retain_containers

    def setup(fake: FakeTransport) -> None:
        fake.on(
            ["docker", "image", "ls"],
            Result(0, _images(*(f"v{n}" for n in range(10, 0, -1)), "latest"), ""),
        )
        # the deploy's one listing: the running v10, then the stopped c9..c1 (v9..v1)
        rows = [f"c10\trunning\t{REPO}:v10\n"]
        rows += [f"c{n}\texited\t{REPO}:v{n}\n" for n in range(9, 0, -1)]
        fake.on(["docker", "ps", "-a"], Result(0, "".join(rows), ""))

    pool = FakePool(setup=setup)
    ctx, _ = make_ctx(config, pool, Selection.parse("10.0.0.1"))
    run(prune.all_(ctx))
    calls = _removals(pool.transports["10.0.0.1"].commands)
    assert calls[: 9 - retain] == [["docker", "rm", f"c{n}"] for n in range(9 - retain, 0, -1)]
    assert [c[2] for c in calls[9 - retain :]] == [f"{REPO}:v{n}" for n in range(9 - retain, 0, -1)]


def test_images_to_remove_never_picks_a_used_image_or_latest() -> None:
    rng = random.Random(7)
    for _ in range(200):
        tags = [f"v{n}" for n in range(rng.randint(1, 12))] + ["latest"]
        listed = _images(*tags)
        used = [f"{REPO}:{t}" for t in tags if rng.random() < 0.4]
        chosen = prune_commands.images_to_remove(
            listed, used, latest_image=f"{REPO}:latest", repository=REPO
        )
        assert not set(chosen) & set(used)
        assert f"{REPO}:latest" not in chosen
        assert set(chosen) | set(used) | {f"{REPO}:latest"} == {f"{REPO}:{t}" for t in tags}
