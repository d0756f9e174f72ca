"""Today's schedule for the workstation's locations, from the local cache.

The appointment index keys days in UTC; a local day spans up to two UTC days,
so both are read and filtered by local date.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from desktop.store import indexing, resources
from desktop.store.database import Connection


@dataclass(frozen=True)
class ScheduleEntry:
    appointment_id: str
    start: datetime | None
    end: datetime | None
    patient_id: str | None
    patient_name: str
    mrn: str
    description: str
    status: str
    location_id: str | None


def _instant(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone()
    except ValueError:
        return None


def _description(appointment: dict[str, object]) -> str:
    text = appointment.get("description")
    if isinstance(text, str) and text:
        return text
    kinds = appointment.get("serviceType") or appointment.get("appointmentType")
    concept = kinds[0] if isinstance(kinds, list) and kinds else kinds
    if isinstance(concept, dict):
        codings = concept.get("coding") or [{}]
        return str(concept.get("text") or codings[0].get("display") or "")
    return ""


def schedule_for_day(
    conn: Connection, day: date, location_ids: Collection[str] | None = None
) -> list[ScheduleEntry]:
    """Appointments starting on local `day`, soonest first (all locations when None)."""
    entries: list[ScheduleEntry] = []
    for utc_day in (day - timedelta(days=1), day, day + timedelta(days=1)):
        for appointment_id in resources.appointment_ids_on(conn, utc_day.isoformat()):
            stored = resources.get(conn, "Appointment", appointment_id)
            if stored is None:
                continue
            appointment = stored.parsed()
            row = indexing.appointment_row(appointment)
            start = _instant(appointment.get("start"))
            if row is None or start is None or start.date() != day:
                continue
            if location_ids and row.location_id not in location_ids:
                continue
            summary = resources.patient_summary(conn, row.patient_id) if row.patient_id else None
            entries.append(
                ScheduleEntry(
                    appointment_id=appointment_id,
                    start=start,
                    end=_instant(appointment.get("end")),
                    patient_id=row.patient_id,
                    patient_name=summary.display_name if summary else "Unknown patient",
                    mrn=(summary.mrn or "") if summary else "",
                    description=_description(appointment),
                    status=str(appointment.get("status", "")),
                    location_id=row.location_id,
                )
            )
    return sorted(entries, key=lambda e: (e.start or datetime.min.astimezone(), e.patient_name))
