"""Logging set-up: human-readable lines by default, one JSON object a line with `json`.

Structured logs let a log shipper index fields such as `stream_id` or `rtf`: pass them with
`logger.info("...", extra={"fields": {...}})` and the JSON formatter flattens them in.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time

LOG_FORMATS = ("text", "json")


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, extra fields, exception."""

    def format(self, record: logging.LogRecord) -> str:
        payload = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            payload.update(fields)
        if record.exc_info:
            payload["exception"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=str)


def setup_logging(level: str | None = None, fmt: str | None = None) -> None:
    """Configure the root logger; flags win over `MINUTES_LOG_LEVEL` / `MINUTES_LOG_FORMAT`."""
    level = (level or os.environ.get("MINUTES_LOG_LEVEL") or "info").upper()
    fmt = (fmt or os.environ.get("MINUTES_LOG_FORMAT") or "text").lower()
    if fmt not in LOG_FORMATS:
        raise ValueError(f"log format must be one of {LOG_FORMATS}, not {fmt!r}")
    if not isinstance(logging.getLevelName(level), int):
        raise ValueError(f"unknown log level {level!r}")
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # uvicorn installs its own handlers; route them through ours so `json` covers access logs.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        lg = logging.getLogger(name)
        lg.handlers[:] = []
        lg.propagate = True
