"""A few ``docker`` CLI calls answered by the Docker Engine API instead (sans-I/O part).

Why: every ``docker`` CLI call is a Go program starting, ~30 ms of CPU on a small server, and a
deploy makes a dozen per host (the survey's listings, the label check after a pull, the stop of
the old container, the ``latest`` tag, the prune listings). The daemon answers the same
question over its socket in a few ms, with no process at all; an SSH connection can reach that
socket with a ``direct-streamlocal`` channel (what ``ssh -L local:/var/run/docker.sock`` uses),
so the question costs no extra login either.

The flows keep building CLI argv (one source of truth for what is asked and how the answer is
read, and the fallback). :func:`engine_call` recognizes the exact forms listed below and gives
the API request and a renderer that writes what that CLI call prints: the same stdout, stderr
and exit status, so the parsers cannot tell. Any other argv, and every host whose socket cannot
be reached (forwarding disabled in sshd, no permission on the socket, a daemon elsewhere), runs
the CLI as before; ``DOCKYARD_DOCKER_API=0`` turns this off.

Recognized forms (options in any order)::

    docker ps [-a|--all] [--filter K=V ...] --format F        F: {{.ID}} {{.State}} {{.Names}}
                                                                 {{.Image}} {{.Label "k"}}
    docker image ls|docker images [--filter K=V ...] --format F  F: {{.ID}} {{.Repository}} {{.Tag}}
    docker inspect|docker image inspect -f|--format F NAME     F: one of INSPECT_FORMATS
    docker tag SOURCE TARGET
    docker stop [-t|--time N] NAME

One more form skips the daemon altogether: ``docker exec kamal-proxy kamal-proxy <command>``
(a ``deploy`` on every host, every deploy; the exec alone costs ~115 ms of CPU, the client it
starts ~50 ms more). dockyard-proxy also listens in its state directory, which Kamal's layout
keeps in the ``kamal-proxy-config`` volume, so the command line goes to that socket (the
volume's directory from the API) and the answer is printed as the proxy's own client prints it
(:class:`ProxyCall`). Another proxy (kamal-proxy itself), a stopped one, or an SSH user who
cannot reach the volume's directory (only root can): ``docker exec`` as before.

The HTTP/1.1 exchange is framed here too (:func:`request_bytes`, :class:`ResponseReader`), so
the transports only move bytes.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dockyard.commands.argv import Argv
from dockyard.commands.proxy import CONFIG_VOLUME_NAME, CONTAINER_NAME
from dockyard.remote.result import Result

__all__ = [
    "DOCKER_SOCKET",
    "PING",
    "EngineCall",
    "EngineUnavailable",
    "ResponseReader",
    "answer",
    "api_enabled",
    "engine_call",
    "familiar_image",
    "proxy_socket",
    "request_bytes",
    "shortcut",
]

#: Where the daemon listens on a server (Docker's default; what Kamal's ``docker`` calls reach).
DOCKER_SOCKET = "/var/run/docker.sock"

#: A response larger than this is not read (a listing of every container is far smaller).
MAX_BODY = 32 << 20


class EngineUnavailable(Exception):
    """The host's Engine API cannot be reached this way; run the CLI instead."""


def api_enabled(environ: Mapping[str, str]) -> bool:
    return environ.get("DOCKYARD_DOCKER_API", "1").strip().lower() not in ("0", "no", "false")


Render = Callable[[int, bytes], Result]


@dataclass(frozen=True, slots=True)
class EngineCall:
    """One API request standing for one CLI call, and how to print its answer as that call."""

    method: str
    path: str
    render: Render
    body: bytes | None = None


def _pong(status: int, body: bytes) -> Result:
    return Result(0 if status == 200 else 1, body.decode("utf-8", "replace"), "")


#: Docker's health probe: whether a host's Engine API answers at all.
PING = EngineCall("GET", "/_ping", _pong)


