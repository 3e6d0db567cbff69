"""Kamal 1 forms (and per-role `volumes`) rewritten into the Kamal 2.11 form before validation.

Users bring configs from Kamal 1 projects and tutorials. Each form below is either read (the
document is rewritten into its Kamal 2 equivalent and a one-line warning shows that form) or
refused with an error that says what to write instead. `dockyard config --migrate` applies the
same rewrites to the files themselves (`dockyard.config.migrate`), so what Dockyard runs is what
Kamal 2.11 runs on the migrated files.

- `builder/local: {arch, host}`: `builder/arch`; a host other than the local Docker socket
  becomes `builder/remote` with `local: false` (the build ran on that Docker host).
- `builder/remote: {arch, host}`: `builder/remote: host`, its arch added to `builder/arch`;
  `local: false` when there is no `local` mapping (Kamal 1 then built only remotely).
- `builder/multiarch`: `true` gives `arch: [amd64, arm64]` unless arch is given; `false` without
  an arch is refused (Kamal 2 needs the servers' arch).
- top-level `healthcheck`: `proxy/healthcheck` (`path`, `interval`, `timeout`); `port` becomes
  `proxy/app_port`; the other keys (`max_attempts`, `cord`, `log_lines`, `cmd`) are dropped.
- `traefik` (top level): refused, write `proxy:`. `servers/<role>/traefik: bool`: `proxy: bool`.
- `primary_web_role`, `stop_wait_time`: renamed `primary_role`, `drain_timeout`.
- secrets in `.env` (no `.kamal/secrets*` file): a warning saying how to move them; `.env` is
  not read (it is often a developer's local settings, and Kamal 2 ignores it).
- accessory `port: 3306` needs nothing: Kamal 2 still accepts a number (`3306:3306`).

Per-role `volumes` (a list, as at the top level) is a Dockyard extension, read without a warning:
the role's containers get the top-level volumes and then the role's (`Role.volumes`). It is
stored as the role's `options/volume` (`--volume` flags), the form `--migrate` writes for Kamal.
"""

from __future__ import annotations

import re
from collections.abc import Callable, MutableMapping
from typing import Any

from ._ruby import ruby_str

KeyPath = tuple[str | int, ...]
#: Records a warning (about the key at a path) or builds the error for a refused form.
Note = Callable[[KeyPath, str], None]
Refuse = Callable[[KeyPath, str], Exception]

DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"
MIGRATE_HINT = "(`dockyard config --migrate` rewrites it)"


def _insert(mapping: MutableMapping[Any, Any], position: int, key: str, value: Any) -> None:
    """Set `key` at `position` (keeping the place of a key that exists)."""
    if key in mapping:
        mapping[key] = value
        return
    insert = getattr(mapping, "insert", None)  # ruamel's CommentedMap keeps comments this way
    if insert is not None:
        insert(position, key, value)
        return
    items = list(mapping.items())
    items.insert(position, (key, value))
    mapping.clear()
    mapping.update(items)


def _comments(mapping: MutableMapping[Any, Any]) -> dict[Any, Any] | None:
    """ruamel's per-key comment slots (`None` for a plain dict)."""
    ca = getattr(mapping, "ca", None)
    items = getattr(ca, "items", None)
    return items if isinstance(items, dict) else None


def _replace(mapping: MutableMapping[Any, Any], old: str, new: str, value: Any) -> None:
    """Put `new: value` where `old` was, with the comments that followed `old`."""
    position = list(mapping).index(old)
    comments = _comments(mapping)
    comment = comments.pop(old, None) if comments is not None else None
    del mapping[old]
    if new in mapping:
        return
    _insert(mapping, position, new, value)
    if comments is not None and comment is not None:
        comments[new] = comment


def _carry_tail(mapping: MutableMapping[Any, Any], old_last: Any) -> None:
    """After keys were appended, move the comment (often blank lines) that ended the mapping."""
    comments = _comments(mapping)
    new_last = list(mapping)[-1] if mapping else None
    if comments is None or old_last is None or new_last == old_last or old_last not in comments:
        return
    if not isinstance(mapping[new_last], (MutableMapping, list)):
        comments[new_last] = comments.pop(old_last)


def _new_map(like: MutableMapping[Any, Any]) -> MutableMapping[Any, Any]:
    return type(like)()


