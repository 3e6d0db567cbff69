"""remote.engine: which docker argv the Engine API answers, and that its answers print as the
CLI prints them (the lab test compares both against a real daemon)."""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlsplit

import pytest

from dockyard.commands.argv import Argv, HomePath, Pipeline, Secret
from dockyard.commands.prune import CONTAINER_LIST_FORMAT, IMAGE_LIST_FORMAT
from dockyard.flows.boot import PROXY_STATE_FORMAT
from dockyard.remote.engine import (
    PING,
    PROXY_VOLUME_CALL,
    EngineCall,
    EngineUnavailable,
    ProxyCall,
    ResponseReader,
    answer,
    api_enabled,
    engine_call,
    familiar_image,
    proxy_socket,
    request_bytes,
    shortcut,
)
from dockyard.remote.result import Result

SURVEY = '{{.ID}}\t{{.State}}\t{{.Label "role"}}\t{{.Names}}'


def call(*args: str) -> EngineCall:
    found = engine_call(Argv(args))
    assert found is not None, args
    return found


def query(found: EngineCall) -> dict[str, list[str]]:
    return parse_qs(urlsplit(found.path).query)


def body(value: object) -> bytes:
    return json.dumps(value).encode()


# --------------------------------------------------------------------------- recognition


def test_ps_becomes_a_container_listing_with_the_filters() -> None:
    found = call(
        "docker", "ps", "--all", "--filter", "label=service=app", "--filter", "label=destination=",
        "--format", SURVEY,
    )  # fmt: skip
    assert found.method == "GET" and urlsplit(found.path).path == "/containers/json"
    assert query(found)["all"] == ["1"]
    filters = json.loads(query(found)["filters"][0])
    assert filters == {"label": ["service=app", "destination="]}
    bare = call("docker", "ps", "--format={{.ID}}")
    assert bare.path == "/containers/json"  # running ones only, no filter


@pytest.mark.parametrize(
    "args",
    [
        ("docker", "ps", "--quiet"),  # no format
        ("docker", "ps", "--latest", "--format", "{{.Names}}"),  # --latest: the CLI's
        ("docker", "ps", "--format", "{{.Ports}}"),  # a field not rendered here
        ("docker", "ps", "--format", "{{json .}}"),
        ("docker", "ps", "--format", "table {{.ID}} {{"),
        ("docker", "ps", "--format", "{{- .ID}}"),
        ("docker", "ps", "--format", "{{.ID}}", "--format", "{{.ID}}"),
        ("docker", "ps", "--filter", "nokey", "--format", "{{.ID}}"),
        ("docker", "ps", "extra", "--format", "{{.ID}}"),
        ("docker", "ps", "--filter"),
        ("docker", "image", "ls", "--format", "{{.Size}}"),
        ("docker", "image", "ls", "--digests", "--format", "{{.ID}}"),
        ("docker", "inspect", "--format", "{{.State.Status}}", "app"),
        ("docker", "inspect", "--format", "{{ .Config.Labels.service }}", "app-web"),
        ("docker", "inspect", "--format", PROXY_STATE_FORMAT, "a", "b"),
        ("docker", "image", "inspect", "--format", PROXY_STATE_FORMAT, "img:1"),
        ("docker", "tag", "a:1", "b@sha256:" + "0" * 64),
        ("docker", "tag", "-f", "a:1"),
        ("docker", "stop", "a", "b"),
        ("docker", "stop", "-t", "soon", "a"),
        ("docker", "run", "--rm", "img"),
        ("docker", "exec", "kamal-proxy", "kamal-proxy", "list"),
        ("sh", "-c", "docker ps"),
    ],
)
def test_other_forms_stay_with_the_cli(args: tuple[str, ...]) -> None:
    assert engine_call(Argv(args)) is None


def test_secrets_home_paths_stdin_and_pipelines_stay_with_the_shell() -> None:
    assert engine_call(Argv(["docker", "stop", Secret("a", "x")])) is None
    assert engine_call(Argv(["docker", "stop", HomePath("a")])) is None
    assert engine_call(Argv(["docker", "stop", "a"], stdin="x")) is None
    assert engine_call(Pipeline((Argv(["docker", "ps", "--format", "{{.ID}}"]),))) is None
    assert engine_call(["docker", "stop", "a"]) is None  # a plain list is not built by us


def test_inspect_by_kind() -> None:
    proxy = call("docker", "inspect", "--format", PROXY_STATE_FORMAT, "kamal-proxy")
    assert proxy.path == "/containers/kamal-proxy/json"
    digests = "{{json .RepoDigests}} {{.Config.Labels.service}}"
    image = call("docker", "image", "inspect", "-f", digests, "reg:5000/app:v1")
    assert image.path == "/images/reg:5000/app:v1/json"
    # an untyped inspect is a container's first: only a name no container can have is asked
    # of the images
    label = call("docker", "inspect", "-f", "{{ .Config.Labels.service }}", "user/app:v1")
    assert label.path == "/images/user/app:v1/json"


