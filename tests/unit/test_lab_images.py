"""lab.images: which Python the proxy image runs, read from the wheels downloaded for it."""

from __future__ import annotations

from pathlib import Path

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
