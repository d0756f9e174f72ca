"""FHIR `OperationOutcome` builders: the error currency of the API.

Plain dicts (FHIR JSON), so both sides can build and read them without a model.
"""

from __future__ import annotations

from typing import Any

from shared_models.errors import (
    AuthenticationFailed,
    ClinicError,
    Forbidden,
    NotFound,
    ValidationFailed,
    VersionConflict,
)

Outcome = dict[str, Any]


def issue(
    severity: str, code: str, diagnostics: str, expression: str | None = None
) -> dict[str, Any]:
    entry: dict[str, Any] = {"severity": severity, "code": code, "diagnostics": diagnostics}
    if expression:
        entry["expression"] = [expression]
    return entry


def outcome(*issues: dict[str, Any]) -> Outcome:
    return {"resourceType": "OperationOutcome", "issue": list(issues)}


def not_found(what: str) -> Outcome:
    return outcome(issue("error", "not-found", f"{what} not found"))


def bad_request(diagnostics: str, expression: str | None = None) -> Outcome:
    return outcome(issue("error", "invalid", diagnostics, expression))


def forbidden(diagnostics: str = "Forbidden") -> Outcome:
    return outcome(issue("error", "forbidden", diagnostics))


def unauthorized(diagnostics: str = "Authentication required") -> Outcome:
    return outcome(issue("error", "login", diagnostics))


def conflict(diagnostics: str) -> Outcome:
    return outcome(issue("error", "conflict", diagnostics))


def precondition_failed(diagnostics: str) -> Outcome:
    return outcome(issue("error", "conflict", diagnostics))


def server_error() -> Outcome:
    return outcome(issue("fatal", "exception", "Internal server error"))


def information(diagnostics: str) -> Outcome:
    return outcome(issue("information", "informational", diagnostics))


def from_error(error: ClinicError) -> tuple[int, Outcome]:
    """HTTP status and outcome for an error raised anywhere in the stack."""
    if isinstance(error, ValidationFailed):
        issues = [issue("error", "invalid", msg, expr or None) for expr, msg in error.issues]
        return 400, outcome(*(issues or [issue("error", "invalid", str(error))]))
    if isinstance(error, NotFound):
        return 404, outcome(issue("error", "not-found", str(error)))
    if isinstance(error, AuthenticationFailed):
        return 401, unauthorized(str(error))
    if isinstance(error, Forbidden):
        return 403, forbidden(str(error))
    if isinstance(error, VersionConflict):
        return 412, precondition_failed(str(error))
    return 500, server_error()


def diagnostics_of(body: Any) -> str:
    """Human-readable summary of an OperationOutcome (for logs and messages)."""
    if not isinstance(body, dict) or body.get("resourceType") != "OperationOutcome":
        return ""
    parts = []
    for entry in body.get("issue", []):
        text = entry.get("diagnostics") or entry.get("code", "")
        where = ",".join(entry.get("expression", []))
        parts.append(f"{where}: {text}" if where else text)
    return "; ".join(parts)
