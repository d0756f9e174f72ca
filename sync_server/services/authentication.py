"""Sign-in, token refresh, logout and the request context behind a bearer token.

Failed sign-ins and reused refresh tokens must leave a trace even though the
request fails: those paths commit their bookkeeping (failure counter, lockout,
family revocation) before raising; the audit rows of failures are written by
the audit sink in their own transaction.
"""

from __future__ import annotations

import secrets
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from psycopg.rows import namedtuple_row
from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from shared_models.errors import AuthenticationFailed, Forbidden
from sync_server.db.engine import driver_connection
from sync_server.db.identity_models import UserRow, WorkstationRow
from sync_server.services import passwords, smart, tokens, totp, users
from sync_server.services.context import RequestContext
from sync_server.services.identity import IdentityRuntime
from sync_server.services.login_policy import (
    LockoutState,
    after_failure,
    is_locked,
    mfa_required,
    policy_object,
)

LAUNCH_PATIENT_REASON = "SMART launch patient"
#: The `use` claim of access tokens; id_tokens (same key) carry another and are refused.
ACCESS_USE = "access"
GENERIC_FAILURE = "Sign-in failed. Check your username, password and code."


class AccountLocked(Forbidden):
    user_message = "This account is locked after too many failed sign-ins. Try later or call IT."
    help_topic = "sign-in"


class WorkstationRevoked(Forbidden):
    user_message = "This workstation has been revoked. Call IT support."
    help_topic = "sign-in"


def login(
    session: Session,
    rt: IdentityRuntime,
    *,
    username: str,
    password: str,
    otp: str | None,
    workstation_id: str | None,
    source_ip: str | None,
) -> dict[str, Any]:
    """Sign in at a workstation; return the token response (contract)."""
    user = authenticate(
        session, rt, username=username, password=password, otp=otp,
        workstation_id=workstation_id, source_ip=source_ip,
    )  # fmt: skip
    _touch_workstation(session, workstation_id, datetime.now(UTC))
    grant = tokens.RefreshGrant(user.id, uuid.uuid4().hex, workstation_id, None, None, None)
    return token_response(session, rt, user, grant)


def authenticate(
    session: Session,
    rt: IdentityRuntime,
    *,
    username: str,
    password: str,
    otp: str | None,
    workstation_id: str | None,
    source_ip: str | None,
) -> UserRow:
    """Check lockout, password and TOTP (audited); the user, or AuthenticationFailed."""
    user = session.scalar(select(UserRow).where(UserRow.username == username))
    ctx = RequestContext(
        username=username,
        user_id=user.id if user else None,
        roles=frozenset(user.roles) if user else frozenset(),
        workstation_id=workstation_id,
        source_ip=source_ip,
    )
    now = datetime.now(UTC)
    if user is not None and is_locked(_lockout_state(user), now):
        passwords.verify_password(None, password)  # same cost as any other attempt
        rt.audit.record(session, ctx, action="login", outcome="denied", detail={"reason": "locked"})
        raise AccountLocked("account locked")
    password_ok = passwords.verify_password(user.password_hash if user else None, password)
    if user is None or not password_ok or user.disabled or not _otp_ok(session, rt, user, otp):
        _fail(session, rt, ctx, user, now)
    assert user is not None
    if _workstation_revoked(session, workstation_id):
        rt.audit.record(
            session, ctx, action="login", outcome="denied", detail={"reason": "workstation"}
        )
        raise WorkstationRevoked("workstation revoked")
    if passwords.needs_rehash(user.password_hash):
        user.password_hash = passwords.hash_password(password)
    user.failed_attempts, user.failed_window_start, user.locked_until = 0, None, None
    rt.audit.record(session, ctx, action="login", outcome="success")
    return user


def _lockout_state(user: UserRow) -> LockoutState:
    return LockoutState(user.failed_attempts, user.failed_window_start, user.locked_until)


