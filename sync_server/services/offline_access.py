"""Chart reads a workstation made offline, recorded in the chained audit trail.

DESIGN.md: chart reads made offline reach the server's audit trail at the next
sync. Each record becomes an `AuditEvent` of the reading user (action `read`,
the patient, the workstation) whose `recorded` time is when the chart was read,
marked `offline` with the time the server received it. The caller must be the
user who read and sign in from the workstation that sends: nobody files reads
in someone else's name.

Idempotent by record id: the event id is derived from (user, workstation,
record id), so a batch sent again (a sync interrupted after the server stored
it) finds its events already in the trail and stores nothing twice.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session

from shared_models.errors import Forbidden
from shared_models.offline_access import AccessLogAck, AccessLogBatch
from sync_server.services.audit import ChainedAuditSink
from sync_server.services.context import RequestContext

_EVENT_NAMESPACE = uuid.UUID("0b7d6a1e-5d43-4f4e-8f0c-2c9a7e5b4d10")


def event_id(username: str, workstation_id: str, record_id: str) -> str:
    """The audit event id of one offline record (the idempotency key)."""
    return str(uuid.uuid5(_EVENT_NAMESPACE, f"{username}|{workstation_id}|{record_id}"))


def record_offline_reads(
    session: Session, ctx: RequestContext, audit: ChainedAuditSink, batch: AccessLogBatch
) -> AccessLogAck:
    """Store the batch's reads as audit events in the caller's transaction."""
    if ctx.system or ctx.scopes is not None:
        raise Forbidden("only a workstation session may file offline reads")
    if ctx.workstation_id != batch.workstation_id:
        raise Forbidden(
            "offline reads sent for another workstation",
            user_message="This workstation may only send its own access records.",
        )
    others = {r.username for r in batch.records} - {ctx.username}
    if others:
        raise Forbidden(
            f"offline reads of {len(others)} other user(s) in the batch",
            user_message="Access records can only be sent by the user who made them.",
        )
    now = datetime.now(UTC)
    events: list[tuple[str, datetime, str, str, dict[str, Any]]] = []
    for record in batch.records:
        at = record.at.astimezone(UTC)
        detail = {
            "offline": True,
            "record_id": record.record_id,
            "accessed_at": at.isoformat(),
            "received_at": now.isoformat(),
        }
        # A workstation clock running ahead cannot file a read in the future.
        events.append(
            (
                event_id(ctx.username, batch.workstation_id, record.record_id),
                min(at, now),
                record.action,
                record.patient_id,
                detail,
            )
        )
    stored = audit.record_past(session, ctx, events)
    return AccessLogAck(acknowledged=[r.record_id for r in batch.records], stored=len(stored))
