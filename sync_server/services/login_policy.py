"""Security settings and the sign-in rules built on them: lockout and offline policy.

Read from the environment with the same `EHR_` prefix as `sync_server.config.Settings`
(e.g. `EHR_LOCKOUT_THRESHOLD=5`, `EHR_MFA_REQUIRED_ROLES='["physician"]'`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache

from pydantic_settings import BaseSettings, SettingsConfigDict


class SecuritySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="EHR_", extra="ignore")

    access_token_minutes: int = 10
    refresh_token_days: int = 14
    #: Failed sign-ins within `lockout_window_minutes` that lock the account.
    lockout_threshold: int = 5
    lockout_window_minutes: int = 15
    lockout_minutes: int = 15
    #: Roles whose users must give a TOTP code (every role by default).
    mfa_required_roles: frozenset[str] = frozenset({"physician", "nurse", "front_desk", "admin"})
    #: Days a workstation may unlock with cached credentials since the last online sign-in.
    offline_signin_days: int = 7
    idle_lock_minutes: int = 10
    break_glass_minutes: int = 60
    authorization_code_seconds: int = 60
    password_min_length: int = 12
    #: Secret (any string, 32+ characters) from which the audit-head HMAC key and the
    #: signing-key encryption key are derived. Unset: a random one kept in the data dir.
    server_secret: str | None = None


@cache
def security_settings() -> SecuritySettings:
    return SecuritySettings()


@dataclass(frozen=True)
class LockoutState:
    failed_attempts: int
    window_start: datetime | None
    locked_until: datetime | None


def is_locked(state: LockoutState, now: datetime) -> bool:
    return state.locked_until is not None and state.locked_until > now


def after_failure(state: LockoutState, now: datetime, settings: SecuritySettings) -> LockoutState:
    """The lockout state after one more failed sign-in at `now`."""
    window = timedelta(minutes=settings.lockout_window_minutes)
    if state.window_start is None or now - state.window_start > window:
        attempts, start = 1, now
    else:
        attempts, start = state.failed_attempts + 1, state.window_start
    locked_until = state.locked_until
    if attempts >= settings.lockout_threshold:
        locked_until = now + timedelta(minutes=settings.lockout_minutes)
    return LockoutState(attempts, start, locked_until)


def mfa_required(roles: frozenset[str] | set[str], settings: SecuritySettings) -> bool:
    return bool(settings.mfa_required_roles & set(roles))


def policy_object(settings: SecuritySettings, *, wipe: bool) -> dict[str, int | bool]:
    """The login policy the desktop follows (contract: `policy` in /auth/login)."""
    return {
        "offline_signin_days": settings.offline_signin_days,
        "idle_lock_minutes": settings.idle_lock_minutes,
        "wipe": wipe,
    }
