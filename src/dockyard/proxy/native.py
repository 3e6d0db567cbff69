"""The proxy's hot modules compiled to C with mypyc (part of mypy), for the image.

The data plane is plain, fully typed Python; mypyc turns those same modules into C extensions
that CPython imports in place of the sources (an extension module wins over a `.py` of the same
name). On bench/proxy.py this takes 45-56% off the data plane's in-process CPU per request and
serves 10-76% more requests per second, by scenario and machine (TLS handshakes excepted:
OpenSSL does that work).
The pure Python package stays the reference: the unit suite runs on it, and once more on the
compiled modules.

    python -m dockyard.proxy.native build SRC OUT   # host: a copy of the package + the .so files
    python3 -m dockyard.proxy.native install OUT LIB  # image build: check them, copy them in

`build` needs mypy, setuptools, a C compiler and the Python headers, and compiles for the Python
that runs it, so it must run with the image's `major.minor`. `install` needs only the standard
library, and refuses a build made from other sources or for another Python, naming the module.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.machinery
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

#: What mypyc compiles: every module a proxied request runs through, the batch listener, and
#: the ClientHello parser and TLS transport every HTTPS connection runs. The rest (command line,
#: control socket, TLS set-up, ACME, HTTP/2) stays interpreted; so does tls/accept.py, whose
#: coroutines only wait for certificates (compiled, an earlier version's coroutines handled
#: cancellation differently and a hundred TLS tests failed).
MODULES = (
    "dockyard/proxy/http/parser.py",
    "dockyard/proxy/http/forward.py",
    "dockyard/proxy/dataplane/server.py",
    "dockyard/proxy/dataplane/upstream.py",
    "dockyard/proxy/dataplane/accesslog.py",
    "dockyard/proxy/dataplane/gates.py",
    "dockyard/proxy/dataplane/buffer.py",
    "dockyard/proxy/control/balancer.py",
    "dockyard/proxy/control/target.py",
    "dockyard/proxy/control/service.py",
    "dockyard/proxy/control/router.py",
    "dockyard/proxy/control/routing.py",
    "dockyard/proxy/contract.py",
    "dockyard/proxy/tls/clienthello.py",
    "dockyard/proxy/tls/transport.py",
    "dockyard/proxy/listener.py",
    "dockyard/proxy/deadlines.py",
    "dockyard/proxy/metrics.py",
)

#: The part of the package the proxy image holds (as images/proxy/Dockerfile copies it).
PACKAGE = ("dockyard/__init__.py", "dockyard/errors.py", "dockyard/proxy")

STAMP = ".native-stamp"


class NativeError(Exception):
    """A build that cannot be made or used; the message says which file and what to do."""


def extension_suffix() -> str:
    """This Python's suffix for extension modules, e.g. `.cpython-311-x86_64-linux-gnu.so`."""
    return importlib.machinery.EXTENSION_SUFFIXES[0]


def extension_of(module: str, suffix: str | None = None) -> str:
    """`dockyard/proxy/http/parser.py` -> `dockyard/proxy/http/parser<suffix>`."""
    return module.removesuffix(".py") + (suffix or extension_suffix())


def _package_files(root: Path) -> Iterator[Path]:
    """The sources under `root` that belong to PACKAGE, sorted, relative to `root`."""
    for rel in PACKAGE:
        path = root / rel
        if path.is_file():
            yield Path(rel)
        elif path.is_dir():
            found = [
                p.relative_to(root)
                for p in path.rglob("*")
                if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".so"
            ]
            yield from sorted(found)
        else:
            raise NativeError(f"{path}: missing, cannot build the compiled proxy modules")


def python_version() -> str:
    """This Python's `major.minor` (what mypyc compiles for, and what a wheel tag names)."""
    return "{}.{}".format(*sys.version_info[:2])


def copy_package(src: Path, dest: Path) -> None:
    """Copy the sources of PACKAGE from `src` to `dest`: exactly the files `source_hash` reads."""
    for rel in _package_files(src):
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src / rel, dest / rel)


def source_hash(root: Path, compiler: str) -> str:
    """What a build depends on: the package's sources, the module list, this Python's ABI and
    the compiler's version. Equal hashes: the build on disk can be reused."""
    digest = hashlib.sha256()
    digest.update(f"{extension_suffix()}\n{compiler}\n".encode())
    digest.update("\n".join(MODULES).encode())
    for rel in _package_files(root):
        digest.update(f"\n{rel}\n".encode())
        digest.update((root / rel).read_bytes())
    return digest.hexdigest()


