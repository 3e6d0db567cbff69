"""dockyard.proxy.native: the checks that keep a compiled build out of an image it does not fit,
and the reuse of an up-to-date build. The compile itself runs in scripts/test (the proxy's unit
tests run a second time on its output) and in `python -m lab build` for the image."""

from __future__ import annotations

import fcntl
import subprocess
import threading
from pathlib import Path

import pytest

from dockyard.proxy import native

PACKAGE_ROOT = Path(native.__file__).resolve().parents[2]  # the folder holding dockyard/


def test_every_compiled_module_is_a_source_of_the_package() -> None:
    for module in native.MODULES:
        assert (PACKAGE_ROOT / module).is_file(), module
        assert module.startswith("dockyard/proxy/"), module
    assert len(set(native.MODULES)) == len(native.MODULES)


def test_extension_names_follow_the_module_paths() -> None:
    assert (
        native.extension_of("dockyard/proxy/http/parser.py", ".cpython-311-x86_64-linux-gnu.so")
        == "dockyard/proxy/http/parser.cpython-311-x86_64-linux-gnu.so"
    )
    assert native.extension_of("dockyard/a.py").endswith(native.extension_suffix())


def _trees(tmp_path: Path, suffix: str | None = None) -> tuple[Path, Path]:
    """A fake build (sources + one `.so` per module + the runtime library) and a package copy
    with the same sources."""
    built, lib = tmp_path / "native", tmp_path / "lib"
    suffix = suffix or native.extension_suffix()
    for n, module in enumerate(native.MODULES):
        for root in (built, lib):
            (root / module).parent.mkdir(parents=True, exist_ok=True)
            (root / module).write_text(f"X = {n}\n")
        (built / native.extension_of(module, suffix)).write_bytes(b"\x7fELF" + bytes([n]))
    (built / f"0123abcd__mypyc{suffix}").write_bytes(b"\x7fELF runtime")
    return built, lib


def test_install_copies_every_module_and_the_runtime_library(tmp_path: Path) -> None:
    built, lib = _trees(tmp_path)
    copied = native.install(built, lib)
    assert len(copied) == len(native.MODULES) + 1
    for n, module in enumerate(native.MODULES):
        assert (lib / native.extension_of(module)).read_bytes() == b"\x7fELF" + bytes([n])
    assert (lib / f"0123abcd__mypyc{native.extension_suffix()}").is_file()


def test_install_refuses_a_build_of_other_sources_and_copies_nothing(tmp_path: Path) -> None:
    built, lib = _trees(tmp_path)
    stale = native.MODULES[2]
    (lib / stale).write_text("X = 'edited after the build'\n")
    with pytest.raises(native.NativeError) as err:
        native.install(built, lib)
    assert f"{stale}: the compiled module was built from other sources" in str(err.value)
    assert "python -m dockyard.proxy.native build" in str(err.value)
    assert not list(lib.rglob("*.so"))


def test_install_refuses_a_build_for_another_python_naming_what_it_found(tmp_path: Path) -> None:
    other = ".cpython-399-x86_64-linux-gnu.so"
    built, lib = _trees(tmp_path, suffix=other)
    with pytest.raises(native.NativeError) as err:
        native.install(built, lib)
    message = str(err.value)
    first = native.MODULES[0]
    assert f"{first}: not compiled for this Python ({native.extension_suffix()})" in message
    assert f"found {Path(first).stem}{other}" in message
    assert "no mypyc runtime library for this Python" in message
    assert not list(lib.rglob("*.so"))


def test_install_names_a_module_missing_from_the_package(tmp_path: Path) -> None:
    built, lib = _trees(tmp_path)
    (lib / native.MODULES[-1]).unlink()
    with pytest.raises(native.NativeError, match="missing from the package"):
        native.install(built, lib)


def _mini_package(root: Path) -> Path:
    """A copy of the part of the package a build reads (PACKAGE), to edit freely."""
    src = root / "src"
    native.copy_package(PACKAGE_ROOT, src)
    return src


def test_the_source_hash_follows_the_sources_and_the_compiler(tmp_path: Path) -> None:
    src = _mini_package(tmp_path)
    first = native.source_hash(src, "mypy 2.4.1")
    assert native.source_hash(src, "mypy 2.4.1") == first
    assert native.source_hash(src, "mypy 2.5.0") != first
    target = src / "dockyard/proxy/control/options.py"  # read, not compiled: still an input
    target.write_text(target.read_text() + "\n# edited\n")
    assert native.source_hash(src, "mypy 2.4.1") != first


def test_an_up_to_date_build_is_reused_without_compiling(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = _mini_package(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    (out / native.STAMP).write_text(native.source_hash(src, native.mypyc_version()))

    def no_compile(*args: object, **kwargs: object) -> None:
        raise AssertionError("mypyc ran for an up-to-date build")

    monkeypatch.setattr(subprocess, "run", no_compile)
    assert native.build(src, out) is False


def test_a_failed_compile_says_what_it_needs_and_shows_the_compilers_words(
    tmp_path: Path,
) -> None:
    src = _mini_package(tmp_path)
    (src / "dockyard/proxy/http/forward.py").write_text("def broken(:\n")
    out, log = tmp_path / "out", tmp_path / "logs" / "native.log"
    with pytest.raises(native.NativeError) as err:
        native.build(src, out, log=log)
    message = str(err.value)
    assert "mypyc failed to compile the proxy modules" in message
    assert "a C compiler (gcc) and this Python's headers" in message
    assert "dockyard/proxy/http/forward.py:1: error" in message  # mypy's own words
    assert f"(all of it in {log})" in message
    assert "forward.py:1: error" in log.read_text()
    assert not out.exists()  # nothing half-made where the build goes


def test_builds_into_one_folder_take_turns(tmp_path: Path) -> None:
    src = _mini_package(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    (out / native.STAMP).write_text(native.source_hash(src, native.mypyc_version()))
    finished = threading.Event()

    def second_build() -> None:
        native.build(src, out)
        finished.set()

    with open(tmp_path / "out.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a build in progress
        thread = threading.Thread(target=second_build)
        thread.start()
        assert not finished.wait(0.5)  # waits for its turn
    assert finished.wait(10)
    thread.join()


def test_a_package_without_its_sources_is_named(tmp_path: Path) -> None:
    with pytest.raises(native.NativeError, match=r"dockyard/__init__\.py: missing"):
        native.source_hash(tmp_path, "mypy")


def test_the_command_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert native.main(["status"]) == 0
    left = native.interpreted_modules()
    assert left in ([], list(native.MODULES))  # all or nothing, in this suite's two runs
    expected = "interpreted" if left else "compiled"
    assert capsys.readouterr().out == expected + "\n"
    assert native.main(["frobnicate"]) == 2
    assert "usage:" in capsys.readouterr().err
    built, lib = _trees(tmp_path)
    (lib / native.MODULES[0]).write_text("changed\n")
    assert native.main(["install", str(built), str(lib)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("Error: the compiled proxy modules do not fit this image")
