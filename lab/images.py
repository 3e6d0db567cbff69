"""`python -m lab build`: the lab's images, each rebuilt only when the hash of its inputs
(kept as the image label `dockyard.lab.hash`) changes."""

from __future__ import annotations

import logging
import platform
import re
import shutil
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from dockyard.proxy import native
from lab import host, sources
from lab.errors import LabError
from lab.hashing import input_hash
from lab.locks import exclusive
from lab.paths import (
    HASH_LABEL,
    HELLO_REPO,
    HELLO_VARIANTS,
    LAB_DIR,
    LOG_DIR,
    NATIVE_DIR,
    PROXY_IMAGE,
    PY_BASE,
    REGISTRY_IMAGE,
    REPO_ROOT,
    SERVER_IMAGE,
    SERVER_ROOTFS,
    SHARED_STATE_DIR,
    WHEELS_DIR,
)
from lab.proc import run, run_logged

log = logging.getLogger("lab")

BUILD_VERSION = "1"  # bump to rebuild every lab image
MERGED_USR_HOOK = Path("/usr/share/mmdebstrap/hooks/merged-usr")
STD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
SERVER_PACKAGES = (
    "openssh-server",
    "docker.io",
    "curl",
    "ca-certificates",
    "iproute2",
    "procps",
    "tini",
)
PROXY_WHEELS = ("httptools>=0.6", "uvloop>=0.19")
LEGACY_BUILDER = {"DOCKER_BUILDKIT": "0"}


def image_hash(ref: str) -> str | None:
    """The input hash an image was built from, or None when it does not exist."""
    proc = run(
        ["docker", "image", "inspect", "-f", f'{{{{ index .Config.Labels "{HASH_LABEL}" }}}}', ref],
        check=False,
    )
    if proc.returncode != 0:
        return None
    value = proc.stdout.strip()
    return value if value and value != "<no value>" else ""


