"""Scheduling at the workstation, headless: day and week views, booking, check-in, offline.

Everything reads the local encrypted cache, so the front desk and the nurses
keep working without the network. Every change is an Appointment version saved
locally with its outbox row (`Workstation.save_resource`); the server decides
at the next sync. Until then a new booking is shown as "pending confirmation".
If the server refuses it because the slot was taken meanwhile, the booking is
shown as "rejected" with the server's reason and the nearest free slots, and
`rebook` moves it to one of them in one step.

Slot status on the server follows the bookings (`sync_server.services.scheduling`);
the workstation never pushes Slot changes. Locally a slot counts as taken when
the server says busy or a local appointment (pending ones included) holds it.
Times are shown in the zone of the slot's location.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

import orjson

from desktop.services.schedule_cache import (
    AppointmentView,
    DaySchedule,
    ScheduleCache,
    ScheduleScope,
    SlotView,
    reference_id,
)
from desktop.store import conflicts, resources
from desktop.store.database import ChartDatabase, Connection
from shared_models.errors import NotFound
from shared_models.scheduling import (
    SlotUnavailable,
    apply_transition,
    appointment_for_slot,
    moved_to_slot,
    nearest_free,
    parse_instant,
)

if TYPE_CHECKING:
    from desktop.services.workstation import Changes

SaveResource = Callable[[dict[str, Any], "int | None"], "Changes"]

#: How far around a refused booking the alternatives are looked for.
ALTERNATIVES_BEFORE = timedelta(days=7)
ALTERNATIVES_AFTER = timedelta(days=21)
ALTERNATIVES = 3

__all__ = [
    "AppointmentView",
    "DaySchedule",
    "RejectedBooking",
    "ScheduleScope",
    "SchedulingDesk",
    "SlotView",
]


@dataclass(frozen=True)
class RejectedBooking:
    conflict_id: str
    appointment: AppointmentView
    reason: str
    alternatives: list[SlotView]


class SchedulingDesk:
    """The scheduling use cases over one profile's cache (see module docstring)."""

    def __init__(self, db: Callable[[], ChartDatabase], save: SaveResource) -> None:
        self._db = db
        self._save = save

    def _cache(self) -> ScheduleCache:
        return ScheduleCache(self._db().connection())

    # -- views -------------------------------------------------------------------------

    def scopes(self) -> list[ScheduleScope]:
        """Locations (everyone there), then practitioners, that have a schedule here."""
        return self._cache().scopes()

    def day(
        self, day: date, *, location_id: str | None = None, practitioner_id: str | None = None
    ) -> DaySchedule:
        """Appointments and free slots of a local day at a location and/or for a practitioner."""
        cache = self._cache()
        zone = cache.zone(location_id or cache.home_location(practitioner_id))
        start = datetime.combine(day, datetime.min.time(), zone)
        end = datetime.combine(day + timedelta(days=1), datetime.min.time(), zone)
        appointments = cache.appointments(start, end, location_id, practitioner_id)
        held = {a.slot_id for a in appointments if a.slot_id and a.holds_slot}
        schedules = cache.schedule_ids(location_id, practitioner_id)
        free = [s for s in cache.slots(schedules, start, end) if s.slot_id not in held]
        return DaySchedule(day, str(zone), appointments, free)

    def week(
        self, first_day: date, *, location_id: str | None = None, practitioner_id: str | None = None
    ) -> list[DaySchedule]:
        """Seven day views from `first_day`."""
        return [
            self.day(day, location_id=location_id, practitioner_id=practitioner_id)
            for day in (first_day + timedelta(days=n) for n in range(7))
        ]

    def free_slots(
        self,
        *,
        start: datetime,
        end: datetime,
        location_id: str | None = None,
        practitioner_id: str | None = None,
        limit: int = 50,
    ) -> list[SlotView]:
        """Free slots no local appointment holds, starting in [start, end), soonest first."""
        return _free(self._cache(), start, end, location_id, practitioner_id)[:limit]

    def patient_appointments(
        self, patient_id: str, now: datetime | None = None
    ) -> tuple[list[AppointmentView], list[AppointmentView]]:
        """(upcoming soonest first, past latest first) appointments of a patient, for the chart."""
        cache = self._cache()
        moment = now or datetime.now(UTC)
        views = [
            cache.view(stored.parsed(), stored.dirty)
            for stored in resources.for_patient(cache.conn, patient_id, ["Appointment"])
        ]
        upcoming = sorted((v for v in views if v.start and v.start >= moment), key=_start)
        past = sorted((v for v in views if v.start and v.start < moment), key=_start, reverse=True)
        return upcoming, past

    # -- changes (offline-capable: saved locally with an outbox row) --------------------

    def book(self, slot_id: str, patient_id: str, description: str | None = None) -> Changes:
        """A new booking of a free slot; "pending confirmation" until the server accepts it."""
        slot, schedule = _bookable(self._cache(), slot_id)
        appointment = appointment_for_slot(
            appointment_id=str(uuid.uuid4()), slot=slot, schedule=schedule,
            patient_id=patient_id, description=description,
        )  # fmt: skip
        return self._save(appointment, None)

    def reschedule(self, appointment_id: str, slot_id: str) -> Changes:
        """Move the appointment into another free slot (same Appointment, a new version)."""
        cache = self._cache()
        appointment, version = _appointment(cache.conn, appointment_id)
        slot, schedule = _bookable(cache, slot_id)
        return self._save(moved_to_slot(appointment, slot, schedule), version)

    def cancel(self, appointment_id: str, reason: str) -> Changes:
        return self._transition(appointment_id, "cancel", reason)

    def check_in(self, appointment_id: str) -> Changes:
        """Mark arrived; works offline and always reaches the server at the next sync."""
        return self._transition(appointment_id, "check-in")

    def no_show(self, appointment_id: str) -> Changes:
        return self._transition(appointment_id, "no-show")

    def fulfil(self, appointment_id: str) -> Changes:
        return self._transition(appointment_id, "fulfil")

    def rejected_bookings(self, now: datetime | None = None) -> list[RejectedBooking]:
        """Bookings the server refused, each with the nearest free slots to choose from."""
        cache = self._cache()
        found = []
        for record in conflicts.open_conflicts(cache.conn):
            if record.resource_type != "Appointment" or record.status != "rejected":
                continue
            if record.local_json is None:
                continue
            appointment = orjson.loads(record.local_json)
            view = cache.view(appointment, dirty=True, reason=record.reason)
            nearest = _alternatives(cache, appointment, now or datetime.now(UTC))
            found.append(RejectedBooking(record.conflict_id, view, record.reason, nearest))
        return found

    def rebook(self, conflict_id: str, slot_id: str) -> Changes:
        """Move a refused booking into `slot_id` in one step (and close the refusal)."""
        db = self._db()
        cache = ScheduleCache(db.connection())
        record = next(
            (c for c in conflicts.open_conflicts(cache.conn) if c.conflict_id == conflict_id), None
        )
        if record is None or record.local_json is None or record.resource_type != "Appointment":
            raise NotFound(f"refused booking {conflict_id} not open")
        refused = orjson.loads(record.local_json)
        slot, schedule = _bookable(cache, slot_id, ignore=refused["id"])
        stored = resources.get(cache.conn, "Appointment", refused["id"])
        base = stored.version_id if stored else None
        changes = self._save(moved_to_slot({**refused, "status": "booked"}, slot, schedule), base)
        with db.transaction() as tx:
            conflicts.mark_resolved(tx, conflict_id)
        return changes

    def _transition(self, appointment_id: str, action: str, reason: str | None = None) -> Changes:
        appointment, version = _appointment(self._db().connection(), appointment_id)
        return self._save(apply_transition(appointment, action, reason=reason), version)


