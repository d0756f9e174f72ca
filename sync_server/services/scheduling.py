"""Scheduling on the server: slots from templates, booking, status changes, free slots.

Every write goes through the one `FhirRepository`, so each status change is a
new Appointment version (history kept), indexed, access-checked and audited.
The database makes a double booking impossible (`slot_bookings`, migration
`0004_scheduling`): the repository turns the constraint's violation into
`SlotUnavailable`, which the API answers with the nearest free alternatives.

Slot status follows the bookings: after an Appointment is written, each slot
it held or holds is set `busy` or `free` to match `slot_bookings`, in the same
transaction. That bookkeeping runs in the system context: who may book (create
an Appointment) need not be allowed to edit Slots by hand.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import orjson

from shared_models.errors import NotFound, ValidationFailed
from shared_models.merge_policy import booked_slot_ids
from shared_models.scheduling import (
    ScheduleTemplate,
    SlotUnavailable,
    apply_transition,
    appointment_for_slot,
    location_zone,
    moved_to_slot,
    nearest_free,
    parse_instant,
    schedule_actors,
    slot_resource,
    slot_times,
)
from shared_models.sync_messages import PushChange, PushResult
from sync_server.services.context import RequestContext
from sync_server.services.fhir_repository import (
    FhirRepository,
    ResourceWrite,
    StoredResource,
    new_id,
)
from sync_server.services.system_access import SystemAudit, SystemGuard

#: Longest range one template run may fill (a year and a bit).
MAX_TEMPLATE_DAYS = 400
MAX_FREE_SLOTS = 500
_WRITE_BATCH = 1000

_FREE_SLOTS_SQL = """
SELECT r.id, r.resource::text FROM (
    SELECT f.slot_id, f.start FROM unnest(%(schedules)s::text[]) AS s(id)
    CROSS JOIN LATERAL (
        SELECT i.slot_id, i.start FROM slot_index i
        WHERE i.schedule_id = s.id AND i.status = 'free'
          AND i.start >= %(start)s AND i.start < %(end)s
          AND NOT EXISTS (SELECT 1 FROM slot_bookings b WHERE b.slot_id = i.slot_id)
        ORDER BY i.start LIMIT %(count)s
    ) f
    ORDER BY f.start, f.slot_id LIMIT %(count)s
) x
JOIN resources r ON r.resource_type = 'Slot' AND r.id = x.slot_id AND NOT r.deleted
ORDER BY x.start, x.slot_id
"""

_SCHEDULES_FOR_ACTOR_SQL = """
SELECT s.resource_id FROM search_reference s JOIN resources r
  ON r.resource_type = 'Schedule' AND r.id = s.resource_id AND NOT r.deleted
WHERE s.resource_type = 'Schedule' AND s.param = 'actor' AND s.target_id = %s
  AND coalesce(r.resource->>'active', 'true') <> 'false'
