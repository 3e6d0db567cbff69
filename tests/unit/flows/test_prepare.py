"""Kamal's boot preparation: error pages, custom TLS certificates and asset bridging are put on
the host before the new container starts, and the other versions' are cleaned up after the old
container stopped."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from dockyard.commands.argv import Argv
from dockyard.errors import ConfigError
from dockyard.flows import deploy as flows
from dockyard.flows.context import DeployContext
from dockyard.flows.prepare import EXTRACT_ASSETS, SYNC_ASSETS, WRITE_PUBLIC_FILE, prepare_hosts
from dockyard.remote import FakePool, FakeTransport, Result
from dockyard.remote.argv import ArgvLike, command_line, raw_args
from tests.unit._flowkit import load_project

from .test_deploy_flow import ONE_HOST, make_ctx, server


def record_batches(
    ctx: DeployContext, stages: list[Sequence[int] | None] | None = None
) -> list[tuple[str, list[list[str]]]]:
    """Each round trip's host and commands (a shell-only command as ["sh", <its line>]); each
    one's stages go to ``stages`` when given."""
    batches: list[tuple[str, list[list[str]]]] = []
    original = ctx.batch

    def shape(command: ArgvLike) -> list[str]:
        try:
            return raw_args(command)
        except ValueError:  # e.g. a docker run with $PWD in a volume
            return ["sh", command_line(command)]

    async def batch(host: str, commands: Sequence[ArgvLike], **kw: Any) -> list[Result]:
        batches.append((host, [shape(c) for c in commands]))
        if stages is not None:
            stages.append(kw.get("stages"))
        return await original(host, commands, **kw)

    ctx.batch = batch  # type: ignore[method-assign]
    return batches


CERT = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
KEY = "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n"
#: PEM secrets as users write them: multi-line values in double quotes
SECRETS = f'KAMAL_REGISTRY_PASSWORD=s3cret\nCERT_PEM="{CERT}"\nKEY_PEM="{KEY}"\n'
APP = ".kamal/apps/hello"
PAGES = ".kamal/proxy/apps-config/hello/error_pages"

PREPARED = ONE_HOST.replace(
    "proxy:\n",
    "asset_path: /app/public\n"
    "error_pages_path: public/errors\n"
    "proxy:\n"
    "  host: hello.test\n"
    "  ssl:\n"
    "    certificate_pem: CERT_PEM\n"
    "    private_key_pem: KEY_PEM\n",
)


def host(fake: FakeTransport) -> None:
    """``server(current="v1")``, with the docker run that a $PWD volume sends through a shell."""
    server(current="v1")(fake)
    answer = fake.responder
    assert answer is not None

    def respond(args: list[str]) -> Result | None:
        if args[:2] == ["bash", "-c"] and args[2].startswith("docker run "):
            return Result(0, "abcdef1234567890\n", "")
        return answer(args)

    fake.responder = respond


def _project(tmp_path: Path, version: str = "v2"):  # type: ignore[no-untyped-def]
    pages = tmp_path / "public" / "errors"
    pages.mkdir(parents=True)
    (pages / "404.html").write_text("<h1>Not here</h1>\n")
    (pages / "500.html").write_bytes(b"<h1>Broken</h1>")  # no final newline: over SFTP
    (pages / "readme.txt").write_text("not a page\n")
    (pages / "4040.html").write_text("not a status page\n")
    return load_project(tmp_path, PREPARED, secrets=SECRETS, version=version)


