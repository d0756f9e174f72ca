"""A slot is never double-booked (`merge_policy.SLOT_DOUBLE_BOOKING`): the server's check.

Bookings are read from the data (the `slot` references of current, active
Appointments in the search index), plus the bookings made earlier in the same
push, so the later booking is rejected with the policy's reason. Two pushes
racing for one slot are settled by the database (`slot_bookings`, migration
`0004_scheduling`): the loser's write fails and is rejected the same way.
"""

from __future__ import annotations

from typing import Any

from shared_models.merge_policy import booked_slot_ids
from sync_server.services.fhir_repository import FhirRepository

_OTHER_BOOKING = (
    "SELECT 1 FROM search_reference s JOIN resources r"
    " ON r.resource_type = s.resource_type AND r.id = s.resource_id"
    " WHERE s.resource_type = 'Appointment' AND s.param = 'slot' AND s.target_id = %s"
    " AND s.resource_id <> ALL(%s) AND NOT r.deleted"
    " AND coalesce(r.resource->>'status', '') NOT IN ('cancelled', 'noshow', 'entered-in-error')"
    " LIMIT 1"
)


class SlotBookings:
    """Slot checks for one push, aware of the bookings made and released earlier in it."""

    def __init__(self, repo: FhirRepository) -> None:
        self._repo = repo
        self._booked_now: dict[str, str] = {}
        #: Appointments of this push that hold no slot any more (cancelled, deleted, moved).
        self._released: set[str] = set()

    def double_booked(self, resource_type: str, resource_id: str, resource: Any) -> bool:
        """True when an Appointment about to be written takes a slot another one holds.

        `resource` is None for a deletion. Every Appointment write of the push is
        passed here, in order, so a cancellation frees its slot for a later change.
        """
        if resource_type != "Appointment":
            return False
        slots = booked_slot_ids(resource) if resource is not None else []
        self._booked_now = {s: a for s, a in self._booked_now.items() if a != resource_id}
        self._released.add(resource_id)
        others = sorted(self._released)
        conn = self._repo._conn
        for slot in slots:
            if slot in self._booked_now:
                return True
            if conn.execute(_OTHER_BOOKING, (slot, others)).fetchone() is not None:
                return True
        for slot in slots:
            self._booked_now[slot] = resource_id
        return False
