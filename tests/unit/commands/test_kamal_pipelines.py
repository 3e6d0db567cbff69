"""Kamal's shell pipelines against our argv + Python parsing, on the same fake Docker.

Where Kamal runs ``docker ... | grep | while read ...`` we run single argvs and parse in Python
(``prune.images_to_remove``, ``prune.containers_to_remove``, ``app.parse_versions``,
``app.current_container_queries``). Here the recorded Kamal 2.11 pipeline runs under a real
``sh`` with a fake ``docker`` on ``PATH`` that answers from canned output and logs its calls;
our argvs run against the same fake, and both must reach the same result.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from dockyard.commands import app, prune
from dockyard.commands.argv import Argv, Pipeline
from dockyard.config import Config
from dockyard.remote.options import parse_jump

from .conftest import LoadConfig
from .kamal_golden import CASES, CONFIGS, Case, load_recording, shell_words

_, RECORDED = load_recording()

FAKE_DOCKER = """#!{python}
import json, os, re, sys
args = sys.argv[1:]
with open(os.environ["FAKE_DOCKER_LOG"], "a") as log:
    log.write(json.dumps(args) + "\\n")
line = " ".join(args)
for pattern, output, *errors in json.load(open(os.environ["FAKE_DOCKER_SCRIPT"])):
    if re.search(pattern, line):
        sys.stdout.write(output)
        sys.stdout.flush()
        sys.stderr.write("".join(errors))
        break