def mypyc_version() -> str:
    """mypy's version (mypyc ships inside it), or a NativeError saying how to get it."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"mypy {version('mypy')}"
    except PackageNotFoundError:
        raise NativeError(
            f"mypy (which holds mypyc) is not installed for {sys.executable}: "
            "pip install mypy setuptools"
        ) from None


def build(src: Path, out: Path, *, log: Path | None = None) -> bool:
    """Copy PACKAGE from `src` (the folder holding `dockyard/`) to `out` and compile MODULES in
    place there. Returns False when `out` already holds a build of the same inputs. Builds into
    the same `out` take turns (a lock file next to it)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.with_name(out.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _build_locked(src, out, log)


def _build_locked(src: Path, out: Path, log: Path | None) -> bool:
    wanted = source_hash(src, mypyc_version())
    stamp = out / STAMP
    if stamp.is_file() and stamp.read_text() == wanted:
        return False
    work = out.with_name(out.name + ".tmp")
    shutil.rmtree(work, ignore_errors=True)
    copy_package(src, work)
    # mypyc type-checks what it compiles; the third-party parsers ship no type information
    version = python_version()
    (work / "mypy.ini").write_text(
        f"[mypy]\npython_version = {version}\nignore_missing_imports = True\n"
    )
    argv = [sys.executable, "-m", "mypyc", *MODULES]
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    proc = subprocess.run(argv, cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_bytes(proc.stdout)
    if proc.returncode != 0:
        tail = proc.stdout.decode("utf-8", "replace").strip().splitlines()[-15:]
        where = f" (all of it in {log})" if log else ""
        raise NativeError(
            f"mypyc failed to compile the proxy modules (exit {proc.returncode}). "
            "It needs mypy, setuptools, a C compiler (gcc) and this Python's headers "
            f"(Debian: python3-dev). The end of its output{where}:\n  " + "\n  ".join(tail)
        )
    for leftover in ("build", ".mypy_cache", "mypy.ini"):
        path = work / leftover
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    for module in MODULES:
        if not (work / extension_of(module)).is_file():
            raise NativeError(f"mypyc ran but {extension_of(module)} was not made")
    (work / STAMP).write_text(wanted)
    shutil.rmtree(out, ignore_errors=True)
    work.rename(out)
    return True


def shared_libraries(native: Path) -> list[Path]:
    """mypyc's runtime library for the group (`<hash>__mypyc<suffix>`), at the tree's root."""
    return sorted(native.glob("*__mypyc*.so"))


def install(native: Path, lib: Path) -> list[str]:
    """Copy the compiled modules of a `build` in `native` into `lib` (the image's copy of the
    package), after checking they were built from exactly `lib`'s sources and for this Python.
    Returns the copied file names."""
    suffix = extension_suffix()
    problems: list[str] = []
    for module in MODULES:
        built_from, used = native / module, lib / module
        if not used.is_file():
            problems.append(f"{used}: missing from the package")
        elif not built_from.is_file() or built_from.read_bytes() != used.read_bytes():
            problems.append(f"{module}: the compiled module was built from other sources")
        elif not (native / extension_of(module, suffix)).is_file():
            pattern = Path(module).stem + ".*.so"
            found = sorted(p.name for p in (native / module).parent.glob(pattern))
            problems.append(
                f"{module}: not compiled for this Python ({suffix}); "
                f"found {', '.join(found) or 'none'}"
            )
    runtime = shared_libraries(native)
    if not any(p.name.endswith(suffix) for p in runtime):
        problems.append(f"{native}: no mypyc runtime library for this Python ({suffix})")
    if problems:
        raise NativeError(
            "the compiled proxy modules do not fit this image, rebuild them "
            "(python -m dockyard.proxy.native build src build/native, with the image's "
            "Python version):\n  " + "\n  ".join(problems)
        )
    copied: list[str] = []
    for path in runtime:
        if path.name.endswith(suffix):
            shutil.copy2(path, lib / path.name)
            copied.append(path.name)
    for module in MODULES:
        name = extension_of(module, suffix)
        shutil.copy2(native / name, lib / name)
        copied.append(name)
    return copied


def interpreted_modules() -> list[str]:
    """The MODULES this process imports from their sources rather than compiled."""
    import importlib

    interpreted = []
    for module in MODULES:
        name = module.removesuffix(".py").replace("/", ".")
        if not str(importlib.import_module(name).__file__).endswith(extension_suffix()):
            interpreted.append(module)
    return interpreted


def is_compiled() -> bool:
    """True when this process runs the compiled data plane: every one of MODULES compiled."""
    return not interpreted_modules()


def main(argv: list[str]) -> int:
    try:
        if argv[:1] == ["build"] and len(argv) == 3:
            made = build(Path(argv[1]), Path(argv[2]))
            sys.stdout.write(f"{argv[2]}: {'compiled' if made else 'up to date'}\n")
        elif argv[:1] == ["install"] and len(argv) == 3:
            copied = install(Path(argv[1]), Path(argv[2]))
            sys.stdout.write(f"installed {len(copied)} compiled files into {argv[2]}\n")
        elif argv == ["status"]:
            left = interpreted_modules()
            if not left:
                sys.stdout.write("compiled\n")
            elif len(left) == len(MODULES):
                sys.stdout.write("interpreted\n")
            else:
                sys.stdout.write(f"partly compiled; interpreted: {', '.join(left)}\n")
        else:
            sys.stderr.write(
                "usage: python -m dockyard.proxy.native "
                "build SRC OUT | install NATIVE LIB | status\n"
            )
            return 2
    except NativeError as exc:
        sys.stderr.write(f"Error: {exc}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