@dataclass(frozen=True, slots=True)
class ProxyCall:
    """``docker exec kamal-proxy kamal-proxy <argv>`` as one call on the proxy's socket."""

    argv: tuple[str, ...]

    def request(self) -> bytes:
        # no env or cwd: the proxy reads the line with its own, as `docker exec` would run it
        return json.dumps({"method": "cli", "params": {"argv": list(self.argv)}}).encode() + b"\n"

    def render(self, data: bytes) -> Result | None:
        """What the proxy's client prints for the answer ``data``; None when ``data`` is not
        an answer this call can stand for (then ``docker exec`` runs)."""
        from dockyard.proxy import quick

        try:
            reply = json.loads(data)
        except ValueError:
            return None
        if not isinstance(reply, dict):
            return None
        if not reply.get("ok"):
            error = reply.get("error", "unknown error")
            return None if error == quick.UNKNOWN_CALL else Result(1, "", f"Error: {error}\n")
        if self.argv[0] in ("list", "ls"):
            rows = reply.get("result")
            table = quick.format_table(rows if isinstance(rows, list) else [], False)
            return Result(0, table + "\n", "")
        return Result(0, "", "")


def _volume(status: int, body: bytes) -> Result:
    if status != 200:
        return _daemon_error(status, body)
    return Result(0, str(_json_object(body).get("Mountpoint") or ""), "")


#: The proxy volume's directory on the host.
PROXY_VOLUME_CALL = EngineCall("GET", f"/volumes/{CONFIG_VOLUME_NAME}", _volume)


def proxy_socket(mountpoint: str) -> str:
    from dockyard.proxy.quick import SOCKET_NAME

    return f"{mountpoint.rstrip('/')}/{SOCKET_NAME}"


# --------------------------------------------------------------------------- argv -> call


def shortcut(command: object) -> EngineCall | ProxyCall | None:
    """How ``command`` can skip the CLI (:func:`engine_call`, :class:`ProxyCall`), or None."""
    args = _plain_docker(command)
    if args is None:
        return None
    if args[:4] == ["docker", "exec", CONTAINER_NAME, "kamal-proxy"]:
        from dockyard.proxy import quick

        words = args[4:]
        return ProxyCall(tuple(words)) if quick.handles(words) else None
    return engine_call(command)


def _plain_docker(command: object) -> list[str] | None:
    if not isinstance(command, Argv) or command.stdin is not None:
        return None
    if not all(type(part) is str for part in command.parts):
        return None  # secrets, home paths and shell expansions stay with the shell
    args = list(command.plain())
    return args if args and args[0] == "docker" else None


def engine_call(command: object) -> EngineCall | None:
    """The API request for ``command`` when it is one of the forms above, else None."""
    args = _plain_docker(command)
    if args is None:
        return None
    words = args[1:]
    if words[:1] == ["ps"]:
        return _ps(words[1:])
    if words[:2] in (["image", "ls"], ["image", "list"]) or words[:1] == ["images"]:
        return _images(words[2:] if words[0] == "image" else words[1:])
    if words[:1] == ["inspect"]:
        return _inspect(words[1:], image=False)
    if words[:2] == ["image", "inspect"]:
        return _inspect(words[2:], image=True)
    if words[:1] == ["tag"] and len(words) == 3:
        return _tag(words[1], words[2])
    if words[:1] == ["stop"]:
        return _stop(words[1:])
    return None


def _options(
    words: Sequence[str], flags: Mapping[str, str], valued: Mapping[str, str]
) -> dict[str, list[str]] | None:
    """``--flag`` / ``--opt value`` / ``--opt=value`` words by canonical name; None when a word
    is not among them (or a value is missing). Positional words go under ``""``."""
    found: dict[str, list[str]] = {}
    index = 0
    while index < len(words):
        word = words[index]
        name, eq, value = word.partition("=")
        if word in flags:
            found.setdefault(flags[word], []).append("")
        elif name in valued and eq:
            found.setdefault(valued[name], []).append(value)
        elif word in valued:
            if index + 1 >= len(words):
                return None
            index += 1
            found.setdefault(valued[word], []).append(words[index])
        elif word.startswith("-"):
            return None
        else:
            found.setdefault("", []).append(word)
        index += 1
    return found


