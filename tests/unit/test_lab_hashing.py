"""Input hashes decide when a lab image is rebuilt (lab/hashing.py)."""

from __future__ import annotations

from pathlib import Path

from lab.hashing import input_hash


def _tree(root: Path) -> Path:
    folder = root / "app"
    (folder / "sub").mkdir(parents=True)
    (folder / "app.py").write_text("print('v1')\n")
    (folder / "sub" / "data.txt").write_text("data\n")
    return folder


def test_same_inputs_same_hash_wherever_the_checkout_is(tmp_path: Path) -> None:
    """The same tree under two roots, its files made in another order: one hash."""
    one = tmp_path / "one"
    folder = _tree(one)
    other = tmp_path / "elsewhere" / "two"
    moved = other / "app"
    (moved / "sub").mkdir(parents=True)
    (moved / "sub" / "data.txt").write_text("data\n")
    (moved / "app.py").write_text("print('v1')\n")
    assert input_hash(one, [folder]) == input_hash(other, [moved])
    (moved / "sub" / "data.txt").write_text("other\n")
    assert input_hash(one, [folder]) != input_hash(other, [moved])


def test_content_change_changes_the_hash(tmp_path: Path) -> None:
    folder = _tree(tmp_path)
    before = input_hash(tmp_path, [folder])
    (folder / "sub" / "data.txt").write_text("other\n")
    assert input_hash(tmp_path, [folder]) != before


def test_rename_new_file_and_exec_bit_change_the_hash(tmp_path: Path) -> None:
    folder = _tree(tmp_path)
    hashes = {input_hash(tmp_path, [folder])}
    (folder / "app.py").chmod(0o755)
    hashes.add(input_hash(tmp_path, [folder]))
    (folder / "new.txt").write_text("")
    hashes.add(input_hash(tmp_path, [folder]))
    (folder / "new.txt").rename(folder / "renamed.txt")
    hashes.add(input_hash(tmp_path, [folder]))
    assert len(hashes) == 4


def test_caches_are_ignored(tmp_path: Path) -> None:
    folder = _tree(tmp_path)
    before = input_hash(tmp_path, [folder])
    (folder / "__pycache__").mkdir()
    (folder / "__pycache__" / "app.cpython-311.pyc").write_bytes(b"\0")
    (folder / "stale.pyc").write_bytes(b"\0")
    assert input_hash(tmp_path, [folder]) == before


def test_extra_values_and_missing_paths(tmp_path: Path) -> None:
    folder = _tree(tmp_path)
    base = input_hash(tmp_path, [folder], {"variant": "v1"})
    assert input_hash(tmp_path, [folder], {"variant": "v2"}) != base
    missing = tmp_path / "images" / "Dockerfile"
    assert input_hash(tmp_path, [folder, missing], {"variant": "v1"}) == base
    missing.parent.mkdir()
    missing.write_text("FROM x\n")
    assert input_hash(tmp_path, [folder, missing], {"variant": "v1"}) != base


def test_order_of_paths_does_not_matter(tmp_path: Path) -> None:
    folder = _tree(tmp_path)
    other = tmp_path / "other.txt"
    other.write_text("x")
    assert input_hash(tmp_path, [folder, other]) == input_hash(tmp_path, [other, folder])


def test_moving_the_checkout_keeps_the_hash(tmp_path: Path) -> None:
    # Inputs outside the checkout (a host binary) sort by name, not by where the checkout is.
    outside = tmp_path / "m" / "usr-bin-tool"
    outside.parent.mkdir()
    outside.write_bytes(b"\x7fELF")
    hashes = set()
    for checkout in ("a", "z"):
        root = tmp_path / checkout
        root.mkdir()
        folder = _tree(root)
        hashes.add(input_hash(root, [folder, outside]))
    assert len(hashes) == 1