"""


class FakeDocker:
    """A ``docker`` executable answering by regex over its joined arguments, first match wins."""

    def __init__(self, tmp_path: Path, answers: list[tuple[str, ...]]) -> None:
        self.bin = tmp_path / "bin"
        self.bin.mkdir()
        docker = self.bin / "docker"
        docker.write_text(FAKE_DOCKER.format(python=sys.executable))
        docker.chmod(0o755)
        self.log = tmp_path / "docker.log"
        self.log.write_text("")
        script = tmp_path / "answers.json"
        script.write_text(json.dumps(answers))
        self.env = {
            "PATH": f"{self.bin}:{os.environ.get('PATH', '/usr/bin:/bin')}",
            "FAKE_DOCKER_LOG": str(self.log),
            "FAKE_DOCKER_SCRIPT": str(script),
        }

    def sh(self, line: str) -> str:
        return subprocess.run(
            ["sh", "-c", line], env=self.env, capture_output=True, text=True, check=True
        ).stdout

    def run(self, command: Argv) -> str:
        return subprocess.run(
            list(command.raw()), env=self.env, capture_output=True, text=True, check=True
        ).stdout

    def calls(self, subcommand: str) -> list[list[str]]:
        lines = [json.loads(line) for line in self.log.read_text().splitlines()]
        return [args for args in lines if args and args[0] == subcommand]

    def reset_log(self) -> None:
        self.log.write_text("")


@pytest.fixture
def config(load: LoadConfig) -> Config:
    return load(CONFIGS["app"])


IMAGES = (
    "i1 dhh/app:latest\ni2 dhh/app:999\ni3 dhh/app:998\ni4 dhh/app:<none>\n"
    "i5 dhh/app:99\ni6 dhh/app:997\ni7 dhh/app:99.1\n"
)


@pytest.mark.parametrize(
    "used",
    [
        ["dhh/app:999", "i6"],
        ["dhh/app:99"],  # protects dhh/app:99 and, as a grep word, dhh/app:99.1
        [],
    ],
)
def test_prune_tagged_images_removes_what_kamal_removes(
    tmp_path: Path, config: Config, used: list[str]
) -> None:
    fake = FakeDocker(
        tmp_path,
        [
            (r"^image ls --filter label=service=app", IMAGES),
            # Kamal's `--format '{{.Image}}\\|'`: each image followed by a literal \\|
            (r"^container ls -a --format \{\{\.Image\}\}\\\|", "".join(f"{u}\\|\n" for u in used)),
            # ours: `--format {{.Image}}`, one image per line
            (r"^container ls -a --format \{\{\.Image\}\} ", "".join(f"{u}\n" for u in used)),
        ],
    )
    fake.sh(RECORDED["pipeline prune tagged images"])
    kamal_removed = [args[1] for args in fake.calls("rmi")]

    fake.reset_log()
    images = fake.run(prune.list_images("app"))
    used_out = fake.run(prune.list_used_images("app"))
    ours = prune.images_to_remove(
        images, used_out.split(), latest_image="dhh/app:latest", repository="dhh/app"
    )
    for tag in ours:
        fake.run(prune.remove_image(tag))
    assert [args[1] for args in fake.calls("rmi")] == kamal_removed
    assert kamal_removed  # the scenario removes something


def test_prune_containers_removes_what_kamal_removes(tmp_path: Path) -> None:
    ids = "".join(f"c{n}\n" for n in range(9, 0, -1))
    fake = FakeDocker(tmp_path, [(r"^ps -q -a", ids)])
    fake.sh(RECORDED["pipeline prune containers"])
    kamal_removed = fake.calls("rm")

    fake.reset_log()
    for container_id in prune.containers_to_remove(
        fake.run(prune.list_stopped_containers("app")), 3
    ):
        fake.run(prune.remove_container(container_id))
    assert fake.calls("rm") == kamal_removed
    assert len(kamal_removed) == 6


def test_list_versions_parse_like_kamals_while_read(tmp_path: Path, config: Config) -> None:
    names = "app-web-999\napp-web-998_replaced_0123456789abcdef\nother-container\n"
    fake = FakeDocker(tmp_path, [(r"^ps ", names)])
    kamal = fake.sh(RECORDED["pipeline list versions"]).splitlines()
    web = config.role("web")
    assert web is not None
    ours = app.parse_versions(fake.run(app.list_versions(config, web)), "app-web")
    assert ours == kamal == ["999", "998_replaced_0123456789abcdef", "other-container"]


def _current(fake: FakeDocker, config: Config, *, names: bool) -> str | None:
    web = config.role("web")
    assert web is not None
    image_id = fake.run(app.latest_image_id(config))
    for query in app.current_container_queries(config, web, image_id, names=names):
        found = app.first_line(fake.run(query))
        if found:
            return app.version_from_name(found, "app-web") if names else found
    return None


@pytest.mark.parametrize(
    ("latest_image", "expected_version", "expected_id"),
    [
        ("img1\n", "998", "cid-998"),  # a container runs the image tagged latest: it wins
        ("", "999", "cid-999"),  # no image tagged latest: the newest running container
    ],
)
def test_current_running_version_and_id_like_kamal(
    tmp_path: Path,
    config: Config,
    latest_image: str,
    expected_version: str,
    expected_id: str,
) -> None:
    fake = FakeDocker(
        tmp_path,
        [
            (r"^image ls --filter reference=dhh/app:latest", latest_image),
            (r"--format \{\{\.Names\}\}.*ancestor=img1", "app-web-998\n"),
            (r"--quiet.*ancestor=img1", "cid-998\n"),
            (r"ancestor=", ""),  # an unknown or empty ancestor matches nothing
            (r"--format \{\{\.Names\}\}", "app-web-999\napp-web-997\n"),
            (r"--quiet", "cid-999\ncid-997\n"),
        ],
    )
    assert fake.sh(RECORDED["pipeline current running version"]).strip() == expected_version
    assert fake.sh(RECORDED["pipeline current running container id"]).strip() == expected_id
    assert _current(fake, config, names=True) == expected_version
    assert _current(fake, config, names=False) == expected_id
    assert re.fullmatch(r"[a-z0-9-]+", expected_id)


#: ``-o`` options Dockyard's interactive ssh adds to Kamal's (the pooled connections' settings).
DOCKYARD_SSH_EXTRAS = ("ServerAliveInterval=", "ConnectTimeout=", "UserKnownHostsFile=")


def ssh_options(words: Sequence[str]) -> list[tuple[str, str]]:
    """An ``ssh`` argv (without the remote line) as (flag, value) pairs, ``~`` expanded in
    ``-F`` paths and the jump host's default user and port filled in."""
    pairs: list[tuple[str, str]] = []
    rest = iter(words[1:])
    for word in rest:
        if word in ("-F", "-J", "-i", "-o", "-p"):
            value = next(rest)
            if word == "-F":
                value = os.path.expanduser(value)
            elif word == "-J":
                value = parse_jump(value).target()
            pairs.append((word, value))
        else:
            pairs.append((word, ""))  # -t, user@host
    return pairs


