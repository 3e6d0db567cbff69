"""Passbolt through `passbolt list resources`.

Names are resource names, optionally inside folders: `FOLDER/SUB/NAME`. The adapter first looks
up the folders (`passbolt list folders`), then lists the matching resources in one call. Keys are
the bare resource names.
"""

from __future__ import annotations

from typing import Any

from .base import Adapter, SecretsError, VendorCli, parse_json, prefixed

PASSBOLT = VendorCli("passbolt", "the Passbolt CLI", "https://github.com/passbolt/go-passbolt-cli")

Folder = dict[str, Any]


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _folder_path(folder: Folder, folders: list[Folder]) -> str:
    """The folder's path from the root, following `folder_parent_id` through `folders`."""
    path = [str(folder.get("name"))]
    seen = {id(folder)}
    current = folder
    while str(current.get("folder_parent_id") or ""):
        parent = next((f for f in folders if f.get("id") == current["folder_parent_id"]), None)
        if parent is None or id(parent) in seen:
            break
        seen.add(id(parent))
        path.insert(0, str(parent.get("name")))
        current = parent
    return "/".join(path)


def _list_folders(filter_: str, *, required: bool) -> list[Folder] | None:
    result = PASSBOLT.run("list", "folders", "--filter", filter_, "--json")
    if not result.ok:
        if required:
            PASSBOLT.check(result, "Could not read folders from Passbolt")
        return None
    data = parse_json(result.stdout, "passbolt", "Could not read folders from Passbolt")
    return [f for f in data if isinstance(f, dict)] if isinstance(data, list) else []


def _folders(names: list[str]) -> list[Folder]:
    paths: list[list[str]] = []
    for name in names:
        parts = name.split("/")[:-1]
        if parts and parts not in paths:
            paths.append(parts)
    if not paths:
        return []
    tops = list(dict.fromkeys(path[0] for path in paths))
    parents = _list_folders(" || ".join(f"Name == {_quote(t)}" for t in tops), required=True) or []
    found: list[Folder] = list(parents)
    for path in paths:
        if len(path) < 2:
            continue
        current = next((f for f in parents if f.get("name") == path[0]), None)
        if current is None:
            continue
        for folder_name in path[1:]:
            nested = _list_folders(
                f"Name == {_quote(folder_name)} && FolderParentID == {_quote(str(current['id']))}",
                required=False,
            )
            if not nested:
                break
            found.extend(nested)
            current = nested[0]
    have = {_folder_path(f, found) for f in found}
    missing = ["/".join(p) for p in paths if "/".join(p) not in have]
    if missing:
        raise SecretsError(
            f"Could not find the following folders in Passbolt: {', '.join(missing)}"
        )
    return found


class Passbolt(Adapter):
    name = "passbolt"
    cli = PASSBOLT
    requires_account = False

    def login(self, account: str | None) -> str | None:
        PASSBOLT.check(PASSBOLT.run("verify"), "Failed to log in to Passbolt (`passbolt verify`)")
        return None

    def fetch_secrets(
        self, names: list[str], *, account: str | None, from_: str | None, session: str | None
    ) -> dict[str, Any]:
        full = prefixed(names, from_)
        if not full:
            raise SecretsError("No secrets given to fetch from Passbolt")
        folders = _folders(full)
        conditions: list[str] = []
        for entry in full:
            *folder_path, secret = entry.split("/")
            if not folder_path:
                conditions.append(f"Name == {_quote(secret)}")
                continue
            current: Folder | None = None
            for depth in range(1, len(folder_path) + 1):
                path_text = "/".join(folder_path[:depth])
                match = next((f for f in folders if _folder_path(f, folders) == path_text), None)
                if match is not None:
                    current = match
            if current is not None:
                conditions.append(
                    f"(Name == {_quote(secret)} && FolderParentID == {_quote(str(current['id']))})"
                )
        args = ["list", "resources"]
        if conditions:
            args += ["--filter", " || ".join(conditions)]
        for folder in folders:
            args += ["--folder", str(folder.get("id"))]
        args.append("--json")
        resources = PASSBOLT.json(*args, failure=f"Could not read {', '.join(full)} from Passbolt")
        if not isinstance(resources, list):
            raise SecretsError("Passbolt returned unexpected JSON")
        found = {str(r.get("name")) for r in resources if isinstance(r, dict)}
        wanted = [name.split("/")[-1] for name in full]
        missing = [name for name in wanted if name not in found]
        if missing:
            raise SecretsError(
                f"Could not find the following secrets in Passbolt: {', '.join(missing)}"
            )
        return {str(r.get("name")): r.get("password") for r in resources if isinstance(r, dict)}
