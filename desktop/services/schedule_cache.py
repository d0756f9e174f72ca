"""The scheduling read side of the local cache: schedules, zones, slots, appointment views.

`ScheduleCache` answers for one connection: which schedules a location or a
practitioner has, the zone of each location (the `timezone` extension), the
free slots of a period (`slot_index`), and appointments shaped for display
with their sync state ("pending" until the server confirms, "rejected" when
it refused). `desktop.services.scheduling` builds the use cases on it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, tzinfo
from typing import Any, Literal

import orjson

from desktop.store import conflicts, indexing, resources
from desktop.store.database import Connection
from desktop.store.resources import PatientSummary
from shared_models.errors import ValidationFailed
from shared_models.merge_policy import booked_slot_ids
from shared_models.scheduling import location_zone, parse_instant, schedule_actors

SyncState = Literal["confirmed", "pending", "rejected"]


@dataclass(frozen=True)
class SlotView:
    slot_id: str
    schedule_id: str
    practitioner_id: str | None
    location_id: str | None
    #: In the location's zone.
    start: datetime
    end: datetime | None


@dataclass(frozen=True)
class AppointmentView:
    appointment_id: str
    start: datetime | None
    end: datetime | None
    patient_id: str | None
    patient_name: str
    mrn: str
    practitioner_id: str | None
    location_id: str | None
    status: str
    description: str
    slot_id: str | None
    #: "pending": saved here, not yet confirmed by the server; "rejected": refused.
    sync_state: SyncState
    #: Why the server refused it (plain words, no PHI), for a rejected booking.
    reason: str | None = None

    @property
    def holds_slot(self) -> bool:
        """True when this appointment keeps its slot from being booked again."""
        return self.sync_state != "rejected" and self.status not in (
            "cancelled", "noshow", "entered-in-error",
        )  # fmt: skip

    @property
    def label(self) -> str:
        if self.sync_state == "pending":
            return (
                "pending confirmation" if self.status == "booked" else f"{self.status} (not synced)"
            )
        if self.sync_state == "rejected":
            return "rejected: choose another slot"
        return self.status


@dataclass(frozen=True)
class DaySchedule:
    day: date
    zone: str
    appointments: list[AppointmentView]
    free_slots: list[SlotView]


@dataclass(frozen=True)
class ScheduleScope:
    """What a day or week view shows: a location (everyone there) or one practitioner."""

    label: str
    location_id: str | None = None
    practitioner_id: str | None = None


class ScheduleCache:
    """Schedules, zones, slots and appointment views of the local cache (one connection)."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.schedules: dict[str, tuple[str | None, str | None]] = {}
        for row in conn.execute(
            "SELECT id, json FROM resources WHERE resource_type = 'Schedule' AND deleted = 0"
        ):
            schedule = orjson.loads(row[1])
            if schedule.get("active", True):
                practitioner, location = schedule_actors(schedule)
                self.schedules[row[0]] = (reference_id(practitioner), reference_id(location))
        self._zones: dict[str | None, tzinfo] = {}
        self._patients: dict[str, PatientSummary | None] = {}

    def scopes(self) -> list[ScheduleScope]:
        """Locations (everyone there), then practitioners, each sorted by name."""
        locations = {loc for _, loc in self.schedules.values() if loc}
        practitioners = {p for p, _ in self.schedules.values() if p}
        by_location = [
            ScheduleScope(f"{_name(self.conn, 'Location', loc)} (everyone)", location_id=loc)
            for loc in locations
        ]
        by_practitioner = [
            ScheduleScope(_name(self.conn, "Practitioner", p), practitioner_id=p)
            for p in practitioners
        ]
        return sorted(by_location, key=_label) + sorted(by_practitioner, key=_label)

    def schedule_ids(self, location_id: str | None, practitioner_id: str | None) -> list[str]:
        return sorted(
            sid
            for sid, (practitioner, location) in self.schedules.items()
            if (location_id is None or location == location_id)
            and (practitioner_id is None or practitioner == practitioner_id)
        )

    def zone(self, location_id: str | None) -> tzinfo:
        """The location's zone; this computer's zone when the location names none."""
        if location_id not in self._zones:
            stored = resources.get(self.conn, "Location", location_id) if location_id else None
            try:
                zone: tzinfo = location_zone(stored.parsed()) if stored else _local_zone()
            except ValidationFailed:
                zone = _local_zone()
            self._zones[location_id] = zone
        return self._zones[location_id]

    def home_location(self, practitioner_id: str | None) -> str | None:
        """The location of the practitioner's first schedule (for the zone of their day)."""
        for practitioner, location in self.schedules.values():
            if practitioner == practitioner_id and location:
                return location
        return None

    def slots(self, schedule_ids: Iterable[str], start: datetime, end: datetime) -> list[SlotView]:
        """Slots the server says are free, of these schedules, starting in [start, end)."""
        ids = list(schedule_ids)
        if not ids:
            return []
        marks = ",".join("?" * len(ids))
        rows = self.conn.execute(
            # CROSS JOIN keeps SQLite from scanning every Slot first (join order as written).
            f"SELECT i.slot_id, i.schedule_id, r.json FROM slot_index i CROSS JOIN resources r"  # noqa: S608 - placeholders only
            f" ON r.resource_type = 'Slot' AND r.id = i.slot_id WHERE i.schedule_id IN ({marks})"
            " AND i.start >= ? AND i.start < ? AND i.status = 'free' AND r.deleted = 0"
            " ORDER BY i.start, i.slot_id",
            (*ids, _utc(start), _utc(end)),
        ).fetchall()
        views = []
        for slot_id, schedule_id, raw in rows:
            slot = orjson.loads(raw)
            practitioner, location = self.schedules.get(schedule_id, (None, None))
            zone = self.zone(location)
            begin = parse_instant(slot.get("start"))
            if begin is None:
                continue
            finish = parse_instant(slot.get("end"))
            views.append(
                SlotView(slot_id, schedule_id, practitioner, location, begin.astimezone(zone),
                         finish.astimezone(zone) if finish else None)
            )  # fmt: skip
        return views

    def held_slots(self, slot_ids: list[str], *, ignore: str | None = None) -> set[str]:
        """Which of these slots a local appointment (pending ones included) holds."""
        if not slot_ids:
            return set()
        wanted = set(slot_ids)
        held: set[str] = set()
        low, high = _span(self.conn, slot_ids)
        rows = self.conn.execute(
            "SELECT r.id, r.json FROM appointment_index a CROSS JOIN resources r"
            " ON r.resource_type = 'Appointment' AND r.id = a.appointment_id"
            " WHERE a.day >= ? AND a.day <= ? AND a.start >= ? AND a.start < ? AND r.deleted = 0",
            (low[:10], high[:10], low, high),
        )
        for appointment_id, raw in rows:
            if appointment_id != ignore:
                held |= wanted & set(booked_slot_ids(orjson.loads(raw)))
        return held

    def appointments(
        self,
        start: datetime,
        end: datetime,
        location_id: str | None,
        practitioner_id: str | None,
    ) -> list[AppointmentView]:
        sql = (
            "SELECT a.appointment_id, r.json, r.dirty FROM appointment_index a CROSS JOIN"
            " resources r ON r.resource_type = 'Appointment' AND r.id = a.appointment_id"
            " WHERE a.day >= ? AND a.day <= ? AND a.start >= ? AND a.start < ? AND r.deleted = 0"
        )
        args: list[Any] = [_utc(start)[:10], _utc(end)[:10], _utc(start), _utc(end)]
        for column, value in (("location_id", location_id), ("practitioner_id", practitioner_id)):
            if value is not None:
                sql += f" AND a.{column} = ?"
                args.append(value)
        refused = {
            c.id: c.reason
            for c in conflicts.open_conflicts(self.conn)
            if c.resource_type == "Appointment" and c.status == "rejected"
        }
        views = [
            self.view(orjson.loads(raw), bool(dirty), reason=refused.get(appointment_id))
            for appointment_id, raw, dirty in self.conn.execute(sql, args)
        ]
        return sorted(views, key=lambda v: (_start(v), v.patient_name))

    def _patient(self, patient_id: str) -> PatientSummary | None:
        if patient_id not in self._patients:
            self._patients[patient_id] = resources.patient_summary(self.conn, patient_id)
        return self._patients[patient_id]

    def view(
        self,
        appointment: dict[str, Any],
        dirty: bool,
        reason: str | None = None,
    ) -> AppointmentView:
        row = indexing.appointment_row(appointment)
        location = row.location_id if row else None
        zone = self.zone(location)
        begin, finish = (
            parse_instant(appointment.get("start")),
            parse_instant(appointment.get("end")),
        )
        patient = row.patient_id if row else None
        summary = self._patient(patient) if patient else None
        slots = booked_slot_ids(appointment) or [
            str(r.get("reference", "")).removeprefix("Slot/") for r in appointment.get("slot") or []
        ]
        state: SyncState = "rejected" if reason else ("pending" if dirty else "confirmed")
        return AppointmentView(
            appointment_id=str(appointment.get("id")),
            start=begin.astimezone(zone) if begin else None,
            end=finish.astimezone(zone) if finish else None,
            patient_id=patient,
            patient_name=summary.display_name if summary else "Unknown patient",
            mrn=(summary.mrn or "") if summary else "",
            practitioner_id=row.practitioner_id if row else None,
            location_id=location,
            status=str(appointment.get("status", "")),
            description=str(appointment.get("description") or ""),
            slot_id=slots[0] if slots else None,
            sync_state=state,
            reason=reason,
        )