def _otp_ok(session: Session, rt: IdentityRuntime, user: UserRow, otp: str | None) -> bool:
    secret = users.totp_secret(user, rt.keys)
    if secret is None:
        return not mfa_required(frozenset(user.roles), rt.security)
    step = totp.matching_step(secret, otp or "")
    if step is None:
        return False
    # Atomic replay check: a second sign-in with the same (or an older) code updates nothing.
    claimed = session.execute(
        update(UserRow)
        .where(UserRow.id == user.id, UserRow.totp_last_step < step)
        .values(totp_last_step=step)
    )
    return bool(claimed.rowcount)  # type: ignore[attr-defined]


def _fail(
    session: Session, rt: IdentityRuntime, ctx: RequestContext, user: UserRow | None, now: datetime
) -> None:
    """Count the failure (maybe lock), audit it, commit that, then refuse."""
    rt.audit.record(session, ctx, action="login", outcome="failure")
    if user is not None:
        state = after_failure(_lockout_state(user), now, rt.security)
        user.failed_attempts, user.failed_window_start = state.failed_attempts, state.window_start
        if state.locked_until != user.locked_until:
            user.locked_until = state.locked_until
            rt.audit.record(
                session, ctx, action="lockout", outcome="denied",
                detail={"failed_attempts": state.failed_attempts},
            )  # fmt: skip
        session.commit()
    raise AuthenticationFailed("sign-in failed", user_message=GENERIC_FAILURE)


def _workstation_revoked(session: Session, workstation_id: str | None) -> bool:
    if not workstation_id:
        return False
    revoked = session.scalar(
        select(WorkstationRow.revoked_at).where(WorkstationRow.id == workstation_id)
    )
    return revoked is not None


def _touch_workstation(session: Session, workstation_id: str | None, now: datetime) -> None:
    if workstation_id:
        session.execute(
            insert(WorkstationRow)
            .values(id=workstation_id, last_seen_at=now)
            .on_conflict_do_update(index_elements=["id"], set_={"last_seen_at": now})
        )


def access_claims(
    rt: IdentityRuntime, user: UserRow, grant: tokens.RefreshGrant, *, with_session: bool
) -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": tokens.ISSUER,
        "sub": user.id,
        "name": user.username,
        "iat": now,
        "exp": now + rt.security.access_token_minutes * 60,
        "jti": secrets.token_hex(8),
        "use": ACCESS_USE,
    }
    optional = {
        "wks": grant.workstation_id,
        "sid": grant.family_id if with_session else None,
        "scope": grant.scopes,
        "patient": grant.launch_patient,
        "client_id": grant.client_id,
        "fhirUser": f"Practitioner/{user.practitioner_id}" if user.practitioner_id else None,
    }
    claims.update({k: v for k, v in optional.items() if v is not None})
    return claims


def token_response(
    session: Session,
    rt: IdentityRuntime,
    user: UserRow,
    grant: tokens.RefreshGrant,
    *,
    refresh_token: str | None = None,
) -> dict[str, Any]:
    """The login/refresh answer: tokens, the user, and the offline policy."""
    if refresh_token is None:
        refresh_token = tokens.issue_refresh_token(
            session, grant, days=rt.security.refresh_token_days
        )
    claims = access_claims(rt, user, grant, with_session=True)
    return {
        "access_token": rt.signing.sign(session, claims),
        "refresh_token": refresh_token,
        "token_type": "Bearer",
        "expires_in": rt.security.access_token_minutes * 60,
        "user": {
            "username": user.username,
            "roles": list(user.roles),
            "locations": list(user.location_ids),
            "practitioner": claims.get("fhirUser"),
        },
        "policy": policy_object(rt.security, wipe=False),
    }


