"""Control-plane log lines: slog-style JSON objects, one per line."""

from __future__ import annotations

import json
import logging

from dockyard.proxy.control.log import JsonFormatter, event


def test_event_lines_are_slog_shaped_json() -> None:
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    logger = logging.getLogger("dockyard.test.control-log")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    logger.addHandler(Keep())
    event(logger, "Target health updated", service="web", target="app:80", state="healthy")
    event(logger, "Host settings conflict", level=logging.WARNING, host="ü.test")
    lines = [JsonFormatter().format(r) for r in records]
    first, second = (json.loads(line) for line in lines)
    assert list(first) == ["time", "level", "msg", "service", "target", "state"]
    assert first["level"] == "INFO" and first["msg"] == "Target health updated"
    assert first["time"].endswith("Z") and "T" in first["time"]
    assert second["level"] == "WARN" and second["host"] == "ü.test"
    assert all("\n" not in line for line in lines)