def assert_same_ssh_options(ours: Sequence[str], kamal: Sequence[str]) -> None:
    """Kamal's options, in any order but with -F and -i files in the same order; ours may also
    carry :data:`DOCKYARD_SSH_EXTRAS` (and ``-F /dev/null`` where Kamal reads no config)."""
    assert ours[0] == kamal[0] == "ssh"
    mine, theirs = ssh_options(ours), ssh_options(kamal)
    extras = [
        pair
        for pair in mine
        if pair not in theirs
        and not (pair[0] == "-o" and pair[1].startswith(DOCKYARD_SSH_EXTRAS))
        and not (pair == ("-F", "/dev/null") and not any(f == "-F" for f, _ in theirs))
    ]
    assert extras == []
    assert sorted(p for p in mine if p in theirs) == sorted(theirs)
    for flag in ("-F", "-i"):
        assert [v for f, v in mine if f == flag and (f, v) in theirs] == [
            v for f, v in theirs if f == flag
        ]


def test_ssh_options_comparison_notices_a_difference() -> None:
    kamal = ["ssh", "-F", "~/c", "-J", "root@j", "-i", "k1", "-i", "k2", "-t", "u@h", "-p", "22"]
    home = os.path.expanduser("~")
    same = ["ssh", "-t", "-i", "k1", "-i", "k2", "-J", "root@j:22", "-F", f"{home}/c",
            "-o", "ConnectTimeout=30", "-p", "22", "u@h"]  # fmt: skip
    assert_same_ssh_options(same, kamal)
    for wrong in (
        [w if w != "k1" else "k3" for w in same],  # another key
        [w if w != "root@j:22" else "root@j:2222" for w in same],  # another jump port
        [w if w != "u@h" else "root@h" for w in same],  # another user
        [*same[:3], "k2", "-i", "k1", *same[6:]],  # keys tried in another order
        [w for w in same if w != "-t"],  # no tty
        [*same, "-o", "StrictHostKeyChecking=no"],  # an option Kamal does not pass
    ):
        with pytest.raises(AssertionError):
            assert_same_ssh_options(wrong, kamal)


LOG_CASES = [
    c
    for c in CASES
    if c.name
    in (
        "pipeline app logs",
        "pipeline app follow logs over ssh",
        "pipeline proxy logs",
        "pipeline accessory logs",
    )
]


@pytest.mark.parametrize("case", LOG_CASES, ids=[c.name for c in LOG_CASES])
def test_logs_pipelines_print_and_call_docker_like_kamal(
    case: Case, load: LoadConfig, tmp_path: Path
) -> None:
    fake = FakeDocker(
        tmp_path,
        [
            (
                r"^logs ",
                "GET / 200\nPOST /x 500 hello!\nget / 404 thing\nCompleted thing 2\n",
                "GET / warning on stderr thing hello!\n",
            )
        ],
    )
    config = load(CONFIGS[case.config], case.destination, version=case.version)
    ours = case.ours(config)
    kamal_line = RECORDED[case.name]
    if isinstance(ours, list):  # over ssh: the same ssh options, then compare the remote lines
        kamal_words = shell_words(kamal_line)
        assert_same_ssh_options(ours[:-1], kamal_words[:-1])
        kamal_line, our_line = kamal_words[-1], ours[-1]
    else:
        assert isinstance(ours, Pipeline)
        our_line = ours.shell()
    kamal_out = fake.sh(kamal_line)
    kamal_calls = fake.calls("logs")
    fake.reset_log()
    assert fake.sh(our_line) == kamal_out
    assert fake.calls("logs") == kamal_calls
    assert kamal_out  # the grep kept something