def flow(value: Any) -> str:
    """A one-line YAML flow rendering for messages: `{arch: amd64, remote: ssh://h}`."""
    if isinstance(value, MutableMapping):
        return "{" + ", ".join(f"{k}: {flow(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(flow(v) for v in value) + "]"
    return ruby_str(value)


def _seconds(value: Any) -> Any:
    """Kamal 1 intervals were written `10s`; Kamal 2 takes an integer."""
    if isinstance(value, str) and re.fullmatch(r"\d+s?", value.strip()):
        return int(value.strip().rstrip("s"))
    return value


# --------------------------------------------------------------------------- builder


def _builder(builder: MutableMapping[Any, Any], note: Note, refuse: Refuse) -> None:
    local, remote = builder.get("local"), builder.get("remote")
    local_map = local if isinstance(local, MutableMapping) else None
    remote_map = remote if isinstance(remote, MutableMapping) else None
    has_multiarch = "multiarch" in builder
    if local_map is None and remote_map is None and not has_multiarch:
        return
    legacy_keys = [k for k in ("local", "remote", "multiarch") if k in builder]
    first = legacy_keys[0] if local_map is not None or remote_map is not None else "multiarch"
    for part, mapping in (("local", local_map), ("remote", remote_map)):
        unknown = [str(k) for k in mapping or {} if k not in ("arch", "host")]
        if unknown:
            raise refuse(("builder", part), f"unknown key: {unknown[0]} (Kamal 1 knew arch, host)")

    archs: list[Any] = []
    for mapping in (local_map, remote_map):
        if mapping is not None and mapping.get("arch") is not None:
            archs.append(mapping["arch"])
    new: dict[str, Any] = {}
    remote_host = remote_map.get("host") if remote_map is not None else None
    local_host = local_map.get("host") if local_map is not None else None
    if local_host is not None and ruby_str(local_host) != DEFAULT_DOCKER_HOST:
        if remote_host is not None:
            raise refuse(
                ("builder", "local", "host"),
                "Kamal 2 has no Docker host for local builds beside a remote builder: remove "
                "builder/local/host (local builds use the local Docker) or the remote mapping",
            )
        remote_host, local = local_host, False
    elif remote_map is not None and local_map is None:
        local = False
    else:
        local = None

    existing_arch = builder.get("arch")
    if has_multiarch:
        multiarch = builder.get("multiarch")
        if existing_arch is None and not archs:
            if multiarch is False:
                raise refuse(
                    ("builder", "multiarch"),
                    "builder/multiarch was removed in Kamal 2: replace `multiarch: false` with "
                    "`arch: amd64` (the architecture of your servers, e.g. amd64 or arm64)",
                )
            archs = ["amd64", "arm64"]
    if existing_arch is None and archs:
        unique = list(dict.fromkeys(ruby_str(a) for a in archs))
        new["arch"] = unique[0] if len(unique) == 1 else unique
    if remote_host is not None:
        new["remote"] = remote_host
    if local is False:
        new["local"] = False

    position = list(builder).index(first)
    for key in legacy_keys:
        del builder[key]
    for key, value in new.items():
        _insert(builder, position, key, value)
        position += 1
    shown = {k: builder[k] for k in ("arch", "remote", "local") if k in builder}
    forms = " and ".join(
        f"builder/{k} as a mapping" if k != "multiarch" else "builder/multiarch"
        for k in legacy_keys
        if k == "multiarch" or (local_map if k == "local" else remote_map) is not None
    )
    note(
        ("builder", first),
        f"{forms} is the Kamal 1 form; read as the Kamal 2 form builder: {flow(shown)} "
        + MIGRATE_HINT,
    )


# --------------------------------------------------------------------------- healthcheck


_HEALTHCHECK_KEPT = ("path", "interval", "timeout")


