"""The dotenv parser: Kamal's (Ruby dotenv 3) rules, checked case by case."""

from __future__ import annotations

from pathlib import Path

import pytest

from dockyard.config.dotenv import Location, parse_dotenv, read_dotenv
from dockyard.errors import ConfigError


def parse(text: str, environ: dict[str, str] | None = None, **kwargs: object) -> dict[str, str]:
    return parse_dotenv(text, path="secrets", environ=environ or {}, **kwargs)  # type: ignore[arg-type]


def test_plain_export_colon_and_dotted_keys() -> None:
    text = "A=1\nexport B=two\nC: three\nKEY.DOT=x\n  D = spaced  \nE=\nLONE\n"
    assert parse(text) == {
        "A": "1",
        "B": "two",
        "C": "three",
        "KEY.DOT": "x",
        "D": "spaced",
        "E": "",
        "LONE": "",
    }


def test_comments_and_unrecognised_lines_are_skipped() -> None:
    text = "# a comment\nA=value # trailing\nnot a line\nB=x#y\n\n   # indented\nC='#kept'\n"
    assert parse(text) == {"A": "value", "B": "x", "C": "#kept"}


def test_single_quotes_are_literal() -> None:
    assert parse("A=1\nS='$A $(echo no) \\n \\t'\n") == {"A": "1", "S": "$A $(echo no) \\n \\t"}


def test_double_quotes_unescape_but_keep_backslash_n_by_default() -> None:
    # dotenv 3: "\n" stays two characters; other escapes drop the backslash.
    assert parse('D="a\\nb\\\\c\\"d \\t"\n')["D"] == 'a\\nb\\c"d t'


def test_legacy_linebreak_mode_expands_newlines() -> None:
    text = 'DOTENV_LINEBREAK_MODE=legacy\nD="a\\nb\\rc"\n'
    assert parse(text)["D"] == "a\nb\rc"
    assert parse('D="a\\nb"\n', {"DOTENV_LINEBREAK_MODE": "legacy"})["D"] == "a\nb"


def test_unquoted_values_unescape_everything_but_dollar() -> None:
    assert parse("U=a\\nb\\\\c\nV=\\$A\n", {"A": "no"}) == {"U": "anb\\c", "V": "$A"}


def test_multiline_double_and_single_quotes_and_crlf() -> None:
    text = "M=\"line1\r\nline2\"\r\nS='x\ny'\r\nN=after\r\n"
    assert parse(text) == {"M": "line1\nline2", "S": "x\ny", "N": "after"}


def test_variables_from_earlier_keys_then_environment() -> None:
    text = 'BEFORE=$A\nA=file\nB=$A-${A}-${HOME}\nC="in $A"\nD=$MISSING.\nE=$\nF=${A\nG=$A}\n'
    result = parse(text, {"A": "env", "HOME": "/home/me"})
    assert result["BEFORE"] == "env"
    assert result["B"] == "file-file-/home/me"
    assert result["C"] == "in file"
    assert result["D"] == "."
    assert result["E"] == "$"
    assert result["F"] == "file"  # braces are optional on either side, as in dotenv
    assert result["G"] == "file"


def test_default_value_syntax_is_not_shell_syntax() -> None:
    # dotenv knows no ${X:-default}: it expands ${X and keeps the rest.
    assert parse("B=${FOO:-default}\n")["B"] == ":-default}"


def test_command_substitution_uses_expanded_variables_and_chomps_once() -> None:
    seen: list[str] = []

    def run(command: str, where: Location) -> str:
        seen.append(command)
        return f"<{command}>\n\n"

    text = "A=5\nC=$(echo $A ${A} \\$HOME)\nQ=\"x $(cmd) y\"\nS='$(no)'\nE=\\$(escaped)\n"
    result = parse(text, {"HOME": "/root"}, run_command=run)
    assert seen == ["echo 5 5 $HOME", "cmd"]
    # The output is expanded again, as dotenv expands variables after running commands.
    assert result["C"] == "<echo 5 5 /root>\n"
    assert result["Q"] == "x <cmd>\n y"
    assert result["S"] == "$(no)"
    assert result["E"] == "$(escaped)"


def test_nested_and_unbalanced_parentheses() -> None:
    def run(command: str, where: Location) -> str:
        return f"[{command}]"

    assert parse("N=$(echo $(echo x))\n", run_command=run)["N"] == "[echo $(echo x)]"
    assert parse("U=$ $( x\n", run_command=run)["U"] == "$ $( x"
    # Unescaping comes first, so `\)` has already become `)` when commands are found.
    assert parse("P=$(a \\) b)\n", run_command=run)["P"] == "[a ] b)"
    assert parse("Z=$()\n", run_command=run)["Z"] == "$()"


def test_commands_run_in_the_shell_and_failures_name_file_and_line() -> None:
    assert parse("A=$(printf 'x y')\n")["A"] == "x y"
    with pytest.raises(ConfigError) as exc:
        parse("A=1\n\nB=$(exit 3)\n")
    assert exc.value.message.startswith("secrets:3: the command `exit 3` exited with status 3")


def test_export_without_value_needs_an_earlier_key() -> None:
    assert parse("A=1\nexport A\n") == {"A": "1"}
    with pytest.raises(ConfigError, match=r"secrets:2: `export B` has no value"):
        parse("A=1\nexport B\n")


def test_read_dotenv_strips_bom_and_reports_bad_utf8(tmp_path: Path) -> None:
    good = tmp_path / "good"
    good.write_bytes(b"\xef\xbb\xbfA=1\n")
    assert read_dotenv(good, environ={}) == {"A": "1"}
    bad = tmp_path / "bad"
    bad.write_bytes(b"A=1\nB=\xff\n")
    with pytest.raises(ConfigError, match=r"bad:2: the file is not valid UTF-8"):
        read_dotenv(bad, environ={}, display_name="bad")
