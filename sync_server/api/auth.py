"""Sign-in and tokens at /auth: login, OAuth2 token endpoint, logout, policy, break-the-glass.

`/auth/token` speaks OAuth2 (RFC 6749): form-encoded requests, and errors as
`{"error": ..., "error_description": ...}` with status 400 (401 for an unknown
client), so standard SMART clients understand them. Every other route answers
errors with a FHIR OperationOutcome.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from shared_models.errors import AuthenticationFailed, ClinicError, ValidationFailed
from sync_server.api.deps import ContextDep, IdentityDep, SessionDep, bearer_token, source_ip
from sync_server.services import authentication, break_glass, smart_apps

router = APIRouter(prefix="/auth", tags=["Authentication"])

_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


class LoginRequest(BaseModel):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)
    otp: str | None = Field(default=None, max_length=16)
    workstation_id: str | None = Field(default=None, max_length=128)


class UserInfo(BaseModel):
    username: str
    roles: list[str]
    locations: list[str]
    practitioner: str | None


class LoginPolicy(BaseModel):
    offline_signin_days: int
    idle_lock_minutes: int
    wipe: bool


class TokenResponse(BaseModel):
    access_token: str
    refresh_token: str | None = None
    token_type: str
    expires_in: int
    user: UserInfo | None = None
    policy: LoginPolicy | None = None
    scope: str | None = None
    patient: str | None = None
    id_token: str | None = None


class BreakGlassRequest(BaseModel):
    patient: str = Field(min_length=9, max_length=200, examples=["Patient/123"])
    reason: str = Field(min_length=1, max_length=2000)


class BreakGlassGrant(BaseModel):
    id: str
    patient: str
    reason: str
    expires_at: str


@router.post("/login", response_model=TokenResponse, response_model_exclude_none=True)
def login(
    body: LoginRequest, request: Request, session: SessionDep, identity: IdentityDep
) -> JSONResponse:
    """Password + TOTP sign-in at a workstation. 401 for any bad credential, 403 when locked."""
    answer = authentication.login(
        session,
        identity,
        username=body.username,
        password=body.password,
        otp=body.otp,
        workstation_id=body.workstation_id,
        source_ip=source_ip(request),
    )
    return JSONResponse(answer, headers=_NO_STORE)


def _oauth_error(error: str, description: str, status: int = 400) -> JSONResponse:
    return JSONResponse(
        {"error": error, "error_description": description}, status_code=status, headers=_NO_STORE
    )


@router.post("/token", response_model=TokenResponse, response_model_exclude_none=True)
def token(
    request: Request,
    session: SessionDep,
    identity: IdentityDep,
    grant_type: Annotated[str, Form(max_length=64)],
    refresh_token: Annotated[str | None, Form(max_length=512)] = None,
    code: Annotated[str | None, Form(max_length=512)] = None,
    redirect_uri: Annotated[str | None, Form(max_length=2048)] = None,
    client_id: Annotated[str | None, Form(max_length=128)] = None,
    code_verifier: Annotated[str | None, Form(max_length=128)] = None,
) -> JSONResponse:
    """OAuth2 token endpoint: `refresh_token` (rotating) and `authorization_code` (PKCE S256)."""
    try:
        if grant_type == "refresh_token" and refresh_token:
            answer = authentication.refresh(session, identity, refresh_token, source_ip(request))
        elif grant_type == "authorization_code" and code and client_id and code_verifier:
            answer = smart_apps.exchange_code(
                session,
                identity,
                code=code,
                redirect_uri=redirect_uri or "",
                client_id=client_id,
                code_verifier=code_verifier,
            )
        elif grant_type in ("refresh_token", "authorization_code"):
            return _oauth_error("invalid_request", "Missing parameters for this grant type")
        else:
            return _oauth_error("unsupported_grant_type", "Use refresh_token or authorization_code")
    except AuthenticationFailed:
        return _oauth_error("invalid_grant", "The grant is invalid, expired, revoked or reused")
    return JSONResponse(answer, headers=_NO_STORE)


@router.post("/logout", status_code=204)
def logout(request: Request, session: SessionDep, identity: IdentityDep, ctx: ContextDep) -> None:
    """Revoke this session: its refresh tokens and its access tokens."""
    claims = identity.signing.verify(session, bearer_token(request) or "")
    authentication.logout(session, identity, ctx, claims.get("sid"))


@router.get("/policy", response_model=LoginPolicy)
def policy(
    request: Request,
    session: SessionDep,
    identity: IdentityDep,
    workstation_id: Annotated[str | None, Query(max_length=128)] = None,
) -> dict[str, Any]:
    """The offline sign-in policy; `wipe` when the workstation is revoked or the user disabled.

    The bearer token may be expired (but must be genuine): a workstation back
    from days offline still learns it must wipe.
    """
    return authentication.policy_for(session, identity, workstation_id, bearer_token(request))


@router.post("/break-glass", response_model=BreakGlassGrant, status_code=201)
def open_break_glass(
    body: BreakGlassRequest, session: SessionDep, identity: IdentityDep, ctx: ContextDep
) -> dict[str, Any]:
    """Open a patient outside one's locations for a bounded time, with a reason (audited)."""
    return break_glass.open_grant(session, identity, ctx, body.patient, body.reason)


def validation_message(exc: ClinicError) -> str:
    """The first human-readable issue of an error (for the HTML consent page)."""
    if isinstance(exc, ValidationFailed) and exc.issues:
        return exc.issues[0][1]
    return exc.user_message
