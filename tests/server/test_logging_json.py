"""JSON log lines: parseable, operational fields kept, PHI extras and exception text dropped."""

from __future__ import annotations

import io
import json
import logging

from sync_server.logging_json import JsonLogFormatter


def _capture() -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonLogFormatter())
    logger = logging.getLogger("test.logging_json")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger, stream


def test_each_record_is_one_json_object_with_allowed_fields() -> None:
    logger, stream = _capture()
    logger.info(
        "request done",
        extra={
            "method": "GET",
            "route": "/fhir/R4/Patient/{id}",
            "status": 200,
            "duration_ms": 3.2,
            "patient_name": "Jane Doe",
            "body": {"birthDate": "1970-01-01"},
        },
    )
    (line,) = stream.getvalue().splitlines()
    entry = json.loads(line)
    assert entry["msg"] == "request done"
    assert entry["level"] == "INFO"
    assert entry["route"] == "/fhir/R4/Patient/{id}"
    assert entry["status"] == 200
    assert "patient_name" not in entry and "body" not in entry
    assert "Jane" not in line and "1970" not in line


def test_exception_text_is_not_logged_only_its_type() -> None:
    logger, stream = _capture()
    try:
        raise ValueError("invalid birthDate '1970-13-45' for Jane Doe")
    except ValueError:
        logger.exception("import failed")
    entry = json.loads(stream.getvalue())
    assert entry["exc_type"] == "ValueError"
    assert "test_logging_json.py" in entry["exc_where"]
    assert "Jane" not in stream.getvalue() and "1970" not in stream.getvalue()