@dataclass
class Builder:
    """Builds lab images; remembers each image's hash for the images built on top of it."""

    force: bool = False
    hashes: dict[str, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    _mirrors: list[str] | None = None

    # -- helpers -------------------------------------------------------------------------
    def _fresh(self, ref: str, wanted: str) -> bool:
        self.hashes[ref] = wanted
        if not self.force and image_hash(ref) == wanted:
            log.info("%s is up to date", ref)
            return True
        return False

    def _done(self, ref: str, started: float) -> None:
        took = time.monotonic() - started
        self.timings[ref] = took
        log.info("built %s in %.1f s", ref, took)

    def codename(self) -> str:
        return sources.read_os_codename()

    def mirrors(self) -> list[str]:
        if self._mirrors is None:
            self._mirrors = sources.host_mirror_lines(self.codename())
        return self._mirrors

    @staticmethod
    def use_mmdebstrap() -> bool:
        return shutil.which("mmdebstrap") is not None

    def docker_build(
        self,
        ref: str,
        context: Path,
        wanted: str,
        *,
        dockerfile: Path | None = None,
        build_args: Mapping[str, str] | None = None,
    ) -> None:
        argv = ["docker", "build", "-t", ref, "--label", f"{HASH_LABEL}={wanted}"]
        for key, value in (build_args or {}).items():
            argv += ["--build-arg", f"{key}={value}"]
        if dockerfile is not None:
            argv += ["-f", str(dockerfile)]
        argv.append(str(context))
        run_logged(argv, LOG_DIR / f"build-{_slug(ref)}.log", env=LEGACY_BUILDER)

    # -- root file systems ---------------------------------------------------------------
    def rootfs(self, ref: str, variant: str, packages: tuple[str, ...], cmd: str) -> None:
        """A Debian root file system: mmdebstrap from the host's apt sources + docker import,
        or (no mmdebstrap, e.g. a laptop) the slim Debian image + apt-get."""
        codename = self.codename()
        if self.use_mmdebstrap():
            method = "mmdebstrap:" + "\n".join(self.mirrors())
        else:
            method = f"pull:debian:{codename}-slim"
        wanted = input_hash(
            LAB_DIR,
            [],
            {
                "version": BUILD_VERSION,
                "variant": variant,
                "packages": ",".join(packages),
                "codename": codename,
                "method": method,
            },
        )
        if self._fresh(ref, wanted):
            return
        started = time.monotonic()
        if self.use_mmdebstrap():
            log.info("building %s with mmdebstrap (%s + %s)", ref, variant, " ".join(packages))
            self._mmdebstrap(ref, variant, packages, cmd, wanted)
        else:
            log.info("mmdebstrap not found: building %s from debian:%s-slim", ref, codename)
            self._slim(ref, codename, packages, cmd, wanted)
        self._done(ref, started)

    def _mmdebstrap(
        self, ref: str, variant: str, packages: tuple[str, ...], cmd: str, wanted: str
    ) -> None:
        with tempfile.TemporaryDirectory(prefix="dockyard-lab-") as tmp:
            tarball = Path(tmp) / "rootfs.tar"
            argv = [
                "mmdebstrap",
                f"--variant={variant}",
                f"--include={','.join(packages)}",
                "--format=tar",
                # Keep the image small: no docs, manuals or locales.
                "--dpkgopt=path-exclude=/usr/share/man/*",
                "--dpkgopt=path-exclude=/usr/share/doc/*",
                "--dpkgopt=path-include=/usr/share/doc/*/copyright",
                "--dpkgopt=path-exclude=/usr/share/locale/*",
            ]
            if MERGED_USR_HOOK.is_dir():
                # Without it usrmerge pulls perl into the essential set.
                argv.append(f"--hook-dir={MERGED_USR_HOOK}")
            argv += [self.codename(), str(tarball), *self.mirrors()]
            run_logged(argv, LOG_DIR / f"mmdebstrap-{_slug(ref)}.log")
            run(
                [
                    "docker",
                    "import",
                    "--change",
                    f"ENV PATH={STD_PATH}",
                    "--change",
                    f"CMD {cmd}",
                    "--change",
                    f"LABEL {HASH_LABEL}={wanted}",
                    str(tarball),
                    ref,
                ],
                timeout=600,
            )

    def _slim(
        self, ref: str, codename: str, packages: tuple[str, ...], cmd: str, wanted: str
    ) -> None:
        with tempfile.TemporaryDirectory(prefix="dockyard-lab-") as tmp:
            (Path(tmp) / "Dockerfile").write_text(
                f"FROM debian:{codename}-slim\n"
                "RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y "
                f"--no-install-recommends {' '.join(packages)} && rm -rf /var/lib/apt/lists/*\n"
                f"CMD {cmd}\n"
            )
            base = f"debian:{codename}-slim"
            if image_hash(base) is None:
                run_logged(["docker", "pull", base], LOG_DIR / f"pull-{_slug(ref)}.log")
            self.docker_build(ref, Path(tmp), wanted)

    # -- the images ----------------------------------------------------------------------
    def python_base(self) -> None:
        self.rootfs(PY_BASE, "essential", ("python3",), '["python3"]')

    def server(self) -> None:
        self.rootfs(SERVER_ROOTFS, "minbase", SERVER_PACKAGES, '["/bin/bash"]')
        folder = LAB_DIR / "server"
        wanted = input_hash(
            LAB_DIR, [folder], {"version": BUILD_VERSION, "rootfs": self.hashes[SERVER_ROOTFS]}
        )
        if self._fresh(SERVER_IMAGE, wanted):
            return
        started = time.monotonic()
        self.docker_build(SERVER_IMAGE, folder, wanted, build_args={"ROOTFS": SERVER_ROOTFS})
        self._done(SERVER_IMAGE, started)

    def registry(self) -> None:
        folder = LAB_DIR / "registry"
        binary = Path("/usr/bin/docker-registry")
        if not binary.is_file():
            host.ensure_packages(("docker-registry",))
        inputs = [folder, binary] if binary.is_file() else [folder]
        wanted = input_hash(
            LAB_DIR, inputs, {"version": BUILD_VERSION, "base": self.hashes[PY_BASE]}
        )
        if self._fresh(REGISTRY_IMAGE, wanted):
            return
        started = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="dockyard-lab-") as tmp:
            context = Path(tmp)
            for item in folder.iterdir():
                shutil.copy2(item, context / item.name)
            if binary.is_file():
                shutil.copy2(binary, context / "docker-registry")
                dockerfile = context / "Dockerfile"
            else:  # no host binary to copy (not Debian): install the package in the image
                dockerfile = context / "Dockerfile.apt"
                dockerfile.write_text(
                    "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\n"
                    "RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y "
                    "--no-install-recommends docker-registry && rm -rf /var/lib/apt/lists/*\n"
                    "COPY config.yml /etc/docker/registry/config.yml\n"
                    "COPY lab-registry /usr/local/bin/lab-registry\n"
                    'ENTRYPOINT ["/usr/local/bin/lab-registry"]\n'
                )
            self.docker_build(
                REGISTRY_IMAGE,
                context,
                wanted,
                dockerfile=dockerfile,
                build_args={"BASE_IMAGE": PY_BASE},
            )
        self._done(REGISTRY_IMAGE, started)

    def hello(self) -> None:
        folder = LAB_DIR / "apps" / "hello"
        for variant in HELLO_VARIANTS:
            ref = f"{HELLO_REPO}:{variant}"
            wanted = input_hash(
                LAB_DIR,
                [folder],
                {"version": BUILD_VERSION, "base": self.hashes[PY_BASE], "variant": variant},
            )
            if self._fresh(ref, wanted):
                continue
            started = time.monotonic()
            self.docker_build(
                ref, folder, wanted, build_args={"BASE_IMAGE": PY_BASE, "VARIANT": variant}
            )
            self._done(ref, started)

    def proxy(self) -> None:
        dockerfile = REPO_ROOT / "images" / "proxy" / "Dockerfile"
        if not dockerfile.is_file():
            log.warning("skipping %s: %s does not exist yet", PROXY_IMAGE, dockerfile)
            return
        download_wheels()
        compile_native()
        inputs = [path for rel in PROXY_CONTEXT if (path := REPO_ROOT / rel).exists()]
        wanted = input_hash(
            REPO_ROOT, inputs, {"version": BUILD_VERSION, "base": self.hashes[PY_BASE]}
        )
        if self._fresh(PROXY_IMAGE, wanted):
            return
        started = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="dockyard-lab-") as tmp:
            context = Path(tmp)
            copy_context(REPO_ROOT, context, PROXY_CONTEXT)
            self.docker_build(
                PROXY_IMAGE,
                context,
                wanted,
                dockerfile=context / "images" / "proxy" / "Dockerfile",
                build_args={"BASE_IMAGE": PY_BASE},
            )
        self._done(PROXY_IMAGE, started)


