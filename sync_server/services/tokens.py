"""Access tokens (ES256 JWTs with `kid`, joserfc) and rotating refresh tokens.

Signing keys live in `signing_keys`, their private halves encrypted under the
server secret. Rotation adds a new active key; older keys keep verifying until
retired, so nobody is logged out by a rotation. Refresh tokens are random
strings stored as SHA-256 hashes; each use replaces the token with a new one of
the same family, and presenting a used token again revokes the whole family
(RFC 6749 security BCP: a stolen refresh token is detected on reuse).
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, KeySet
from joserfc.jws import extract_compact
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from shared_models.errors import AuthenticationFailed
from sync_server.db.identity_models import RefreshTokenRow, SigningKeyRow
from sync_server.services.server_keys import ServerKeys

ISSUER = "ehr-server"
ALGORITHM = "ES256"
_KEY_PURPOSE = "jwt-signing-keys"
_KEY_RELOAD_SECONDS = 30.0
_VERIFIED_CACHE_SIZE = 4096


def token_digest(token: str) -> str:
    """What we store and log instead of a token: its SHA-256 (never the token itself)."""
    return hashlib.sha256(token.encode()).hexdigest()


class SigningKeys:
    """This process's view of the signing keys, reloaded when stale or a kid is unknown."""

    def __init__(self, server_keys: ServerKeys) -> None:
        self._server_keys = server_keys
        self._lock = threading.Lock()
        self._active: ECKey | None = None
        self._verify_set = KeySet([])
        self._kids: frozenset[str] = frozenset()
        self._loaded_at = 0.0
        #: token digest -> claims, for tokens already verified (cleared on reload).
        self._verified: OrderedDict[str, dict[str, Any]] = OrderedDict()

    def ensure_active_key(self, session: Session) -> None:
        """Create the first signing key when there is none (first start)."""
        has_active = session.scalar(select(SigningKeyRow.kid).where(SigningKeyRow.active))
        if has_active is None:
            self.rotate(session)

    def rotate(self, session: Session) -> str:
        """Add a new active key; the previous ones keep verifying. Returns the new kid."""
        kid = uuid.uuid4().hex
        key = ECKey.generate_key("P-256", parameters={"kid": kid}, private=True)
        private = orjson.dumps(key.as_dict(private=True))
        session.execute(update(SigningKeyRow).values(active=False))
        session.add(
            SigningKeyRow(
                kid=kid,
                algorithm=ALGORITHM,
                private_jwk_enc=self._server_keys.encrypt(_KEY_PURPOSE, private),
                public_jwk=key.as_dict(private=False),
                active=True,
                created_at=datetime.now(UTC),
            )
        )
        session.flush()
        self._loaded_at = 0.0
        return kid

    def retire(self, session: Session, kid: str) -> None:
        """Stop accepting tokens signed with `kid` (the active key cannot be retired)."""
        session.execute(
            update(SigningKeyRow)
            .where(SigningKeyRow.kid == kid, SigningKeyRow.active.is_(False))
            .values(retired_at=datetime.now(UTC))
        )
        self._loaded_at = 0.0

    def _reload(self, session: Session) -> None:
        rows = session.scalars(select(SigningKeyRow).where(SigningKeyRow.retired_at.is_(None)))
        active: ECKey | None = None
        public: list[Any] = []
        for row in rows:
            public.append(ECKey.import_key(row.public_jwk))
            if row.active:
                blob = self._server_keys.decrypt(_KEY_PURPOSE, row.private_jwk_enc)
                active = ECKey.import_key(orjson.loads(blob))
        with self._lock:
            self._active = active
            self._verify_set = KeySet(public)
            self._kids = frozenset(str(k.kid) for k in public)
            self._verified.clear()
            self._loaded_at = time.monotonic()

    def _fresh(self, session: Session) -> None:
        if time.monotonic() - self._loaded_at > _KEY_RELOAD_SECONDS:
            self._reload(session)

    def sign(self, session: Session, claims: dict[str, Any]) -> str:
        self._fresh(session)
        if self._active is None:
            self.ensure_active_key(session)
            self._reload(session)
        assert self._active is not None
        header = {"alg": ALGORITHM, "kid": self._active.kid, "typ": "JWT"}
        return jwt.encode(header, claims, self._active, algorithms=[ALGORITHM])

    def verify(
        self, session: Session, token: str, *, allow_expired: bool = False
    ) -> dict[str, Any]:
        """Claims of a valid token; raise `AuthenticationFailed` otherwise."""
        self._fresh(session)
        digest = token_digest(token)
        claims = self._verified.get(digest)
        if claims is None:
            claims = self._decode(session, token)
            with self._lock:
                self._verified[digest] = claims
                if len(self._verified) > _VERIFIED_CACHE_SIZE:
                    self._verified.popitem(last=False)
        if not allow_expired and claims.get("exp", 0) <= time.time():
            raise AuthenticationFailed("access token expired")
        return claims

    def _decode(self, session: Session, token: str) -> dict[str, Any]:
        try:
            kid = extract_compact(token.encode()).headers().get("kid")
            if kid not in self._kids:
                self._reload(session)  # rotated by another worker, or retired
            decoded = jwt.decode(token, self._verify_set, algorithms=[ALGORITHM])
        except (JoseError, ValueError) as exc:
            raise AuthenticationFailed(f"invalid access token ({type(exc).__name__})") from None
        claims = dict(decoded.claims)
        if claims.get("iss") != ISSUER or not isinstance(claims.get("exp"), int):
            raise AuthenticationFailed("access token has wrong issuer or no expiry")
        return claims