"""


@dataclass(frozen=True)
class GeneratedSlots:
    created: int
    existing: int


def _reference_id(reference: str | None, expected_type: str) -> str:
    if not reference:
        raise ValidationFailed(
            f"{expected_type} missing", issues=[(expected_type, f"Name a {expected_type}")]
        )
    type_, _, id_ = reference.rpartition("/")
    if type_ not in ("", expected_type) or not id_:
        raise ValidationFailed(
            f"not a {expected_type} reference",
            issues=[(expected_type, f"Expected {expected_type}/id")],
        )
    return id_


def _system(repo: FhirRepository) -> FhirRepository:
    """The same transaction, acting as the server (slot bookkeeping only)."""
    return FhirRepository(
        repo.session, RequestContext.for_system("scheduling"), SystemGuard(), SystemAudit()
    )


# --- slots ------------------------------------------------------------------------------


def generate_slots(
    *,
    repo: FhirRepository,
    schedule_id: str,
    template: ScheduleTemplate,
    first_day: date,
    last_day: date,
) -> GeneratedSlots:
    """Create the template's free Slots from `first_day` to `last_day` (inclusive).

    Slot ids are derived from schedule and start, so running the same template
    again creates only the slots that are missing.
    """
    if last_day < first_day or (last_day - first_day).days > MAX_TEMPLATE_DAYS:
        raise ValidationFailed(
            "bad date range",
            issues=[("to", f"Give a range of 1 to {MAX_TEMPLATE_DAYS} days, start first")],
        )
    schedule = repo.read("Schedule", schedule_id).resource()
    _, location_ref = schedule_actors(schedule)
    location = repo.read("Location", _reference_id(location_ref, "Location")).resource()
    zone = location_zone(location)
    slots = [
        slot_resource(schedule_id, start, end)
        for start, end in slot_times(template, first_day, last_day, zone)
    ]
    existing = repo.existing_keys([("Slot", s["id"]) for s in slots])
    new = [s for s in slots if ("Slot", s["id"]) not in existing]
    for offset in range(0, len(new), _WRITE_BATCH):
        chunk = new[offset : offset + _WRITE_BATCH]
        repo.write_many([ResourceWrite("Slot", s["id"], s) for s in chunk])
    return GeneratedSlots(created=len(new), existing=len(slots) - len(new))


def schedules_for(
    repo: FhirRepository, *, practitioner: str | None = None, location: str | None = None
) -> list[str]:
    """Active Schedules whose actors include the practitioner and/or the location."""
    if practitioner is None and location is None:
        raise ValidationFailed(
            "no actor", issues=[("practitioner", "Name a practitioner, a location or both")]
        )
    found: set[str] | None = None
    for reference, kind in ((practitioner, "Practitioner"), (location, "Location")):
        if reference is None:
            continue
        rows = repo._conn.execute(_SCHEDULES_FOR_ACTOR_SQL, (_reference_id(reference, kind),))
        ids = {row[0] for row in rows}
        found = ids if found is None else found & ids
    return sorted(found or ())


def free_slots(
    *,
    repo: FhirRepository,
    schedule_ids: Sequence[str],
    start: datetime,
    end: datetime | None = None,
    count: int = 20,
) -> list[dict[str, Any]]:
    """Free, unbooked Slots of these schedules starting in [start, end), soonest first."""
    repo.guard.authorize(repo.session, repo.ctx, "search", "Slot", None)
    rows = repo._conn.execute(
        _FREE_SLOTS_SQL,
        {
            "start": start,
            "end": end or start + timedelta(days=MAX_TEMPLATE_DAYS),
            "schedules": list(schedule_ids),
            "count": max(1, min(count, MAX_FREE_SLOTS)),
        },
    ).fetchall()
    repo.audit.record(
        repo.session, repo.ctx, action="search", outcome="success", resource_type="Slot",
        detail={"count": len(rows), "purpose": "free-slots"},
    )  # fmt: skip
    return [orjson.loads(text) for _, text in rows]


def alternatives(
    repo: FhirRepository, slot: dict[str, Any], *, limit: int = 3
) -> list[dict[str, Any]]:
    """The free slots nearest `slot`'s start: same schedule first, then its location."""
    wanted = parse_instant(slot.get("start")) or datetime.now(UTC)
    window_start = max(datetime.now(UTC), wanted - timedelta(days=7))
    window_end = wanted + timedelta(days=21)
    schedule_id = _reference_id((slot.get("schedule") or {}).get("reference"), "Schedule")
    candidates = free_slots(
        repo=repo, schedule_ids=[schedule_id], start=window_start, end=window_end, count=200
    )
    if len(candidates) < limit:
        schedule = repo.read("Schedule", schedule_id).resource()
        _, location = schedule_actors(schedule)
        if location:
            others = schedules_for(repo, location=location)
            candidates += free_slots(
                repo=repo, schedule_ids=[s for s in others if s != schedule_id],
                start=window_start, end=window_end, count=200,
            )  # fmt: skip
    return nearest_free(wanted, [c for c in candidates if c.get("id") != slot.get("id")], limit)


def align_slot_status(repo: FhirRepository, slot_ids: Iterable[str]) -> None:
    """Set each Slot `busy` or `free` as `slot_bookings` says (only where it differs)."""
    ids = sorted(set(slot_ids))
    if not ids:
        return
    rows = repo._conn.execute(
        "SELECT r.id, r.version_id, r.resource::text, b.slot_id IS NOT NULL FROM resources r"
        " LEFT JOIN slot_bookings b ON b.slot_id = r.id"
        " WHERE r.resource_type = 'Slot' AND r.id = ANY(%s) AND NOT r.deleted ORDER BY r.id",
        (ids,),
    ).fetchall()
    writes = []
    for slot_id, version, text, booked in rows:
        slot = orjson.loads(text)
        status = slot.get("status")
        wanted = "busy" if booked else ("free" if status == "busy" else status)
        if status != wanted:
            slot["status"] = wanted
            writes.append(ResourceWrite("Slot", slot_id, slot, expected_version=version))
    if writes:
        _system(repo).write_many(writes)


# --- appointments -----------------------------------------------------------------------


def _is_booked(repo: FhirRepository, slot_id: str) -> bool:
    row = repo._conn.execute("SELECT 1 FROM slot_bookings WHERE slot_id = %s", (slot_id,))
    return row.fetchone() is not None