def _filters(values: Sequence[str]) -> str | None:
    grouped: dict[str, list[str]] = {}
    for value in values:
        key, eq, rest = value.partition("=")
        if not eq or not key:
            return None  # the CLI's own error ("bad format of filter") is best left to it
        grouped.setdefault(key.strip().lower(), []).append(rest)
    return json.dumps(grouped, separators=(",", ":")) if grouped else None


_ACTION = r"(?s)\{\{-?\s*(.*?)\s*-?\}\}"
_LABEL = r'\.Label\s+"([^"\\]*)"$'


def _template(fmt: str, fields: Sequence[str]) -> list[tuple[str, str]] | None:
    """``fmt`` as (literal, field) pairs when it holds only ``{{.Field}}`` actions among
    ``fields`` (and ``{{.Label "k"}}`` when ``"Label"`` is one), else None. ``{{-`` trimming
    and anything the template engine would escape are left to the CLI."""
    if "{{-" in fmt or "-}}" in fmt or "\\" in fmt:
        return None
    parts: list[tuple[str, str]] = []
    last = 0
    for match in re.finditer(_ACTION, fmt):
        action = match.group(1)
        label = re.match(_LABEL, action)
        if label and "Label" in fields:
            field = "label:" + label.group(1)
        elif action.startswith(".") and action[1:] in fields:
            field = action[1:]
        else:
            return None
        parts.append((fmt[last : match.start()], field))
        last = match.end()
    if "{{" in fmt[last:] or "}}" in fmt[last:]:
        return None
    parts.append((fmt[last:], ""))
    return parts


def _fill(parts: Sequence[tuple[str, str]], value: Callable[[str], str]) -> str:
    return "".join(literal + (value(field) if field else "") for literal, field in parts)


def _ps(words: Sequence[str]) -> EngineCall | None:
    found = _options(
        words,
        {"-a": "all", "--all": "all"},
        {"--filter": "filter", "-f": "filter", "--format": "format"},
    )
    if found is None or "" in found or len(found.get("format", [])) != 1:
        return None
    parts = _template(found["format"][0], ("ID", "State", "Names", "Image", "Label"))
    if parts is None:
        return None
    query: dict[str, str] = {}
    if "all" in found:
        query["all"] = "1"
    if found.get("filter"):
        filters = _filters(found["filter"])
        if filters is None:
            return None
        query["filters"] = filters
    path = "/containers/json" + (f"?{urlencode(query)}" if query else "")

    def render(status: int, body: bytes) -> Result:
        if status != 200:
            return _daemon_error(status, body)
        rows = []
        for item in _json_list(body):
            rows.append(_fill(parts, functools.partial(_container_field, item)) + "\n")
        return Result(0, "".join(rows), "")

    return EngineCall("GET", path, render)


def _container_field(container: Mapping[str, Any], field: str) -> str:
    if field == "ID":
        return truncate_id(str(container.get("Id") or ""))
    if field == "State":
        return str(container.get("State") or "")
    if field == "Names":
        return _names(container.get("Names") or [])
    if field == "Image":
        return _ps_image(str(container.get("Image") or ""), str(container.get("ImageID") or ""))
    labels = container.get("Labels") or {}
    return str(labels.get(field.removeprefix("label:"), ""))


def _names(names: Sequence[str]) -> str:
    """The CLI's NAMES column: the first name that is not a link's, else every name."""
    stripped = [name[1:] if name.startswith("/") else name for name in names]
    for name in stripped:
        if "/" not in name:
            return name
    return ",".join(stripped)


def truncate_id(ident: str) -> str:
    """docker's short ID: without the ``sha256:`` prefix, 12 characters."""
    _, colon, rest = ident.partition(":")
    return (rest if colon else ident)[:12]