def _healthcheck(doc: MutableMapping[Any, Any], note: Note, refuse: Refuse) -> None:
    old = doc.get("healthcheck")
    if not isinstance(old, MutableMapping):
        if "healthcheck" in doc:
            raise refuse(
                ("healthcheck",),
                "healthcheck moved under proxy in Kamal 2: write proxy: {healthcheck: {path: /up}}",
            )
        return
    position = list(doc).index("healthcheck")
    del doc["healthcheck"]
    proxy = doc.get("proxy")
    old_last = list(proxy)[-1] if isinstance(proxy, MutableMapping) and proxy else None
    if not isinstance(proxy, MutableMapping):
        proxy = _new_map(doc)
        _insert(doc, position, "proxy", proxy)
    check = proxy.get("healthcheck")
    if not isinstance(check, MutableMapping):
        check = _new_map(doc)
        proxy["healthcheck"] = check
    for key in _HEALTHCHECK_KEPT:
        if key in old and key not in check:
            check[key] = _seconds(old[key]) if key != "path" else old[key]
    if "port" in old and "app_port" not in proxy:
        proxy["app_port"] = old["port"]
    _carry_tail(proxy, old_last)
    dropped = [str(k) for k in old if k not in (*_HEALTHCHECK_KEPT, "port")]
    shown = {k: proxy[k] for k in ("app_port", "healthcheck") if k in proxy}
    note(
        ("healthcheck",),
        f"top-level healthcheck is the Kamal 1 form; read as the Kamal 2 form proxy: {flow(shown)}"
        + (f" (dropped: {', '.join(dropped)})" if dropped else "")
        + f" {MIGRATE_HINT}",
    )


# --------------------------------------------------------------------------- roles


def _roles(doc: MutableMapping[Any, Any], note: Note, refuse: Refuse) -> dict[str, list[str]]:
    servers = doc.get("servers")
    role_volumes: dict[str, list[str]] = {}
    if not isinstance(servers, MutableMapping):
        return role_volumes
    for name, role in servers.items():
        if not isinstance(role, MutableMapping):
            continue
        if "traefik" in role:
            value = role["traefik"]
            if "proxy" in role:
                del role["traefik"]
                value = role["proxy"]
            elif not isinstance(value, bool):
                raise refuse(
                    ("servers", name, "traefik"),
                    "traefik was replaced by kamal-proxy in Kamal 2: write "
                    "`proxy: true` (or a proxy mapping) for this role",
                )
            else:
                _replace(role, "traefik", "proxy", value)
            note(
                ("servers", name, "traefik"),
                f"servers/{name}/traefik is the Kamal 1 form; read as the Kamal 2 form "
                f"servers/{name}/proxy: {flow(value)} {MIGRATE_HINT}",
            )
        if "volumes" in role:
            volumes = role["volumes"]
            if not isinstance(volumes, list) or any(
                isinstance(v, (list, MutableMapping)) for v in volumes
            ):
                raise refuse(
                    ("servers", name, "volumes"), "should be an array of strings (host:container)"
                )
            options = role.get("options")
            if options is None:
                options = _new_map(role)
                options["volume"] = volumes  # the same sequence, with its comments
                _replace(role, "volumes", "options", options)
            elif not isinstance(options, MutableMapping):
                raise refuse(("servers", name, "options"), "should be a hash")
            else:
                del role["volumes"]
                existing = options.get("volume")
                if existing is None:
                    options["volume"] = volumes
                elif isinstance(existing, list):
                    existing.extend(volumes)
                else:
                    volumes.insert(0, existing)
                    options["volume"] = volumes
            role_volumes[str(name)] = [ruby_str(v) for v in volumes]
    return role_volumes


# --------------------------------------------------------------------------- entry point


_RENAMED = {"primary_web_role": "primary_role", "stop_wait_time": "drain_timeout"}


def upgrade(doc: MutableMapping[Any, Any], note: Note, refuse: Refuse) -> dict[str, list[str]]:
    """Rewrite the Kamal 1 forms of one document in place. Returns each role's own volumes."""
    if "traefik" in doc:
        raise refuse(
            ("traefik",),
            "traefik was replaced by kamal-proxy in Kamal 2: remove `traefik:` and write "
            "`proxy:` instead, e.g. proxy: {host: app.example.com, app_port: 3000, ssl: true} "
            "(Traefik labels and args have no equivalent)",
        )
    for old, new in _RENAMED.items():
        if old in doc:
            value = doc[old]
            _replace(doc, old, new, value)
            note(
                (old,),
                f"{old} is the Kamal 1 name; read as the Kamal 2 form {new}: "
                f"{flow(value)} {MIGRATE_HINT}",
            )
    builder = doc.get("builder")
    if isinstance(builder, MutableMapping):
        _builder(builder, note, refuse)
    _healthcheck(doc, note, refuse)
    return _roles(doc, note, refuse)