# The proxy's build context: these paths of the repository, at the same relative places.
PROXY_CONTEXT = (
    "images/proxy",
    "src/dockyard",
    "pyproject.toml",
    "README.md",
    "LICENSE",
    "build/wheels",
    "build/native",
)


def copy_context(root: Path, dest: Path, rels: tuple[str, ...]) -> None:
    """Copy `rels` (files or folders under `root`) to the same places under `dest`."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".mypy_cache")
    for rel in rels:
        src = root / rel
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, target, ignore=ignore)
        elif src.is_file():
            shutil.copy2(src, target)


def _slug(ref: str) -> str:
    return ref.replace("/", "_").replace(":", "_")


def _wheel_platform() -> str:
    machine = platform.machine()
    arch = {"amd64": "x86_64", "arm64": "aarch64"}.get(machine.lower(), machine)
    return f"manylinux_2_28_{arch}"  # pip also accepts the older manylinux tags below it


def base_python_version() -> str:
    """The `major.minor` of python3 in the lab's Python base image."""
    proc = run(
        [
            "docker",
            "run",
            "--rm",
            "--network",
            "none",
            PY_BASE,
            "python3",
            "-c",
            "import sys; print('%d.%d' % sys.version_info[:2])",
        ]
    )
    return proc.stdout.strip()