def refresh(
    session: Session, rt: IdentityRuntime, refresh_token: str, source_ip: str | None
) -> dict[str, Any]:
    """OAuth2 refresh_token grant with rotation and reuse detection."""
    try:
        grant, new_token = tokens.rotate_refresh_token(
            session, refresh_token, days=rt.security.refresh_token_days
        )
    except tokens.RefreshTokenReused as reused:
        ctx = RequestContext(username="?", user_id=reused.user_id, source_ip=source_ip)
        rt.audit.record(
            session, ctx, action="token-reuse", outcome="denied",
            detail={"family": reused.family_id},
        )  # fmt: skip
        session.commit()  # keep the family revoked although the request fails
        raise
    user = session.get(UserRow, grant.user_id)
    if user is None or user.disabled or _workstation_revoked(session, grant.workstation_id):
        raise AuthenticationFailed("user disabled or workstation revoked")
    response = token_response(session, rt, user, grant, refresh_token=new_token)
    if grant.scopes is not None:
        response["scope"] = grant.scopes
        if grant.launch_patient:
            response["patient"] = grant.launch_patient
    return response


def logout(
    session: Session, rt: IdentityRuntime, ctx: RequestContext, family_id: str | None
) -> None:
    """Revoke the session: its refresh tokens and (through `sid`) its access tokens."""
    if family_id:
        tokens.revoke_family(session, family_id)
    rt.audit.record(session, ctx, action="logout", outcome="success")


#: Plain SQL on the driver connection (every request runs it; see `driver_connection`).
_CONTEXT_SQL = (
    "SELECT u.username, u.roles, u.location_ids, u.practitioner_id, u.disabled,"
    " (CAST(%(sid)s AS text) IS NULL OR EXISTS (SELECT 1 FROM refresh_tokens r"
    "   WHERE r.family_id = %(sid)s AND r.revoked_at IS NULL)) AS live,"
    " (SELECT coalesce(json_object_agg(g.patient_id, g.reason), '{}')"
    "   FROM break_glass_grants g WHERE g.user_id = u.id AND g.expires_at > now()) AS grants"
    " FROM users u WHERE u.id = %(uid)s"
)


def request_context(
    session: Session,
    rt: IdentityRuntime,
    bearer: str,
    *,
    source_ip: str | None,
) -> RequestContext:
    """Who a bearer token speaks for, with current roles, locations and grants."""
    claims = rt.signing.verify(session, bearer)
    if claims.get("use") != ACCESS_USE:  # e.g. an OpenID id_token is not a bearer token
        raise AuthenticationFailed("not an access token")
    cursor = driver_connection(session).cursor(row_factory=namedtuple_row)
    params = {"uid": claims["sub"], "sid": claims.get("sid")}
    row: Any = cursor.execute(_CONTEXT_SQL, params).fetchone()  # a named tuple, or None
    if row is None or row.disabled or not row.live:
        raise AuthenticationFailed("token revoked or user disabled")
    scopes = frozenset(str(claims["scope"]).split()) if "scope" in claims else None
    launch_patient = claims.get("patient")
    grants: dict[str, str] = dict(row.grants)
    if launch_patient and scopes is not None and smart.only_patient_scopes(scopes):
        # A patient-bound app sees its launch patient only (see access_guard).
        grants = {launch_patient: LAUNCH_PATIENT_REASON}
    return RequestContext(
        username=row.username,
        user_id=claims["sub"],
        practitioner=f"Practitioner/{row.practitioner_id}" if row.practitioner_id else None,
        roles=frozenset(row.roles),
        location_ids=frozenset(row.location_ids),
        scopes=scopes,
        launch_patient=launch_patient,
        client_id=claims.get("client_id"),
        workstation_id=claims.get("wks"),
        source_ip=source_ip,
        break_glass=grants,
    )


def policy_for(
    session: Session, rt: IdentityRuntime, workstation_id: str | None, bearer: str | None
) -> dict[str, Any]:
    """The login policy; `wipe` when the workstation is revoked or the user disabled.

    An expired (but genuine) token still identifies the user here, so a laptop
    that was offline for days learns it must wipe.
    """
    wipe = _workstation_revoked(session, workstation_id)
    if bearer and not wipe:
        claims = rt.signing.verify(session, bearer, allow_expired=True)
        user = session.get(UserRow, claims["sub"])
        wipe = user is None or user.disabled
    return policy_object(rt.security, wipe=wipe)
