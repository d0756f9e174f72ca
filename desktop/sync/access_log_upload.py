"""The access-log step of a sync: offline chart reads to the server's audit trail.

Rows go in batches to `POST /sync/access-log`; a batch's rows are deleted in
one local transaction after the server has answered (it commits before it
answers). A crash between the two re-sends the batch at the next sync, and the
server, idempotent by record id, stores each read once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial
from typing import Any

from desktop.store import access_log
from desktop.store.database import ChartDatabase
from desktop.sync.server_api import ServerApi
from shared_models.errors import ClinicError, NetworkUnavailable
from shared_models.offline_access import (
    MAX_ACCESS_RECORDS,
    AccessLogBatch,
    AccessRecord,
    record_id,
)

log = logging.getLogger(__name__)


def send_access_log(
    db: ChartDatabase,
    api: ServerApi,
    call: Callable[[Callable[[], Any]], Any],
    *,
    workstation_id: str,
    username: str,
) -> int:
    """Send every unsent read of `username`; returns how many the server acknowledged.

    Best effort (a sync step): a refusal is logged and the rows stay for the
    next sync; only `NetworkUnavailable` is raised.
    """
    try:
        return _send_all(db, api, call, workstation_id, username)
    except NetworkUnavailable:
        raise
    except ClinicError as exc:
        log.warning("offline access records not sent: %s", exc.detail)
        return 0


def _send_all(
    db: ChartDatabase,
    api: ServerApi,
    call: Callable[[Callable[[], Any]], Any],
    workstation_id: str,
    username: str,
) -> int:
    sent = 0
    while True:
        rows = access_log.unsent(db.connection(), username, MAX_ACCESS_RECORDS)
        if not rows:
            return sent
        ids = {row.seq: record_id(workstation_id, row.seq, row.at) for row in rows}
        records = [
            # "read" is the only action this workstation records.
            AccessRecord(record_id=ids[row.seq], username=row.username,
                         patient_id=row.patient_id, action="read", at=row.at)
            for row in rows
        ]  # fmt: skip
        batch = AccessLogBatch(workstation_id=workstation_id, records=records)
        body = batch.model_dump_json().encode()
        answer = call(partial(api.sync_access_log, body))
        acknowledged = {str(i) for i in (answer or {}).get("acknowledged", [])}
        if not set(ids.values()) <= acknowledged:
            raise ClinicError("the server did not acknowledge every access record")
        with db.transaction() as conn:
            access_log.mark_sent(conn, ids)
        sent += len(rows)
