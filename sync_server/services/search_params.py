"""The search parameters the server supports, and their extraction from a resource.

Each parameter names a kind (token, string, date, reference, quantity) and the
element paths it reads (choice types spelt out: `effectiveDateTime|effectivePeriod`).
`index_rows()` turns a resource into the rows of the `search_*` tables; the
CapabilityStatement and the search parser read the same table, so what the
server says it supports is exactly what it indexes.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

Kind = Literal["token", "string", "date", "reference", "quantity"]


#: One step of an element path: the key, and an optional `[key=value]` filter on it.
_Step = tuple[str, tuple[str, str] | None]


def _parse_paths(paths: tuple[str, ...]) -> tuple[tuple[_Step, ...], ...]:
    """Every `|` alternative of `paths` as its steps."""
    compiled = []
    for path in paths:
        for alternative in path.split("|"):
            steps: list[_Step] = []
            for step in alternative.split("."):
                condition: tuple[str, str] | None = None
                if step.endswith("]") and "[" in step:
                    step, _, cond = step[:-1].partition("[")
                    key, _, expected = cond.partition("=")
                    condition = (key, expected)
                steps.append((step, condition))
            compiled.append(tuple(steps))
    return tuple(compiled)


@dataclass(frozen=True)
class SearchParam:
    name: str
    kind: Kind
    #: Dotted element paths; `a|b` alternatives; `telecom[system=phone]` filters a list.
    paths: tuple[str, ...]
    #: Reference targets this parameter accepts (empty: any type).
    targets: tuple[str, ...] = ()
    #: `paths` parsed once (extraction runs for every resource written).
    steps: tuple[tuple[_Step, ...], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "steps", _parse_paths(self.paths))


def _p(name: str, kind: Kind, *paths: str, targets: tuple[str, ...] = ()) -> SearchParam:
    return SearchParam(name, kind, paths, targets)


PATIENT = ("Patient",)
_HUMAN_NAME = "name"
_SUBJECT_PATIENT = _p("patient", "reference", "subject", targets=PATIENT)
_PATIENT_PATIENT = _p("patient", "reference", "patient", targets=PATIENT)


def _clinical(
    *extra: SearchParam, patient: SearchParam = _PATIENT_PATIENT
) -> dict[str, SearchParam]:
    params = {p.name: p for p in (patient, *extra)}
    if patient.paths == ("subject",):
        params["subject"] = _p("subject", "reference", "subject")
    return params


SEARCH_PARAMS: dict[str, dict[str, SearchParam]] = {
    "Patient": {
        p.name: p
        for p in (
            _p("name", "string", _HUMAN_NAME),
            _p("family", "string", "name.family"),
            _p("given", "string", "name.given"),
            _p("identifier", "token", "identifier"),
            _p("birthdate", "date", "birthDate"),
            _p("gender", "token", "gender"),
            _p("phone", "token", "telecom[system=phone]"),
            _p("email", "token", "telecom[system=email]"),
            _p("address-city", "string", "address.city"),
            _p("address-postalcode", "string", "address.postalCode"),
            _p("active", "token", "active"),
            _p("general-practitioner", "reference", "generalPractitioner"),
            _p("organization", "reference", "managingOrganization"),
        )
    },
    "Practitioner": {
        p.name: p
        for p in (
            _p("name", "string", _HUMAN_NAME),
            _p("family", "string", "name.family"),
            _p("given", "string", "name.given"),
            _p("identifier", "token", "identifier"),
            _p("active", "token", "active"),
        )
    },
    "PractitionerRole": {
        p.name: p
        for p in (
            _p("practitioner", "reference", "practitioner"),
            _p("location", "reference", "location"),
            _p("organization", "reference", "organization"),
            _p("role", "token", "code"),
        )
    },
    "Organization": {
        p.name: p
        for p in (
            _p("name", "string", "name", "alias"),
            _p("identifier", "token", "identifier"),
            _p("active", "token", "active"),
        )
    },
    "Location": {
        p.name: p
        for p in (
            _p("name", "string", "name", "alias"),
            _p("identifier", "token", "identifier"),
            _p("address-city", "string", "address.city"),
            _p("status", "token", "status"),
            _p("organization", "reference", "managingOrganization"),
        )
    },
    "Encounter": _clinical(
        _p("date", "date", "period"),
        _p("status", "token", "status"),
        _p("class", "token", "class"),
        _p("type", "token", "type"),
        _p("location", "reference", "location.location"),
        _p("practitioner", "reference", "participant.individual", targets=("Practitioner",)),
        _p("participant", "reference", "participant.individual"),
        patient=_SUBJECT_PATIENT,
    ),
    "Observation": _clinical(
        _p("code", "token", "code"),
        _p("category", "token", "category"),
        _p("date", "date", "effectiveDateTime|effectivePeriod|effectiveInstant"),
        _p("status", "token", "status"),
        _p("value-quantity", "quantity", "valueQuantity", "component.valueQuantity"),
        _p("component-code", "token", "component.code"),
        _p("encounter", "reference", "encounter"),
        patient=_SUBJECT_PATIENT,
    ),
    "Condition": _clinical(
        _p("clinical-status", "token", "clinicalStatus"),
        _p("verification-status", "token", "verificationStatus"),
        _p("code", "token", "code"),
        _p("category", "token", "category"),
        _p("onset-date", "date", "onsetDateTime|onsetPeriod"),
        _p("encounter", "reference", "encounter"),
        patient=_SUBJECT_PATIENT,
    ),
    "AllergyIntolerance": _clinical(
        _p("clinical-status", "token", "clinicalStatus"),
        _p("verification-status", "token", "verificationStatus"),
        _p("code", "token", "code"),
        _p("criticality", "token", "criticality"),
    ),
    "MedicationRequest": _clinical(
        _p("status", "token", "status"),
        _p("intent", "token", "intent"),
        _p("code", "token", "medicationCodeableConcept"),
        _p("authoredon", "date", "authoredOn"),
        _p("requester", "reference", "requester"),
        _p("encounter", "reference", "encounter"),
        patient=_SUBJECT_PATIENT,
    ),
    "MedicationStatement": _clinical(
        _p("status", "token", "status"),
        _p("code", "token", "medicationCodeableConcept"),
        patient=_SUBJECT_PATIENT,
    ),
    "MedicationAdministration": _clinical(
        _p("status", "token", "status"),
        _p("code", "token", "medicationCodeableConcept"),
        _p("effective-time", "date", "effectiveDateTime|effectivePeriod"),
        patient=_SUBJECT_PATIENT,
    ),
    "Immunization": _clinical(
        _p("status", "token", "status"),
        _p("vaccine-code", "token", "vaccineCode"),
        _p("date", "date", "occurrenceDateTime"),
    ),
    "Procedure": _clinical(
        _p("status", "token", "status"),
        _p("code", "token", "code"),
        _p("date", "date", "performedDateTime|performedPeriod"),
        patient=_SUBJECT_PATIENT,
    ),
    "DocumentReference": _clinical(
        _p("type", "token", "type"),
        _p("category", "token", "category"),
        _p("date", "date", "date"),
        _p("status", "token", "status"),
        _p("author", "reference", "author"),
        _p("encounter", "reference", "context.encounter"),
        patient=_SUBJECT_PATIENT,
    ),
    "Composition": _clinical(
        _p("type", "token", "type"),
        _p("status", "token", "status"),
        _p("date", "date", "date"),
        _p("author", "reference", "author"),
        patient=_SUBJECT_PATIENT,
    ),
    "Appointment": _clinical(
        _p("practitioner", "reference", "participant.actor", targets=("Practitioner",)),
        _p("location", "reference", "participant.actor", targets=("Location",)),
        _p("actor", "reference", "participant.actor"),
        _p("date", "date", "start"),
        _p("status", "token", "status"),
        _p("slot", "reference", "slot"),
        patient=_p("patient", "reference", "participant.actor", targets=PATIENT),
    ),
    "Schedule": {
        p.name: p
        for p in (
            _p("actor", "reference", "actor"),
            _p("active", "token", "active"),
            _p("date", "date", "planningHorizon"),
        )
    },
    "Slot": {
        p.name: p
        for p in (
            _p("schedule", "reference", "schedule", targets=("Schedule",)),
            _p("start", "date", "start"),
            _p("status", "token", "status"),
        )
    },
    "DiagnosticReport": _clinical(
        _p("code", "token", "code"),
        _p("status", "token", "status"),
        _p("category", "token", "category"),
        _p("date", "date", "effectiveDateTime|effectivePeriod"),
        patient=_SUBJECT_PATIENT,
    ),
    "CarePlan": _clinical(_p("status", "token", "status"), patient=_SUBJECT_PATIENT),
    "CareTeam": _clinical(_p("status", "token", "status"), patient=_SUBJECT_PATIENT),
    "Goal": _clinical(_p("lifecycle-status", "token", "lifecycleStatus"), patient=_SUBJECT_PATIENT),
    "ImagingStudy": _clinical(_p("status", "token", "status"), patient=_SUBJECT_PATIENT),
    "Claim": _clinical(_p("status", "token", "status")),
    "ExplanationOfBenefit": _clinical(_p("status", "token", "status")),
    "ServiceRequest": _clinical(
        _p("status", "token", "status"), _p("code", "token", "code"), patient=_SUBJECT_PATIENT
    ),
    "Device": _clinical(_p("type", "token", "type"), _p("status", "token", "status")),
    "SupplyDelivery": _clinical(_p("status", "token", "status")),
    "Task": _clinical(
        _p("status", "token", "status"),
        _p("code", "token", "code"),
        _p("owner", "reference", "owner"),
        patient=_p("patient", "reference", "for", targets=PATIENT),
    ),
    "Communication": _clinical(
        _p("status", "token", "status"),
        _p("category", "token", "category"),
        _p("recipient", "reference", "recipient"),
        patient=_SUBJECT_PATIENT,
    ),
    "Provenance": _clinical(
        _p("target", "reference", "target"),
        _p("agent", "reference", "agent.who"),
        patient=_p("patient", "reference", "target", targets=PATIENT),
    ),
    "Medication": {p.name: p for p in (_p("code", "token", "code"),)},
}

#: Parameters every type supports; they read columns of `resources`, not index rows.
COMMON_PARAMS: dict[str, str] = {
    "_id": "token",
    "_lastUpdated": "date",
}


def params_for(resource_type: str) -> dict[str, SearchParam]:
    return SEARCH_PARAMS.get(resource_type, {})


# --- value helpers -----------------------------------------------------------------------


def normalize_string(value: str) -> str:
    """Case- and accent-insensitive form used for string matching."""
    decomposed = unicodedata.normalize("NFKD", value)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold().strip()


_DATE_RE = re.compile(
    r"^(?P<y>\d{4})(-(?P<m>\d{2})(-(?P<d>\d{2})"
    r"(T(?P<H>\d{2}):(?P<M>\d{2})(:(?P<S>\d{2})(?P<f>\.\d+)?)?(?P<tz>Z|[+-]\d{2}:\d{2})?)?)?)?$"
)


def date_range(value: str) -> tuple[datetime, datetime]:
    """The instants [low, high) a FHIR date/dateTime/instant covers at its precision.

    A value without a time zone is read as UTC. Raises ValueError when unparsable.
    """
    match = _DATE_RE.match(value.strip())
    if not match:
        raise ValueError(f"not a FHIR date: {value!r}")
    g = match.groupdict()
    year = int(g["y"])
    if g["m"] is None:
        return datetime(year, 1, 1, tzinfo=UTC), datetime(year + 1, 1, 1, tzinfo=UTC)
    month = int(g["m"])
    if g["d"] is None:
        low = datetime(year, month, 1, tzinfo=UTC)
        high = datetime(year + (month == 12), month % 12 + 1, 1, tzinfo=UTC)
        return low, high
    day = date(year, month, int(g["d"]))
    if g["H"] is None:
        low = datetime(day.year, day.month, day.day, tzinfo=UTC)
        return low, low + timedelta(days=1)
    tz = g["tz"] or "Z"
    text = value.strip() if g["tz"] else value.strip() + "Z"
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00") if tz == "Z" else text)
    if g["S"] is None:
        step = timedelta(minutes=1)
    elif g["f"]:
        step = timedelta(microseconds=1)
    else:
        step = timedelta(seconds=1)
    return parsed, parsed + step


def parse_reference(reference: str) -> tuple[str | None, str] | None:
    """(type, id) named by a literal reference; None for contained, conditional or URN ones."""
    if not reference or reference.startswith(("#", "urn:")) or "?" in reference:
        return None
    parts = reference.rstrip("/").split("/")
    if "_history" in parts:
        parts = parts[: parts.index("_history")]
    if len(parts) >= 2 and parts[-2][:1].isupper():
        return parts[-2], parts[-1]
    if len(parts) == 1:
        return None, parts[0]
    return None


# --- extraction --------------------------------------------------------------------------


def _collect(node: Any, steps: tuple[_Step, ...], at: int, out: list[Any]) -> None:
    if isinstance(node, list):
        for item in node:
            _collect(item, steps, at, out)
    elif at == len(steps):
        if node is not None:
            out.append(node)
    elif isinstance(node, dict):
        key, condition = steps[at]
        child = node.get(key)
        if child is None:
            return
        if condition is not None:
            items = child if isinstance(child, list) else [child]
            field, expected = condition
            child = [i for i in items if isinstance(i, dict) and i.get(field) == expected]
        _collect(child, steps, at + 1, out)


def element_values(resource: dict[str, Any], param: SearchParam) -> list[Any]:
    """Every element `param` reads in `resource`, in path order."""
    out: list[Any] = []
    for steps in param.steps:
        _collect(resource, steps, 0, out)
    return out


def _tokens(value: Any) -> Iterator[tuple[str | None, str]]:
    if isinstance(value, bool):
        yield None, "true" if value else "false"
    elif isinstance(value, str):
        yield None, value
    elif isinstance(value, dict):
        if "coding" in value:
            for coding in value.get("coding") or []:
                if isinstance(coding, dict) and coding.get("code"):
                    yield coding.get("system"), str(coding["code"])
        elif "code" in value and isinstance(value["code"], str):
            yield value.get("system"), value["code"]
        elif isinstance(value.get("value"), str):
            yield value.get("system"), value["value"]


_NAME_PARTS = ("family", "given", "prefix", "suffix", "text")
_ADDRESS_PARTS = ("line", "city", "district", "state", "postalCode", "country", "text")


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key in (*_NAME_PARTS, *_ADDRESS_PARTS):
            part = value.get(key)
            for item in part if isinstance(part, list) else [part]:
                if isinstance(item, str):
                    yield item


def _dates(value: Any) -> Iterator[tuple[datetime, datetime]]:
    if isinstance(value, str):
        yield date_range(value)
    elif isinstance(value, dict) and ("start" in value or "end" in value):
        start = (
            date_range(value["start"])[0]
            if value.get("start")
            else datetime.min.replace(tzinfo=UTC)
        )
        end = date_range(value["end"])[1] if value.get("end") else datetime.max.replace(tzinfo=UTC)
        yield start, end


def _references(value: Any, targets: tuple[str, ...]) -> Iterator[tuple[str | None, str]]:
    if isinstance(value, dict) and isinstance(value.get("reference"), str):
        parsed = parse_reference(value["reference"])
        if parsed is not None and (not targets or parsed[0] in targets):
            yield parsed


def _quantities(value: Any) -> Iterator[tuple[Decimal, str | None, str | None]]:
    if isinstance(value, dict) and isinstance(value.get("value"), int | float | Decimal):
        try:
            number = Decimal(str(value["value"]))
        except InvalidOperation:
            return
        yield number, value.get("system"), value.get("code") or value.get("unit")


IndexRows = dict[str, list[tuple[Any, ...]]]


def index_rows(resource_type: str, resource_id: str, resource: dict[str, Any]) -> IndexRows:
    """Rows for each `search_*` table: (type, id, param, ordinal, *values)."""
    rows: IndexRows = {kind: [] for kind in ("token", "string", "date", "reference", "quantity")}
    for param in params_for(resource_type).values():
        seen: set[tuple[Any, ...]] = set()
        for element in element_values(resource, param):
            values: Iterator[tuple[Any, ...]]
            if param.kind == "token":
                values = _tokens(element)
            elif param.kind == "string":
                values = ((normalize_string(s),) for s in _strings(element))
            elif param.kind == "date":
                values = _dates(element)
            elif param.kind == "reference":
                values = _references(element, param.targets)
            else:
                values = _quantities(element)
            for value in values:
                if value in seen:
                    continue
                seen.add(value)
                rows[param.kind].append((resource_type, resource_id, param.name, len(seen), *value))
    return rows


def patient_param(resource_type: str) -> SearchParam | None:
    """The parameter naming the patient whose compartment a resource is in."""
    param = params_for(resource_type).get("patient")
    return param if param is not None and param.targets == PATIENT else None
