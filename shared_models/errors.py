"""The error tree both sides raise: a message for a clinician, detail for the log.

`user_message` is what a person sees (no PHI, no stack trace); `help_topic` names
the help page that says what to do next. The technical detail goes to the log.
"""

from __future__ import annotations


class ClinicError(Exception):
    """Base of every error the product raises on purpose."""

    user_message: str = "Something went wrong. Please try again or call IT support."
    help_topic: str = "general"

    def __init__(self, detail: str = "", *, user_message: str | None = None) -> None:
        super().__init__(detail or self.user_message)
        self.detail = detail
        if user_message is not None:
            self.user_message = user_message


class ValidationFailed(ClinicError):
    """A resource or request does not satisfy the FHIR model or a clinical rule."""

    user_message = "The record could not be saved because some information is not valid."
    help_topic = "validation"

    def __init__(
        self,
        detail: str = "",
        *,
        issues: list[tuple[str, str]] | None = None,
        user_message: str | None = None,
    ) -> None:
        super().__init__(detail, user_message=user_message)
        #: (FHIRPath-ish expression of the element, what is wrong with it)
        self.issues: list[tuple[str, str]] = issues or []


class NotFound(ClinicError):
    user_message = "The record was not found. It may have been removed."
    help_topic = "not-found"


class Forbidden(ClinicError):
    user_message = "You do not have permission to do this."
    help_topic = "access"


class AuthenticationFailed(ClinicError):
    user_message = "Sign-in failed. Check your username, password and code."
    help_topic = "sign-in"


class VersionConflict(ClinicError):
    """The resource changed since the version the caller based its edit on."""

    user_message = "Someone else changed this record. Reload it and try again."
    help_topic = "conflicts"


class NetworkUnavailable(ClinicError):
    user_message = "The server cannot be reached. You can keep working offline."
    help_topic = "offline"


class StoreError(ClinicError):
    user_message = "The local chart store could not be opened. Call IT support."
    help_topic = "local-store"