def test_tag_and_stop() -> None:
    tag = call("docker", "tag", "reg:5000/app:v2", "reg:5000/app:latest")
    assert tag.method == "POST" and urlsplit(tag.path).path == "/images/reg:5000/app:v2/tag"
    assert query(tag) == {"repo": ["reg:5000/app"], "tag": ["latest"]}
    untagged = call("docker", "tag", "a:1", "reg:5000/app")
    assert query(untagged) == {"repo": ["reg:5000/app"], "tag": ["latest"]}
    stop = call("docker", "stop", "-t", "30", "app-web-v1")
    assert stop.method == "POST" and stop.path == "/containers/app-web-v1/stop?t=30"
    assert call("docker", "stop", "app-web-v1").path == "/containers/app-web-v1/stop"
    assert call("docker", "stop", "--time=5", "x").path == "/containers/x/stop?t=5"


def test_api_switch() -> None:
    assert api_enabled({})
    assert api_enabled({"DOCKYARD_DOCKER_API": "1"})
    for off in ("0", "no", "false", " False "):
        assert not api_enabled({"DOCKYARD_DOCKER_API": off})


# --------------------------------------------------------------------------- rendering

CONTAINERS = [
    {
        "Id": "a" * 64,
        "Names": ["/app-web-v2"],
        "Image": "reg:5000/app:v2",
        "ImageID": "sha256:" + "1" * 64,
        "State": "running",
        "Labels": {"service": "app", "role": "web"},
    },
    {
        # its tag moved on: docker reports the image by ID, the CLI shows the short ID
        "Id": "b" * 64,
        "Names": ["/other/link", "/app-web-v1"],
        "Image": "sha256:" + "2" * 64,
        "ImageID": "sha256:" + "2" * 64,
        "State": "exited",
        "Labels": None,
    },
    {
        "Id": "c" * 64,
        "Names": ["/x/y", "/x/z"],
        "Image": "docker.io/library/nginx:1@sha256:" + "3" * 64,
        "ImageID": "sha256:" + "3" * 64,
        "State": "created",
        "Labels": {},
    },
]


def test_ps_rows_as_the_cli_prints_them() -> None:
    survey = call("docker", "ps", "-a", "--format", SURVEY)
    assert answer(survey, 200, body(CONTAINERS)) == Result(
        0,
        f"{'a' * 12}\trunning\tweb\tapp-web-v2\n"
        f"{'b' * 12}\texited\t\tapp-web-v1\n"
        f"{'c' * 12}\tcreated\t\tx/y,x/z\n",
        "",
    )
    prune = call("docker", "ps", "-a", "--format", CONTAINER_LIST_FORMAT)
    assert answer(prune, 200, body(CONTAINERS)).stdout.splitlines() == [
        f"{'a' * 12}\trunning\treg:5000/app:v2",
        f"{'b' * 12}\texited\t{'2' * 12}",
        f"{'c' * 12}\tcreated\tnginx:1",
    ]
    assert answer(prune, 200, b"[]") == Result(0, "", "")


def test_image_rows_as_the_cli_prints_them() -> None:
    images = [
        {
            "Id": "sha256:" + "4" * 64,
            "RepoTags": ["reg:5000/app:v2", "reg:5000/app:latest", "docker.io/library/app:v2"],
            "RepoDigests": ["reg:5000/app@sha256:" + "5" * 64],
        },
        {  # untagged, still known by digest
            "Id": "sha256:" + "6" * 64,
            "RepoTags": None,
            "RepoDigests": ["reg:5000/app@sha256:" + "7" * 64],
        },
        {
            "Id": "sha256:" + "8" * 64,
            "RepoTags": ["<none>:<none>"],
            "RepoDigests": ["<none>@<none>"],
        },
    ]
    found = call("docker", "image", "ls", "--filter", "label=service=app", "--format",
                 IMAGE_LIST_FORMAT)  # fmt: skip
    assert json.loads(query(found)["filters"][0]) == {"label": ["service=app"]}
    assert answer(found, 200, body(images)).stdout.splitlines() == [
        f"{'4' * 12} reg:5000/app:v2",
        f"{'4' * 12} reg:5000/app:latest",
        f"{'4' * 12} app:v2",
        f"{'6' * 12} reg:5000/app:<none>",
        f"{'8' * 12} <none>:<none>",
    ]