def _ps_image(image: str, image_id: str) -> str:
    """The CLI's IMAGE column (truncated): the short ID when the container's image is only
    known by its ID (its tag moved on), else the familiar reference without its digest."""
    if not image:
        return "<no image>"
    if truncate_id(image_id) == truncate_id(image):
        return truncate_id(image)
    return familiar_image(image, keep_digest=False) or image


_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_PATH = rf"{_COMPONENT}(?:/{_COMPONENT})*$"
_DOMAIN = (
    r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*"
    r"|\[[0-9a-fA-F:]+\])(?::[0-9]+)?$"
)
_TAG = r"[\w][\w.-]{0,127}$"
_DIGEST = r"[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[0-9a-fA-F]{32,}$"
_HEX64 = r"[a-f0-9]{64}$"


def familiar_image(reference: str, *, keep_digest: bool) -> str | None:
    """A reference as docker shows it: ``docker.io/`` and ``library/`` dropped (and its digest
    unless ``keep_digest``); None when it is not a valid reference (docker then shows it as
    is)."""
    name, at, digest = reference.partition("@")
    if at and not re.match(_DIGEST, digest):
        return None
    tag = ""
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        name, tag = name[:colon], name[colon + 1 :]
        if not re.match(_TAG, tag):
            return None
    first, sep, rest = name.partition("/")
    if sep and (any(c in first for c in ".:") or first == "localhost" or first != first.lower()):
        domain, path = first, rest
        if not re.match(_DOMAIN, domain):
            return None
    else:
        domain, path = "docker.io", name
    if domain == "index.docker.io":
        domain = "docker.io"
    if not re.match(_PATH, path) or re.match(_HEX64, name):
        return None
    if domain == "docker.io":
        split = path.split("/")
        if len(split) == 2 and split[0] == "library":
            path = split[1]
        shown = path
    else:
        shown = f"{domain}/{path}"
    if tag:
        shown += f":{tag}"
    if at and keep_digest:
        shown += f"@{digest}"
    return shown


def _images(words: Sequence[str]) -> EngineCall | None:
    found = _options(words, {}, {"--filter": "filter", "-f": "filter", "--format": "format"})
    if found is None or "" in found or len(found.get("format", [])) != 1:
        return None
    parts = _template(found["format"][0], ("ID", "Repository", "Tag"))
    if parts is None:
        return None
    path = "/images/json"
    if found.get("filter"):
        filters = _filters(found["filter"])
        if filters is None:
            return None
        path += "?" + urlencode({"filters": filters})

    def render(status: int, body: bytes) -> Result:
        if status != 200:
            return _daemon_error(status, body)
        rows = []
        for image in _json_list(body):
            short = truncate_id(str(image.get("Id") or ""))
            for repo, tag in image_rows(image):
                values = {"ID": short, "Repository": repo, "Tag": tag}
                rows.append(_fill(parts, values.__getitem__) + "\n")
        return Result(0, "".join(rows), "")

    return EngineCall("GET", path, render)


def image_rows(image: Mapping[str, Any]) -> list[tuple[str, str]]:
    """``docker image ls``'s rows for one image: a row per tag (by familiar repository), one
    ``<none>`` row per repository known only by digest, ``<none>:<none>`` when dangling."""
    tags = [t for t in image.get("RepoTags") or [] if t != "<none>:<none>"]
    digests = [d for d in image.get("RepoDigests") or [] if d != "<none>@<none>"]
    if not tags and not digests:
        return [("<none>", "<none>")]
    by_repo: dict[str, list[str]] = {}
    for ref in tags:
        shown = familiar_image(ref, keep_digest=False)
        if shown is None or "@" in ref:
            continue
        repo, _, tag = shown.rpartition(":")
        if repo and "/" not in tag:
            by_repo.setdefault(repo, []).append(tag)
    digest_repos: dict[str, None] = {}
    for ref in digests:
        shown = familiar_image(ref, keep_digest=False) if "@" in ref else None
        if shown is not None:
            digest_repos.setdefault(shown, None)
    rows = [(repo, tag) for repo, listed in by_repo.items() for tag in listed]
    rows += [(repo, "<none>") for repo in digest_repos if repo not in by_repo]
    return rows


