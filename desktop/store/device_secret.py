"""The per-device secret in the OS keychain (through `keyring`), one per profile.

Without it no keyslot of the profile opens: copying the profile directory to
another machine gives nothing. Tests point `keyring` at a file backend in a
temporary folder; production uses the platform keychain.
"""

from __future__ import annotations

import base64
import contextlib
import secrets

import keyring
import keyring.errors

SERVICE = "ehr-desktop"
SECRET_BYTES = 32


def _entry(profile_id: str) -> str:
    return f"device-secret:{profile_id}"


def load(profile_id: str) -> bytes | None:
    """The device secret, or None when the keychain has no (valid) entry."""
    value = keyring.get_password(SERVICE, _entry(profile_id))
    if not value:
        return None
    try:
        secret = base64.b64decode(value, validate=True)
    except ValueError:
        return None
    return secret if len(secret) == SECRET_BYTES else None


def create(profile_id: str) -> bytes:
    """Make and store a new device secret (replacing any old one)."""
    secret = secrets.token_bytes(SECRET_BYTES)
    keyring.set_password(SERVICE, _entry(profile_id), base64.b64encode(secret).decode())
    return secret


def delete(profile_id: str) -> None:
    with contextlib.suppress(keyring.errors.PasswordDeleteError):
        keyring.delete_password(SERVICE, _entry(profile_id))