def test_deploy_prepares_pages_certificates_and_assets_before_the_new_container(
    tmp_path: Path,
) -> None:
    config = _project(tmp_path)
    pool = FakePool(setup=host)
    ctx, _ = make_ctx(config, pool)
    staged: list[Sequence[int] | None] = []
    batches = record_batches(ctx, staged)
    asyncio.run(flows.deploy(ctx, skip_push=True))
    fake = pool.transports["10.0.0.1"]
    runs = [i for i, (_, b) in enumerate(batches) if any("docker run" in " ".join(c) for c in b)]
    extract = ["sh", "-c", EXTRACT_ASSETS]
    prepared = [i for i, (_, b) in enumerate(batches) if any(c[:3] == extract for c in b)]
    assert len(runs) == 1 and len(prepared) == 1 and prepared[0] < runs[0]
    batch = batches[prepared[0]][1]
    tls = ".kamal/proxy/apps-config/hello/tls/web"
    assert batch == [
        ["mkdir", "-p", f"{PAGES}/v2"],  # for the page that goes over SFTP
        ["sh", "-c", EXTRACT_ASSETS, "sh", f"{APP}/assets/extracted/web-v2", "hello-web-assets",
         "reg.test:5000/hello:v2", "/app/public"],
        ["sh", "-c", SYNC_ASSETS, "sh", f"{APP}/assets/extracted/web-v2",
         f"{APP}/assets/volumes/web-v2", f"{APP}/assets/extracted/web-v1",
         f"{APP}/assets/volumes/web-v1"],
        ["sh", "-c", WRITE_PUBLIC_FILE, "sh", f"{PAGES}/v2/404.html"],
        ["sh", "-c", WRITE_PUBLIC_FILE, "sh", f"{tls}/cert.pem"],
        ["sh", "-c", WRITE_PUBLIC_FILE, "sh", f"{tls}/key.pem"],
    ]  # fmt: skip
    # the files' bytes travel as the commands' stdin (here-documents), the odd one over SFTP
    write = ["sh", "-c", WRITE_PUBLIC_FILE]
    stdin = {c.argv[-1]: c.stdin for c in fake.calls if c.argv[:3] == write}
    assert stdin == {
        f"{PAGES}/v2/404.html": b"<h1>Not here</h1>\n",
        f"{tls}/cert.pem": CERT.encode(),
        f"{tls}/key.pem": KEY.encode(),
    }
    assert [(u.path, u.data, u.mode) for u in fake.uploads if "error_pages" in u.path] == [
        (f"{PAGES}/v2/500.html", b"<h1>Broken</h1>", 0o644)
    ]
    # the new container mounts its assets volume; the proxy is given the files' paths
    run = next(c.line for c in fake.calls if "docker run" in c.line)
    assert f'--volume "$PWD"/{APP}/assets/volumes/web-v2:/app/public ' in run
    exec_proxy = ["docker", "exec", "kamal-proxy", "kamal-proxy"]
    deploy = next(c.argv for c in fake.calls if c.argv[:4] == exec_proxy)
    assert "--tls-certificate-path=/home/kamal-proxy/.apps-config/hello/tls/web/cert.pem" in deploy
    assert "--error-pages=/home/kamal-proxy/.apps-config/hello/error_pages/v2" in deploy
    # once v1 stopped: the other versions' assets and error pages go, in that round trip, in a
    # stage after the stop's
    index = next(
        i for i, (_, b) in enumerate(batches) if b and b[0] == ["docker", "stop", "hello-web-v1"]
    )
    stop, stages = batches[index][1], staged[index]
    cleanup = [
        ["find", f"{APP}/assets/extracted", "-maxdepth", "1", "-name", "web-*",
         "!", "-name", "web-v2", "-exec", "rm", "-rf", "{}", "+"],
        ["find", f"{APP}/assets/volumes", "-maxdepth", "1", "-name", "web-*",
         "!", "-name", "web-v2", "-exec", "rm", "-rf", "{}", "+"],
        ["find", PAGES, "-mindepth", "1", "-maxdepth", "1", "!", "-name", "v2",
         "-exec", "rm", "-rf", "{}", "+"],
    ]  # fmt: skip
    at = stop.index(cleanup[0])
    assert stop[at : at + 3] == cleanup
    assert stages is not None
    assert all(stages[i] > stages[0] for i in range(at, at + 3))


