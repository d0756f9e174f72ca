"""Structured JSON log lines, one object per line, with no PHI.

`JsonLogFormatter` writes the time, level, logger, message and a small set of
operational fields passed through `extra=` (request id, method, route template,
status, duration, counts). Anything else attached to a record is dropped, and
interpolation arguments are never logged separately. The message itself is the
caller's responsibility: log ids and counts, never names, birth dates or
resource bodies (the project rule); exception text is reduced to the exception
type, because driver and validation errors often echo the offending value.

Switch it on with `Settings.log_json` (`EHR_LOG_JSON=true`) through
`configure_json_logging()`, or put the formatter on any handler.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import Any

import orjson

#: `extra=` keys that may reach the log. Extend with care: no free text from requests.
ALLOWED_FIELDS = frozenset(
    {
        "request_id",
        "method",
        "route",
        "status",
        "duration_ms",
        "client_id",
        "workstation_id",
        "user_id",
        "resource_type",
        "count",
        "worker",
        "event",
    }
)


class JsonLogFormatter(logging.Formatter):
    """Format records as single-line JSON objects without PHI-bearing extras."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key in ALLOWED_FIELDS:
            value = record.__dict__.get(key)
            if value is not None:
                entry[key] = value
        if record.exc_info and record.exc_info[0] is not None:
            # The type and where it was raised; never the message (it may echo input).
            entry["exc_type"] = record.exc_info[0].__qualname__
            entry["exc_where"] = _innermost_frame(record)
        return orjson.dumps(entry, default=str).decode()


def _innermost_frame(record: logging.LogRecord) -> str | None:
    tb = record.exc_info[2] if record.exc_info else None
    if tb is None:
        return None
    while tb.tb_next is not None:
        tb = tb.tb_next
    code = tb.tb_frame.f_code
    return f"{code.co_filename.rsplit('/', 1)[-1]}:{tb.tb_lineno} in {code.co_name}"


def configure_json_logging(level: int = logging.INFO) -> None:
    """Send every log record (uvicorn's included) to stderr as JSON."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLogFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