def _free_slot(repo: FhirRepository, slot_id: str) -> dict[str, Any]:
    """The Slot, or SlotUnavailable (with alternatives) when it is taken or not bookable.

    Takes the slot's lock for the rest of the transaction first (the key the sync
    push's `SlotBookings` uses), so concurrent bookings of one slot queue here and
    the later ones are refused by this check, before anything is written. The
    database constraint stays the guarantee; this keeps the losers cheap. Callers
    run it through `repo.run_unit`, so a refusal is audited as a failed write.
    """
    repo._conn.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended('slot:' || %s, 0))", (slot_id,)
    )
    slot = repo.read("Slot", slot_id).resource()
    if slot.get("status") != "free" or _is_booked(repo, slot_id):
        raise SlotUnavailable("slot not free", alternatives=alternatives(repo, slot))
    return slot


def _write_appointment(
    repo: FhirRepository,
    appointment: dict[str, Any],
    *,
    expected_version: int | None,
    wanted_slot: dict[str, Any] | None,
    released: Sequence[str] = (),
) -> StoredResource:
    """Write one Appointment version and align its slots, all or nothing."""

    def unit() -> StoredResource:
        stored = repo.write_version(
            "Appointment", appointment["id"], appointment, expected_version=expected_version
        ).stored
        align_slot_status(repo, [*released, *booked_slot_ids(appointment)])
        return stored

    try:
        with repo.session.begin_nested():  # the repository audits a failed write itself
            return unit()
    except SlotUnavailable as exc:
        if wanted_slot is not None:
            exc.alternatives = alternatives(repo, wanted_slot)
        raise


def book(
    *,
    repo: FhirRepository,
    slot_id: str,
    patient_id: str,
    description: str | None = None,
    appointment_id: str | None = None,
) -> StoredResource:
    """Book `slot_id` for the patient: the Appointment and the busy Slot in one transaction."""
    if not repo.existing_keys([("Patient", patient_id)]):
        raise NotFound("Patient not found")
    slot = repo.run_unit("create", "Appointment", lambda: _free_slot(repo, slot_id))
    schedule_id = _reference_id((slot.get("schedule") or {}).get("reference"), "Schedule")
    schedule = repo.read("Schedule", schedule_id).resource()
    appointment = appointment_for_slot(
        appointment_id=appointment_id or new_id(),
        slot=slot,
        schedule=schedule,
        patient_id=patient_id,
        description=description,
    )
    return _write_appointment(repo, appointment, expected_version=0, wanted_slot=slot)


def reschedule(*, repo: FhirRepository, appointment_id: str, slot_id: str) -> StoredResource:
    """Move the appointment into another free slot (a new version of the same Appointment)."""
    stored = repo.read("Appointment", appointment_id)
    appointment = stored.resource()
    slot = repo.run_unit("update", "Appointment", lambda: _free_slot(repo, slot_id))
    schedule_id = _reference_id((slot.get("schedule") or {}).get("reference"), "Schedule")
    moved = moved_to_slot(appointment, slot, repo.read("Schedule", schedule_id).resource())
    return _write_appointment(
        repo, moved, expected_version=stored.version_id, wanted_slot=slot,
        released=booked_slot_ids(appointment),
    )  # fmt: skip


def change_status(
    *, repo: FhirRepository, appointment_id: str, action: str, reason: str | None = None
) -> StoredResource:
    """Cancel (with a reason), check in (arrived), no-show or fulfil: a new version each."""
    stored = repo.read("Appointment", appointment_id)
    appointment = stored.resource()
    changed = apply_transition(appointment, action, reason=reason)
    return _write_appointment(
        repo, changed, expected_version=stored.version_id, wanted_slot=None,
        released=booked_slot_ids(appointment),
    )  # fmt: skip


def align_pushed_slots(
    repo: FhirRepository, changes: Sequence[PushChange], results: Sequence[PushResult]
) -> None:
    """After a sync push: align the slots each written Appointment held before or holds now."""
    keys = [
        (change.id, result.versionId)
        for change, result in zip(changes, results, strict=True)
        if change.resourceType == "Appointment"
        and result.status in ("applied", "merged")
        and result.versionId
    ]
    if not keys:
        return
    rows = repo._conn.execute(
        "SELECT resource->'slot' FROM resource_versions v"
        " JOIN unnest(%s::text[], %s::int[]) AS k(id, version) ON v.id = k.id"
        " AND v.version_id IN (k.version, k.version - 1)"
        " WHERE v.resource_type = 'Appointment' AND v.resource IS NOT NULL",
        ([k[0] for k in keys], [k[1] for k in keys]),
    ).fetchall()
    slots = {
        ref["reference"].removeprefix("Slot/")
        for (refs,) in rows
        for ref in (refs if isinstance(refs, list) else [])
        if isinstance(ref, dict) and str(ref.get("reference", "")).startswith("Slot/")
    }
    align_slot_status(repo, slots)
