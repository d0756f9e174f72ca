"""`POST /sync/access-log`: chart reads a workstation made offline, for the audit trail.

Thin route: the caller's context from the bearer token, the service records
the events in the request's transaction, which commits before the answer is
sent (the workstation deletes its rows only after this acknowledgement).
"""

from __future__ import annotations

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from shared_models.offline_access import AccessLogBatch
from sync_server.api.deps import ContextDep, SessionDep
from sync_server.services.offline_access import record_offline_reads

router = APIRouter(prefix="/sync", tags=["Sync"])


@router.post("/access-log")
def post_access_log(
    request: Request, session: SessionDep, ctx: ContextDep, batch: AccessLogBatch
) -> Response:
    """Record the batch as offline-access AuditEvents: `{acknowledged: [record_id], stored}`."""
    ack = record_offline_reads(session, ctx, request.app.state.audit_sink, batch)
    return Response(orjson.dumps(ack.model_dump()), media_type="application/json")
