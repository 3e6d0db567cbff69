from __future__ import annotations

import pytest

from dockyard.errors import RemoteCommandError
from dockyard.remote.result import Result


class Secret:
    def raw(self) -> str:
        return "s3cret"

    def display(self) -> str:
        return "[REDACTED]"


def test_ok_only_on_zero() -> None:
    assert Result(0, "", "").ok
    assert not Result(1, "", "").ok
    assert not Result(-1, "", "").ok
    assert not Result(None, "", "").ok


def test_check_returns_self_on_success() -> None:
    result = Result(0, "out", "")
    assert result.check("web1", ["true"]) is result


def test_check_raises_with_masked_argv_and_stderr_tail() -> None:
    stderr = "".join(f"line {i}\n" for i in range(30))
    with pytest.raises(RemoteCommandError) as info:
        Result(125, "", stderr).check("web1", ["docker", "login", "-p", Secret(), "reg"])
    message = info.value.render()
    assert "web1" in message
    assert "exit 125" in message
    assert "[REDACTED]" in message
    assert "s3cret" not in message
    assert "line 29" in message
    assert "line 19" not in message  # only the tail
    assert info.value.layer == "remote"


def test_check_uses_stdout_when_stderr_empty() -> None:
    with pytest.raises(RemoteCommandError, match="only on stdout"):
        Result(2, "only on stdout\n", "").check("h", ["x"])


def test_missing_status_is_failure() -> None:
    with pytest.raises(RemoteCommandError, match="no exit status"):
        Result(None, "", "").check("h", ["x"])


def test_signal_is_failure() -> None:
    with pytest.raises(RemoteCommandError, match="killed by a signal"):
        Result(-1, "", "").check("h", ["x"])


def test_result_is_frozen() -> None:
    result = Result(0, "", "")
    with pytest.raises(AttributeError):
        result.exit_status = 1  # type: ignore[misc]
