"""Liveness and readiness: `/healthz` answers 200 only when the database answers."""

from __future__ import annotations

from fastapi import APIRouter, Request
from sqlalchemy import text
from starlette.responses import Response

from shared_models import outcomes
from sync_server.api.errors import fhir_response

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz(request: Request) -> Response:
    try:
        with request.app.state.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception:
        body = outcomes.outcome(outcomes.issue("fatal", "transient", "Database unavailable"))
        return fhir_response(body, 503)
    return Response(b'{"status":"ok"}', media_type="application/json")
