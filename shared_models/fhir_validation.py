"""Validate FHIR R4 JSON with the `fhir.resources` R4B models.

Errors name the element (`Patient.name[0].given`) and never echo the submitted
value, so an OperationOutcome built from them carries no PHI. A resource first
meets the compiled schema check of `fhir_schema` (about 15x cheaper); only one
that fails it goes through the pydantic models, which give the verdict.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

from shared_models.errors import ValidationFailed
from shared_models.fhir_schema import fast_validator, passes_fast_check

#: The resource types the product stores and exchanges (DESIGN.md).
SUPPORTED_TYPES: frozenset[str] = frozenset(
    {
        "Patient",
        "Practitioner",
        "PractitionerRole",
        "Organization",
        "Location",
        "Encounter",
        "Observation",
        "Condition",
        "AllergyIntolerance",
        "MedicationRequest",
        "MedicationStatement",
        "MedicationAdministration",
        "Immunization",
        "Procedure",
        "DocumentReference",
        "Composition",
        "Appointment",
        "Schedule",
        "Slot",
        "Task",
        "Communication",
        "Device",
        "Provenance",
        "AuditEvent",
        "CarePlan",
        "CareTeam",
        "DiagnosticReport",
        "Claim",
        "ExplanationOfBenefit",
        "ImagingStudy",
        "Goal",
        "ServiceRequest",
        "Medication",
        "SupplyDelivery",
    }
)


@cache
def _model(resource_type: str) -> Any:
    return get_fhir_model_class(resource_type)


def _path(resource_type: str, loc: tuple[Any, ...]) -> str:
    out = resource_type
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part not in ("__root__",):
            out += f".{part}"
    return out


def validate_resource(resource: Any, expected_type: str | None = None) -> str:
    """Check `resource` is a valid FHIR R4 resource of a supported type.

    Returns the resource type. Raises `ValidationFailed` naming each bad element.
    """
    if not isinstance(resource, dict):
        raise ValidationFailed("Body is not a JSON object", issues=[("", "Expected a JSON object")])
    resource_type = resource.get("resourceType")
    if not isinstance(resource_type, str) or not resource_type:
        raise ValidationFailed(
            "resourceType missing", issues=[("resourceType", "resourceType is required")]
        )
    if expected_type is not None and resource_type != expected_type:
        raise ValidationFailed(
            "resourceType does not match the URL",
            issues=[("resourceType", f"Expected {expected_type}, got {resource_type}")],
        )
    if resource_type not in SUPPORTED_TYPES:
        raise ValidationFailed(
            "unsupported resource type",
            issues=[("resourceType", f"Resource type {resource_type} is not supported")],
        )
    if passes_fast_check(resource, resource_type):
        return resource_type
    try:
        _model(resource_type).model_validate(resource)
    except ValidationError as exc:
        issues = [
            (_path(resource_type, tuple(err.get("loc", ()))), str(err.get("msg", "invalid")))
            for err in exc.errors(include_input=False, include_url=False)
        ]
        raise ValidationFailed(f"{resource_type} is not valid", issues=issues) from None
    return resource_type


def warm_validators() -> None:
    """Build the fast check of every supported type now (about 2 s of CPU in all).

    Otherwise each type's first resource pays for its own build, inside
    whichever request or sync push brings it.
    """
    for resource_type in sorted(SUPPORTED_TYPES):
        fast_validator(resource_type)
