"""Break the glass: open a patient outside one's locations, with a reason, for a while.

The grant is read into every request context of the user until it expires
(`authentication.request_context`); each access under it is audited with the
reason (`audit.ChainedAuditSink`). Admins get the report of grants and accesses.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from shared_models.errors import Forbidden, NotFound, ValidationFailed
from sync_server.db.identity_models import BreakGlassGrantRow
from sync_server.services.context import RequestContext
from sync_server.services.identity import IdentityRuntime
from sync_server.services.permissions import may_break_glass

MIN_REASON_LENGTH = 10


def open_grant(
    session: Session, rt: IdentityRuntime, ctx: RequestContext, patient: str, reason: str
) -> dict[str, Any]:
    reason = " ".join(reason.split())
    type_, _, patient_id = patient.partition("/")
    if type_ != "Patient" or not patient_id or "/" in patient_id:
        raise ValidationFailed("bad patient", issues=[("patient", "Expected Patient/ID")])
    if len(reason) < MIN_REASON_LENGTH:
        raise ValidationFailed(
            "reason too short",
            issues=[("reason", f"Give a reason of at least {MIN_REASON_LENGTH} characters")],
        )
    if ctx.scopes is not None or not may_break_glass(ctx.roles) or ctx.user_id is None:
        rt.audit.record(
            session, ctx, action="break-glass", outcome="denied", resource_type="Patient",
            resource_id=patient_id, patient_ids=[patient_id],
        )  # fmt: skip
        raise Forbidden("role may not break the glass")
    exists = session.execute(
        text(
            "SELECT 1 FROM resources WHERE resource_type = 'Patient' AND id = :id AND NOT deleted"
        ),
        {"id": patient_id},
    ).first()
    if exists is None:
        raise NotFound("Patient not found")
    now = datetime.now(UTC)
    grant = BreakGlassGrantRow(
        id=str(uuid.uuid4()),
        user_id=ctx.user_id,
        username=ctx.username,
        patient_id=patient_id,
        reason=reason,
        workstation_id=ctx.workstation_id,
        created_at=now,
        expires_at=now + timedelta(minutes=rt.security.break_glass_minutes),
    )
    session.add(grant)
    rt.audit.record(
        session, ctx, action="break-glass", outcome="success", resource_type="Patient",
        resource_id=patient_id, patient_ids=[patient_id], detail={"reason": reason},
    )  # fmt: skip
    return {
        "id": grant.id,
        "patient": f"Patient/{patient_id}",
        "reason": reason,
        "expires_at": grant.expires_at.isoformat(),
    }


_REPORT_SQL = text(
    "SELECT g.id, g.username, g.patient_id, g.reason, g.workstation_id, g.created_at,"
    " g.expires_at, (SELECT count(*) FROM audit_events e WHERE e.user_id = g.user_id"
    "   AND e.patient_ids @> ARRAY[g.patient_id] AND e.recorded >= g.created_at"
    "   AND e.detail -> 'break_glass_reasons' ? g.patient_id) AS accesses"
    " FROM break_glass_grants g WHERE g.created_at >= :since AND g.created_at < :until"
    " ORDER BY g.created_at"
)


def report(session: Session, since: datetime, until: datetime) -> list[dict[str, Any]]:
    """Every grant opened in [since, until) and how many audited accesses used one."""
    rows = session.execute(_REPORT_SQL, {"since": since, "until": until}).mappings()
    return [
        {
            "id": r["id"],
            "username": r["username"],
            "patient": f"Patient/{r['patient_id']}",
            "reason": r["reason"],
            "workstation_id": r["workstation_id"],
            "opened": r["created_at"].isoformat(),
            "expires": r["expires_at"].isoformat(),
            "accesses": r["accesses"],
        }
        for r in rows
    ]
