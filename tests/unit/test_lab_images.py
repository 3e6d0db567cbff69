"""lab.images: which Python the proxy image runs, read from the wheels downloaded for it."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest

from dockyard.proxy import native
from lab import images
from lab.images import wheels_python_version


def test_the_image_python_comes_from_a_version_specific_wheel(tmp_path: Path) -> None:
    for name in (
        "bcrypt-5.0.0-cp39-abi3-manylinux_2_28_x86_64.whl",  # abi3: 3.9 is only a minimum
        "h2-4.4.1-py3-none-any.whl",
        "httptools-0.9.0-cp311-cp311-manylinux_2_28_x86_64.whl",
    ):
        (tmp_path / name).touch()
    assert wheels_python_version(tmp_path) == "3.11"


def test_no_version_specific_wheel_means_unknown(tmp_path: Path) -> None:
    (tmp_path / "bcrypt-5.0.0-cp39-abi3-manylinux_2_28_x86_64.whl").touch()
    assert wheels_python_version(tmp_path) is None
    assert wheels_python_version(tmp_path / "absent") is None


def test_a_failed_compile_leaves_an_interpreted_image_and_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    here = "{}{}".format(*sys.version_info[:2])
    (wheels / f"httptools-0.9.0-cp{here}-cp{here}-manylinux_2_28_x86_64.whl").touch()
    dest = tmp_path / "native"
    (dest / "dockyard").mkdir(parents=True)  # an older build

    def no_compiler(src: Path, out: Path, *, log: Path | None = None) -> bool:
        raise native.NativeError("mypyc failed to compile the proxy modules (exit 1)")

    monkeypatch.setattr(native, "build", no_compiler)
    with caplog.at_level(logging.WARNING, logger="lab"):
        assert images.compile_native(dest, wheels) is False
    assert not dest.exists()  # never an old build next to new sources
    assert "runs interpreted: mypyc failed to compile" in caplog.text


def test_another_python_on_the_host_leaves_an_interpreted_image(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    (wheels / "httptools-0.9.0-cp399-cp399-manylinux_2_28_x86_64.whl").touch()
    dest = tmp_path / "native"
    (dest / "dockyard").mkdir(parents=True)
    with caplog.at_level(logging.WARNING, logger="lab"):
        assert images.compile_native(dest, wheels) is False
    assert not dest.exists()
    here = "{}.{}".format(*sys.version_info[:2])
    assert f"its Python is 3.99, this one {here}" in caplog.text
