"""Administration: users, workstations, SMART apps, signing keys, and the audit trail.

Admins only (a first-party session with the `admin` role); every call, and every
refused call, is audited. The audit trail is also searchable as FHIR at
`/fhir/R4/AuditEvent` and exportable as NDJSON.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert

from shared_models.errors import Forbidden
from sync_server.api.deps import ContextDep, IdentityDep, SessionDep
from sync_server.db.identity_models import UserRow, WorkstationRow
from sync_server.services import audit_views, break_glass, smart_apps, users
from sync_server.services.audit import seal_now
from sync_server.services.audit_chain import verify_chain
from sync_server.services.context import RequestContext
from sync_server.services.permissions import is_admin

router = APIRouter(tags=["Administration"])


def require_admin(
    request: Request, session: SessionDep, identity: IdentityDep, ctx: ContextDep
) -> RequestContext:
    if not is_admin(ctx.roles) or ctx.scopes is not None:
        identity.audit.record(
            session, ctx, action="admin", outcome="denied", detail={"path": request.url.path}
        )
        raise Forbidden("admin role required")
    return ctx


AdminDep = Annotated[RequestContext, Depends(require_admin)]


class NewUser(BaseModel):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)
    roles: list[str] = Field(min_length=1, max_length=4)
    locations: list[str] = Field(default_factory=list, max_length=100)
    practitioner: str | None = Field(default=None, max_length=100, examples=["Practitioner/1"])


class UserChange(BaseModel):
    roles: list[str] | None = Field(default=None, min_length=1, max_length=4)
    locations: list[str] | None = Field(default=None, max_length=100)
    practitioner: str | None = Field(default=None, max_length=100)
    disabled: bool | None = None


class NewClient(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    redirect_uris: list[str] = Field(min_length=1, max_length=10)
    scopes: str = Field(min_length=1, max_length=2000)


def _practitioner_id(reference: str | None) -> str | None:
    return reference.removeprefix("Practitioner/") if reference else reference


@router.post("/admin/users", status_code=201)
def create_user(
    body: NewUser, session: SessionDep, identity: IdentityDep, ctx: AdminDep
) -> dict[str, Any]:
    """Create a user; the answer carries the TOTP enrolment (otpauth URI and QR PNG) once."""
    user, enrolment = users.create_user(
        session, identity.keys, identity.security,
        username=body.username, password=body.password, roles=body.roles,
        location_ids=body.locations, practitioner_id=_practitioner_id(body.practitioner),
    )  # fmt: skip
    identity.audit.record(
        session, ctx, action="user-create", outcome="success", detail={"user": user.username}
    )
    return {"user": users.describe(user), "mfa": enrolment.as_dict()}


@router.get("/admin/users")
def list_users(session: SessionDep, ctx: AdminDep) -> list[dict[str, Any]]:
    return [users.describe(u) for u in session.scalars(select(UserRow).order_by(UserRow.username))]


@router.get("/admin/users/{username}")
def get_user(username: str, session: SessionDep, ctx: AdminDep) -> dict[str, Any]:
    return users.describe(users.get_user(session, username))


@router.patch("/admin/users/{username}")
def change_user(
    username: str, body: UserChange, session: SessionDep, identity: IdentityDep, ctx: AdminDep
) -> dict[str, Any]:
    """Change roles, locations, practitioner link, or disable/enable (takes effect at once)."""
    user = users.update_user(
        session, username, roles=body.roles, location_ids=body.locations,
        practitioner_id=_practitioner_id(body.practitioner), disabled=body.disabled,
    )  # fmt: skip
    identity.audit.record(
        session, ctx, action="user-update", outcome="success",
        detail={"user": username, "changed": sorted(body.model_dump(exclude_none=True))},
    )  # fmt: skip
    return users.describe(user)


@router.post("/admin/users/{username}/reset-mfa")
def reset_mfa(
    username: str, session: SessionDep, identity: IdentityDep, ctx: AdminDep
) -> dict[str, str]:
    enrolment = users.reset_mfa(session, identity.keys, username)
    identity.audit.record(
        session, ctx, action="mfa-reset", outcome="success", detail={"user": username}
    )
    return enrolment.as_dict()


@router.post("/admin/users/{username}/unlock")
def unlock(
    username: str, session: SessionDep, identity: IdentityDep, ctx: AdminDep
) -> dict[str, Any]:
    user = users.unlock(session, username)
    identity.audit.record(
        session, ctx, action="unlock", outcome="success", detail={"user": username}
    )
    return users.describe(user)


@router.post("/admin/workstations/{workstation_id}/revoke", status_code=204)
def revoke_workstation(
    workstation_id: str, session: SessionDep, identity: IdentityDep, ctx: AdminDep
) -> None:
    """The workstation is told to wipe (`/auth/policy`) and can no longer sign in or refresh."""
    now = datetime.now(UTC)
    session.execute(
        insert(WorkstationRow)
        .values(id=workstation_id, last_seen_at=now, revoked_at=now)
        .on_conflict_do_update(index_elements=["id"], set_={"revoked_at": now})
    )
    identity.audit.record(
        session, ctx, action="workstation-revoke", outcome="success",
        detail={"workstation": workstation_id},
    )  # fmt: skip


@router.post("/admin/smart-clients", status_code=201)
def register_client(
    body: NewClient, session: SessionDep, identity: IdentityDep, ctx: AdminDep
) -> dict[str, Any]:
    client = smart_apps.register_client(
        session, name=body.name, redirect_uris=body.redirect_uris, allowed_scopes=body.scopes
    )
    identity.audit.record(
        session, ctx, action="client-register", outcome="success",
        detail={"client": client.client_id},
    )  # fmt: skip
    return {"client_id": client.client_id, "name": client.name, "scopes": client.allowed_scopes}


@router.post("/admin/signing-keys/rotate")
def rotate_signing_key(session: SessionDep, identity: IdentityDep, ctx: AdminDep) -> dict[str, str]:
    """New tokens are signed with a new key; tokens signed before keep working."""
    kid = identity.signing.rotate(session)
    identity.audit.record(session, ctx, action="key-rotate", outcome="success", detail={"kid": kid})
    return {"kid": kid}


@router.post("/admin/signing-keys/{kid}/retire", status_code=204)
def retire_signing_key(kid: str, session: SessionDep, identity: IdentityDep, ctx: AdminDep) -> None:
    """Tokens signed with `kid` stop verifying (the active key cannot be retired)."""
    identity.signing.retire(session, kid)
    identity.audit.record(session, ctx, action="key-retire", outcome="success", detail={"kid": kid})


def _period(since: datetime | None, until: datetime | None) -> tuple[datetime, datetime]:
    until = until or datetime.now(UTC) + timedelta(seconds=1)
    return since or until - timedelta(days=30), until


@router.get("/admin/break-glass")
def break_glass_report(
    session: SessionDep,
    identity: IdentityDep,
    ctx: AdminDep,
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[dict[str, Any]]:
    """Every break-the-glass grant in the period (default: 30 days) and its audited accesses."""
    start, end = _period(since, until)
    identity.audit.record(session, ctx, action="break-glass-report", outcome="success")
    return break_glass.report(session, start, end)


@router.get("/admin/audit/verify")
def verify_audit(
    request: Request, session: SessionDep, identity: IdentityDep, ctx: AdminDep
) -> dict[str, Any]:
    """Seal what is pending, then walk the hash chain; reports the first broken link."""
    identity.audit.record(session, ctx, action="audit-verify", outcome="success")
    engine = request.app.state.engine
    seal_now(engine, identity.keys)
    with engine.connect() as conn:
        return verify_chain(conn, identity.audit_mac_key).as_dict()


def _audit_query(
    patient: Annotated[str | None, Query(max_length=200)] = None,
    agent: Annotated[str | None, Query(max_length=64)] = None,
    action: Annotated[str | None, Query(max_length=64)] = None,
    date: Annotated[list[str] | None, Query(max_length=2)] = None,
    count: Annotated[int, Query(alias="_count", ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(alias="_offset", ge=0)] = 0,
) -> audit_views.AuditQuery:
    since, until = audit_views.parse_date_params(date or [])
    return audit_views.AuditQuery(patient, agent, action, since, until, count, offset)


AuditQueryDep = Annotated[audit_views.AuditQuery, Depends(_audit_query)]


@router.get("/admin/audit/export")
def export_audit(
    request: Request,
    session: SessionDep,
    identity: IdentityDep,
    ctx: AdminDep,
    query: AuditQueryDep,
) -> StreamingResponse:
    """The matching audit events as NDJSON FHIR AuditEvents (whole period, no paging)."""
    # Audited in the request's session, committed before the response starts.
    identity.audit.record(
        session, ctx, action="export", outcome="success", resource_type="AuditEvent"
    )
    unpaged = audit_views.AuditQuery(
        query.patient, query.agent, query.action, query.since, query.until
    )
    new_session = request.app.state.sessionmaker

    def lines() -> Iterator[bytes]:
        with new_session() as own:
            yield from audit_views.export_ndjson(own, unpaged)

    return StreamingResponse(lines(), media_type="application/fhir+ndjson")


@router.get("/fhir/R4/AuditEvent", tags=["FHIR R4"])
def search_audit_events(
    request: Request,
    session: SessionDep,
    identity: IdentityDep,
    ctx: AdminDep,
    query: AuditQueryDep,
) -> dict[str, Any]:
    """Admins search the audit trail as FHIR: `patient`, `agent`, `action`, `date` (ge/lt)."""
    rows, more = audit_views.search(session, query)
    identity.audit.record(
        session, ctx, action="search", outcome="success", resource_type="AuditEvent",
        detail={"count": len(rows)},
    )  # fmt: skip
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [
            {
                "fullUrl": f"{request.base_url}fhir/R4/AuditEvent/{r.id}",
                "resource": audit_views.as_fhir(r),
                "search": {"mode": "match"},
            }
            for r in rows
        ],
    }
    if more:
        params = dict(request.query_params)
        params["_offset"] = str(query.offset + query.count)
        bundle["link"] = [
            {"relation": "next", "url": str(request.url.replace_query_params(**params))}
        ]
    return bundle
