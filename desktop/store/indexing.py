"""Extract the search-index rows of a FHIR resource (pure, no I/O).

The store keeps each resource's JSON exactly as received; these rows are what
the chart and the patient search query instead of parsing JSON.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, NamedTuple

from shared_models.vitals import VITAL_SIGNS

#: FHIR identifier type code of a medical record number (v2 table 0203).
MRN_TYPE_CODE = "MR"
_VITAL_LABELS = {v.loinc: v.label for v in VITAL_SIGNS.values()}
_PATIENT_REFERENCE_FIELDS = ("subject", "patient", "beneficiary")


@dataclass(frozen=True)
class PatientRow:
    patient_id: str
    display_name: str
    family: str
    given: str
    mrn: str | None
    birth_date: str | None
    sex: str | None


class ObservationRow(NamedTuple):
    """One row of `observation_index` (a NamedTuple: charts build thousands of them)."""

    observation_id: str
    patient_id: str
    code: str
    obs_code: str
    label: str
    vital: bool
    effective: str
    value: float | None
    unit: str | None


@dataclass(frozen=True)
class AppointmentRow:
    appointment_id: str
    day: str | None
    start: str | None
    location_id: str | None
    practitioner_id: str | None
    patient_id: str | None


def reference_id(reference: Any, resource_type: str) -> str | None:
    """Id in `Type/ID` (or a bundle's `urn:uuid:ID`) when it names `resource_type`."""
    if not isinstance(reference, dict):
        return None
    ref = reference.get("reference")
    if not isinstance(ref, str):
        return None
    if ref.startswith(resource_type) and ref[len(resource_type) : len(resource_type) + 1] == "/":
        rid = ref[len(resource_type) + 1 :]  # the usual relative `Type/ID`: no split needed
        if "/" not in rid:
            return rid
    if ref.startswith("urn:uuid:"):
        return ref[len("urn:uuid:") :]
    parts = ref.split("/")
    if len(parts) >= 2 and parts[-2] == resource_type:
        return parts[-1]
    return None


def patient_of(resource: dict[str, Any]) -> str | None:
    """The patient whose compartment holds `resource` (None for shared resources)."""
    rtype = resource.get("resourceType")
    if rtype == "Patient":
        rid = resource.get("id")
        return rid if isinstance(rid, str) else None
    for field in _PATIENT_REFERENCE_FIELDS:
        found = reference_id(resource.get(field), "Patient")
        if found:
            return found
    if rtype == "Appointment":
        for participant in resource.get("participant", []):
            found = reference_id(participant.get("actor"), "Patient")
            if found:
                return found
    return None


def instant(value: Any) -> str | None:
    """An ISO date or dateTime as a sortable UTC instant `YYYY-MM-DDTHH:MM:SSZ`."""
    if not isinstance(value, str) or len(value) < 4:
        return None
    return _utc_instant(value)


@lru_cache(maxsize=4096)
def _utc_instant(value: str) -> str | None:
    """Cached: the observations of one encounter share their time (a page repeats it ~10x)."""
    text = value
    if len(text) == 4:
        text += "-01-01"
    elif len(text) == 7:
        text += "-01"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    # isoformat, not strftime: the same text at a fraction of the cost.
    return moment.astimezone(UTC).replace(microsecond=0, tzinfo=None).isoformat() + "Z"


def _first_code(concept: Any) -> tuple[str, str]:
    """(code, label) of a CodeableConcept, LOINC preferred."""
    if not isinstance(concept, dict):
        return "", ""
    first: dict[str, Any] | None = None
    for coding in concept.get("coding", ()):
        if isinstance(coding, dict):
            if coding.get("system") == "http://loinc.org":
                first = coding
                break
            if first is None:
                first = coding
    code = str(first.get("code", "")) if first is not None else ""
    label = (
        _VITAL_LABELS.get(code)
        or concept.get("text")
        or (first.get("display", "") if first is not None else "")
    )
    return code, str(label or code)


def _quantity(holder: dict[str, Any]) -> tuple[float | None, str | None]:
    quantity = holder.get("valueQuantity")
    if not isinstance(quantity, dict):
        return None, None
    value = quantity.get("value")
    unit = quantity.get("unit") or quantity.get("code")
    return (float(value) if isinstance(value, int | float) else None), unit


def patient_row(resource: dict[str, Any]) -> PatientRow | None:
    rid = resource.get("id")
    if resource.get("resourceType") != "Patient" or not isinstance(rid, str):
        return None
    names = [n for n in resource.get("name", []) if isinstance(n, dict)]
    official = next((n for n in names if n.get("use") == "official"), names[0] if names else {})
    family = str(official.get("family", ""))
    given = " ".join(str(g) for g in official.get("given", []))
    display = f"{family}, {given}".strip(", ") if family or given else str(official.get("text", ""))
    return PatientRow(
        patient_id=rid,
        display_name=display,
        family=family,
        given=given,
        mrn=mrn_of(resource),
        birth_date=resource.get("birthDate"),
        sex=resource.get("gender"),
    )


def all_names(resource: dict[str, Any]) -> str:
    """Every name part of a Patient, for the full-text index."""
    parts: list[str] = []
    for name in resource.get("name", []):
        if isinstance(name, dict):
            parts.extend(str(g) for g in name.get("given", []))
            if name.get("family"):
                parts.append(str(name["family"]))
    return " ".join(parts)


def mrn_of(resource: dict[str, Any]) -> str | None:
    """The identifier typed MR, else the first identifier's value."""
    identifiers = [i for i in resource.get("identifier", []) if isinstance(i, dict)]
    for ident in identifiers:
        codings = (ident.get("type") or {}).get("coding", [])
        if any(c.get("code") == MRN_TYPE_CODE for c in codings if isinstance(c, dict)):
            return str(ident.get("value")) if ident.get("value") else None
    return str(identifiers[0].get("value")) if identifiers and identifiers[0].get("value") else None


def observation_rows(resource: dict[str, Any], patient_id: str | None) -> list[ObservationRow]:
    rid = resource.get("id")
    if resource.get("resourceType") != "Observation" or not patient_id or not isinstance(rid, str):
        return []
    effective = instant(
        resource.get("effectiveDateTime")
        or (resource.get("effectivePeriod") or {}).get("start")
        or resource.get("effectiveInstant")
        or resource.get("issued")
    )
    if effective is None:
        return []
    vital = _has_category(resource, "vital-signs")
    obs_code, obs_label = _first_code(resource.get("code"))
    value, unit = _quantity(resource)
    rows = [
        ObservationRow(
            rid, patient_id, obs_code, obs_code, obs_label, vital, effective, value, unit
        )
    ]
    for component in resource.get("component", []):
        if isinstance(component, dict):
            code, label = _first_code(component.get("code"))
            value, unit = _quantity(component)
            rows.append(
                ObservationRow(
                    rid, patient_id, code, obs_code, label, vital, effective, value, unit
                )
            )
    return rows


def _has_category(resource: dict[str, Any], code: str) -> bool:
    for category in resource.get("category", ()):
        if isinstance(category, dict):
            for coding in category.get("coding", ()):
                if isinstance(coding, dict) and coding.get("code") == code:
                    return True
    return False


def appointment_row(resource: dict[str, Any]) -> AppointmentRow | None:
    rid = resource.get("id")
    if resource.get("resourceType") != "Appointment" or not isinstance(rid, str):
        return None
    start = instant(resource.get("start"))
    location = practitioner = None
    for participant in resource.get("participant", []):
        actor = participant.get("actor") if isinstance(participant, dict) else None
        location = location or reference_id(actor, "Location")
        practitioner = practitioner or reference_id(actor, "Practitioner")
    return AppointmentRow(
        appointment_id=rid,
        day=start[:10] if start else None,
        start=start,
        location_id=location,
        practitioner_id=practitioner,
        patient_id=patient_of(resource),
    )