def test_a_failed_asset_extraction_stops_the_deploy_before_anything_boots(
    tmp_path: Path,
) -> None:
    config = _project(tmp_path)

    def setup(fake: FakeTransport) -> None:
        host(fake)
        fake.on(["sh", "-c", EXTRACT_ASSETS], Result(1, "", "Error: no such file: /app/public\n"))

    pool = FakePool(setup=setup)
    ctx, _ = make_ctx(config, pool)
    with pytest.raises(Exception, match="preparing the boot") as info:
        asyncio.run(flows.deploy(ctx, skip_push=True))
    assert "/app/public" in str(info.value)
    commands = pool.transports["10.0.0.1"].commands
    assert not [c for c in commands if c[:2] == ["docker", "run"]]
    assert not ctx.holding_lock


def test_a_missing_error_pages_directory_is_a_config_error(tmp_path: Path) -> None:
    config = load_project(
        tmp_path, PREPARED.replace("  ssl:\n    certificate_pem: CERT_PEM\n"
                                   "    private_key_pem: KEY_PEM\n", ""),
        secrets="KAMAL_REGISTRY_PASSWORD=s3cret\n", version="v2",
    )  # fmt: skip
    ctx, _ = make_ctx(config, FakePool(setup=server(current="v1")))
    with pytest.raises(ConfigError, match=r"error_pages_path: .*public/errors is not a directory"):
        asyncio.run(prepare_hosts(ctx, {}))


def _sh(script: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sh", "-c", script, "sh", *args], cwd=cwd, capture_output=True, text=True, check=False
    )


def test_the_sync_gives_both_versions_the_union_of_their_assets(tmp_path: Path) -> None:
    """SYNC_ASSETS run by a real sh: new and old volumes end with both sets, nothing is
    overwritten, and a missing old version is fine."""
    sets = {"v1": {"a.css": "old a", "old.js": "old"}, "v2": {"a.css": "new a", "new.js": "new"}}
    for version, files in sets.items():
        extracted = tmp_path / "extracted" / f"web-{version}"
        extracted.mkdir(parents=True)
        for name, text in files.items():
            (extracted / name).write_text(text)
    (tmp_path / "volumes" / "web-v1").mkdir(parents=True)
    (tmp_path / "volumes" / "web-v1" / "a.css").write_text("old a")
    (tmp_path / "volumes" / "web-v1" / "old.js").write_text("old")
    done = _sh(SYNC_ASSETS, "extracted/web-v2", "volumes/web-v2", "extracted/web-v1",
               "volumes/web-v1", cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    for volume in ("web-v1", "web-v2"):
        names = sorted(p.name for p in (tmp_path / "volumes" / volume).iterdir())
        assert names == ["a.css", "new.js", "old.js"]
    assert (tmp_path / "volumes" / "web-v2" / "a.css").read_text() == "new a"
    assert (tmp_path / "volumes" / "web-v1" / "a.css").read_text() == "old a"
    first = _sh(SYNC_ASSETS, "extracted/web-v2", "volumes/web-v3", "", "", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert sorted(p.name for p in (tmp_path / "volumes" / "web-v3").iterdir()) == [
        "a.css", "new.js"
    ]  # fmt: skip


def test_files_are_written_readable_by_the_proxy(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "cert.pem"
    done = subprocess.run(
        ["sh", "-c", WRITE_PUBLIC_FILE, "sh", str(target)],
        input=CERT, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert target.read_text() == CERT
    assert target.stat().st_mode & 0o777 == 0o644
    assert sorted(p.name for p in target.parent.iterdir()) == ["cert.pem"]


def test_write_command_is_none_for_bytes_a_here_document_would_change() -> None:
    from dockyard.flows.prepare import _write

    assert isinstance(_write("/x", b"ok\n"), Argv)
    assert _write("/x", b"no newline") is None
    assert _write("/x", b"\xff\xfe\n") is None
    empty = _write("/x", b"")  # an empty file: the script reads /dev/null
    assert isinstance(empty, Argv) and empty.stdin is None