def test_inspect_output_and_missing_objects() -> None:
    proxy = call("docker", "inspect", "--format", PROXY_STATE_FORMAT, "kamal-proxy")
    item = {
        "Config": {"Image": "reg:5000/proxy:v1"},
        "State": {"Running": True},
        "NetworkSettings": {"Networks": {"kamal": {}, "bridge": {}}},
    }
    shown = "reg:5000/proxy:v1\ttrue\tbridge kamal \n"
    assert answer(proxy, 200, body(item)) == Result(0, shown, "")
    stopped = {**item, "State": {"Running": False}, "NetworkSettings": {"Networks": None}}
    assert answer(proxy, 200, body(stopped)).stdout == "reg:5000/proxy:v1\tfalse\t\n"
    assert answer(proxy, 404, body({"message": "x"})) == Result(
        1, "\n", "Error: No such object: kamal-proxy\n"
    )
    digests = call("docker", "image", "inspect", "--format",
                   "{{json .RepoDigests}} {{.Config.Labels.service}}", "a:1")  # fmt: skip
    image = {"RepoDigests": ["a@sha256:<&>"], "Config": {"Labels": {"service": "app"}}}
    assert answer(digests, 200, body(image)).stdout == '["a@sha256:\\u003c\\u0026\\u003e"] app\n'
    unlabelled = {"RepoDigests": [], "Config": {"Labels": None}}
    assert answer(digests, 200, body(unlabelled)).stdout == "[] <no value>\n"
    assert answer(digests, 200, body({"RepoDigests": None, "Config": {}})).stdout == (
        "null <no value>\n"
    )
    assert answer(digests, 404, b"{}") == Result(1, "\n", "Error: No such image: a:1\n")
    label = call("docker", "inspect", "-f", "{{ .Config.Labels.service }}", "u/a:1")
    assert answer(label, 404, b"{}").stderr == "Error: No such object: u/a:1\n"


def test_tag_stop_and_daemon_errors() -> None:
    tag = call("docker", "tag", "a:1", "b:2")
    assert answer(tag, 201, b"") == Result(0, "", "")
    assert answer(tag, 404, body({"message": "No such image: a:1"})) == Result(
        1, "", "Error response from daemon: No such image: a:1\n"
    )
    stop = call("docker", "stop", "app")
    assert answer(stop, 204, b"") == Result(0, "app\n", "")
    assert answer(stop, 304, b"") == Result(0, "app\n", "")
    assert answer(stop, 500, b"not json") == Result(1, "", "Error response from daemon: not json\n")
    listing = call("docker", "ps", "--filter", "labl=x", "--format", "{{.ID}}")
    assert answer(listing, 400, body({"message": "Invalid filter 'labl'"})).stderr == (
        "Error response from daemon: Invalid filter 'labl'\n"
    )


@pytest.mark.parametrize("payload", [b"not json", b"{}", b'"x"'])
def test_an_unreadable_answer_sends_the_call_back_to_the_cli(payload: bytes) -> None:
    with pytest.raises(EngineUnavailable):
        answer(call("docker", "ps", "--format", "{{.ID}}"), 200, payload)


@pytest.mark.parametrize(
    ("reference", "shown"),
    [
        ("nginx", "nginx"),
        ("nginx:1.25", "nginx:1.25"),
        ("library/nginx:1", "nginx:1"),
        ("docker.io/library/nginx:1", "nginx:1"),
        ("index.docker.io/user/app:1", "user/app:1"),
        ("docker.io/user/app", "user/app"),
        ("reg:5000/app:v1", "reg:5000/app:v1"),
        ("localhost/app:v1", "localhost/app:v1"),
        ("ghcr.io/org/app:v1@sha256:" + "a" * 64, "ghcr.io/org/app:v1"),
        ("ghcr.io/org/app@sha256:" + "a" * 64, "ghcr.io/org/app"),
        ("user/library/app:1", "user/library/app:1"),
        ("Upper/app", "Upper/app"),  # a domain may hold capitals
        ("app/Upper", None),
        ("a" * 64, None),
        ("app:bad tag", None),
        ("app@sha256:short", None),
    ],
)
def test_familiar_references(reference: str, shown: str | None) -> None:
    assert familiar_image(reference, keep_digest=False) == shown


def test_familiar_keeps_the_digest_when_asked() -> None:
    ref = "docker.io/library/app:1@sha256:" + "b" * 64
    assert familiar_image(ref, keep_digest=True) == "app:1@sha256:" + "b" * 64


# --------------------------------------------------------------------------- HTTP framing


