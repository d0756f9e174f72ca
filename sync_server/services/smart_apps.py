"""SMART app launch: registered clients, the authorize/consent step, code exchange.

Public clients only: the authorization code is bound to the client, the
redirect URI and a PKCE S256 challenge, lives `authorization_code_seconds`, and
is single-use (a replayed code revokes the tokens issued from it).
"""

from __future__ import annotations

import secrets
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from shared_models.errors import AuthenticationFailed, NotFound, ValidationFailed
from sync_server.db.identity_models import AuthorizationCodeRow, SmartClientRow, UserRow
from sync_server.services import authentication, smart, tokens
from sync_server.services.context import RequestContext
from sync_server.services.identity import IdentityRuntime


def register_client(
    session: Session, *, name: str, redirect_uris: list[str], allowed_scopes: str
) -> SmartClientRow:
    if not name.strip() or not redirect_uris:
        raise ValidationFailed(
            "bad client", issues=[("redirect_uris", "A name and a redirect URI are required")]
        )
    for uri in redirect_uris:
        if not (uri.startswith("https://") or uri.startswith("http://127.0.0.1")):
            raise ValidationFailed(
                "bad redirect", issues=[("redirect_uris", "Redirect URIs must use https")]
            )
    client = SmartClientRow(
        client_id=uuid.uuid4().hex,
        name=name.strip(),
        redirect_uris=redirect_uris,
        allowed_scopes=" ".join(sorted(smart.validate_scopes(allowed_scopes))),
        created_at=datetime.now(UTC),
    )
    session.add(client)
    session.flush()
    return client


@dataclass(frozen=True)
class AuthorizeRequest:
    """A checked `/auth/authorize` request (safe to redirect back to)."""

    client: SmartClientRow
    redirect_uri: str
    scopes: frozenset[str]
    state: str
    code_challenge: str


def check_authorize_request(session: Session, params: dict[str, str]) -> AuthorizeRequest:
    """Validate the client and redirect URI first: only then may errors be redirected."""
    client = session.get(SmartClientRow, params.get("client_id", ""))
    if client is None:
        raise NotFound("Unknown client_id")
    redirect_uri = params.get("redirect_uri", "")
    if redirect_uri not in client.redirect_uris:
        raise ValidationFailed(
            "bad redirect", issues=[("redirect_uri", "redirect_uri is not registered")]
        )
    if params.get("response_type") != "code":
        raise ValidationFailed("bad response_type", issues=[("response_type", "Must be code")])
    if params.get("code_challenge_method") != "S256" or not params.get("code_challenge"):
        raise ValidationFailed(
            "PKCE required", issues=[("code_challenge_method", "PKCE with S256 is required")]
        )
    requested = smart.validate_scopes(params.get("scope", ""))
    allowed = frozenset(client.allowed_scopes.split())
    scopes = requested & allowed
    if not scopes:
        raise ValidationFailed("no scope", issues=[("scope", "No requested scope is allowed")])
    return AuthorizeRequest(
        client, redirect_uri, scopes, params.get("state", ""), params["code_challenge"]
    )


def approve(
    session: Session,
    rt: IdentityRuntime,
    request: AuthorizeRequest,
    user: UserRow,
    *,
    launch_patient: str | None,
    source_ip: str | None,
) -> str:
    """Record the user's consent and return a one-time authorization code."""
    ctx = RequestContext(
        username=user.username,
        user_id=user.id,
        roles=frozenset(user.roles),
        location_ids=frozenset(user.location_ids),
        source_ip=source_ip,
        client_id=request.client.client_id,
    )
    if "launch/patient" in request.scopes:
        if not launch_patient:
            raise ValidationFailed("patient needed", issues=[("patient", "Choose a patient")])
        rt.guard.authorize(session, ctx, "read", "Patient", launch_patient)
    code = secrets.token_urlsafe(32)
    session.add(
        AuthorizationCodeRow(
            code_hash=tokens.token_digest(code),
            client_id=request.client.client_id,
            user_id=user.id,
            redirect_uri=request.redirect_uri,
            scopes=" ".join(sorted(request.scopes)),
            code_challenge=request.code_challenge,
            launch_patient=launch_patient if "launch/patient" in request.scopes else None,
            family_id=uuid.uuid4().hex,
            expires_at=datetime.now(UTC)
            + timedelta(seconds=rt.security.authorization_code_seconds),
        )
    )
    rt.audit.record(
        session, ctx, action="smart-consent", outcome="success",
        detail={"scopes": " ".join(sorted(request.scopes))},
    )  # fmt: skip
    return code


def exchange_code(
    session: Session,
    rt: IdentityRuntime,
    *,
    code: str,
    redirect_uri: str,
    client_id: str,
    code_verifier: str,
) -> dict[str, Any]:
    """The OAuth2 authorization_code grant (PKCE S256); a replayed code revokes its tokens."""
    row = session.scalar(
        select(AuthorizationCodeRow)
        .where(AuthorizationCodeRow.code_hash == tokens.token_digest(code))
        .with_for_update()
    )
    now = datetime.now(UTC)
    if row is None or row.expires_at <= now or row.client_id != client_id:
        raise AuthenticationFailed("authorization code unknown, expired or for another client")
    if row.used_at is not None:
        tokens.revoke_family(session, row.family_id)
        session.commit()  # keep the revocation although the request fails
        raise AuthenticationFailed("authorization code replayed: its tokens are revoked")
    if row.redirect_uri != redirect_uri or not smart.pkce_matches(
        code_verifier, row.code_challenge
    ):
        raise AuthenticationFailed("redirect_uri or PKCE verifier does not match")
    row.used_at = now
    user = session.get(UserRow, row.user_id)
    if user is None or user.disabled:
        raise AuthenticationFailed("user disabled")
    scopes = frozenset(row.scopes.split())
    grant = tokens.RefreshGrant(
        user.id, row.family_id, None, client_id, row.scopes, row.launch_patient
    )
    offline = bool({"offline_access", "online_access"} & scopes)
    claims = authentication.access_claims(rt, user, grant, with_session=offline)
    response: dict[str, Any] = {
        "access_token": rt.signing.sign(session, claims),
        "token_type": "Bearer",
        "expires_in": rt.security.access_token_minutes * 60,
        "scope": row.scopes,
    }
    if row.launch_patient:
        response["patient"] = row.launch_patient
    if offline:
        response["refresh_token"] = tokens.issue_refresh_token(
            session, grant, days=rt.security.refresh_token_days
        )
    if "openid" in scopes:
        response["id_token"] = _id_token(session, rt, user, client_id, scopes)
    return response


def _id_token(
    session: Session, rt: IdentityRuntime, user: UserRow, client_id: str, scopes: frozenset[str]
) -> str:
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": tokens.ISSUER,
        "sub": user.id,
        "aud": client_id,
        "iat": now,
        "exp": now + rt.security.access_token_minutes * 60,
        "use": "id",
    }
    if "fhirUser" in scopes and user.practitioner_id:
        claims["fhirUser"] = f"Practitioner/{user.practitioner_id}"
    return rt.signing.sign(session, claims)
