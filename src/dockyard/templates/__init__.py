"""Files written by `dockyard init`: a commented deploy.yml, a secrets file and sample hooks.

The templates are package data next to this module. `deploy.yml` and `secrets` hold `{{name}}`
placeholders that are filled in for the framework found in the project (Django, FastAPI, Flask,
Rails, or none), so the first deploy needs as few edits as possible.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from dockyard.errors import DockyardError

__all__ = [
    "HOOK_NAMES",
    "Framework",
    "InitResult",
    "detect_framework",
    "init_project",
    "render_deploy_yml",
    "render_secrets",
    "service_name",
]

HOOK_NAMES: tuple[str, ...] = (
    "docker-setup",
    "pre-connect",
    "pre-build",
    "pre-deploy",
    "post-deploy",
    "pre-app-boot",
    "post-app-boot",
    "pre-proxy-reboot",
    "post-proxy-reboot",
)

BINSTUB = """#!/bin/sh
# Runs Dockyard for this project: the one in .venv when there is one, else python3's.
root=$(cd "$(dirname "$0")/.." && pwd)
if [ -x "$root/.venv/bin/dockyard" ]; then
  exec "$root/.venv/bin/dockyard" "$@"
fi
exec python3 -m dockyard "$@"
"""


@dataclass(frozen=True, slots=True)
class Framework:
    """What the templates need to know about the app's framework."""

    name: str
    label: str
    app_port: int = 80
    health_path: str = "/up"
    health_hint: str = "Your app must answer this path with a 2xx status once it is ready."
    clear_env: dict[str, str] = field(default_factory=dict)
    secret_env: tuple[str, ...] = ()
    secrets_lines: tuple[str, ...] = ()
    shell_command: str = "sh"
    data_path: str = "/data"
    build_arg: str = "EXAMPLE_ARG: value"
    worker_cmd: str | None = None


@dataclass(frozen=True, slots=True)
class InitResult:
    path: Path
    created: bool
    message: str


def service_name(root: Path) -> str:
    """A valid service name from the project directory's name."""
    name = re.sub(r"[^a-z0-9_-]+", "-", root.resolve().name.lower()).strip("-_")
    return name or "my-app"


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def _python_dependency_text(root: Path) -> str:
    files = [root / "pyproject.toml", root / "Pipfile", root / "setup.py", root / "setup.cfg"]
    files += sorted(root.glob("requirements*.txt")) + sorted(root.glob("requirements/*.txt"))
    return "\n".join(_read(f) for f in files if f.is_file())


def _mentions(text: str, package: str) -> bool:
    return re.search(rf"(?<![\w.-]){re.escape(package)}(?!\w)", text, re.IGNORECASE) is not None


def detect_framework(root: Path) -> Framework:
    """Guess the framework from the project's files (manage.py, dependencies, Gemfile)."""
    manage = root / "manage.py"
    if manage.is_file():
        found = re.search(r"DJANGO_SETTINGS_MODULE['\"]\s*,\s*['\"]([\w.]+)['\"]", _read(manage))
        settings = found[1] if found else f"{service_name(root).replace('-', '_')}.settings"
        project = settings.split(".")[0]
        return Framework(
            name="django",
            label="Django",
            app_port=8000,
            health_hint=(
                "Django has no /up view: add one that returns 200. The check is addressed to "
                "the container's name, so ALLOWED_HOSTS must accept it (or exempt the view)."
            ),
            clear_env={"DJANGO_SETTINGS_MODULE": settings},
            secret_env=("DJANGO_SECRET_KEY",),
            secrets_lines=(
                "# Django's SECRET_KEY, copied from your environment when you deploy:",
                "DJANGO_SECRET_KEY=$DJANGO_SECRET_KEY",
            ),
            shell_command="python manage.py shell",
            data_path="/app/media",
            build_arg='PYTHON_VERSION: "3.12"',
            worker_cmd=f"celery -A {project} worker",
        )
    gemfile = _read(root / "Gemfile")
    if re.search(r"^\s*gem\s+['\"]rails['\"]", gemfile, re.MULTILINE):
        return Framework(
            name="rails",
            label="Rails",
            app_port=80,
            health_hint="Rails 7.1 and later answer /up out of the box.",
            secret_env=("RAILS_MASTER_KEY",),
            secrets_lines=(
                "# The key that decrypts config/credentials.yml.enc:",
                "RAILS_MASTER_KEY=$(cat config/master.key)",
            ),
            shell_command="bin/rails console",
            data_path="/rails/storage",
            build_arg='RUBY_VERSION: "3.3"',
            worker_cmd="bin/jobs",
        )
    deps = _python_dependency_text(root)
    if _mentions(deps, "fastapi"):
        return Framework(
            name="fastapi",
            label="FastAPI",
            app_port=8000,
            health_hint=(
                'Add a route that returns 200, e.g. @app.get("/up") returning {"status": "ok"}.'
            ),
            shell_command="python",
            build_arg='PYTHON_VERSION: "3.12"',
        )
    if _mentions(deps, "flask"):
        return Framework(
            name="flask",
            label="Flask",
            app_port=8000,
            health_hint='Add a route that returns 200, e.g. @app.get("/up") returning "ok".',
            shell_command="flask shell",
            build_arg='PYTHON_VERSION: "3.12"',
        )
    return Framework(name="generic", label="no framework")


