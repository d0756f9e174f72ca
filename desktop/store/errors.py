"""Errors of the local store and the workstation sign-in, with words for a clinician."""

from __future__ import annotations

from shared_models.errors import AuthenticationFailed, ClinicError, StoreError


class ProfileInUse(StoreError):
    user_message = (
        "This workstation profile is already open in another window or program. "
        "Close it there first."
    )


class DatabaseDamaged(StoreError):
    """The database file does not decrypt (damaged, truncated, or another key)."""

    user_message = (
        "The local chart store is damaged. It has been set aside (still encrypted) "
        "and the charts will download again after an online sign-in."
    )


class KeyslotDamaged(StoreError):
    user_message = (
        "This workstation's sign-in record for you is damaged or was changed. "
        "Sign in online (with your code) to repair it."
    )


class DeviceSecretMissing(StoreError):
    user_message = (
        "This workstation's key is missing from the system keychain. Sign in online "
        "(with your code); the charts will then download again."
    )


class NoOfflineSignIn(AuthenticationFailed):
    """Offline sign-in is not possible (never online here, or the window expired)."""

    user_message = "You need to sign in online (with your code) on this workstation."


class WrongPassword(AuthenticationFailed):
    user_message = "The password is not correct. Check it and try again."


class SessionLocked(ClinicError):
    user_message = "The session is locked. Enter your password to continue."
    help_topic = "sign-in"


class WorkstationWiped(ClinicError):
    user_message = (
        "This workstation was withdrawn from use by IT: its local charts have been erased. "
        "Call IT support."
    )
    help_topic = "access"