def _appointment(conn: Connection, appointment_id: str) -> tuple[dict[str, Any], int | None]:
    stored = resources.get(conn, "Appointment", appointment_id)
    if stored is None:
        raise NotFound("Appointment not cached")
    return stored.parsed(), stored.version_id


def _bookable(
    cache: ScheduleCache, slot_id: str, *, ignore: str | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The slot and its schedule, or SlotUnavailable with the nearest free slots.

    `ignore` is an appointment whose own hold on the slot does not count (a
    refused booking being moved).
    """
    stored = resources.get(cache.conn, "Slot", slot_id)
    if stored is None:
        raise NotFound("Slot not cached")
    slot = stored.parsed()
    schedule_id = reference_id((slot.get("schedule") or {}).get("reference"))
    schedule = resources.get(cache.conn, "Schedule", schedule_id) if schedule_id else None
    if schedule is None:
        raise NotFound("Schedule not cached")
    if slot.get("status") != "free" or cache.held_slots([slot_id], ignore=ignore):
        wanted = {"slot": [{"reference": f"Slot/{slot_id}"}], "start": slot.get("start")}
        nearest = _alternatives(cache, wanted, datetime.now(UTC))
        raise SlotUnavailable("slot taken locally", alternatives=[_slot_json(s) for s in nearest])
    return slot, schedule.parsed()


def _free(
    cache: ScheduleCache,
    start: datetime,
    end: datetime,
    location_id: str | None,
    practitioner_id: str | None,
) -> list[SlotView]:
    candidates = cache.slots(cache.schedule_ids(location_id, practitioner_id), start, end)
    held = cache.held_slots([s.slot_id for s in candidates])
    return [s for s in candidates if s.slot_id not in held]


def _alternatives(
    cache: ScheduleCache, appointment: dict[str, Any], now: datetime
) -> list[SlotView]:
    """Free slots nearest the appointment's start: its practitioner first, then its location."""
    wanted = parse_instant(appointment.get("start")) or now
    taken = {
        str(r.get("reference", "")).removeprefix("Slot/")
        for r in appointment.get("slot") or []
        if isinstance(r, dict)
    }
    slot = resources.get(cache.conn, "Slot", next(iter(taken))) if taken else None
    schedule_id = reference_id(
        ((slot.parsed() if slot else {}).get("schedule") or {}).get("reference")
    )
    practitioner, location = cache.schedules.get(schedule_id or "", (None, None))
    start, end = max(now, wanted - ALTERNATIVES_BEFORE), wanted + ALTERNATIVES_AFTER
    candidates: list[SlotView] = []
    for scope in ((location, practitioner), (location, None)):
        if len(candidates) >= ALTERNATIVES:
            break
        seen = taken | {s.slot_id for s in candidates}
        candidates += [s for s in _free(cache, start, end, *scope) if s.slot_id not in seen]
    by_id = {s.slot_id: s for s in candidates}
    chosen = nearest_free(wanted, [_slot_json(s) for s in candidates], ALTERNATIVES)
    return [by_id[str(c["id"])] for c in chosen]


def _start(view: AppointmentView) -> datetime:
    return view.start or datetime.min.replace(tzinfo=UTC)


def _slot_json(view: SlotView) -> dict[str, Any]:
    slot: dict[str, Any] = {
        "resourceType": "Slot",
        "id": view.slot_id,
        "schedule": {"reference": f"Schedule/{view.schedule_id}"},
        "status": "free",
        "start": view.start.isoformat(),
    }
    if view.end is not None:
        slot["end"] = view.end.isoformat()
    return slot