@dataclass(frozen=True)
class RefreshGrant:
    """What a refresh token stands for (the session it continues)."""

    user_id: str
    family_id: str
    workstation_id: str | None
    client_id: str | None
    scopes: str | None
    launch_patient: str | None


def issue_refresh_token(session: Session, grant: RefreshGrant, *, days: int) -> str:
    token = secrets.token_urlsafe(32)
    now = datetime.now(UTC)
    session.add(
        RefreshTokenRow(
            token_hash=token_digest(token),
            family_id=grant.family_id,
            user_id=grant.user_id,
            workstation_id=grant.workstation_id,
            client_id=grant.client_id,
            scopes=grant.scopes,
            launch_patient=grant.launch_patient,
            issued_at=now,
            expires_at=now + timedelta(days=days),
        )
    )
    return token


class RefreshTokenReused(AuthenticationFailed):
    """A used refresh token came back: its family was revoked."""

    def __init__(self, family_id: str, user_id: str) -> None:
        super().__init__("refresh token reuse: family revoked")
        self.family_id = family_id
        self.user_id = user_id


def rotate_refresh_token(session: Session, token: str, *, days: int) -> tuple[RefreshGrant, str]:
    """Use `token` once: returns its grant and the replacement token.

    A token used before revokes its family (the caller commits that and answers 401).
    """
    row = session.scalar(
        select(RefreshTokenRow)
        .where(RefreshTokenRow.token_hash == token_digest(token))
        .with_for_update()
    )
    now = datetime.now(UTC)
    if row is None or row.revoked_at is not None or row.expires_at <= now:
        raise AuthenticationFailed("refresh token unknown, revoked or expired")
    if row.used_at is not None:
        revoke_family(session, row.family_id)
        raise RefreshTokenReused(row.family_id, row.user_id)
    row.used_at = now
    grant = RefreshGrant(
        row.user_id,
        row.family_id,
        row.workstation_id,
        row.client_id,
        row.scopes,
        row.launch_patient,
    )
    return grant, issue_refresh_token(session, grant, days=days)


def revoke_family(session: Session, family_id: str) -> None:
    session.execute(
        update(RefreshTokenRow)
        .where(RefreshTokenRow.family_id == family_id, RefreshTokenRow.revoked_at.is_(None))
        .values(revoked_at=datetime.now(UTC))
    )


def is_family_revoked(session: Session, family_id: str) -> bool:
    """True once every token of the family is revoked (logout or reuse)."""
    live = session.scalar(
        select(RefreshTokenRow.token_hash)
        .where(RefreshTokenRow.family_id == family_id, RefreshTokenRow.revoked_at.is_(None))
        .limit(1)
    )
    return live is None
