"""Structured log lines shaped like kamal-proxy's slog JSON output (`time`, `level`, `msg`, attrs).

Lower layers call `event(logger, "Deployed", service=..., ...)`; only `dockyard-proxy run`
installs `JsonFormatter` on a stdout handler.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
from typing import Any

_ATTRS = "dockyard_attrs"


def event(logger: logging.Logger, msg: str, *, level: int = logging.INFO, **attrs: Any) -> None:
    if logger.isEnabledFor(level):
        logger.log(level, msg, extra={_ATTRS: attrs})


class JsonFormatter(logging.Formatter):
    """One JSON object per line: `{"time": ..., "level": "INFO", "msg": ..., <attrs>}`."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = _dt.datetime.fromtimestamp(record.created, tz=_dt.UTC)
        line: dict[str, Any] = {
            "time": stamp.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "level": "WARN" if record.levelname == "WARNING" else record.levelname,
            "msg": record.getMessage(),
        }
        attrs = getattr(record, _ATTRS, None)
        if isinstance(attrs, dict):
            line.update(attrs)
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str, ensure_ascii=False, separators=(",", ":"))
