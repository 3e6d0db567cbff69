"""Without ``builder.context``, the image is built from a clean git clone of HEAD (as Kamal does),
so an image tagged with a commit holds that commit; with a context, or outside git, from the
project directory. Runs real git on a repository in a temporary directory."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from dockyard.flows.build import build_directory, clones_directory
from dockyard.flows.errors import BuildError
from dockyard.remote import FakePool
from dockyard.remote.local import LocalTransport
from tests.unit._flowkit import PROJECT_HEAD, load_project, make_ctx, run

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")

SECRETS = "KAMAL_REGISTRY_PASSWORD=s3cret\n"


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", *args],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def repository(tmp_path: Path, project: str = "") -> tuple[Path, Path]:
    """A git repository holding the project (at its top or in ``project``), one commit."""
    repo = tmp_path / "repo"
    root = repo / project if project else repo
    root.mkdir(parents=True)
    git(repo, "init", "-q")
    (root / "Dockerfile").write_text("FROM scratch\n")
    (root / "app.txt").write_text("committed\n")
    load_project(root, PROJECT_HEAD, secrets=SECRETS, version=None)
    (root / ".gitignore").write_text(".kamal/secrets\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "one")
    return repo, root


def context_for(root: Path, text: str = PROJECT_HEAD):  # type: ignore[no-untyped-def]
    config = load_project(root, text, secrets=SECRETS, version=None)
    ctx, events = make_ctx(config, FakePool())
    ctx.local = LocalTransport()  # real git
    return ctx, events


def test_a_dirty_tree_is_built_from_a_clean_clone_of_head(tmp_path: Path) -> None:
    repo, root = repository(tmp_path)
    (root / "app.txt").write_text("changed, not committed\n")
    (root / "new.txt").write_text("untracked\n")
    ctx, events = context_for(root)
    try:
        assert ctx.config.version == git(repo, "rev-parse", "HEAD")  # no _uncommitted_ suffix
        where = Path(run(build_directory(ctx)))
        assert where.is_relative_to(clones_directory(ctx.config))
        assert (where / "app.txt").read_text() == "committed\n"
        assert not (where / "new.txt").exists()
        warnings = [e.text for e in events if e.kind == "warn"]
        assert len(warnings) == 1 and "app.txt" in warnings[0] and "new.txt" in warnings[0]
        # a later commit: the same clone, brought to the new HEAD
        git(repo, "commit", "-q", "-am", "two")
        ctx, _ = context_for(root)
        again = Path(run(build_directory(ctx)))
        assert again == where
        assert (again / "app.txt").read_text() == "changed, not committed\n"
        assert git(again, "rev-parse", "HEAD") == git(repo, "rev-parse", "HEAD")
    finally:
        shutil.rmtree(clones_directory(ctx.config), ignore_errors=True)


def test_a_project_in_a_subdirectory_builds_from_that_directory_of_the_clone(
    tmp_path: Path,
) -> None:
    _, root = repository(tmp_path, project="services/web")
    ctx, _ = context_for(root)
    try:
        where = Path(run(build_directory(ctx)))
        assert where.parts[-3:] == ("repo", "services", "web")
        assert (where / "Dockerfile").read_text() == "FROM scratch\n"
    finally:
        shutil.rmtree(clones_directory(ctx.config), ignore_errors=True)


def test_a_build_context_or_no_git_builds_the_project_directory(tmp_path: Path) -> None:
    _, root = repository(tmp_path)
    builder = "builder:\n  arch: amd64\n"
    text = PROJECT_HEAD.replace(builder, builder + "  context: .\n")
    ctx, _ = context_for(root, text)
    assert run(build_directory(ctx)) == str(root)
    plain = tmp_path / "plain"
    plain.mkdir()
    ctx, _ = make_ctx(load_project(plain, PROJECT_HEAD, secrets=SECRETS, version="v1"), FakePool())
    ctx.local = LocalTransport()
    assert run(build_directory(ctx)) == str(plain)
    assert not Path(clones_directory(ctx.config)).exists()


def test_a_repository_without_a_commit_says_what_to_do(tmp_path: Path) -> None:
    root = tmp_path / "fresh"
    root.mkdir()
    git(root, "init", "-q")
    ctx, _ = context_for(root)
    with pytest.raises(BuildError, match="has no commit to build from a clean clone") as info:
        run(build_directory(ctx))
    assert info.value.hint is not None and "builder.context" in info.value.hint
    assert not Path(clones_directory(ctx.config)).exists()
