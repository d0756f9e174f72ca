"""Server tokens in the OS keychain per profile and user: never in files."""

from __future__ import annotations

import contextlib
import json

import keyring
import keyring.errors

from desktop.store.device_secret import SERVICE


def _entry(profile_id: str, username: str) -> str:
    return f"tokens:{profile_id}:{username.strip().lower()}"


def save(profile_id: str, username: str, access_token: str, refresh_token: str) -> None:
    value = json.dumps({"access": access_token, "refresh": refresh_token})
    keyring.set_password(SERVICE, _entry(profile_id, username), value)


def load(profile_id: str, username: str) -> tuple[str, str] | None:
    """(access token, refresh token), or None."""
    value = keyring.get_password(SERVICE, _entry(profile_id, username))
    if not value:
        return None
    try:
        data = json.loads(value)
        return str(data["access"]), str(data["refresh"])
    except (ValueError, KeyError, TypeError):
        return None


def delete(profile_id: str, username: str) -> None:
    with contextlib.suppress(keyring.errors.PasswordDeleteError):
        keyring.delete_password(SERVICE, _entry(profile_id, username))
