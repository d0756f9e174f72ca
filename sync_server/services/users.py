"""User accounts: creation, roles and locations, disabling, MFA enrolment and reset, unlock.

Functions take the caller's session and never commit: the route or command that
calls them commits once, together with the audit row.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from shared_models.errors import NotFound, ValidationFailed
from sync_server.db.identity_models import UserRow
from sync_server.services import passwords, totp
from sync_server.services.login_policy import SecuritySettings
from sync_server.services.permissions import ROLES
from sync_server.services.server_keys import ServerKeys

TOTP_PURPOSE = "totp-secrets"


@dataclass(frozen=True)
class Enrolment:
    """What a user scans into an authenticator app. Shown once, never logged."""

    secret: str
    otpauth_uri: str
    qr_svg: str

    def as_dict(self) -> dict[str, str]:
        return {"otpauth_uri": self.otpauth_uri, "qr_svg": self.qr_svg}


def _check_roles(roles: list[str]) -> list[str]:
    unknown = sorted(set(roles) - set(ROLES))
    if not roles or unknown:
        raise ValidationFailed(
            "bad roles", issues=[("roles", f"Roles must be among {', '.join(ROLES)}")]
        )
    return sorted(set(roles))


def _check_username(username: str) -> str:
    if not username or len(username) > 64 or not username.isprintable() or " " in username:
        raise ValidationFailed(
            "bad username", issues=[("username", "1-64 printable characters, no spaces")]
        )
    return username


def get_user(session: Session, username: str) -> UserRow:
    user = session.scalar(select(UserRow).where(UserRow.username == username))
    if user is None:
        raise NotFound("User not found")
    return user


def create_user(
    session: Session,
    keys: ServerKeys,
    settings: SecuritySettings,
    *,
    username: str,
    password: str,
    roles: list[str],
    location_ids: list[str],
    practitioner_id: str | None = None,
) -> tuple[UserRow, Enrolment]:
    """A new user with a fresh TOTP secret; returns the enrolment to hand over once."""
    _check_username(username)
    passwords.check_password_policy(
        password, username=username, min_length=settings.password_min_length
    )
    if session.scalar(select(UserRow.id).where(UserRow.username == username)) is not None:
        raise ValidationFailed("username taken", issues=[("username", "Username already exists")])
    now = datetime.now(UTC)
    user = UserRow(
        id=str(uuid.uuid4()),
        username=username,
        password_hash=passwords.hash_password(password),
        roles=_check_roles(roles),
        location_ids=sorted(set(location_ids)),
        practitioner_id=practitioner_id,
        totp_last_step=0,
        failed_attempts=0,
        disabled=False,
        created_at=now,
        updated_at=now,
    )
    enrolment = _new_enrolment(user, keys)
    session.add(user)
    session.flush()
    return user, enrolment


def _new_enrolment(user: UserRow, keys: ServerKeys) -> Enrolment:
    secret = totp.new_secret()
    user.totp_secret_enc = keys.encrypt(TOTP_PURPOSE, secret.encode())
    user.totp_last_step = 0
    uri = totp.provisioning_uri(secret, user.username)
    return Enrolment(secret, uri, totp.qr_svg(uri))


def totp_secret(user: UserRow, keys: ServerKeys) -> str | None:
    if user.totp_secret_enc is None:
        return None
    return keys.decrypt(TOTP_PURPOSE, user.totp_secret_enc).decode()


def reset_mfa(session: Session, keys: ServerKeys, username: str) -> Enrolment:
    """Replace the user's TOTP secret (lost phone); the old codes stop working."""
    user = get_user(session, username)
    enrolment = _new_enrolment(user, keys)
    user.updated_at = datetime.now(UTC)
    return enrolment


def update_user(
    session: Session,
    username: str,
    *,
    roles: list[str] | None = None,
    location_ids: list[str] | None = None,
    practitioner_id: str | None = None,
    disabled: bool | None = None,
) -> UserRow:
    user = get_user(session, username)
    if roles is not None:
        user.roles = _check_roles(roles)
    if location_ids is not None:
        user.location_ids = sorted(set(location_ids))
    if practitioner_id is not None:
        user.practitioner_id = practitioner_id or None
    if disabled is not None:
        user.disabled = disabled
    user.updated_at = datetime.now(UTC)
    return user


def unlock(session: Session, username: str) -> UserRow:
    user = get_user(session, username)
    user.failed_attempts = 0
    user.failed_window_start = None
    user.locked_until = None
    user.updated_at = datetime.now(UTC)
    return user


def describe(user: UserRow) -> dict[str, Any]:
    """The admin view of a user (no hash, no secret)."""
    return {
        "username": user.username,
        "roles": list(user.roles),
        "locations": list(user.location_ids),
        "practitioner": f"Practitioner/{user.practitioner_id}" if user.practitioner_id else None,
        "disabled": user.disabled,
        "mfa_enrolled": user.totp_secret_enc is not None,
        "failed_attempts": user.failed_attempts,
        "locked_until": user.locked_until.isoformat() if user.locked_until else None,
    }
