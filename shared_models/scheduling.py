"""Scheduling rules, pure: templates to slots, appointment states, nearest alternatives.

No I/O: the server (slot generation, booking) and the desktop (offline day
views, offline bookings) apply the same rules.

Time zones: each Location names its IANA zone in the standard `timezone`
extension (`fhir_constants.TIMEZONE_EXTENSION`). A template is wall-clock
time at the location ("Mon-Fri 08:00-12:00 in 20-minute slots"); each slot is
stored as an instant with the location's UTC offset of that day, so a slot on
a daylight-saving change day carries the right offset. A wall-clock start
that does not exist that day (skipped by a spring-forward) yields no slot; a
start that happens twice (fall-back) yields one slot, at its first occurrence.
A slot lasts its length in real minutes.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from shared_models.errors import ValidationFailed, VersionConflict
from shared_models.fhir_constants import TIMEZONE_EXTENSION

#: Appointment statuses that hold their slot (merge_policy's `_NOT_BOOKING` is the complement).
RELEASING_STATUSES: Final = frozenset({"cancelled", "noshow", "entered-in-error"})

#: The name of the database constraint that makes a double booking impossible.
SLOT_BOOKING_CONSTRAINT: Final = "slot_bookings_pkey"

#: Namespace of the deterministic Slot ids (same schedule + start -> same id).
_SLOT_NAMESPACE: Final = uuid.UUID("9b1c3c52-4a0e-4f5e-9d55-0c1f3a7e2b61")

#: Appointment status changes a person may make: action -> (allowed from, new status).
TRANSITIONS: Final[dict[str, tuple[frozenset[str], str]]] = {
    "cancel": (frozenset({"proposed", "pending", "booked", "arrived", "checked-in"}), "cancelled"),
    "check-in": (frozenset({"booked", "pending"}), "arrived"),
    "no-show": (frozenset({"booked", "pending"}), "noshow"),
    "fulfil": (frozenset({"booked", "arrived", "checked-in"}), "fulfilled"),
    "reschedule": (frozenset({"proposed", "pending", "booked"}), "booked"),
}


class SlotUnavailable(VersionConflict):
    """The slot is already booked (or no longer free): choose another one."""

    user_message = "This appointment slot is already booked. Choose another slot."
    help_topic = "scheduling"

    def __init__(self, detail: str = "", *, alternatives: Sequence[dict[str, Any]] = ()) -> None:
        super().__init__(detail)
        #: Nearest free Slots (FHIR JSON), soonest-nearest first.
        self.alternatives: list[dict[str, Any]] = list(alternatives)


class TransitionNotAllowed(ValidationFailed):
    """An appointment status change that makes no sense (e.g. check in a cancelled visit)."""

    help_topic = "scheduling"


@dataclass(frozen=True)
class ScheduleTemplate:
    """Weekly opening hours at a location: which days, from when to when, slot length."""

    #: ISO weekdays, 1 = Monday ... 7 = Sunday.
    weekdays: frozenset[int]
    start: time
    end: time
    slot_minutes: int
    #: Wall-clock breaks [start, end) within each day (lunch, meetings).
    breaks: tuple[tuple[time, time], ...] = ()
    #: Days with no slots at all.
    holidays: frozenset[date] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        problems = []
        if not self.weekdays or not self.weekdays <= frozenset(range(1, 8)):
            problems.append(("weekdays", "Weekdays are 1 (Monday) to 7 (Sunday)"))
        if not 5 <= self.slot_minutes <= 480:
            problems.append(("slot_minutes", "A slot lasts 5 to 480 minutes"))
        if self.start >= self.end:
            problems.append(("end", "The day must end after it starts"))
        if any(b_start >= b_end for b_start, b_end in self.breaks):
            problems.append(("breaks", "A break must end after it starts"))
        if problems:
            raise ValidationFailed("invalid schedule template", issues=problems)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ScheduleTemplate:
        """From the API's JSON: times "HH:MM", dates "YYYY-MM-DD"."""
        try:
            return cls(
                weekdays=frozenset(int(d) for d in data["weekdays"]),
                start=time.fromisoformat(data["start"]),
                end=time.fromisoformat(data["end"]),
                slot_minutes=int(data["slot_minutes"]),
                breaks=tuple(
                    (time.fromisoformat(b[0]), time.fromisoformat(b[1]))
                    for b in data.get("breaks", [])
                ),
                holidays=frozenset(date.fromisoformat(d) for d in data.get("holidays", [])),
            )
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise ValidationFailed(
                "invalid schedule template",
                issues=[("template", f"Template not understood: {type(exc).__name__}")],
            ) from None


