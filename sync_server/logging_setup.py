"""Logging for the server process: plain lines or JSON, and no PHI either way.

Uvicorn's access log is off (its lines carry query strings such as
`?name=...`); request figures come from the metrics middleware instead.
"""

from __future__ import annotations

import logging

from sync_server.config import Settings


def configure_logging(settings: Settings, level: int = logging.INFO) -> None:
    """Set up the root logger once per process."""
    if settings.log_json:
        from sync_server.logging_json import configure_json_logging

        configure_json_logging(level)
    else:
        logging.basicConfig(
            level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True
        )
    logging.getLogger("uvicorn.access").disabled = True
    logging.getLogger("pgserver").setLevel(logging.WARNING)
