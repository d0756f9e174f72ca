"""FHIR resources for the chart's edits: allergies, problems, medications.

Pure builders (no I/O): each returns the new or changed resource as FHIR JSON for
`Workstation.save_resource`. Clinical safety rules live here, not in widgets:
an allergy is never deleted, only marked "entered in error" with a reason; a
medication is discontinued with a reason, never removed.
"""

from __future__ import annotations

import copy
import uuid
from datetime import UTC, date, datetime
from typing import Any

from shared_models.fhir_constants import (
    ALLERGY_CLINICAL,
    ALLERGY_VERIFICATION,
    CONDITION_CATEGORY,
    CONDITION_CLINICAL,
)

CONDITION_VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"

#: Reaction severity (FHIR `reaction.severity`) as the form offers it.
SEVERITIES = ("mild", "moderate", "severe")
#: Criticality: the risk of a future severe reaction.
CRITICALITIES = ("low", "high", "unable-to-assess")


def _concept(system: str, code: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code}]}


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _required(value: str, what: str) -> str:
    text = value.strip()
    if not text:
        raise ValueError(f"{what} is required")
    return text


def new_allergy(
    patient_id: str,
    substance: str,
    *,
    reaction: str = "",
    severity: str = "",
    criticality: str = "",
    recorder: str | None = None,
) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "AllergyIntolerance",
        "id": str(uuid.uuid4()),
        "clinicalStatus": _concept(ALLERGY_CLINICAL, "active"),
        "verificationStatus": _concept(ALLERGY_VERIFICATION, "confirmed"),
        "code": {"text": _required(substance, "Substance")},
        "patient": {"reference": f"Patient/{patient_id}"},
        "recordedDate": _now(),
    }
    if criticality:
        if criticality not in CRITICALITIES:
            raise ValueError("unknown criticality")
        resource["criticality"] = criticality
    if reaction.strip():
        entry: dict[str, Any] = {"manifestation": [{"text": reaction.strip()}]}
        if severity:
            if severity not in SEVERITIES:
                raise ValueError("unknown severity")
            entry["severity"] = severity
        resource["reaction"] = [entry]
    if recorder:
        resource["recorder"] = {"reference": recorder}
    return resource


def allergy_entered_in_error(resource: dict[str, Any], reason: str) -> dict[str, Any]:
    """The allergy kept, marked as recorded by mistake (FHIR: no clinicalStatus then)."""
    changed = copy.deepcopy(resource)
    changed["verificationStatus"] = _concept(ALLERGY_VERIFICATION, "entered-in-error")
    changed.pop("clinicalStatus", None)
    changed.setdefault("note", []).append(
        {"text": f"Entered in error: {_required(reason, 'A reason')}", "time": _now()}
    )
    return changed


def new_problem(patient_id: str, text: str, *, onset: date | None = None) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Condition",
        "id": str(uuid.uuid4()),
        "clinicalStatus": _concept(CONDITION_CLINICAL, "active"),
        "verificationStatus": _concept(CONDITION_VERIFICATION, "confirmed"),
        "category": [_concept(CONDITION_CATEGORY, "problem-list-item")],
        "code": {"text": _required(text, "The problem")},
        "subject": {"reference": f"Patient/{patient_id}"},
        "recordedDate": _now(),
    }
    if onset:
        resource["onsetDateTime"] = onset.isoformat()
    return resource


def resolve_problem(resource: dict[str, Any], when: date | None = None) -> dict[str, Any]:
    changed = copy.deepcopy(resource)
    changed["clinicalStatus"] = _concept(CONDITION_CLINICAL, "resolved")
    changed["abatementDateTime"] = (when or datetime.now(UTC).date()).isoformat()
    return changed


def new_medication(
    patient_id: str, medication: str, *, dosage: str = "", requester: str | None = None
) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "MedicationRequest",
        "id": str(uuid.uuid4()),
        "status": "active",
        "intent": "order",
        "medicationCodeableConcept": {"text": _required(medication, "The medication")},
        "subject": {"reference": f"Patient/{patient_id}"},
        "authoredOn": _now(),
    }
    if dosage.strip():
        resource["dosageInstruction"] = [{"text": dosage.strip()}]
    if requester:
        resource["requester"] = {"reference": requester}
    return resource


def discontinue_medication(resource: dict[str, Any], reason: str) -> dict[str, Any]:
    """Stopped, with the reason; a MedicationStatement becomes `stopped` the same way."""
    changed = copy.deepcopy(resource)
    changed["status"] = "stopped"
    concept = {"text": _required(reason, "A reason")}
    # MedicationRequest.statusReason is 0..1, MedicationStatement.statusReason 0..*.
    is_statement = changed.get("resourceType") == "MedicationStatement"
    changed["statusReason"] = [concept] if is_statement else concept
    return changed
