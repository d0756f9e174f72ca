"""Build a `ChartView` from the local cache: index rows for vitals, JSON for the rest.

Vital-sign readings are most of a big chart (5,000 observations: ~100 ms to
read and model); the summary needs one latest value per vital sign, found with a
few index seeks, so `load_chart(..., vitals=False)` skips the readings.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from typing import Any

from desktop.services.chart import (
    AllergyItem,
    AppointmentItem,
    Banner,
    ChartView,
    LatestVital,
    MedicationItem,
    NoteItem,
    ProblemItem,
    VitalReading,
    VitalValue,
)
from desktop.services.vitals import ROW_LABELS, ROW_UNITS, build_flowsheet, latest_values
from desktop.store import chart_queries, conflicts, indexing, outbox, resources
from desktop.store.database import Connection
from desktop.store.resources import StoredResource
from shared_models.errors import NotFound
from shared_models.vitals import CHARTED_LOINC, VITAL_SIGNS

VITALS_WINDOW = timedelta(days=730)
_INACTIVE_PROBLEM = {"inactive", "resolved", "remission"}
_ERROR_STATUS = {"entered-in-error", "refuted"}
_ACTIVE_MED = {"active", "on-hold", "draft", "intended"}


def _concept_text(concept: Any) -> str:
    if not isinstance(concept, dict):
        return ""
    if concept.get("text"):
        return str(concept["text"])
    for coding in concept.get("coding", []):
        if isinstance(coding, dict) and (coding.get("display") or coding.get("code")):
            return str(coding.get("display") or coding.get("code"))
    return ""


def _concept_code(concept: Any) -> str:
    for coding in (concept or {}).get("coding", []) if isinstance(concept, dict) else []:
        if isinstance(coding, dict) and coding.get("code"):
            return f"{coding.get('system', '')}|{coding['code']}"
    return ""


def _status_code(concept: Any) -> str:
    for coding in (concept or {}).get("coding", []) if isinstance(concept, dict) else []:
        if isinstance(coding, dict) and coding.get("code"):
            return str(coding["code"])
    return ""


def _from_instant(text: str) -> datetime:
    """Parse our index format `YYYY-MM-DDTHH:MM:SSZ` (fromisoformat: ~20x faster than strptime)."""
    return datetime.fromisoformat(text[:-1] + "+00:00")


def _parse_instant(value: Any) -> datetime | None:
    text = indexing.instant(value)
    return _from_instant(text) if text else None


def age_on(birth: date, today: date) -> int:
    return today.year - birth.year - ((today.month, today.day) < (birth.month, birth.day))


def _display_name(patient: dict[str, Any]) -> str:
    row = indexing.patient_row(patient)
    return row.display_name if row else ""


def load_chart(
    conn: Connection, patient_id: str, now: datetime | None = None, *, vitals: bool = True
) -> ChartView:
    """The chart of one patient; `vitals=False` leaves `ChartView.vitals` empty."""
    now = now or datetime.now(UTC)
    since = (now - VITALS_WINDOW).strftime("%Y-%m-%dT%H:%M:%SZ")
    stored_patient = resources.get(conn, "Patient", patient_id)
    if stored_patient is None:
        raise NotFound(f"patient {patient_id} not cached")
    patient = stored_patient.parsed()
    by_type: dict[str, list[tuple[StoredResource, dict[str, Any]]]] = {}
    chart_types = ("Condition", "AllergyIntolerance", "MedicationRequest", "MedicationStatement",
                   "DocumentReference", "Composition")  # fmt: skip
    for stored in resources.for_patient(conn, patient_id, chart_types):
        by_type.setdefault(stored.resource_type, []).append((stored, stored.parsed()))
    pending = {e.id for e in outbox.pending_for_patient(conn, patient_id)}
    open_conflicts = conflicts.open_ids_for_patient(conn, patient_id)
    allergies = _allergies(by_type.get("AllergyIntolerance", []), pending, open_conflicts)
    birth = _birth_date(patient.get("birthDate"))
    summary = resources.patient_summary(conn, patient_id)
    banner = Banner(
        patient_id=patient_id,
        name=_display_name(patient),
        birth_date=birth,
        age_years=age_on(birth, now.date()) if birth else None,
        sex=str(patient.get("gender", "")),
        mrn=(summary.mrn if summary else None) or "",
        allergies=tuple(a.substance for a in allergies if a.status in ("active", "")),
        deceased=bool(patient.get("deceasedBoolean") or patient.get("deceasedDateTime")),
    )
    newer = {
        s.id for items in by_type.values() for s, _ in items if s.remote_version_id is not None
    }
    return ChartView(
        banner=banner,
        problems=_problems(by_type.get("Condition", []), pending, open_conflicts),
        medications=_medications(
            by_type.get("MedicationRequest", []) + by_type.get("MedicationStatement", []),
            pending,
            open_conflicts,
        ),
        allergies=allergies,
        vitals=_vitals(conn, patient_id, since, pending) if vitals else (),
        latest_vitals=_latest_vitals(conn, patient_id, since),
        notes=_notes(
            by_type.get("DocumentReference", []) + by_type.get("Composition", []),
            pending,
            open_conflicts,
        ),
        appointments=_appointments(conn, patient_id, now),
        pending_ids=frozenset(pending),
        conflict_ids=frozenset(open_conflicts),
        newer_on_server_ids=frozenset(newer),
    )


def _birth_date(value: Any) -> date | None:
    try:
        return date.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None


Items = Iterable[tuple[StoredResource, dict[str, Any]]]


def _allergies(items: Items, pending: set[str], open_ids: set[str]) -> tuple[AllergyItem, ...]:
    out = []
    for stored, res in items:
        if _status_code(res.get("verificationStatus")) in _ERROR_STATUS:
            continue
        reactions = tuple(
            _concept_text(m)
            for r in res.get("reaction", [])
            if isinstance(r, dict)
            for m in r.get("manifestation", [])
        )
        out.append(
            AllergyItem(
                id=stored.id,
                version=stored.version_id,
                substance=_concept_text(res.get("code")) or "Unnamed substance",
                criticality=str(res.get("criticality", "")),
                reactions=reactions,
                status=_status_code(res.get("clinicalStatus")),
                pending=stored.id in pending,
                conflict=stored.id in open_ids,
            )
        )
    return tuple(sorted(out, key=lambda a: a.substance.lower()))


def _problems(items: Items, pending: set[str], open_ids: set[str]) -> tuple[ProblemItem, ...]:
    out = []
    for stored, res in items:
        status = _status_code(res.get("clinicalStatus"))
        if (
            status in _INACTIVE_PROBLEM
            or _status_code(res.get("verificationStatus")) in _ERROR_STATUS
        ):
            continue
        out.append(
            ProblemItem(
                id=stored.id,
                version=stored.version_id,
                text=_concept_text(res.get("code")),
                code=_concept_code(res.get("code")),
                onset=str(res.get("onsetDateTime") or res.get("recordedDate") or ""),
                status=status,
                pending=stored.id in pending,
                conflict=stored.id in open_ids,
            )
        )
    return tuple(sorted(out, key=lambda p: p.onset, reverse=True))


def _medications(items: Items, pending: set[str], open_ids: set[str]) -> tuple[MedicationItem, ...]:
    out = []
    for stored, res in items:
        status = str(res.get("status", ""))
        if status not in _ACTIVE_MED:
            continue
        dosage = res.get("dosageInstruction") or res.get("dosage") or []
        out.append(
            MedicationItem(
                id=stored.id,
                version=stored.version_id,
                resource_type=stored.resource_type,
                text=_concept_text(res.get("medicationCodeableConcept"))
                or str((res.get("medicationReference") or {}).get("display", "")),
                code=_concept_code(res.get("medicationCodeableConcept")),
                dosage=str(dosage[0].get("text", ""))
                if dosage and isinstance(dosage[0], dict)
                else "",
                authored_on=str(res.get("authoredOn") or res.get("effectiveDateTime") or ""),
                status=status,
                pending=stored.id in pending,
                conflict=stored.id in open_ids,
            )
        )
    return tuple(sorted(out, key=lambda m: m.authored_on, reverse=True))


def _vitals(
    conn: Connection, patient_id: str, since: str, pending: set[str]
) -> tuple[VitalReading, ...]:
    # Each observation has a head row (its own code and value) and a row per component.
    heads: dict[str, indexing.ObservationRow] = {}
    values: dict[str, list[VitalValue]] = {}
    for row in resources.vital_rows(conn, patient_id, since):
        value = VitalValue(row.code, row.label, row.value, row.unit or "")
        parts = values.setdefault(row.observation_id, [])
        if row.code == row.obs_code:
            heads[row.observation_id] = row
            if row.value is not None:
                parts.insert(0, value)
        else:
            parts.append(value)
    out = [
        VitalReading(
            observation_id=oid,
            code=head.obs_code,
            label=head.label,
            effective=_from_instant(head.effective),
            values=tuple(values[oid]),
            pending=oid in pending,
        )
        for oid, head in heads.items()
    ]
    return tuple(sorted(out, key=lambda v: (v.effective, v.observation_id), reverse=True))


def _latest_vitals(conn: Connection, patient_id: str, since: str) -> tuple[LatestVital, ...]:
    """The newest value of each flowsheet row, from a few index rows instead of every reading.

    The rows found go through the flowsheet's own grouping, so the summary shows
    exactly what the flowsheet's newest filled cell of each row shows. Blood
    pressure needs both numbers taken in one minute: that minute is found first.
    """
    rows = [chart_queries.newest_vital(conn, patient_id, code, since) for code in CHARTED_LOINC]
    systolic, diastolic = VITAL_SIGNS["systolic"].loinc, VITAL_SIGNS["diastolic"].loinc
    minute = chart_queries.newest_shared_minute(conn, patient_id, systolic, diastolic, since)
    if minute:
        rows += [
            chart_queries.newest_vital(conn, patient_id, code, f"{minute}:00Z", f"{minute}:59Z")
            for code in (systolic, diastolic)
        ]
    readings = sorted(
        {
            VitalReading(
                observation_id=row.observation_id,
                code=row.obs_code,
                label=row.label,
                effective=_from_instant(row.effective),
                values=(VitalValue(row.code, row.label, row.value, row.unit or ""),),
            )
            for row in rows
            if row is not None
        },
        key=lambda v: (v.effective, v.observation_id),
        reverse=True,
    )
    return tuple(
        LatestVital(row, ROW_LABELS[row], f"{text} {ROW_UNITS[row]}", when)
        for row, (text, when) in latest_values(build_flowsheet(readings)).items()
    )


def _notes(items: Items, pending: set[str], open_ids: set[str]) -> tuple[NoteItem, ...]:
    out = []
    for stored, res in items:
        if stored.resource_type == "Composition":
            title, status, when = (
                str(res.get("title", "")),
                str(res.get("status", "")),
                res.get("date"),
            )
        else:
            title = str(res.get("description") or _concept_text(res.get("type")))
            status = str(res.get("docStatus") or res.get("status") or "")
            when = res.get("date") or (res.get("context") or {}).get("period", {}).get("start")
        authors = res.get("author") or []
        author = (
            str(authors[0].get("display", "")) if authors and isinstance(authors[0], dict) else ""
        )
        out.append(
            NoteItem(
                id=stored.id,
                version=stored.version_id,
                resource_type=stored.resource_type,
                title=title or "Note",
                date=str(when or ""),
                author=author,
                status=status,
                pending=stored.id in pending,
                conflict=stored.id in open_ids,
            )
        )
    return tuple(sorted(out, key=lambda n: indexing.instant(n.date) or "", reverse=True))


def _appointments(conn: Connection, patient_id: str, now: datetime) -> tuple[AppointmentItem, ...]:
    out = []
    for appointment_id in resources.upcoming_appointment_ids(
        conn, patient_id, now.strftime("%Y-%m-%dT%H:%M:%SZ")
    ):
        stored = resources.get(conn, "Appointment", appointment_id)
        if stored is None:
            continue
        res = stored.parsed()
        row = indexing.appointment_row(res)
        out.append(
            AppointmentItem(
                id=stored.id,
                version=stored.version_id,
                start=_parse_instant(res.get("start")),
                end=_parse_instant(res.get("end")),
                description=str(
                    res.get("description")
                    or _concept_text(
                        res.get("serviceType", [{}])[0] if res.get("serviceType") else None
                    )
                ),
                status=str(res.get("status", "")),
                location_id=row.location_id if row else None,
                practitioner_id=row.practitioner_id if row else None,
            )
        )
    return tuple(out)


def _service_type(appointment: dict[str, Any]) -> str:
    kinds = appointment.get("serviceType") or []
    return _concept_text(kinds[0]) if kinds else ""