def test_request_bytes() -> None:
    get = request_bytes(PING)
    assert get == b"GET /_ping HTTP/1.1\r\nHost: docker\r\nUser-Agent: dockyard\r\n\r\n"
    post = request_bytes(call("docker", "stop", "a"))
    assert post.startswith(b"POST /containers/a/stop HTTP/1.1\r\n")
    assert b"Content-Length: 0\r\n" in post and post.endswith(b"\r\n\r\n")


def read(*pieces: bytes) -> ResponseReader:
    reader = ResponseReader()
    for piece in pieces:
        reader.feed(piece)
    return reader


def test_response_with_a_length_fed_in_pieces() -> None:
    raw = b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 7\r\n\r\n["a",1]'
    reader = read(*(raw[i : i + 5] for i in range(0, len(raw), 5)))
    assert reader.done and reader.status == 200 and reader.body == b'["a",1]'
    assert reader.keep_alive


def test_chunked_response_and_connection_close() -> None:
    reader = read(
        b"HTTP/1.1 404 Not Found\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n",
        b'4\r\n{"me\r\n9\r\nssage":1}\r\n0\r\n\r\n',
    )
    assert reader.done and reader.status == 404 and reader.body == b'{"message":1}'
    assert not reader.keep_alive


def test_no_body_statuses_complete_at_the_head() -> None:
    assert read(b"HTTP/1.1 204 No Content\r\n\r\n").done
    assert read(b"HTTP/1.1 304 Not Modified\r\n\r\n").status == 304


def test_broken_answers() -> None:
    with pytest.raises(EngineUnavailable):
        read(b"SSH-2.0-OpenSSH\r\n\r\n")
    cut = read(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
    assert not cut.done
    with pytest.raises(EngineUnavailable):
        cut.finish()
    whole = read(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    with pytest.raises(EngineUnavailable):
        whole.feed(b"HTTP/1.1 200 OK\r\n")


# --------------------------------------------------------------------------- the proxy's socket


def test_proxy_commands_go_to_the_proxy_socket() -> None:
    deploy = shortcut(Argv(["docker", "exec", "kamal-proxy", "kamal-proxy", "deploy", "web",
                            "--target=abc:80"]))  # fmt: skip
    assert isinstance(deploy, ProxyCall) and deploy.argv == ("deploy", "web", "--target=abc:80")
    assert json.loads(deploy.request()) == {
        "method": "cli",
        "params": {"argv": ["deploy", "web", "--target=abc:80"]},  # the proxy's own env, cwd
    }
    for args in (
        ["docker", "exec", "kamal-proxy", "kamal-proxy", "run"],
        ["docker", "exec", "kamal-proxy", "kamal-proxy", "deploy", "--help"],
        ["docker", "exec", "-i", "kamal-proxy", "kamal-proxy", "list"],
        ["docker", "exec", "other", "kamal-proxy", "list"],
        ["docker", "exec", "kamal-proxy", "sh", "-c", "kamal-proxy list"],
    ):
        assert shortcut(Argv(args)) is None, args
    assert isinstance(shortcut(Argv(["docker", "stop", "a"])), EngineCall)
    assert proxy_socket("/var/lib/docker/volumes/kamal-proxy-config/_data/") == (
        "/var/lib/docker/volumes/kamal-proxy-config/_data/kamal-proxy.sock"
    )


def test_proxy_answers_print_as_the_proxy_client_prints_them() -> None:
    deploy = ProxyCall(("deploy", "web", "--target=abc:80"))
    assert deploy.render(b'{"ok": true, "result": null}\n') == Result(0, "", "")
    failed = b'{"ok": false, "error": "target failed to become healthy"}\n'
    assert deploy.render(failed) == Result(1, "", "Error: target failed to become healthy\n")
    assert deploy.render(b'{"ok": false, "error": "unknown method \'cli\'"}') is None
    assert deploy.render(b"") is None and deploy.render(b"[1]") is None
    listing = ProxyCall(("list",)).render(
        json.dumps({"ok": True, "result": [{"service": "web", "host": "a.test", "path": "/",
                    "target": "abc:80", "state": "running", "tls": "no"}]}).encode()
    )  # fmt: skip
    assert listing is not None and listing.ok
    assert listing.stdout.splitlines()[0].split() == ["Service", "Host", "Path", "Target",
                                                      "State", "TLS"]  # fmt: skip
    assert listing.stdout.splitlines()[1].split() == ["web", "a.test", "/", "abc:80",
                                                      "running", "no"]  # fmt: skip
    assert "\x1b[" not in listing.stdout  # docker exec without -t: no terminal, no colour


def test_the_proxy_volume_directory() -> None:
    found = answer(PROXY_VOLUME_CALL, 200, body({"Mountpoint": "/v/_data"}))
    assert found == Result(0, "/v/_data", "")
    assert not answer(PROXY_VOLUME_CALL, 404, body({"message": "no such volume"})).ok