def location_zone(location: dict[str, Any]) -> ZoneInfo:
    """The Location's IANA time zone (the `timezone` extension); ValidationFailed if none."""
    for extension in location.get("extension") or []:
        if isinstance(extension, dict) and extension.get("url") == TIMEZONE_EXTENSION:
            try:
                return ZoneInfo(str(extension.get("valueCode")))
            except (ZoneInfoNotFoundError, ValueError):
                break
    raise ValidationFailed(
        "location without a valid time zone",
        issues=[("Location.extension", f"Give the location a time zone ({TIMEZONE_EXTENSION})")],
    )


def _wall_time_exists(moment: datetime) -> bool:
    """False for a wall-clock time skipped by a spring-forward."""
    back = moment.astimezone(UTC).astimezone(moment.tzinfo)
    return back.replace(tzinfo=None) == moment.replace(tzinfo=None)


def slot_times(
    template: ScheduleTemplate, first_day: date, last_day: date, zone: ZoneInfo
) -> Iterator[tuple[datetime, datetime]]:
    """(start, end) of every slot from `first_day` to `last_day` inclusive, aware in `zone`."""
    length = timedelta(minutes=template.slot_minutes)
    day = first_day
    while day <= last_day:
        if day.isoweekday() in template.weekdays and day not in template.holidays:
            yield from _day_slots(template, day, zone, length)
        day += timedelta(days=1)


def _day_slots(
    template: ScheduleTemplate, day: date, zone: ZoneInfo, length: timedelta
) -> Iterator[tuple[datetime, datetime]]:
    wall = datetime.combine(day, template.start)
    closing = datetime.combine(day, template.end)
    breaks = [(datetime.combine(day, s), datetime.combine(day, e)) for s, e in template.breaks]
    while wall + length <= closing:
        wall_end = wall + length
        in_break = next((e for s, e in breaks if wall < e and wall_end > s), None)
        if in_break is not None:
            wall = in_break
            continue
        start = wall.replace(tzinfo=zone, fold=0)
        if _wall_time_exists(start):
            yield start, (start.astimezone(UTC) + length).astimezone(zone)
        wall = wall_end


def slot_id(schedule_id: str, start: datetime) -> str:
    """Deterministic id: generating the same template twice creates no duplicates."""
    instant = start.astimezone(UTC).isoformat()
    return str(uuid.uuid5(_SLOT_NAMESPACE, f"{schedule_id}|{instant}"))


def slot_resource(schedule_id: str, start: datetime, end: datetime) -> dict[str, Any]:
    """A free Slot; times keep the location's offset (`2026-03-08T08:00:00-04:00`)."""
    return {
        "resourceType": "Slot",
        "id": slot_id(schedule_id, start),
        "schedule": {"reference": f"Schedule/{schedule_id}"},
        "status": "free",
        "start": start.isoformat(),
        "end": end.isoformat(),
    }


def parse_instant(value: object) -> datetime | None:
    """An aware datetime from a FHIR instant/dateTime string (None when not one)."""
    if not isinstance(value, str) or "T" not in value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def schedule_actors(schedule: dict[str, Any]) -> tuple[str | None, str | None]:
    """(practitioner reference, location reference) a Schedule is for."""
    practitioner = location = None
    for actor in schedule.get("actor") or []:
        reference = actor.get("reference") if isinstance(actor, dict) else None
        if not isinstance(reference, str):
            continue
        if reference.startswith("Location/"):
            location = location or reference
        elif reference.startswith(("Practitioner/", "PractitionerRole/", "Device/")):
            practitioner = practitioner or reference
    return practitioner, location


