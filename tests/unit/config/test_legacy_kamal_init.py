"""A project made by the real `kamal init` loads (its deploy.yml has ERB inside a YAML comment).

The committed copy under tests/fixtures/legacy/kamal_init runs without Kamal; the second test runs
the real `kamal init` (skipped when the binary is missing, failing under CI=true).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from dockyard.config import ConfigError, load_config
from dockyard.config._source import render_erb

REPO = Path(__file__).resolve().parents[3]
FIXTURE = REPO / "tests" / "fixtures" / "legacy" / "kamal_init"
KAMAL = Path(os.environ.get("DOCKYARD_KAMAL_BIN", REPO / ".cache" / "kamal-venv" / "bin" / "kamal"))
COMMENT_ERB = (
    '<%= ENV["RBENV_VERSION"] || ENV["rvm_ruby_string"] || '
    '"#{RUBY_ENGINE}-#{RUBY_ENGINE_VERSION}" %>'
)


def _check_kamal_init_project(project: Path) -> None:
    text = (project / "config" / "deploy.yml").read_text()
    assert COMMENT_ERB in text  # the line this test is about is really there
    config = load_config(root=project, env={"VERSION": "1"})
    assert config.service == "my-app"
    assert config.image == "my-user/my-app"
    assert config.role_names == ["web"]
    assert config.builder.arch == ("amd64",)


def test_committed_kamal_init_deploy_yml_loads() -> None:
    _check_kamal_init_project(FIXTURE)


def test_deploy_yml_written_by_the_real_kamal_init_loads(tmp_path: Path) -> None:
    if not (KAMAL.exists() and os.access(KAMAL, os.X_OK)):
        if os.environ.get("CI"):
            pytest.fail(f"the Kamal binary is missing: {KAMAL}")
        pytest.skip(f"the Kamal binary is missing: {KAMAL}")
    done = subprocess.run(
        [str(KAMAL), "init"], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    _check_kamal_init_project(tmp_path)
    # The committed fixture is what this Kamal writes.
    assert (tmp_path / "config" / "deploy.yml").read_text() == (
        FIXTURE / "config" / "deploy.yml"
    ).read_text()


def test_unsupported_erb_on_a_comment_line_is_left_as_written(tmp_path: Path) -> None:
    text = f"a: 1\n  #   RUBY_VERSION: {COMMENT_ERB}\n# <% x = 1 %>\nb: 2\n"
    rendered, lines = render_erb(text, file=tmp_path / "d.yml", cwd=tmp_path, env={})
    assert rendered == text
    assert lines == [1, 2, 3, 4, 5]


@pytest.mark.parametrize(
    "text",
    [
        f"a: {COMMENT_ERB}\n",  # a value, not a comment
        f"a: 1 # {COMMENT_ERB}\n",  # a trailing comment: only whole comment lines are skipped
        "# <%= ENV['A'] ||\n  'b' + 'c' %>\n",  # a tag running past the comment line
        "<% x = 1 %>\n",
    ],
)
def test_unsupported_erb_elsewhere_is_still_an_error(tmp_path: Path, text: str) -> None:
    with pytest.raises(ConfigError, match="unsupported ERB"):
        render_erb(text, file=tmp_path / "d.yml", cwd=tmp_path, env={})


def test_supported_erb_on_a_comment_line_is_still_evaluated(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="NOPE is not set"):
        render_erb('# <%= ENV.fetch("NOPE") %>\n', file=tmp_path / "d.yml", cwd=tmp_path, env={})
    rendered, _ = render_erb(
        '# <%= ENV["X"] %>\n', file=tmp_path / "d.yml", cwd=tmp_path, env={"X": "v"}
    )
    assert rendered == "# v\n"
