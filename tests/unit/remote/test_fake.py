from __future__ import annotations

import asyncio

import pytest

from dockyard.remote.fake import FakePool, FakeTransport, FakeUpload
from dockyard.remote.result import OutputLine, Result


class Secret:
    def reveal(self) -> str:
        return "pw"

    def __str__(self) -> str:
        return "[REDACTED]"


def test_records_argv_display_and_options() -> None:
    fake = FakeTransport(host="web1")
    asyncio.run(
        fake.run(["docker", "login", "-p", Secret()], stdin=b"x", timeout=3, env={"A": "1"})
    )
    call = fake.calls[0]
    assert call.argv == ["docker", "login", "-p", "pw"]
    assert call.display == ["docker", "login", "-p", "[REDACTED]"]
    assert (call.stdin, call.timeout, call.env) == (b"x", 3, {"A": "1"})


def test_rules_replay_in_order_then_repeat_last() -> None:
    fake = FakeTransport().on(["docker", "ps"], Result(0, "a\n", ""), Result(1, "", "x"))
    fake.on(["docker", "ps", "-q"], Result(0, "id\n", ""))

    async def go() -> list[Result]:
        return [
            await fake.run(["docker", "ps"]),
            await fake.run(["docker", "ps", "-q"]),
            await fake.run(["docker", "ps"]),
            await fake.run(["docker", "ps"]),
            await fake.run(["docker", "images"]),
        ]

    statuses = [r.exit_status for r in asyncio.run(go())]
    assert statuses == [0, 0, 1, 1, 0]


def test_strict_mode_raises_on_unexpected_command() -> None:
    fake = FakeTransport(default=None)
    with pytest.raises(LookupError, match="no scripted result"):
        asyncio.run(fake.run(["rm", "-rf", "/"]))


def test_responder_and_streaming() -> None:
    fake = FakeTransport(
        responder=lambda argv: (
            Result(0, f"{argv[-1]}\nsecond\n", "warn\n") if argv[0] == "echo" else None
        )
    )
    seen: list[OutputLine] = []
    result = asyncio.run(fake.run(["echo", "hi"], on_output=seen.append))
    assert result.stdout == "hi\nsecond\n"
    assert [(line.stream, line.text) for line in seen] == [
        ("stdout", "hi"),
        ("stdout", "second"),
        ("stderr", "warn"),
    ]


def test_uploads_and_close() -> None:
    fake = FakeTransport()
    asyncio.run(fake.put(b"data", "/etc/app.env", mode=0o640))
    assert fake.uploads == [FakeUpload("/etc/app.env", b"data", 0o640)]
    asyncio.run(fake.close())
    with pytest.raises(RuntimeError, match="after close"):
        asyncio.run(fake.run(["true"]))


def test_fake_pool_scripts_each_host_and_fails_unreachable_ones() -> None:
    pool = FakePool(
        setup=lambda fake: fake.on(["hostname"], Result(0, f"{fake.host}\n", "")),
        unreachable={"down"},
    )

    async def go() -> list[tuple[str, str | None, str | None]]:
        connected = await pool.connect_all(["a", "down"])
        assert [o.ok for o in connected] == [True, False]
        outcomes = await pool.on(["a", "b", "down"], lambda ssh: ssh.run(["hostname"]))
        await pool.close()
        return [
            (o.host, o.value.stdout if o.value else None, o.error.message if o.error else None)
            for o in outcomes
        ]

    assert asyncio.run(go()) == [
        ("a", "a\n", None),
        ("b", "b\n", None),
        ("down", None, "ssh: cannot reach root@down:22: connection refused (fake)"),
    ]
    assert pool.transports["a"].commands == [["hostname"]]
    assert pool.closed and pool.transports["b"].closed