def _fill(template: str, values: dict[str, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        return values[match[1]]

    return re.sub(r"\{\{(\w+)\}\}", replace, template)


def _template(name: str) -> str:
    return resources.files(__name__).joinpath(name).read_text(encoding="utf-8")


def _comment_lines(text: str, indent: str, width: int = 92) -> str:
    words, lines, line = text.split(), [], ""
    for word in words:
        if line and len(indent) + 2 + len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    lines.append(line)
    return f"\n{indent}# ".join(lines)


def _env_block(framework: Framework) -> str:
    if not framework.clear_env and not framework.secret_env:
        return (
            "# env:\n"
            "#   clear:\n"
            "#     DATABASE_HOST: 192.168.0.2\n"
            "#   secret:\n"
            "#     - DATABASE_PASSWORD\n"
        )
    lines = ["env:"]
    if framework.clear_env:
        lines.append("  clear:")
        lines += [f"    {key}: {value}" for key, value in framework.clear_env.items()]
    if framework.secret_env:
        lines.append("  secret:")
        lines += [f"    - {name}" for name in framework.secret_env]
    return "\n".join(lines) + "\n"


def render_deploy_yml(root: Path, framework: Framework | None = None) -> str:
    """The commented config/deploy.yml for the project at `root`."""
    framework = framework or detect_framework(root)
    note = ""
    if framework.name != "generic":
        note = (
            f"#\n# Written for a {framework.label} app: check app_port, the health check path "
            "and env below.\n"
        )
    extra_roles = ""
    if framework.worker_cmd:
        extra_roles = (
            "  # A second role running background jobs from the same image:\n"
            "  # worker:\n"
            "  #   hosts:\n"
            "  #     - 192.168.0.1\n"
            f"  #   cmd: {framework.worker_cmd}\n"
        )
    values = {
        "service": service_name(root),
        "framework_note": note,
        "extra_roles": extra_roles,
        "app_port": str(framework.app_port),
        "health_path": framework.health_path,
        "health_hint": _comment_lines(framework.health_hint, "    "),
        "build_arg": framework.build_arg,
        "env_block": _env_block(framework),
        "shell_command": framework.shell_command,
        "data_path": framework.data_path,
    }
    return _fill(_template("deploy.yml"), values)


def render_secrets(framework: Framework) -> str:
    """The commented .kamal/secrets file."""
    lines = "\n".join(framework.secrets_lines)
    return _fill(_template("secrets"), {"framework_secrets": lines + "\n" if lines else ""})


def _write(path: Path, text: str, root: Path, *, mode: int = 0o644) -> InitResult:
    shown = path.relative_to(root)
    if path.exists() or path.is_symlink():
        return InitResult(
            path, False, f"Skipped {shown}: it already exists (remove it first to create a new one)"
        )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("x", encoding="utf-8") as handle:
            handle.write(text)
        path.chmod(mode)
    except OSError as exc:
        raise DockyardError(f"Could not create {shown}: {exc.strerror or exc}") from exc
    return InitResult(path, True, f"Created {shown}")


def init_project(root: Path, *, bundle: bool = False) -> tuple[Framework, list[InitResult]]:
    """Write the starter files into `root`, never replacing an existing file."""
    framework = detect_framework(root)
    results = [
        _write(root / "config/deploy.yml", render_deploy_yml(root, framework), root),
        _write(root / ".kamal/secrets", render_secrets(framework), root, mode=0o600),
    ]
    hooks = resources.files(__name__).joinpath("hooks")
    for name in HOOK_NAMES:
        text = hooks.joinpath(f"{name}.sample").read_text(encoding="utf-8")
        results.append(_write(root / f".kamal/hooks/{name}.sample", text, root, mode=0o755))
    if bundle:
        results.append(_write(root / "bin/dockyard", BINSTUB, root, mode=0o755))
    return framework, results