#: Inspect formats the deploy uses, by kind of object, with what each prints.
def _proxy_state(item: Mapping[str, Any]) -> str:
    config = item.get("Config") or {}
    state = item.get("State") or {}
    networks = (item.get("NetworkSettings") or {}).get("Networks") or {}
    running = "true" if state.get("Running") else "false"
    return f"{config.get('Image', '')}\t{running}\t" + "".join(f"{n} " for n in sorted(networks))


def _label(item: Mapping[str, Any], key: str) -> str:
    labels = (item.get("Config") or {}).get("Labels")
    if not isinstance(labels, dict) or key not in labels:
        return "<no value>"
    return str(labels[key])


def _go_json(value: object) -> str:
    """Go's json.Marshal: compact, with <, > and & escaped."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


CONTAINER_FORMATS: dict[str, Callable[[Mapping[str, Any]], str]] = {
    "{{.Config.Image}}\t{{.State.Running}}\t"
    "{{range $name, $_ := .NetworkSettings.Networks}}{{$name}} {{end}}": _proxy_state,
}
IMAGE_FORMATS: dict[str, Callable[[Mapping[str, Any]], str]] = {
    "{{json .RepoDigests}} {{.Config.Labels.service}}": (
        lambda item: f"{_go_json(item.get('RepoDigests'))} {_label(item, 'service')}"
    ),
    "{{ .Config.Labels.service }}": lambda item: _label(item, "service"),
    "{{.Config.Labels.service}}": lambda item: _label(item, "service"),
}

_CONTAINER_NAME = r"/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$"


def _inspect(words: Sequence[str], *, image: bool) -> EngineCall | None:
    found = _options(words, {}, {"--format": "format", "-f": "format"})
    if found is None or len(found.get("format", [])) != 1 or len(found.get("", [])) != 1:
        return None
    fmt, name = found["format"][0], found[""][0]
    if name.startswith("-"):
        return None
    if fmt in CONTAINER_FORMATS and not image:
        shape = CONTAINER_FORMATS[fmt]
        path = f"/containers/{_segment(name)}/json"
        missing = f"Error: No such object: {name}\n"
    elif fmt in IMAGE_FORMATS and (image or not re.match(_CONTAINER_NAME, name)):
        # `docker inspect NAME` looks for a container first: only a name no container can
        # have (a reference with a tag or a registry) is surely an image
        shape = IMAGE_FORMATS[fmt]
        path = f"/images/{_segment(name)}/json"
        missing = f"Error: No such {'image' if image else 'object'}: {name}\n"
    else:
        return None

    def render(status: int, body: bytes) -> Result:
        if status == 404:
            return Result(1, "\n", missing)
        if status != 200:
            return _daemon_error(status, body)
        item = _json_object(body)
        return Result(0, shape(item) + "\n", "")

    return EngineCall("GET", path, render)


def _tag(source: str, target: str) -> EngineCall | None:
    if source.startswith("-") or target.startswith("-"):
        return None
    slash, colon = target.rfind("/"), target.rfind(":")
    repo, tag = (target[:colon], target[colon + 1 :]) if colon > slash else (target, "latest")
    if not repo or "@" in target:
        return None
    path = f"/images/{_segment(source)}/tag?" + urlencode({"repo": repo, "tag": tag})

    def render(status: int, body: bytes) -> Result:
        if status in (200, 201):
            return Result(0, "", "")
        return _daemon_error(status, body)

    return EngineCall("POST", path, render)


def _stop(words: Sequence[str]) -> EngineCall | None:
    found = _options(words, {}, {"-t": "time", "--time": "time"})
    if found is None or len(found.get("", [])) != 1 or len(found.get("time", [])) > 1:
        return None
    name = found[""][0]
    query = ""
    if "time" in found:
        seconds = found["time"][0]
        if not re.fullmatch(r"-?[0-9]+", seconds):
            return None
        query = "?" + urlencode({"t": seconds})
    path = f"/containers/{_segment(name)}/stop{query}"

    def render(status: int, body: bytes) -> Result:
        if status in (204, 304):  # 304: it was not running; the CLI says nothing of it
            return Result(0, f"{name}\n", "")
        return _daemon_error(status, body)

    return EngineCall("POST", path, render)


def _segment(name: str) -> str:
    from urllib.parse import quote  # loaded when a call is made, not with every command

    return quote(name, safe="/:@")


def urlencode(query: Mapping[str, str]) -> str:
    from urllib.parse import urlencode as encode

    return encode(query)


def _daemon_error(status: int, body: bytes) -> Result:
    try:
        message = str(json.loads(body).get("message") or "")
    except (ValueError, AttributeError):
        message = body.decode("utf-8", "replace").strip()
    return Result(1, "", f"Error response from daemon: {message or f'HTTP {status}'}\n")


def _json_list(body: bytes) -> list[dict[str, Any]]:
    value = json.loads(body)
    if not isinstance(value, list):
        raise ValueError("the Engine API answered a listing with something else")
    return [item for item in value if isinstance(item, dict)]


def _json_object(body: bytes) -> dict[str, Any]:
    value = json.loads(body)
    if not isinstance(value, dict):
        raise ValueError("the Engine API answered an inspect with something else")
    return value


def answer(call: EngineCall, status: int, body: bytes) -> Result:
    """The CLI's output for the API's answer; an answer the renderer cannot read (a daemon
    speaking another dialect) raises :class:`EngineUnavailable` so the CLI runs instead."""
    try:
        return call.render(status, body)
    except (ValueError, TypeError, AttributeError, KeyError) as exc:
        raise EngineUnavailable(f"unreadable answer to {call.method} {call.path}: {exc}") from exc


# --------------------------------------------------------------------------- HTTP/1.1 framing


def request_bytes(call: EngineCall) -> bytes:
    head = f"{call.method} {call.path} HTTP/1.1\r\nHost: docker\r\nUser-Agent: dockyard\r\n"
    body = call.body or b""
    if call.body is not None or call.method == "POST":
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    return (head + "\r\n").encode("ascii") + body


class ResponseReader:
    """Feeds on the bytes of one response (httptools' parser); ``done`` once it is whole."""

    def __init__(self) -> None:
        import httptools

        self._error = httptools.HttpParserError
        self._parser = httptools.HttpResponseParser(self)
        self.status = 0
        self.done = False
        self.keep_alive = True
        self._chunks: list[bytes] = []
        self._size = 0

    # parser callbacks
    def on_body(self, body: bytes) -> None:
        self._size += len(body)
        if self._size > MAX_BODY:
            raise EngineUnavailable("the Engine API's answer is too large")
        self._chunks.append(body)

    def on_message_complete(self) -> None:
        self.status = self._parser.get_status_code()
        self.keep_alive = self._parser.should_keep_alive()
        self.done = True

    def feed(self, data: bytes) -> None:
        """Raises :class:`EngineUnavailable` for bytes that are not HTTP."""
        if self.done:
            if data:
                raise EngineUnavailable("the Engine API sent more than one answer")
            return
        try:
            self._parser.feed_data(data)
        except self._error as exc:
            raise EngineUnavailable(f"the Engine API's answer is not HTTP: {exc}") from exc

    def finish(self) -> None:
        """The stream ended: a response without a length ends here; anything else was cut."""
        if not self.done:
            raise EngineUnavailable("the Engine API closed the connection mid-answer")

    @property
    def body(self) -> bytes:
        return b"".join(self._chunks)