def download_wheels(dest: Path = WHEELS_DIR) -> Path:
    """Download binary wheels for the proxy image into `dest` (with the host's pip, for the
    base image's Python), so the image build itself needs no network.

    The requirements are `images/proxy/requirements.txt` when it exists, else httptools and
    uvloop. A stamp file skips the download when nothing changed."""
    req_file = REPO_ROOT / "images" / "proxy" / "requirements.txt"
    reqs = ["-r", str(req_file)] if req_file.is_file() else list(PROXY_WHEELS)
    base = image_hash(PY_BASE)
    if not base:
        raise LabError(f"no {PY_BASE} image: run `python -m lab build base` first")
    # The stamp is part of the proxy's cache inputs: nothing in it may depend on the checkout.
    stamp_text = f"base {base}\n{_wheel_platform()}\n"
    stamp_text += req_file.read_text() if req_file.is_file() else "\n".join(PROXY_WHEELS)
    stamp = dest / ".stamp"
    if stamp.is_file() and stamp.read_text() == stamp_text:
        log.info("wheels in %s are up to date", dest)
        return dest
    version = base_python_version()
    pip = REPO_ROOT / ".venv" / "bin" / "pip"
    pip_argv = [str(pip)] if pip.exists() else ["python3", "-m", "pip"]
    log.info("downloading wheels into %s for Python %s", dest, version)
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    run_logged(
        [
            *pip_argv,
            "download",
            "--quiet",
            "--only-binary=:all:",
            "--implementation",
            "cp",
            "--python-version",
            version,
            "--platform",
            _wheel_platform(),
            "--dest",
            str(dest),
            *reqs,
        ],
        LOG_DIR / "wheels.log",
    )
    stamp.write_text(stamp_text)
    return dest


def wheels_python_version(wheels: Path = WHEELS_DIR) -> str | None:
    """The `major.minor` the binary wheels in `wheels` were downloaded for: the `cp3XY-cp3XY`
    tags of a version-specific wheel (an `abi3` wheel's tag is only a minimum)."""
    for path in sorted(wheels.glob("*.whl")):
        if m := re.search(r"-cp3(\d+)-cp3\1-", path.name):
            return f"3.{m[1]}"
    return None


def compile_native(dest: Path = NATIVE_DIR, wheels: Path = WHEELS_DIR) -> bool:
    """Compile the proxy's hot modules with mypyc into `dest` for its image, when this Python
    has the image's `major.minor` (mypyc compiles for the Python that runs it); otherwise
    remove `dest`, and the image's proxy runs interpreted. Reuses an up-to-date build."""
    image = wheels_python_version(wheels) or base_python_version()
    here = native.python_version()
    if image != here:
        log.warning(
            "the proxy image runs interpreted: its Python is %s, this one %s, and mypyc "
            "compiles for the Python that runs it",
            image,
            here,
        )
        shutil.rmtree(dest, ignore_errors=True)
        return False
    started = time.monotonic()
    try:
        made = native.build(REPO_ROOT / "src", dest, log=LOG_DIR / "native.log")
    except native.NativeError as exc:
        # the proxy still works interpreted; the image test says when it should not be
        log.warning("the proxy image runs interpreted: %s", exc)
        shutil.rmtree(dest, ignore_errors=True)
        return False
    if made:
        log.info("compiled the proxy's data plane in %.0f s", time.monotonic() - started)
    return True


TARGETS = ("base", "server", "registry", "hello", "proxy")


def build(targets: tuple[str, ...] = TARGETS, *, force: bool = False) -> Builder:
    """Build the named images (and what they are built on); return the builder for timings."""
    unknown = set(targets) - set(TARGETS)
    if unknown:
        raise LabError(f"unknown image {sorted(unknown)[0]!r}; known: {', '.join(TARGETS)}")
    host.ensure_packages()
    host.ensure_engine(SHARED_STATE_DIR)
    with exclusive(SHARED_STATE_DIR / "build.lock", wait=1800, what="another `lab build`"):
        return _build(targets, force)


def _build(targets: tuple[str, ...], force: bool) -> Builder:
    builder = Builder(force=force)
    started = time.monotonic()
    builder.python_base()
    if "server" in targets:
        builder.server()
    if "registry" in targets:
        builder.registry()
    if "hello" in targets:
        builder.hello()
    if "proxy" in targets:
        builder.proxy()
    log.info("lab images ready in %.1f s", time.monotonic() - started)
    return builder