def _local_zone() -> tzinfo:
    zone = datetime.now().astimezone().tzinfo
    assert zone is not None
    return zone


def reference_id(reference: str | None) -> str | None:
    """`ID` of a `Type/ID` reference."""
    return reference.rpartition("/")[2] if reference else None


def _utc(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _name(conn: Connection, resource_type: str, resource_id: str) -> str:
    """A Location's name or a Practitioner's "Dr. Given Family" (the id when not cached)."""
    stored = resources.get(conn, resource_type, resource_id)
    resource = stored.parsed() if stored else {}
    if resource_type == "Location":
        return str(resource.get("name") or resource_id)
    names = resource.get("name") or [{}]
    name = names[0] if isinstance(names[0], dict) else {}
    parts = [*name.get("prefix", []), *name.get("given", []), name.get("family", "")]
    return " ".join(p for p in parts if p) or resource_id


def _label(scope: ScheduleScope) -> str:
    return scope.label


def _start(view: AppointmentView) -> datetime:
    return view.start or datetime.min.replace(tzinfo=UTC)


def _span(conn: Connection, slot_ids: list[str]) -> tuple[str, str]:
    """The UTC instants from the earliest to just after the latest of these slots' starts."""
    marks = ",".join("?" * len(slot_ids))
    low, high = conn.execute(
        f"SELECT min(start), max(start) FROM slot_index WHERE slot_id IN ({marks})",  # noqa: S608 - placeholders only
        slot_ids,
    ).fetchone()
    return (low or "9999", (high or "0000") + "~")
