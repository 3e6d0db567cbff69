"""Pure pieces of the data plane: access-log time, error pages, spill buffer, request ids."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from dockyard.proxy.dataplane.accesslog import format_time
from dockyard.proxy.dataplane.buffer import BufferTooLarge, SpillBuffer
from dockyard.proxy.dataplane.errorpages import ErrorPages, builtin_page, render_template
from dockyard.proxy.dataplane.server import new_request_id


def test_format_time_is_rfc3339_nano_with_trailing_zeros_trimmed() -> None:
    assert format_time(1764322554123456789) == "2025-11-28T09:35:54.123456789Z"
    assert format_time(1764322554120000000) == "2025-11-28T09:35:54.12Z"
    assert format_time(1764322554000000000) == "2025-11-28T09:35:54Z"
    assert format_time(1764322555000000001) == "2025-11-28T09:35:55.000000001Z"


def test_request_ids_are_distinct_uuid4() -> None:
    ids = {new_request_id() for _ in range(1000)}
    assert len(ids) == 1000
    pattern = re.compile(rb"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
    assert all(pattern.fullmatch(i) for i in ids)


def test_template_subset_of_go_html_template() -> None:
    page = "{{ if .Message }}<b>{{ .Message }}</b>{{ else }}none{{ end }}|{{.Message}}"
    assert render_template(page, "a<b") == "<b>a&lt;b</b>|a&lt;b"
    assert render_template(page, "") == "none|"
    assert render_template('x{{ template "y" }}z', "m") == "xz"


def test_error_pages_custom_then_builtin_then_h1(tmp_path: Path) -> None:
    (tmp_path / "404.html").write_text("custom {{ .Message }}")
    pages = ErrorPages()
    assert pages.render(404, tmp_path, "m") == b"custom m"
    assert pages.render(502, tmp_path) == builtin_page(502)
    assert pages.render(418, tmp_path) == b"<h1>418 I'm a Teapot</h1>"
    assert pages.render(404, None).startswith(b"<!doctype html>")
    stop = pages.render(503, None, "Back soon")
    assert b"Back soon" in stop


@pytest.mark.parametrize(("memory", "spills"), [(1 << 20, False), (10, True)])
def test_spill_buffer_keeps_order(memory: int, spills: bool) -> None:
    buf = SpillBuffer(memory=memory)
    parts = [b"alpha", b"beta" * 10, b"gamma" * 100]
    for part in parts:
        buf.write(part)
    assert buf.spilled is spills
    assert b"".join(buf.chunks(size=7)) == b"".join(parts)
    assert b"".join(buf.chunks()) == b"".join(parts)  # re-readable (retries)
    buf.close()


def test_spill_buffer_limit() -> None:
    buf = SpillBuffer(memory=4, maximum=10)
    buf.write(b"12345")
    with pytest.raises(BufferTooLarge):
        buf.write(b"678901")
    buf.close()


def test_operational_log_lines_carry_kamal_proxy_attributes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    import logging

    from dockyard.proxy.dataplane.server import event

    with caplog.at_level(logging.INFO, logger="dockyard.proxy"):
        event(logging.ERROR, "Error while proxying", target="web:3000", path="/x", error="boom")
    record = caplog.records[-1]
    assert record.getMessage() == "Error while proxying"
    assert record.levelno == logging.ERROR
    assert record.dockyard_attrs == {"target": "web:3000", "path": "/x", "error": "boom"}