def schedule_participants(schedule: dict[str, Any]) -> list[dict[str, Any]]:
    """Appointment participants for the Schedule's practitioner and location."""
    return [
        {"actor": {"reference": reference}, "status": "accepted"}
        for reference in schedule_actors(schedule)
        if reference
    ]


_SCHEDULE_ACTOR_TYPES: Final = ("Practitioner/", "PractitionerRole/", "Device/", "Location/")


def moved_to_slot(
    appointment: dict[str, Any], slot: dict[str, Any], schedule: dict[str, Any]
) -> dict[str, Any]:
    """The appointment rescheduled into `slot` of `schedule`: same id, so history shows the move.

    The patient (and any other participant) stays; the practitioner and location
    become the new schedule's.
    """
    apply_transition(appointment, "reschedule")
    kept = [
        p
        for p in appointment.get("participant") or []
        if not str((p.get("actor") or {}).get("reference", "")).startswith(_SCHEDULE_ACTOR_TYPES)
    ]
    changed = dict(appointment)
    changed.update(
        status="booked",
        slot=[{"reference": f"Slot/{slot['id']}"}],
        start=slot["start"],
        end=slot["end"],
        participant=kept + schedule_participants(schedule),
    )
    return changed


def appointment_for_slot(
    *,
    appointment_id: str,
    slot: dict[str, Any],
    schedule: dict[str, Any],
    patient_id: str,
    description: str | None = None,
    status: str = "booked",
) -> dict[str, Any]:
    """A new Appointment holding `slot`: patient, the schedule's actors, the slot's times."""
    participants: list[dict[str, Any]] = [
        {"actor": {"reference": f"Patient/{patient_id}"}, "status": "accepted"},
        *schedule_participants(schedule),
    ]
    appointment: dict[str, Any] = {
        "resourceType": "Appointment",
        "id": appointment_id,
        "status": status,
        "slot": [{"reference": f"Slot/{slot['id']}"}],
        "start": slot["start"],
        "end": slot["end"],
        "participant": participants,
    }
    if description:
        appointment["description"] = description
    return appointment


def apply_transition(
    appointment: dict[str, Any], action: str, *, reason: str | None = None
) -> dict[str, Any]:
    """The appointment after `action` (cancel, check-in, no-show, fulfil); input unchanged."""
    allowed, new_status = TRANSITIONS[action]
    current = str(appointment.get("status", ""))
    if current not in allowed:
        raise TransitionNotAllowed(
            f"{action} not allowed from {current}",
            issues=[("Appointment.status", f"Cannot {action} an appointment that is {current}")],
            user_message=f"This appointment is {current}: it cannot be changed that way.",
        )
    changed = dict(appointment)
    changed["status"] = new_status
    if action == "cancel":
        if not reason or not reason.strip():
            raise ValidationFailed(
                "cancel without reason",
                issues=[("Appointment.cancelationReason", "Give a reason for the cancellation")],
                user_message="Give a reason for the cancellation.",
            )
        changed["cancelationReason"] = {"text": reason.strip()}
    return changed


def nearest_free(
    wanted: datetime, candidates: Iterable[dict[str, Any]], limit: int = 3
) -> list[dict[str, Any]]:
    """The `limit` free Slots whose start is nearest `wanted` (ties: the later one first).

    Past slots are the caller's to exclude; busy ones are skipped here.
    """
    scored = []
    for slot in candidates:
        start = parse_instant(slot.get("start"))
        if start is None or slot.get("status") != "free":
            continue
        distance = abs((start - wanted).total_seconds())
        scored.append((distance, start < wanted, start, str(slot.get("id")), slot))
    scored.sort(key=lambda item: item[:4])
    return [item[4] for item in scored[:limit]]


def holds_slot(appointment: dict[str, Any]) -> bool:
    """True when the appointment keeps its slot busy."""
    return appointment.get("status") not in RELEASING_STATUSES
